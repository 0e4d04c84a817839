"""Helpers for the voxrt serve tests: start a server, read WAVs, pace audio, read /metrics."""
import array
import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


class Server:
    """`voxrt-serve ARGS` on a free loopback port; stderr is kept for the test's messages."""

    def __init__(self, binary, *args, env=None):
        self.proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.log = []
        self.port = None
        ready = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=reader, daemon=True)
        self.reader.start()
        if not ready.wait(120) or self.port is None:
            self.stop()
            raise RuntimeError("voxrt-serve did not start:\n" + "".join(self.log))
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path, timeout=10):
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self):
        status, body = self.get("/metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def wait_idle(self, timeout=10):
        """Until no slot is in use and no answer runs; returns the metrics."""
        end = time.time() + timeout
        while True:
            m = self.metrics()
            if m["voxrt_sessions_active"] == 0 and m["voxrt_queue_depth"] == 0:
                return m
            if time.time() > end:
                raise AssertionError(f"slots still in use after {timeout} s: {m}")
            time.sleep(0.05)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def read_wav(path):
    """(samples as a list of ints, rate) of a 16-bit mono WAV."""
    with wave.open(path) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        a = array.array("h", w.readframes(w.getnframes()))
        return list(a), w.getframerate()


def resample_linear(x, src, dst):
    n = int(len(x) * dst / src)
    out = array.array("h", bytes(2 * n))
    for i in range(n):
        p = i * src / dst
        k = int(p)
        f = p - k
        a = x[k]
        b = x[k + 1] if k + 1 < len(x) else a
        out[i] = int(round(a + (b - a) * f))
    return out


def question_pcm24():
    """tests/data/audio/question.wav at 24 kHz (the Realtime input rate), with 0.3 s of silence
    before and 1.2 s after, as 16-bit little-endian bytes."""
    x, rate = read_wav(os.path.join(DATA, "audio", "question.wav"))
    y = resample_linear(x, rate, 24000)
    if sys.byteorder != "little":
        y.byteswap()
    return bytes(2 * 7200) + y.tobytes() + bytes(2 * 28800)


def chunks_b64(pcm, ms=20, rate=24000):
    step = 2 * rate * ms // 1000
    return [base64.b64encode(pcm[i:i + step]).decode() for i in range(0, len(pcm), step)]
