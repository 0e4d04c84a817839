"""Synthesises the two speech test cases, tests/data/audio/question.wav and asr.wav, with espeak-ng.

    /opt/venvs/ref/bin/python tools/reference/make_speech.py           # (re)write both files
    /opt/venvs/ref/bin/python tools/reference/make_speech.py --check   # regenerate in memory and
                                                                        # compare with the files

Everything that determines the bytes is fixed here: the text, the espeak-ng voice, speed, pitch and
amplitude, the resampling (scipy.signal.resample_poly from espeak-ng's native 22,050 Hz), the peak
level and a seeded noise floor. The files were made with espeak-ng 1.51 (Debian 12 package
1.51+dfsg-10+deb12u2) and scipy 1.18.1 / numpy 2.5.5; another espeak-ng version may pronounce or
time the text differently, so --check reports any difference rather than assuming the bytes match.

Pipeline per case:
  1. espeak-ng -v VOICE -s SPEED -p PITCH -a AMPLITUDE -w tmp.wav TEXT   (22,050 Hz mono int16)
  2. int16 / 32768 -> float64; resample_poly to the case's rate (16 kHz: up 320 / down 441;
     44.1 kHz: up 2 / down 1; scipy's default Kaiser window)
  3. scale so the peak is PEAK (-6 dBFS)
  4. add Gaussian noise of standard deviation NOISE (-66 dBFS, numpy default_rng(SEED)): a room
     noise floor, as real recordings have, so that pauses are not digital silence
  5. 16-bit PCM (round half to even, clamp), the writer of audio_cases.py

The speech is English read by a formant synthesizer: it tests the audio path (WAV decode, the
resampler, the mel front end, the encoder) on speech-like signals with pauses, voicing and
fricatives, and the cases' lengths (a short question; a passage longer than 10 s at 44.1 kHz, so the
resampler and the long-input paths of the fixtures are covered). It is not a recording of a person.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio_cases import CASES, _wav_int16, read_wav  # noqa: E402

ESPEAK_VERSION = "1.51"
ESPEAK_RATE = 22050
PEAK = 0.5     # -6 dBFS
NOISE = 5e-4   # -66 dBFS

SPEECH = {
    "question": dict(
        text="What is the tallest mountain in the world, and how long does it take to climb it?",
        voice="en-us", speed=160, pitch=50, amplitude=100, rate=16000, up=320, down=441, seed=1),
    "asr": dict(
        text=("The old lighthouse stood at the edge of the cliff for more than a hundred years. "
              "Every night its keeper climbed the narrow stairs, trimmed the wick, and watched the "
              "beam sweep across the dark water. Ships caught out in a storm counted on that light "
              "to find the harbour."),
        voice="en-gb", speed=150, pitch=50, amplitude=100, rate=44100, up=2, down=1, seed=2),
}


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True)
    # "eSpeak NG text-to-speech: 1.51  Data at: ..."
    return out.stdout.split(":")[1].split()[0]


def synthesise(name: str) -> bytes:
    c = SPEECH[name]
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", c["voice"], "-s", str(c["speed"]), "-p", str(c["pitch"]),
                        "-a", str(c["amplitude"]), "-w", str(raw), c["text"]], check=True)
        x, sr = read_wav(str(raw))
    if sr != ESPEAK_RATE or x.shape[0] != 1:
        raise RuntimeError(f"espeak-ng wrote {x.shape[0]} channel(s) at {sr} Hz; expected mono "
                           f"{ESPEAK_RATE} Hz")
    y = resample_poly(x[0].astype(np.float64), c["up"], c["down"])
    y *= PEAK / np.max(np.abs(y))
    y += NOISE * np.random.default_rng(c["seed"]).standard_normal(y.size)
    return _wav_int16(y[None, :], c["rate"])


def main() -> int:
    check = "--check" in sys.argv
    version = espeak_version()
    if version != ESPEAK_VERSION:
        print(f"warning: espeak-ng {version}; the committed files were made with {ESPEAK_VERSION} "
              "and may differ", file=sys.stderr)
    differ = 0
    for name in SPEECH:
        data = synthesise(name)
        path = Path(CASES[name])
        rate = SPEECH[name]["rate"]
        seconds = (len(data) - 44) / 2 / rate
        digest = hashlib.sha256(data).hexdigest()
        if check:
            same = path.exists() and path.read_bytes() == data
            differ += not same
            print(f"{name}: {'identical' if same else 'DIFFERS'} ({seconds:.2f} s, sha256 {digest})")
        else:
            path.write_bytes(data)
            print(f"wrote {path} ({seconds:.2f} s at {rate} Hz, {len(data)} bytes, sha256 {digest})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
