"""Writes tests/data/audio/fixtures.safetensors: reference outputs of the official Python stack
for voxrt's audio layer (WAV decode, torchaudio resample, NeMo/liquid-audio log-mel, detokenizer
ISTFT).

    /opt/venvs/ref/bin/python tools/reference/make_audio_fixtures.py

Tensors (float32 unless noted; <c> is a case of audio_cases.CASES):
  wav.<c>            [C, min(N, 16000)] decoded samples (first second only; the file is in
                     tests/data/audio, so the test decodes it itself)
  wav_meta.<c>       f64 [4]: frames, channels, sample_rate, float64 sum of all decoded samples
  pcm16k.<c>         [N16] torchaudio.functional.resample(downmix(wave), sr, 16000) (absent for
                     16 kHz cases: the resample is a no-op); when N16 > 160000 only the first
                     96000 samples, and pcm16k_tail.<c> holds the last 16000 (the resampler is
                     shift-invariant, so head and tail cover every phase and both edges)
  pcm16k_len.<c>     f64 [1] N16
  mel.<c>            [128, T] official AudioToMelSpectrogramPreprocessor output on pcm16k (T = 1 +
                     N16 // 160); when T > 500 only the first 400 frames, and mel_tail.<c> holds
                     the last 40
  mel64.<c>          the same frames from the official featurizer run in float64 (module
                     .double(), same float32 filterbank values, input = pcm16k cast to float64),
                     stored as float32: the float32 reference's own rounding noise measured
  mel_mean.<c>, mel_std.<c>   [128] the reference's per-feature statistics (std incl. + 1e-5)
  mel.window         [400] torch.hann_window(400, periodic=False)
  mel.fb             [128, 257] the preprocessor's filterbank (librosa.filters.mel, slaney)
  resample.x         [4000] random input; resample.<a>_<b> its torchaudio resample from a to b Hz
  istft.spec         [24, 641, 2] complex spectra (re, im) = polar(exp(logmag), phase), with random
                     imaginary parts added to the DC and Nyquist bins (irfft must ignore them)
  istft.out          [24 * 320] liquid_audio.detokenizer.ISTFT(1280, 320, 1280, "same") output
  istft.logmag, istft.phase   [4, 641] inputs of spectrum_from_logmag_phase; istft.polar [4, 641, 2]
  istft1.spec/out, istft2.spec/out   the same for 1 and 2 frames
  istft.window       [1280] torch.hann_window(1280)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchaudio
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import copy  # noqa: E402

import audio_cases  # noqa: E402

import liquid_audio.model.conformer.processor as nemo  # noqa: E402
from liquid_audio.detokenizer import ISTFT  # noqa: E402

OUT = audio_cases.DATA_AUDIO / "fixtures.safetensors"

# config.json["preprocessor"] of LFM2.5-Audio-1.5B (spec section 2).
PREPROCESSOR = dict(sample_rate=16000, normalize="per_feature", window_size=0.025,
                    window_stride=0.01, window="hann", features=128, n_fft=512, log=True,
                    frame_splicing=1, dither=1e-5, pad_to=0, pad_value=0.0)

MEL_FULL_MAX = 500
MEL_HEAD, MEL_TAIL = 400, 40
PCM_FULL_MAX, PCM_HEAD, PCM_TAIL = 160000, 96000, 16000


def make_preprocessor():
    return nemo.AudioToMelSpectrogramPreprocessor(**PREPROCESSOR).eval()


def mel_with_stats(pre, wave16k: torch.Tensor):
    """Runs the official preprocessor, capturing normalize_batch's mean and std."""
    captured = []
    orig = nemo.normalize_batch

    def capture(x, seq_len, normalize_type):
        r = orig(x, seq_len, normalize_type)
        captured.append(r)
        return r

    nemo.normalize_batch = capture
    try:
        mel, _ = pre(wave16k, torch.tensor([wave16k.shape[1]]))
    finally:
        nemo.normalize_batch = orig
    _, mean, std = captured[0]
    return mel[0], mean[0], std[0]


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t: dict[str, torch.Tensor] = {}
    pre = make_preprocessor()
    feat64 = copy.deepcopy(pre.featurizer).double()
    t["mel.window"] = pre.featurizer.window.float().contiguous()
    t["mel.fb"] = pre.featurizer.fb[0].float().contiguous()

    for name, path in audio_cases.CASES.items():
        x, sr = audio_cases.read_wav(path)
        t[f"wav.{name}"] = torch.from_numpy(np.ascontiguousarray(x[:, :16000]))
        t[f"wav_meta.{name}"] = torch.tensor(
            [x.shape[1], x.shape[0], sr, float(x.astype(np.float64).sum())], dtype=torch.float64)
        wave, sr = audio_cases.load_case(name)
        # ChatState.add_audio: resample (a no-op at 16 kHz), then the preprocessor.
        wave16k = torchaudio.functional.resample(wave, sr, 16_000)
        n16 = wave16k.shape[1]
        t[f"pcm16k_len.{name}"] = torch.tensor([float(n16)], dtype=torch.float64)
        if sr != 16000:
            if n16 > PCM_FULL_MAX:
                t[f"pcm16k.{name}"] = wave16k[0, :PCM_HEAD].contiguous()
                t[f"pcm16k_tail.{name}"] = wave16k[0, -PCM_TAIL:].contiguous()
            else:
                t[f"pcm16k.{name}"] = wave16k[0].contiguous()
        mel, mean, std = mel_with_stats(pre, wave16k)
        with torch.no_grad():
            mel64 = feat64(wave16k.double(), torch.tensor([n16]))[0][0].float()
        T = mel.shape[1]
        assert T == 1 + n16 // 160
        for key, m in (("mel", mel), ("mel64", mel64)):
            if T > MEL_FULL_MAX:
                t[f"{key}.{name}"] = m[:, :MEL_HEAD].contiguous()
                t[f"{key}_tail.{name}"] = m[:, -MEL_TAIL:].contiguous()
            else:
                t[f"{key}.{name}"] = m.contiguous()
        t[f"mel_mean.{name}"] = mean.contiguous()
        t[f"mel_std.{name}"] = std.contiguous()
        print(f"{name:9s} sr={sr} N16={wave16k.shape[1]} T={T}")

    # Resampling of odd rate pairs on a random signal.
    g = torch.Generator().manual_seed(1)
    rx = (torch.rand(1, 4000, generator=g) - 0.5)
    t["resample.x"] = rx[0].contiguous()
    for a, b in [(22050, 16000), (16000, 24000), (24000, 16000), (44101, 16000), (16000, 8000)]:
        t[f"resample.{a}_{b}"] = torchaudio.functional.resample(rx, a, b)[0].contiguous()

    # ISTFT.
    istft = ISTFT(n_fft=1280, hop_length=320, win_length=1280, padding="same").eval()
    t["istft.window"] = istft.window.float().contiguous()

    def spectra(frames: int) -> torch.Tensor:
        logmag = torch.randn(frames, 641, generator=g) * 1.5 - 2.0
        phase = (torch.rand(frames, 641, generator=g) * 2 - 1) * np.pi
        spec = torch.polar(torch.exp(logmag), phase)
        spec[:, 0] += 1j * torch.randn(frames, generator=g)
        spec[:, -1] += 1j * torch.randn(frames, generator=g)
        return spec

    for key, frames in [("istft", 24), ("istft1", 1), ("istft2", 2)]:
        spec = spectra(frames)
        with torch.no_grad():
            out = istft(spec.T.unsqueeze(0))[0]  # (1, 641, F) -> (F * 320,)
        assert out.shape[0] == frames * 320
        t[f"{key}.spec"] = torch.view_as_real(spec).contiguous()
        t[f"{key}.out"] = out.contiguous()

    logmag = torch.randn(4, 641, generator=g) * 2.0 - 1.0
    phase = (torch.rand(4, 641, generator=g) * 2 - 1) * np.pi * 1.5
    t["istft.logmag"] = logmag.contiguous()
    t["istft.phase"] = phase.contiguous()
    t["istft.polar"] = torch.view_as_real(torch.polar(torch.exp(logmag), phase)).contiguous()

    # One metadata key: safetensors writes metadata in hash order, which would make the bytes
    # differ between runs.
    save_file(t, str(OUT), metadata={"generator": f"tools/reference/make_audio_fixtures.py "
                                                  f"(torch {torch.__version__}, "
                                                  f"torchaudio {torchaudio.__version__})"})
    total = sum(v.numel() * v.element_size() for v in t.values())
    print(f"wrote {OUT}: {len(t)} tensors, {total / 1e6:.2f} MB of data")


if __name__ == "__main__":
    main()
