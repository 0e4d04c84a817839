"""A bounded load test on loopback: 32 Realtime clients × 5 turns plus REST requests from more
clients than there are slots, three rounds, against `voxrt serve --engine fake`; then the same
shape, smaller, against the model of VOXRT_MODEL (the tiny checkpoint in CI: mel, encoder, prefill,
decode and detokenizer run for every turn). Every request is answered or cleanly refused (429 / an
error event and close 1013), none is lost, no slot leaks (/metrics back to zero after each round),
and RSS stays flat across rounds.

    VOXRT_SERVE=build/voxrt-serve VOXRT_MODEL=tests/data/tiny/model python tests/server/test_load.py
"""
import base64
import json
import os
import threading
import time
import unittest
import urllib.request
import warnings

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server_util import Server

BIN = os.environ.get("VOXRT_SERVE", "build/voxrt-serve")
MODEL = os.environ.get("VOXRT_MODEL", "")
SLOTS = 40
RT_CLIENTS, RT_TURNS = 32, 5
REST_CLIENTS = 48
ROUNDS = int(os.environ.get("VOXRT_LOAD_ROUNDS", "3"))
# Against the model: its answers are capped (the tiny checkpoint's random weights never end a turn
# on their own), so a turn ends "incomplete" at max_output_tokens.
MODEL_SLOTS, MODEL_RT_CLIENTS, MODEL_RT_TURNS, MODEL_REST_CLIENTS, MODEL_MAX_TOKENS = 6, 6, 3, 8, 24
warnings.simplefilter("ignore", DeprecationWarning)


def realtime_client(url, results, i, turns_per_client=RT_TURNS, max_tokens=None):
    """`turns_per_client` turns: 200 ms of audio appended, committed, answered; or refused at
    connect. With `max_tokens`, answers are capped and may end "incomplete"."""
    tone = base64.b64encode(bytes(9600)).decode()
    try:
        with connect(url, open_timeout=30) as ws:
            first = json.loads(ws.recv(timeout=30))
            if first["type"] == "error":
                assert first["error"]["code"] == "session_limit_reached", first
                try:
                    ws.recv(timeout=10)
                except ConnectionClosed as e:
                    assert e.rcvd.code == 1013
                results.append(("refused", i))
                return
            assert first["type"] == "session.created"
            session = {"turn_detection": None}
            if max_tokens:
                session["max_output_tokens"] = max_tokens
            ws.send(json.dumps({"type": "session.update", "session": session}))
            turns = 0
            for _ in range(turns_per_client):
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": tone}))
                ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                ws.send(json.dumps({"type": "response.create"}))
                audio = 0
                while True:
                    ev = json.loads(ws.recv(timeout=60))
                    assert ev["type"] != "error", ev
                    if ev["type"] == "response.output_audio.delta":
                        audio += 1
                    if ev["type"] == "response.done":
                        ok = ("completed", "incomplete") if max_tokens else ("completed",)
                        assert ev["response"]["status"] in ok, ev
                        break
                assert audio > 0
                turns += 1
            results.append(("answered", i, turns))
    except Exception as e:  # noqa: BLE001 (counted as lost)
        results.append(("lost", i, repr(e)))


def rest_client(base, results, i, max_tokens=None):
    kind = i % 3
    if kind == 0:
        path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
    elif kind == 1:
        path, body = "/v1/audio/speech", {"input": "hello there", "voice": "us-male", "response_format": "pcm"}
    else:
        path, body = "/v1/chat/completions", {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens and path == "/v1/chat/completions":
        body["max_tokens"] = max_tokens
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            assert r.status == 200, r.status
            # the fake engine always speaks; random weights may end a TTS answer before any audio
            assert len(data) > 0 or (max_tokens and kind == 1)
            if kind == 2:
                assert data.rstrip().endswith(b"data: [DONE]"), data[-100:]
            results.append(("answered", i))
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        if e.code == 429 and body["error"]["code"] == "server_busy":
            results.append(("refused", i))
        else:
            results.append(("lost", i, e.code, body))
    except Exception as e:  # noqa: BLE001
        results.append(("lost", i, repr(e)))


class Load(unittest.TestCase):
    def run_rounds(self, srv, slots, rt_clients, rest_clients, rt_turns, max_tokens=None):
        url = srv.base.replace("http", "ws") + "/v1/realtime"
        rss = []
        for rnd in range(ROUNDS):
            results = []
            threads = [threading.Thread(target=realtime_client, args=(url, results, i, rt_turns, max_tokens))
                       for i in range(rt_clients)]
            threads += [threading.Thread(target=rest_client, args=(srv.base, results, i, max_tokens))
                        for i in range(rest_clients)]
            t0 = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            took = time.time() - t0
            lost = [r for r in results if r[0] == "lost"]
            answered = [r for r in results if r[0] == "answered"]
            refused = [r for r in results if r[0] == "refused"]
            self.assertEqual(lost, [])
            self.assertEqual(len(results), rt_clients + rest_clients)  # none lost, none hung
            self.assertGreaterEqual(len(answered), slots)
            self.assertGreater(len(refused), 0)  # more clients than slots
            for r in answered:
                if len(r) == 3:
                    self.assertEqual(r[2], rt_turns)
            m = srv.wait_idle()
            self.assertEqual(m["voxrt_sessions_active"], 0)
            self.assertEqual(m["voxrt_realtime_sessions_active"], 0)
            rss.append(srv.rss_kib())
            print(f"round {rnd}: {len(answered)} answered, {len(refused)} refused, {took:.1f} s, "
                  f"RSS {rss[-1] / 1024:.1f} MiB, refused total {m['voxrt_sessions_refused_total']:.0f}",
                  flush=True)
        # After the first round (warm-up: allocator pools, thread stacks and, under
        # AddressSanitizer, its quarantine of freed memory, which alone grows RSS by ~100 MiB in
        # round 0), RSS stays within 8 MiB from round to round.
        # Under AddressSanitizer the bound is 24 MiB: its allocator never hands freed chunks back to
        # the system and keeps per-thread caches, so RSS wanders by itself (8 rounds on the tiny
        # checkpoint: 169.0-174.4 MiB with no trend; one CI run saw a single jump of 14 MiB with
        # other tests beside it). There, a leak by ownership is LeakSanitizer's to find when the
        # server exits (detect_leaks=1 makes the exit status non-zero, checked below); the
        # uninstrumented build keeps the 8 MiB bound (flat to 0.1 MiB over 8 rounds).
        bound_mib = 24 if os.environ.get("ASAN_OPTIONS") is not None else 8
        self.assertLess(max(rss[1:]) - rss[1], bound_mib * 1024, rss)
        self.assertEqual(srv.stop(), 0)

    def test_rounds(self):
        # --round-budget-ms 0: this test is about the slot limit; admission control by measured
        # round time (on by default) is tested in scheduler_test and test_admission_control
        with Server(BIN, "--engine", "fake", "--fake-step-ms", "0.5", "--max-sessions", str(SLOTS),
                    "--round-budget-ms", "0") as srv:
            self.run_rounds(srv, SLOTS, RT_CLIENTS, REST_CLIENTS, RT_TURNS)

    def test_admission_control(self):
        """With a 40 ms round budget and an engine step of 10 ms per answer (the fake engine steps
        answers one after another), the server admits Realtime sessions while the measured rounds
        say every held slot could answer within 40 ms, then refuses the next with a reason, though
        slots remain; a session that leaves makes room again."""
        tone = base64.b64encode(bytes(9600)).decode()
        with Server(BIN, "--engine", "fake", "--fake-step-ms", "10", "--max-sessions", "16",
                    "--round-budget-ms", "40") as srv:
            url = srv.base.replace("http", "ws") + "/v1/realtime"
            held, refusal = [], None
            for _ in range(16):
                ws = connect(url, open_timeout=30)
                first = json.loads(ws.recv(timeout=30))
                if first["type"] == "error":
                    refusal = first["error"]
                    ws.close()
                    break
                held.append(ws)
                ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": tone}))
                ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                ws.send(json.dumps({"type": "response.create"}))
                while json.loads(ws.recv(timeout=60))["type"] != "response.done":
                    pass
            # rounds of one 10 ms answer: (n + 1) · 10 ms > 40 ms from n = 4 (sooner if the
            # machine is slow)
            self.assertIsNotNone(refusal, f"{len(held)} sessions admitted, none refused")
            self.assertGreaterEqual(len(held), 2)
            self.assertLessEqual(len(held), 4)
            self.assertEqual(refusal["code"], "session_limit_reached")
            self.assertIn("measured capacity", refusal["message"])
            m = srv.metrics()
            self.assertEqual(m["voxrt_sessions_refused_capacity_total"], 1)
            self.assertGreaterEqual(m["voxrt_capacity_sessions"], 1)
            held.pop().close()
            deadline = time.time() + 10
            while srv.metrics()["voxrt_sessions_active"] >= len(held) + 1 and time.time() < deadline:
                time.sleep(0.05)
            again = connect(url, open_timeout=30)
            self.assertEqual(json.loads(again.recv(timeout=30))["type"], "session.created")
            again.close()
            for ws in held:
                ws.close()
            self.assertEqual(srv.stop(), 0)

    @unittest.skipUnless(MODEL, "VOXRT_MODEL names no checkpoint")
    def test_rounds_on_the_model(self):
        # Under AddressSanitizer, freed memory is held in a quarantine (256 MiB by default) before
        # reuse; the model's per-turn buffers fill it over several rounds, which the RSS bound would
        # read as a leak. A smaller quarantine keeps use-after-free detection for recent frees and
        # lets RSS settle after the first round. (No effect on an uninstrumented build.)
        env = dict(os.environ)
        if env.get("ASAN_OPTIONS") is not None:
            env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"] + ":quarantine_size_mb=16"
        with Server(BIN, "-m", MODEL, "--max-sessions", str(MODEL_SLOTS), "-t", "2", "--round-budget-ms", "0",
                    env=env) as srv:
            self.run_rounds(srv, MODEL_SLOTS, MODEL_RT_CLIENTS, MODEL_REST_CLIENTS, MODEL_RT_TURNS,
                            MODEL_MAX_TOKENS)


if __name__ == "__main__":
    unittest.main(verbosity=2)
