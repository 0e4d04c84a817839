"""Audio test cases shared by every reference tool in voxrt.

    from audio_cases import CASES, load_case
    wave, sr = load_case("question")   # torch.float32 [1, N], int

`CASES` maps a case name to its WAV path. `load_case` decodes the file with voxrt's convention,
which is what a user's WAV gives and what the C++ `voxrt::audio::decode_wav` + `downmix_mono`
implement:

  * int16 PCM / 32768, 24-bit PCM / 2^23, 32-bit int PCM / 2^31, float32 as stored;
  * stereo is downmixed by averaging the channels in fp32: (L + R) * 0.5.
    (The official liquid-audio code asserts mono input; the downmix is voxrt's choice.)

Every case is committed in tests/data/audio. The two speech cases (`question`, `asr`) are made by
espeak-ng with `tools/reference/make_speech.py` (fixed text, voice and processing; see
tests/data/audio/README.md); the synthetic signals are regenerated deterministically with
`python tools/reference/audio_cases.py --write` (byte-identical output).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DATA_AUDIO = REPO / "tests" / "data" / "audio"

CASES: dict[str, str] = {
    "question": str(DATA_AUDIO / "question.wav"),    # 4.85 s speech, 16 kHz mono int16
    "asr": str(DATA_AUDIO / "asr.wav"),              # 16.5 s speech, 44.1 kHz mono int16
    "short": str(DATA_AUDIO / "short.wav"),          # 0.1 s, 16 kHz mono int16
    "silence": str(DATA_AUDIO / "silence.wav"),      # 1.0 s zeros, 16 kHz mono int16
    "sr8k": str(DATA_AUDIO / "sr8k.wav"),            # 1.5 s, 8 kHz mono int16 (chirp + noise)
    "st48k": str(DATA_AUDIO / "st48k.wav"),          # 1.0 s, 48 kHz stereo int16, L != R
}


# ---- decoding --------------------------------------------------------------------------------

def decode_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Minimal RIFF/WAVE decoder with voxrt's convention. Returns float32 [C, N] and the rate."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            pcm = body
            break
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise ValueError("missing fmt or data chunk")
    tag, channels, rate = struct.unpack("<HHI", fmt[:8])
    bits = struct.unpack("<H", fmt[14:16])[0]
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: subformat GUID's first two bytes
        tag = struct.unpack("<H", fmt[24:26])[0]
    frame = channels * bits // 8
    pcm = pcm[: len(pcm) // frame * frame]
    if tag == 1 and bits == 16:
        x = np.frombuffer(pcm, "<i2").astype(np.float32) / np.float32(32768.0)
    elif tag == 1 and bits == 24:
        b = np.frombuffer(pcm, np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
        x = v.astype(np.float32) / np.float32(8388608.0)
    elif tag == 1 and bits == 32:
        x = (np.frombuffer(pcm, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif tag == 3 and bits == 32:
        x = np.frombuffer(pcm, "<f4").astype(np.float32)
    else:
        raise ValueError(f"unsupported format tag {tag} / {bits} bits")
    return x.reshape(-1, channels).T.copy(), rate


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Decoded interleaved samples as float32 [C, N] plus the sample rate."""
    return decode_wav_bytes(Path(path).read_bytes())


def downmix(x: np.ndarray) -> np.ndarray:
    """[C, N] -> [1, N]; mean of the channels in fp32 (sum then * (1/C), as the C++ does)."""
    if x.shape[0] == 1:
        return x.copy()
    acc = x[0].astype(np.float32).copy()
    for c in range(1, x.shape[0]):
        acc = acc + x[c]
    return (acc * np.float32(1.0 / x.shape[0]))[None, :].astype(np.float32)


def load_case(name: str) -> tuple[torch.Tensor, int]:
    """float32 mono wave [1, N] (stereo averaged) and its sample rate."""
    x, sr = read_wav(CASES[name])
    return torch.from_numpy(downmix(x)), sr


# ---- synthetic case generation ----------------------------------------------------------------

def _wav_int16(x: np.ndarray, sr: int) -> bytes:
    """x: float [C, N] in [-1, 1] -> 16-bit PCM WAV bytes (round half even, clamp)."""
    c, n = x.shape
    q = np.clip(np.rint(x.T * 32767.0), -32768, 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, c, sr, sr * c * 2, c * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(q)) + q
    return b"RIFF" + struct.pack("<I", len(body)) + body


def synth_cases() -> dict[str, tuple[np.ndarray, int]]:
    rng = np.random.default_rng(20250611)
    out: dict[str, tuple[np.ndarray, int]] = {}
    # short: 0.1 s at 16 kHz, two tones + a little noise.
    t = np.arange(1600) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1870 * t)
    out["short"] = ((x + 0.01 * rng.standard_normal(t.size))[None], 16000)
    # silence: 1 s of exact zeros.
    out["silence"] = (np.zeros((1, 16000)), 16000)
    # sr8k: 1.5 s linear chirp 100 Hz -> 3.9 kHz plus noise at 8 kHz.
    t = np.arange(12000) / 8000.0
    f0, f1, dur = 100.0, 3900.0, 1.5
    x = 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * dur) * t * t))
    out["sr8k"] = ((x + 0.02 * rng.standard_normal(t.size))[None], 8000)
    # st48k: 1 s stereo at 48 kHz; L = 300 Hz tone + noise, R = 5 kHz tone + AM, above-16k content
    # (18 kHz) on both channels so the resampler's anti-alias filter matters.
    t = np.arange(48000) / 48000.0
    left = 0.4 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 5000 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    hf = 0.1 * np.sin(2 * np.pi * 18000 * t)
    out["st48k"] = (np.stack([left + hf, right + hf]), 48000)
    return out


def write_synthetic() -> None:
    """The synthetic signal cases (the speech cases: make_speech.py)."""
    DATA_AUDIO.mkdir(parents=True, exist_ok=True)
    for name, (x, sr) in synth_cases().items():
        Path(CASES[name]).write_bytes(_wav_int16(x, sr))
        print(f"wrote {CASES[name]} ({x.shape[0]} ch, {x.shape[1]} samples, {sr} Hz)")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_synthetic()
    for name in CASES:
        w, sr = load_case(name)
        print(f"{name:9s} sr={sr:6d} shape={tuple(w.shape)} rms={w.pow(2).mean().sqrt():.4f}")
