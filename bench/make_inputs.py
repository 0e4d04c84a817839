#!/usr/bin/env python3
"""Derive the three benchmark inputs (about 3.8 s, 11.2 s and 34.7 s of real speech) from the two
recordings in ../shared/audio (bench/protocol.md, docs/benchmarks.md "Inputs").

    python3 bench/make_inputs.py [--audio-dir ../shared/audio] [--out /tmp/voxrt-bench-inputs]

Without the recordings, `--audio-dir tests/data/audio` derives the same three inputs from the
project's committed espeak-ng test speech (tests/data/audio/README.md). Those are labelled as such
(inputs.json "speech", and a warning): synthetic speech, not the protocol's inputs, so their results
are not comparable with docs/benchmarks.md. Any folder with a question.wav and an asr.wav of your own
speech works the same way.

Writes OUT/speech_03.8s.wav, OUT/speech_11.2s.wav, OUT/speech_34.7s.wav (16-bit PCM mono, each exactly
its target length) and OUT/inputs.json (segments, sample counts, sha256). The recordings are not the
project's to redistribute, so the derived files are written outside the repository by default and are
never committed; this script is how everyone gets the same bytes.

How (deterministic; stdlib `wave` + numpy only, so it runs on the GPU image too):
  1. Each source is cut into 10 ms frames; frame level = RMS in dB, smoothed over 3 frames. The
     threshold sits 35 % of the way from the noise floor (10th percentile) to the speech level (99th
     percentile). Speech spans from the first to the last frame above it; a "word gap" is a run of
     >= 80 ms below it inside that span.
  2. A source's clip is its speech span plus 100 ms on either side; its cut points are the centres of
     its word gaps.
  3. An input is built by appending clips from a fixed list of sources, 250 ms of digital silence
     between clips. A clip that does not fit is trimmed to its longest stretch between word gaps
     (or its ends) that does; the rest of the target length is filled with silence. Every cut edge
     gets a 5 ms raised-cosine fade.
  4. Sources at a rate other than the input's are resampled with a Kaiser-windowed sinc (32 taps a
     side, beta 8.6, cut-off 0.95 of the lower Nyquist).

  speech_03.8s.wav  16 kHz    question.wav                    (the whole spoken question)
  speech_11.2s.wav  44.1 kHz  asr.wav                         (the first Harvard sentences)
  speech_34.7s.wav  44.1 kHz  asr.wav + question.wav + asr.wav (question resampled to 44.1 kHz)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = (REPO / ".." / "shared" / "audio").resolve()
TEST_SPEECH = (REPO / "tests" / "data" / "audio").resolve()

# name, target seconds, output rate, sources in order
INPUTS = [
    ("speech_03.8s.wav", 3.8, 16000, ["question.wav"]),
    ("speech_11.2s.wav", 11.2, 44100, ["asr.wav"]),
    ("speech_34.7s.wav", 34.7, 44100, ["asr.wav", "question.wav", "asr.wav"]),
]

FRAME_S = 0.010
MIN_GAP_S = 0.080
PAD_S = 0.100        # kept around the speech span of a clip
SEP_S = 0.250        # silence between clips
FADE_S = 0.005
THRESH_FRAC = 0.35


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16/24/32-bit integer PCM -> float64 mono in [-1, 1) (channels averaged)."""
    with wave.open(str(path), "rb") as w:
        ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise ValueError(f"{path}: {8 * width}-bit PCM is not supported")
    return x.reshape(-1, ch).mean(axis=1), sr


def write_wav(path: Path, x: np.ndarray, sr: int) -> bytes:
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm)
    return path.read_bytes()


def resample(x: np.ndarray, sr_in: int, sr_out: int, half_taps: int = 32, beta: float = 8.6) -> np.ndarray:
    """Band-limited interpolation with a Kaiser-windowed sinc (deterministic, no scipy)."""
    if sr_in == sr_out:
        return x.copy()
    n_out = int(round(len(x) * sr_out / sr_in))
    ratio = sr_in / sr_out
    cutoff = 0.95 * min(1.0, sr_out / sr_in)        # in units of the input Nyquist
    width = int(np.ceil(half_taps / min(1.0, sr_out / sr_in)))
    xp = np.concatenate([np.zeros(width), x, np.zeros(width + 1)])
    out = np.empty(n_out)
    k = np.arange(-width + 1, width + 1)
    for s in range(0, n_out, 4096):
        t = np.arange(s, min(s + 4096, n_out)) * ratio   # output positions in input samples
        base = np.floor(t).astype(np.int64)
        idx = base[:, None] + k[None, :]
        d = t[:, None] - idx                              # distance to each tap, in input samples
        win = np.i0(beta * np.sqrt(np.clip(1.0 - (d / width) ** 2, 0.0, None))) / np.i0(beta)
        h = cutoff * np.sinc(cutoff * d) * win
        out[s:s + len(t)] = (xp[idx + width] * h).sum(axis=1)
    return out


def analyse(x: np.ndarray, sr: int) -> dict:
    """Speech span and word gaps of a recording, in samples."""
    hop = int(round(FRAME_S * sr))
    n = len(x) // hop
    rms = np.sqrt((x[:n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12)
    db = 20.0 * np.log10(rms)
    db = np.convolve(np.pad(db, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    floor, peak = np.percentile(db, 10), np.percentile(db, 99)
    thr = floor + THRESH_FRAC * (peak - floor)
    voiced = np.flatnonzero(db > thr)
    first, last = int(voiced[0]), int(voiced[-1]) + 1
    gaps, i = [], first
    while i < last:
        if db[i] <= thr:
            j = i
            while j < last and db[j] <= thr:
                j += 1
            if (j - i) * FRAME_S >= MIN_GAP_S:
                gaps.append(((i + j) // 2) * hop)
            i = j
        else:
            i += 1
    pad = int(round(PAD_S * sr))
    return {"start": max(0, first * hop - pad), "end": min(len(x), last * hop + pad), "cuts": gaps,
            "threshold_db": float(thr), "floor_db": float(floor), "peak_db": float(peak)}


def fade(seg: np.ndarray, sr: int) -> np.ndarray:
    n = min(int(round(FADE_S * sr)), len(seg) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
        seg = seg.copy()
        seg[:n] *= ramp
        seg[-n:] *= ramp[::-1]
    return seg


def build(target_s: float, sr: int, sources: list[str], audio_dir: Path, cache: dict) -> tuple[np.ndarray, list]:
    target = int(round(target_s * sr))
    out: list[np.ndarray] = []
    used = 0
    segments = []
    sep = int(round(SEP_S * sr))
    for name in sources:
        if name not in cache:
            x, sr0 = read_wav(audio_dir / name)
            cache[name] = (x, sr0, analyse(x, sr0))
        x, sr0, info = cache[name]
        gap = sep if out else 0
        room = target - used - gap
        if room <= 0:
            break
        scale = sr / sr0
        start, end = info["start"], info["end"]
        # The longest stretch between word gaps (or the speech span's ends) that fits; the whole clip
        # when it fits, else the earliest of the longest windows.
        bounds = [start] + [c for c in info["cuts"] if start < c < end] + [end]
        best = None
        for i, a in enumerate(bounds):
            for b in bounds[i + 1:]:
                n = int(round((b - a) * scale))
                if n <= room and (best is None or n > best[0]):
                    best = (n, a, b)
        if best is None:
            break
        _, start, end = best
        seg = resample(x[start:end], sr0, sr) if sr0 != sr else x[start:end].copy()
        seg = fade(seg[:room], sr)
        if gap:
            out.append(np.zeros(gap))
        out.append(seg)
        used += gap + len(seg)
        segments.append({"source": name, "source_rate": sr0, "from_s": round(start / sr0, 4),
                         "to_s": round(end / sr0, 4), "at_s": round((used - len(seg)) / sr, 4),
                         "samples": len(seg)})
    out.append(np.zeros(target - used))
    y = np.concatenate(out)
    assert len(y) == target
    return y, segments


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio-dir", default=str(DEFAULT_AUDIO), help="folder with question.wav and asr.wav")
    ap.add_argument("--out", default="/tmp/voxrt-bench-inputs", help="output folder (outside the repo)")
    args = ap.parse_args()
    audio_dir, out = Path(args.audio_dir), Path(args.out)
    for f in ("question.wav", "asr.wav"):
        if not (audio_dir / f).is_file():
            print(f"make_inputs: {audio_dir / f} not found (pass --audio-dir)", file=sys.stderr)
            return 2
    if audio_dir.resolve() == TEST_SPEECH:
        speech = "espeak-ng test speech (tests/data/audio), not the benchmark protocol's recordings"
        print(f"make_inputs: warning: using the {speech}; results are not comparable with "
              "docs/benchmarks.md", file=sys.stderr)
    else:
        speech = f"recordings from {audio_dir}"
    out.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    manifest = {"script": "bench/make_inputs.py", "audio_dir": str(audio_dir), "speech": speech,
                "inputs": []}
    for name, secs, sr, sources in INPUTS:
        y, segs = build(secs, sr, sources, audio_dir, cache)
        data = write_wav(out / name, y, sr)
        speech = sum(s["samples"] for s in segs) / sr
        manifest["inputs"].append({"file": name, "rate": sr, "samples": len(y), "seconds": len(y) / sr,
                                   "speech_s": round(speech, 3), "sha256": hashlib.sha256(data).hexdigest(),
                                   "segments": segs})
        print(f"{out / name}: {len(y) / sr:.3f} s at {sr} Hz, speech {speech:.2f} s, "
              + " + ".join(f"{s['source']}[{s['from_s']:.2f}-{s['to_s']:.2f}]" for s in segs))
    manifest["sources"] = {k: {kk: v[2][kk] for kk in ("threshold_db", "floor_db", "peak_db")} |
                           {"rate": v[1], "speech_s": [round(v[2]["start"] / v[1], 3), round(v[2]["end"] / v[1], 3)],
                            "gaps_s": [round(c / v[1], 3) for c in v[2]["cuts"]]}
                           for k, v in cache.items()}
    (out / "inputs.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
