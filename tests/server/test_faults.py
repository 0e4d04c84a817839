"""Hostile and broken clients against `voxrt serve --engine fake` (no model): each gets an
OpenAI-shaped error or a closed connection, and a healthy conversation running beside them is
untouched; slots come back; SIGTERM drains.

    VOXRT_SERVE=build/voxrt-serve python tests/server/test_faults.py
"""
import base64
import json
import os
import signal
import socket
import threading
import time
import unittest
import urllib.request
import warnings

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server_util import Server

BIN = os.environ.get("VOXRT_SERVE", "build/voxrt-serve")


def post(base, path, body, ctype="application/json", timeout=30):
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def raw(port, data, timeout=10, shut=False):
    """Sends raw bytes, returns what comes back until the server closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def rt_events(ws, until, timeout=20):
    evs = []
    end = time.time() + timeout
    while time.time() < end:
        ev = json.loads(ws.recv(timeout=max(0.1, end - time.time())))
        evs.append(ev)
        if ev["type"] == until:
            return evs
    raise AssertionError(f"no {until} in {[e['type'] for e in evs]}")


class HealthyConversation(threading.Thread):
    """A Realtime conversation doing text turns in a loop while the faults happen."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.url = base.replace("http", "ws") + "/v1/realtime"
        self.turns = 0
        self.error = None
        self.stop = False

    def run(self):
        try:
            with connect(self.url) as ws:
                rt_events(ws, "session.created")
                while not self.stop:
                    ws.send(json.dumps({"type": "conversation.item.create", "item": {
                        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
                    ws.send(json.dumps({"type": "response.create"}))
                    evs = rt_events(ws, "response.done")
                    bad = [e for e in evs if e["type"] == "error"]
                    if bad:
                        raise AssertionError(bad)
                    if evs[-1]["response"]["status"] != "completed":
                        raise AssertionError(evs[-1])
                    self.turns += 1
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e


warnings.simplefilter("ignore", DeprecationWarning)


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(BIN, "--engine", "fake", "--fake-step-ms", "5", "--max-sessions", "3",
                            "--request-timeout", "2", "--idle-timeout", "3", "--realtime-idle", "2",
                            "--max-body-mb", "1")
        cls.healthy = HealthyConversation(cls.server.base)
        cls.healthy.start()
        time.sleep(0.3)

    @classmethod
    def tearDownClass(cls):
        cls.healthy.stop = True
        cls.healthy.join(30)
        turns = cls.healthy.turns
        assert cls.healthy.error is None, cls.healthy.error
        assert turns > 5, f"the healthy conversation made only {turns} turns"
        assert cls.server.stop() == 0

    def assert_error(self, status, body, code=None, param=None):
        j = json.loads(body)
        self.assertIn("error", j)
        self.assertIn("message", j["error"])
        self.assertIn("type", j["error"])
        if code:
            self.assertEqual(j["error"]["code"], code)
        if param:
            self.assertEqual(j["error"]["param"], param)

    def test_malformed_json_and_fields(self):
        b = self.server.base
        s, body = post(b, "/v1/chat/completions", b"{nope")
        self.assertEqual(s, 400)
        self.assert_error(s, body, code="invalid_json")
        s, body = post(b, "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}], "n": 3}).encode())
        self.assertEqual(s, 400)
        self.assert_error(s, body, param="n")
        s, body = post(b, "/v1/audio/speech", json.dumps({"input": "x", "voice": "us-male", "response_format": "opus"}).encode())
        self.assertEqual(s, 400)
        self.assert_error(s, body, param="response_format")
        s, body = post(b, "/v1/chat/completions", b"[" * 100000 + b"]" * 100000)
        self.assertEqual(s, 400)
        s, body = post(b, "/v1/audio/transcriptions", b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFFjunk\r\n--x--",
                       ctype="multipart/form-data; boundary=x")
        self.assertEqual(s, 400)
        self.assert_error(s, body, param="file")
        s, body = self.server.get("/v1/nothing")
        self.assertEqual(s, 404)
        self.assert_error(s, body)

    def test_wrong_audio_and_oversized_base64(self):
        msg = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": base64.b64encode(b"not a wav").decode(), "format": "wav"}}]}
        s, body = post(self.server.base, "/v1/chat/completions", json.dumps({"messages": [msg]}).encode())
        self.assertEqual(s, 400)
        self.assert_error(s, body, param="messages[0].content[0].input_audio.data")
        # a body over --max-body-mb: 413 from the Content-Length alone, before any of it is read
        out = raw(self.server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:80])
        self.assert_error(413, out.split(b"\r\n\r\n", 1)[1], code="request_too_large")

    def test_garbage_http(self):
        out = raw(self.server.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n", shut=True)
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:80])
        out = raw(self.server.port, b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:80])

    def test_slow_client_times_out(self):
        # a body that stops coming: the connection is closed after --request-timeout (2 s)
        t0 = time.time()
        out = raw(self.server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
                  timeout=10)
        self.assertEqual(out, b"")
        self.assertGreater(time.time() - t0, 1.5)
        self.assertLess(time.time() - t0, 8)
        # a connection that sends nothing is closed too
        t0 = time.time()
        self.assertEqual(raw(self.server.port, b"", timeout=10), b"")
        self.assertLess(time.time() - t0, 8)

    def test_realtime_bad_events_keep_the_session(self):
        with connect(self.server.base.replace("http", "ws") + "/v1/realtime") as ws:
            rt_events(ws, "session.created")
            for bad, code in [("{oops", "invalid_json"),
                              (json.dumps({"type": "no.such.event", "event_id": "e7"}), "unknown_event_type"),
                              (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%%"}), "invalid_audio"),
                              (json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}), "unsupported_value"),
                              (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
                              (json.dumps({"type": "response.cancel"}), "response_cancel_not_active")]:
                ws.send(bad)
                ev = rt_events(ws, "error")[-1]
                self.assertEqual(ev["error"]["code"], code, ev)
            self.assertEqual(ev["error"]["type"], "invalid_request_error")
            ws.send(b"\x00\x01binary")
            self.assertEqual(rt_events(ws, "error")[-1]["error"]["code"], "invalid_event")
            # still usable
            ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
            ws.send(json.dumps({"type": "response.create"}))
            self.assertEqual(rt_events(ws, "response.done")[-1]["response"]["status"], "completed")

    def test_client_truncate_after_barge_in_is_the_last_word(self):
        """Server VAD hears the user talk over an answer (barge-in: the server cancels it and would
        cut it at the played position when it ends); the client then truncates the answer itself.
        The client's cut (to nothing heard: 0 ms, valid whatever was generated) stands, and no error
        comes, whichever of the two the server saw first."""
        rate = 24000

        def pcm(ms, amp):
            n = rate * ms // 1000
            return base64.b64encode(b"".join(
                int(amp * 32767 * (1 if (i // 20) % 2 else -1)).to_bytes(2, "little", signed=True)
                for i in range(n))).decode()

        with connect(self.server.base.replace("http", "ws") + "/v1/realtime") as ws:
            rt_events(ws, "session.created")
            ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 100,
                                   "silence_duration_ms": 200}}}}}))
            rt_events(ws, "session.updated")
            for ms, amp in [(300, 0.0005), (400, 0.3), (400, 0.0005)]:
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm(ms, amp)}))
            evs = rt_events(ws, "response.output_audio.delta")
            item = [e for e in evs if e["type"] == "response.output_item.added"][-1]["item"]["id"]
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm(300, 0.3)}))
            evs = rt_events(ws, "input_audio_buffer.speech_started")
            ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": item, "content_index": 0,
                                "audio_end_ms": 0}))
            evs += rt_events(ws, "response.done")
            truncated = []
            end = time.time() + 1.5
            while time.time() < end:
                try:
                    ev = json.loads(ws.recv(timeout=max(0.05, end - time.time())))
                except TimeoutError:
                    break
                evs.append(ev)
            errors = [e for e in evs if e["type"] == "error"]
            self.assertEqual(errors, [])
            truncated = [e for e in evs if e["type"] == "conversation.item.truncated"]
            self.assertGreaterEqual(len(truncated), 1)
            self.assertEqual(truncated[-1]["item_id"], item)
            self.assertEqual(truncated[-1]["audio_end_ms"], 0)
        self.server.wait_idle_but(1)  # its slot is free again before the next test counts slots

    def test_realtime_oversized_message_closes_only_that_socket(self):
        ws = connect(self.server.base.replace("http", "ws") + "/v1/realtime", max_size=None)
        rt_events(ws, "session.created")
        # over --max-ws-message (16 MiB): the server fails the connection (close 1009) without
        # reading the rest; the client may see its send cut short
        try:
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (17 << 20)}))
            while True:
                ev = json.loads(ws.recv(timeout=10))
                self.assertEqual(ev["type"], "error")
        except ConnectionClosed as e:
            if e.rcvd is not None:
                self.assertEqual(e.rcvd.code, 1009)
        except OSError:
            pass
        ws.socket.close()
        self.server.wait_idle_but(1)

    def test_silent_realtime_client_is_closed(self):
        with connect(self.server.base.replace("http", "ws") + "/v1/realtime") as ws:
            rt_events(ws, "session.created")
            t0 = time.time()
            ev = rt_events(ws, "error", timeout=10)[-1]
            self.assertEqual(ev["error"]["code"], "idle_timeout")
            with self.assertRaises(ConnectionClosed):
                ws.recv(timeout=10)
            self.assertLess(time.time() - t0, 6)

    def test_vanishing_clients_free_their_slots(self):
        # HTTP: a streamed chat answer (and a whole one), the client leaves after the first bytes
        for stream in (True, True, False):
            s = socket.create_connection(("127.0.0.1", self.server.port))
            body = json.dumps({"stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            if stream:
                s.recv(100)
            s.close()
            t0 = time.time()
            self.server.wait_idle_but(1)
            self.assertLess(time.time() - t0, 0.5)
        # Realtime: the client leaves mid-answer
        for _ in range(3):
            ws = connect(self.server.base.replace("http", "ws") + "/v1/realtime")
            rt_events(ws, "session.created")
            ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
            ws.send(json.dumps({"type": "response.create"}))
            rt_events(ws, "response.output_audio.delta")
            ws.socket.close()  # no close handshake
            t0 = time.time()
            self.server.wait_idle_but(1)
            self.assertLess(time.time() - t0, 0.5)
        m = self.server.metrics()
        self.assertGreater(m["voxrt_responses_cancelled_total"], 0)

    def test_full_server_refuses_fast(self):
        # the healthy conversation holds one slot; take the other two
        a = connect(self.server.base.replace("http", "ws") + "/v1/realtime")
        b = connect(self.server.base.replace("http", "ws") + "/v1/realtime")
        try:
            rt_events(a, "session.created")
            rt_events(b, "session.created")
            t0 = time.time()
            s, body = post(self.server.base, "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode())
            self.assertEqual(s, 429)
            self.assert_error(s, body, code="server_busy")
            self.assertEqual(self.server.get("/ready")[0], 503)
            with connect(self.server.base.replace("http", "ws") + "/v1/realtime") as c:
                ev = json.loads(c.recv(timeout=5))
                self.assertEqual(ev["type"], "error")
                self.assertEqual(ev["error"]["code"], "session_limit_reached")
                with self.assertRaises(ConnectionClosed) as cm:
                    c.recv(timeout=5)
                self.assertEqual(cm.exception.rcvd.code, 1013)
            self.assertLess(time.time() - t0, 2)
        finally:
            a.close()
            b.close()
        self.server.wait_idle_but(1)
        self.assertEqual(self.server.get("/ready")[0], 200)


def wait_idle_but(self, n, timeout=10):
    """Until exactly `n` slots are in use (the healthy conversation's) and nothing else runs."""
    end = time.time() + timeout
    while True:
        m = self.metrics()
        if m["voxrt_sessions_active"] == n:
            return m
        if time.time() > end:
            raise AssertionError(f"{m['voxrt_sessions_active']} slots in use after {timeout} s, expected {n}")
        time.sleep(0.02)


Server.wait_idle_but = wait_idle_but


class Drain(unittest.TestCase):
    def test_sigterm_finishes_answers_then_exits_0(self):
        srv = Server(BIN, "--engine", "fake", "--fake-step-ms", "20", "--drain", "20")
        ws = connect(srv.base.replace("http", "ws") + "/v1/realtime")
        rt_events(ws, "session.created")
        ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
        ws.send(json.dumps({"type": "response.create"}))
        rt_events(ws, "response.output_audio.delta")
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # no new work: the listener is closed
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).recv(1)
        # the answer in flight completes, then the socket is closed with 1001
        evs = rt_events(ws, "response.done", timeout=20)
        self.assertEqual(evs[-1]["response"]["status"], "completed")
        with self.assertRaises(ConnectionClosed) as cm:
            ws.recv(timeout=10)
        self.assertEqual(cm.exception.rcvd.code, 1001)
        self.assertEqual(srv.proc.wait(20), 0)
        srv.stop()

    def test_drain_deadline(self):
        srv = Server(BIN, "--engine", "fake", "--fake-step-ms", "200", "--drain", "1")
        ws = connect(srv.base.replace("http", "ws") + "/v1/realtime")
        rt_events(ws, "session.created")
        ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
        ws.send(json.dumps({"type": "response.create"}))
        rt_events(ws, "response.created")
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        self.assertEqual(srv.proc.wait(10), 0)
        self.assertLess(time.time() - t0, 4)
        srv.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
