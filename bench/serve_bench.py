#!/usr/bin/env python3
"""voxrt serve, measured through the Realtime WebSocket on loopback.

For each concurrency level N, N conversations at once each stream a WAV (default: the committed
test speech, tests/data/audio/question.wav, espeak-ng) in 20 ms chunks at real-time pace with the
server VAD on, and record:
  - time to first audio: from the end of the user's speech (the last chunk holding speech was sent)
    to the first response.output_audio.delta; it includes the VAD's silence_duration_ms, reported
    separately, and also from input_audio_buffer.speech_stopped to the first delta (the server's own
    share);
  - whether the answer holds real time: the audio received must stay ahead of playback that starts
    at the first delta (with a --jitter-ms buffer); one underrun anywhere fails the conversation.
    Each conversation needs 12.5 audio frames/s plus its text steps.
The answer is bounded by --max-output-tokens so that every level does the same work.

    python3 bench/serve_bench.py --url ws://127.0.0.1:8080/v1/realtime --concurrency 1,2,4,8,16 [--chunk-ms 20] \
        --out build/serve_bench.json

Needs `websockets` (pip install websockets==17.4; tests/server/requirements.txt). The server is
started separately (voxrt serve -m MODEL --max-sessions N ...). Report numbers with the machine,
the checkpoint and the server's command line (bench/protocol in /docs).
"""
import argparse
import array
import asyncio
import base64
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request
import wave

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))


def load_pcm24(path):
    with wave.open(path) as w:
        if w.getsampwidth() != 2:
            sys.exit(f"{path}: 16-bit PCM WAV expected")
        ch, rate = w.getnchannels(), w.getframerate()
        x = array.array("h", w.readframes(w.getnframes()))
    if ch == 2:
        x = array.array("h", [(x[i] + x[i + 1]) // 2 for i in range(0, len(x), 2)])
    n = int(len(x) * 24000 / rate)
    y = array.array("h", bytes(2 * n))
    for i in range(n):
        p = i * rate / 24000
        k = int(p)
        a = x[k]
        b = x[k + 1] if k + 1 < len(x) else a
        y[i] = int(round(a + (b - a) * (p - k)))
    return y


def speech_end_sample(y, rate=24000):
    """The end of the last 10 ms frame above -40 dBFS."""
    f = rate // 100
    last = 0
    for i in range(0, len(y) - f, f):
        e = sum(v * v for v in y[i:i + f]) / f
        if e > (32768 * 0.01) ** 2:
            last = i + f
    return last


async def conversation(url, pcm, speech_end, args, result, delay_s=0.0):
    await asyncio.sleep(delay_s)
    silence = array.array("h", bytes(2 * 24000 * 2))  # 2 s of silence after the speech
    audio = pcm.tobytes() + silence.tobytes()
    step = 2 * 24 * args.chunk_ms  # bytes of one chunk
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        first = json.loads(await ws.recv())
        if first["type"] != "session.created":
            result["error"] = first.get("error", first)
            return
        await ws.send(json.dumps({"type": "session.update", "session": {
            "max_output_tokens": args.max_output_tokens,
            "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": args.silence_ms}}}}}))
        t_end = None
        state = {"first": None, "stopped": None, "audio_ms": 0.0, "underrun_ms": 0.0, "done": None}

        async def send():
            nonlocal t_end
            t0 = time.monotonic()
            for i, off in enumerate(range(0, len(audio), step)):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(audio[off:off + step]).decode()}))
                if t_end is None and off + step >= 2 * speech_end:
                    t_end = time.monotonic()
                delay = t0 + (i + 1) * args.chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if state["done"]:
                    return

        sender = asyncio.create_task(send())
        try:
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), timeout=args.timeout))
                now = time.monotonic()
                if ev["type"] == "error":
                    result["error"] = ev["error"]
                    break
                if ev["type"] == "input_audio_buffer.speech_stopped" and state["stopped"] is None:
                    state["stopped"] = now
                if ev["type"] == "response.output_audio.delta":
                    if state["first"] is None:
                        state["first"] = now
                    # playback started at the first delta (+ jitter buffer): is this chunk late?
                    late = (now - state["first"]) * 1000 - args.jitter_ms - state["audio_ms"]
                    state["underrun_ms"] = max(state["underrun_ms"], late)
                    state["audio_ms"] += len(base64.b64decode(ev["delta"])) / 2 / 24.0
                if ev["type"] == "response.done":
                    state["done"] = now
                    result["status"] = ev["response"]["status"]
                    break
        finally:
            state["done"] = state["done"] or time.monotonic()
            sender.cancel()
        if state["first"] and t_end:
            result["ttfa_ms"] = (state["first"] - t_end) * 1000
            result["ttfa_after_stop_ms"] = (state["first"] - state["stopped"]) * 1000 if state["stopped"] else None
            result["audio_ms"] = state["audio_ms"]
            result["gen_s"] = state["done"] - state["first"]
            result["real_time"] = state["underrun_ms"] <= 0
            result["worst_late_ms"] = state["underrun_ms"]


async def level(url, pcm, speech_end, n, args):
    results = [{} for _ in range(n)]
    # with --stagger-s the conversations start evenly spread over that window (users who do not
    # all stop speaking in the same 20 ms); 0: all at once
    await asyncio.gather(*(conversation(url, pcm, speech_end, args, r, i * args.stagger_s / n)
                           for i, r in enumerate(results)))
    ok = [r for r in results if "ttfa_ms" in r]
    row = {"concurrency": n, "answered": len(ok), "errors": [r["error"] for r in results if "error" in r]}
    if ok:
        t = sorted(r["ttfa_ms"] for r in ok)
        s = sorted(r["ttfa_after_stop_ms"] for r in ok if r["ttfa_after_stop_ms"] is not None)
        row.update({
            "ttfa_ms_p50": statistics.median(t), "ttfa_ms_max": t[-1],
            "after_stop_ms_p50": statistics.median(s) if s else None, "after_stop_ms_max": s[-1] if s else None,
            "real_time": sum(1 for r in ok if r["real_time"]),
            "worst_late_ms": max(r["worst_late_ms"] for r in ok),
            "audio_s_mean": statistics.mean(r["audio_ms"] for r in ok) / 1000,
        })
    return row


def wait_idle(ws_url, limit_s):
    """Waits until the server reports no active sessions (voxrt_sessions_active 0), or limit_s."""
    u = urllib.parse.urlparse(ws_url)
    metrics = f"http://{u.hostname}:{u.port or 80}/metrics"
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        try:
            with urllib.request.urlopen(metrics, timeout=2) as r:
                for ln in r.read().decode().splitlines():
                    if ln.startswith("voxrt_sessions_active ") and float(ln.split()[1]) == 0:
                        return
        except (OSError, ValueError):
            return  # no metrics endpoint: nothing to wait for
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="ws://127.0.0.1:8080/v1/realtime")
    ap.add_argument("--wav", default=os.path.join(HERE, "..", "tests", "data", "audio", "question.wav"))
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--chunk-ms", type=int, default=20, help="audio per input_audio_buffer.append")
    ap.add_argument("--stagger-s", type=float, default=0,
                    help="spread the conversations' starts evenly over this many seconds (0: all at once)")
    ap.add_argument("--max-output-tokens", type=int, default=200)
    ap.add_argument("--silence-ms", type=int, default=500, help="server VAD silence_duration_ms")
    ap.add_argument("--jitter-ms", type=float, default=200, help="client playback buffer before underrun")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--settle-s", type=float, default=15,
                    help="before each level, wait up to this long for the server's /metrics to show no "
                         "active sessions (slots are freed when the server notices a closed socket)")
    args = ap.parse_args()
    pcm = load_pcm24(args.wav)
    end = speech_end_sample(pcm)
    rows = []
    print(f"input {args.wav}: speech ends at {end / 24000:.2f} s; VAD silence {args.silence_ms} ms; "
          f"chunks of {args.chunk_ms} ms; starts spread over {args.stagger_s:g} s; "
          f"max_output_tokens {args.max_output_tokens}; jitter buffer {args.jitter_ms:.0f} ms")
    print("| sessions | answered | TTFA p50 ms | TTFA max ms | after speech_stopped p50 / max ms | real time | worst late ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in [int(v) for v in args.concurrency.split(",")]:
        wait_idle(args.url, args.settle_s)
        row = asyncio.run(level(args.url, pcm, end, n, args))
        rows.append(row)
        if row["answered"]:
            print(f"| {n} | {row['answered']} | {row['ttfa_ms_p50']:.0f} | {row['ttfa_ms_max']:.0f} | "
                  f"{row['after_stop_ms_p50'] or 0:.0f} / {row['after_stop_ms_max'] or 0:.0f} | "
                  f"{row['real_time']}/{row['answered']} | {row['worst_late_ms']:.0f} |", flush=True)
        else:
            print(f"| {n} | 0 | - | - | - | - | - |  errors: {row['errors'][:2]}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
