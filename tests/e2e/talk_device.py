#!/usr/bin/env python3
"""voxrt talk on audio devices, without sound hardware (docs/talk.md, "How the device path is tested").

The test starts its own PulseAudio daemon in a private directory, with two null sinks: "speaker"
(48 kHz stereo, like a sound card) and "mic", whose monitor is the default source. voxrt reaches
them the way a desktop user's PortAudio does on Debian 12: PortAudio's ALSA host API and the "pulse"
PCM of ALSA's PulseAudio plugin (libasound2-plugins). `paplay` into "mic" is the person speaking
(paced in real time by the sink), `parec` on "speaker.monitor" records what the speakers played.

  list-devices  `voxrt talk --list-devices` shows the "pulse" device with input and output channels
  stream        voxrt's playback stream is mono 24 kHz float (pactl), its capture stream mono
  turn          a spoken question fed through the microphone: the VAD ends the turn once (events and
                `heard N s`), an answer is generated (its text line on stdout, the status line on
                stderr), and non-silent audio reaches the speaker after the question ended, about as
                much as was generated, nothing before it
  quit          SIGINT (Ctrl-C) ends talk: exit 0 within seconds, no crash

The tiny checkpoint has random weights: its answers are noise, never speech. A build without
PortAudio skips (exit 77); a machine without pulseaudio, pulseaudio-utils or libasound2-plugins
fails (scripts/install-deps.sh installs them). Standard library only.

usage: talk_device.py VOXRT MODEL_DIR
"""
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from talk_files import SKIP, Track, device_env, levels, speak  # noqa: E402

SPEAKER_RATE = 48000  # the speaker sink's rate (what parec records); voxrt plays 24 kHz into it
SILENCE_MS = 500      # --silence-ms
STEPS = 24            # --max-steps: 6 text tokens, 12 audio frames (960 ms), 6 text tokens
DAEMON_PA = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={sock}
load-module module-null-sink sink_name=speaker rate={rate} channels=2
load-module module-null-sink sink_name=mic rate=48000 channels=1
set-default-sink speaker
set-default-source mic.monitor
"""


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


class Daemon:
    """A private PulseAudio: its own runtime directory and socket, the two null sinks."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pulse")
        os.makedirs(self.dir)
        sock = os.path.join(self.dir, "native")
        script = os.path.join(self.dir, "voxrt-test.pa")
        with open(script, "w") as f:
            f.write(DAEMON_PA.format(sock=sock, rate=SPEAKER_RATE))
        # clients (voxrt through ALSA's pulse plugin, paplay, parec, pactl) find it by PULSE_SERVER;
        # HOME and XDG_* keep the daemon off the user's own configuration and session
        self.env = dict(os.environ, PULSE_SERVER="unix:" + sock, HOME=self.dir,
                        XDG_RUNTIME_DIR=self.dir, XDG_CONFIG_HOME=self.dir)
        self.env.pop("PULSE_SINK", None)
        self.env.pop("PULSE_SOURCE", None)
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "-F", script, "--daemonize=no", "--exit-idle-time=-1",
             "--use-pid-file=no", "--disallow-exit", "--realtime=no", "--high-priority=no",
             "--log-target=stderr"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            r = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, text=True)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        with open(os.path.join(self.dir, "daemon.log")) as f:
            print(f.read())
        fail("the PulseAudio daemon did not start (its log is above)")

    def pactl(self, *args):
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True,
                              check=True).stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Lines:
    """A pipe's lines as they come (a reader thread), kept and echoed."""

    def __init__(self, pipe, name):
        self.q = queue.Queue()
        self.all = []
        self.name = name
        self.t = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.t.start()

    def _read(self, pipe):
        for line in iter(pipe.readline, ""):
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pattern, timeout):
        """The first new line matching pattern, or None at the deadline or the pipe's end."""
        deadline = time.time() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                return None
            if line is None:
                return None
            self.all.append(line)
            print("[%s] %s" % (self.name, line.rstrip("\n")))
            if re.search(pattern, line):
                return line

    def rest(self):
        self.t.join(10)
        while not self.q.empty():
            line = self.q.get()
            if line is not None:
                self.all.append(line)
                print("[%s] %s" % (self.name, line.rstrip("\n")))
        return "".join(self.all)


def stream_specs(listing):
    """`pactl list sink-inputs|source-outputs`: [(application.name, sample spec)]."""
    out = []
    for block in listing.split("\n\n"):
        spec = re.search(r"Sample Specification: (.+)", block)
        app = re.search(r'application\.name = "([^"]*)"', block)
        if spec:
            out.append((app.group(1) if app else "?", spec.group(1).strip()))
    return out


def audible_regions(raw, rate, db=-45.0, gap_ms=1000):
    """Non-silent regions of s16le mono PCM as [(start_ms, end_ms)], and the audible ms in all."""
    x = [v / 32768.0 for v in struct.unpack("<%dh" % (len(raw) // 2), raw[:len(raw) // 2 * 2])]
    out, audible = [], 0
    for i, v in enumerate(levels(x, rate)):
        if v <= db:
            continue
        audible += 10
        t = i * 10.0
        if out and t - out[-1][1] <= gap_ms:
            out[-1][1] = t + 10
        else:
            out.append([t, t + 10])
    return [tuple(r) for r in out], audible, len(x) * 1000.0 / rate


def main():
    voxrt, model = sys.argv[1], sys.argv[2]
    r = subprocess.run([voxrt, "talk", "--list-devices"], capture_output=True, text=True,
                       timeout=60, env=device_env())
    if r.returncode == 1 and "built without audio devices" in r.stderr:
        print("SKIP: this voxrt was built without PortAudio (portaudio19-dev): no device path")
        sys.exit(SKIP)
    missing = [t for t in ("pulseaudio", "pactl", "paplay", "parec") if not shutil.which(t)]
    if missing:
        fail("%s not found: install pulseaudio pulseaudio-utils libasound2-plugins "
             "(bash scripts/install-deps.sh)" % " ".join(missing))

    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(tmp)
        procs = []
        try:
            run(voxrt, model, tmp, daemon, procs)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            daemon.stop()
    print("ok")


def run(voxrt, model, tmp, daemon, procs):
    env = device_env(daemon.env)

    print("== talk_device list-devices")
    r = subprocess.run([voxrt, "talk", "--list-devices"], env=env, capture_output=True, text=True,
                       timeout=60)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.returncode
    pulse = [ln for ln in r.stdout.splitlines() if re.search(r"\bpulse\b", ln)]
    if not pulse:
        fail("PortAudio lists no 'pulse' device: ALSA's PulseAudio plugin is missing "
             "(libasound2-plugins; bash scripts/install-deps.sh)")
    m = re.match(r"\s*\d+\s+in\s+(\d+)\s+out\s+(\d+)", pulse[0])
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, pulse[0]

    # The question: espeak-ng, 0.3 s of -66 dBFS noise before it and 1.5 s after (the null sink's
    # monitor is digital silence before and after the file plays).
    t = Track()
    t.pause(300)
    t.say(speak("What time is it?", tmp))
    t.pause(1500)
    question = os.path.join(tmp, "question.wav")
    t.write(question)
    q_start, q_end = t.speech[0]

    print("== talk_device stream")
    # Record both sinks' monitors from here on: the speaker (what voxrt played) and the microphone
    # (what voxrt heard). These low-latency streams also wake the null sinks, which render in 2 s
    # blocks while nobody asks for less; a capture stream opened on an idle one gets its first
    # samples up to 2 s late (a null sink's trait; a sound card's source starts at once).
    recs = {}
    for name in ("speaker", "mic"):
        path = os.path.join(tmp, name + ".raw")
        f = open(path, "wb")
        p = subprocess.Popen(["parec", "--device=%s.monitor" % name, "--format=s16le",
                              "--channels=1", "--rate=%d" % SPEAKER_RATE, "--raw",
                              "--latency-msec=20"], env=env, stdout=f)
        procs.append(p)
        recs[name] = (p, f, path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(os.path.getsize(r[2]) for r in recs.values()):
        time.sleep(0.01)
    assert all(os.path.getsize(r[2]) for r in recs.values()), "parec records nothing"
    # the speaker recording's time 0 on this clock: now minus what it holds
    rec_path = recs["speaker"][2]
    t_rec = time.monotonic() - os.path.getsize(rec_path) / (2.0 * SPEAKER_RATE)
    events = os.path.join(tmp, "events.jsonl")
    talk = subprocess.Popen(
        [voxrt, "talk", "-m", model, "--device", "cpu", "-t", "2", "--input-device", "pulse",
         "--output-device", "pulse", "--max-steps", str(STEPS), "--silence-ms", str(SILENCE_MS),
         "--events", events],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        bufsize=1)
    procs.append(talk)
    err = Lines(talk.stderr, "stderr")
    out = Lines(talk.stdout, "stdout")
    if not err.wait_for(r"listening on 'pulse'", 60):
        fail("voxrt talk did not open the devices")
    playback = stream_specs(daemon.pactl("list", "sink-inputs"))
    capture = stream_specs(daemon.pactl("list", "source-outputs"))
    print("playback streams", playback, "capture streams", capture)
    ours = [s for s in playback if "voxrt" in s[0]]
    assert len(ours) == 1, playback
    # mono 24 kHz: the model's rate, converted by PulseAudio to the 48 kHz stereo sink
    assert re.search(r"\b1ch 24000Hz", ours[0][1]), ours
    mics = [s for s in capture if "voxrt" in s[0]]
    assert len(mics) == 1 and re.search(r"\b1ch \d+Hz", mics[0][1]), capture

    print("== talk_device turn")
    t_feed = time.monotonic()
    subprocess.run(["paplay", "--device=mic", question], env=env, check=True, timeout=60)
    status = err.wait_for(r"voxrt: turn 1: ", 60)
    if not status:
        fail("no status line for a first answer: the turn was not detected or not answered")
    assert "first sound" in status and status.rstrip().endswith("played"), status
    text = out.wait_for(r"^voxrt: ", 5)
    assert text, "no answer text on stdout"
    time.sleep(1.0)  # the null sink's latency: let the last of the answer reach the recording

    print("== talk_device quit")
    talk.send_signal(signal.SIGINT)
    try:
        rc = talk.wait(20)
    except subprocess.TimeoutExpired:
        fail("voxrt talk did not end within 20 s of SIGINT")
    stderr = err.rest()
    out.rest()
    assert rc == 0, "voxrt talk exited with %d after SIGINT" % rc
    for bad in ("Segmentation", "terminate called", "Sanitizer", "Assertion"):
        assert bad not in stderr, bad
    for p, f, _ in recs.values():
        p.send_signal(signal.SIGINT)
        p.wait(10)
        f.close()

    with open(events) as f:
        evs = [json.loads(line) for line in f]
    kinds = [e["type"] for e in evs]
    for e in evs:
        if e["type"] != "text":
            print(e)
    stops = [e for e in evs if e["type"] == "speech_stopped"]
    assert len(stops) == 1, stops
    # the turn the VAD cut is the question: --prefix-ms (300) + speech + the silence window
    heard = re.findall(r"voxrt: heard ([0-9.]+) s", stderr)
    assert len(heard) == 1, heard
    turn_s = (300 + (q_end - q_start) + SILENCE_MS) / 1000.0
    assert abs(float(heard[0]) - turn_s) <= 0.25, (heard, turn_s)
    done = [e for e in evs if e["type"] == "response_done"]
    # how much: up to --max-steps' 960 ms (the input differs from run to run by a few samples, so
    # the random-weight model may sample an end of audio earlier)
    assert len(done) == 1 and 0 < done[0]["generated_ms"] <= 960, done
    generated = done[0]["generated_ms"]
    assert kinds.count("first_audio") == 1 and "barge_in" not in kinds, kinds

    # What the speaker played, on the recording's clock (started at t_rec, a few ms of connection
    # later): the answer, after the question ended plus the silence window, and nothing before.
    with open(recs["mic"][2], "rb") as f:
        mic_regs = audible_regions(f.read(), SPEAKER_RATE)[0]
    print("microphone: regions", mic_regs)
    assert len(mic_regs) == 1, "the microphone carried %s, not one question" % mic_regs
    with open(rec_path, "rb") as f:
        raw = f.read()
    regs, audible, total = audible_regions(raw, SPEAKER_RATE)
    answer_from = (t_feed - t_rec) * 1000.0 + q_end + SILENCE_MS
    print("speaker: %.0f ms recorded, %d ms audible, regions %s; the answer may start at %.0f ms"
          % (total, audible, regs, answer_from))
    assert regs, "no sound reached the speaker"
    assert len(regs) == 1, regs
    # 200 ms: the processes' start-up and the sinks' buffering, between two clocks; 2 s: the
    # tiny model's prefill and first audio frame on a loaded 2-core machine
    assert answer_from - 200 <= regs[0][0] <= answer_from + 2000, (regs, answer_from)
    # about as much as was generated (random-weight noise is loud throughout; an underrun
    # inserts a gap, it does not drop samples)
    gaps = (regs[0][1] - regs[0][0]) - audible
    print("speaker: %d ms of the answer audible (%.0f generated), %d ms of gaps"
          % (audible, generated, gaps))
    assert generated - 250 <= audible <= generated + 100, (audible, generated)
    # the status line's latency (end of speech to first sound) is what the recording shows
    first = [e for e in evs if e["type"] == "first_audio"][0]
    measured = regs[0][0] - ((t_feed - t_rec) * 1000.0 + q_end)
    print("latency: talk says %.0f ms, the recording shows %.0f ms" % (first["latency_ms"], measured))
    # (within 100 ms: the two clocks meet through parec's start; talk's clock once started before
    # the devices were open, and this line said ~100 ms too much)
    assert abs(first["latency_ms"] - measured) <= 100, (first, measured)


if __name__ == "__main__":
    main()
