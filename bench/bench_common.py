"""Helpers shared by bench/reference_bench.py, bench/torch_step_bench.py and bench/copy_bw.py."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

IM_END = 7            # <|im_end|>: ends the turn (spec §10.1)
END_OF_AUDIO = 2048   # end-of-audio code (spec §10.1)
SYSTEM_PROMPT = "Respond with interleaved text and audio."


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Integer-PCM WAV -> float32 mono samples and rate, with voxrt's convention (int16 / 32768,
    channels averaged): the same samples soundfile.read(dtype="float32") gives for 16-bit mono."""
    with wave.open(str(path), "rb") as w:
        ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / np.float32(2.0 ** 31)
    else:
        raise ValueError(f"{path}: {8 * width}-bit PCM is not supported here")
    x = x.reshape(-1, ch)
    x = x[:, 0] if ch == 1 else (x.sum(axis=1, dtype=np.float32) * np.float32(1.0 / ch))
    return np.ascontiguousarray(x, dtype=np.float32), sr


def median(v: list[float]) -> float:
    """Upper median, as tools/cli/bench.cpp computes it (v[n/2] of the sorted list)."""
    s = sorted(v)
    return s[len(s) // 2] if s else 0.0


def step_bytes(model) -> tuple[int, int]:
    """Weight bytes one batch-1 decode step must read (bf16), with the formula of
    src/model/lfm_audio.cpp: text step = backbone layers + tied head; audio frame = backbone layers +
    depth_linear + 8 x (depthformer + that codebook's logits table + its norm). Counted from the
    official modules' parameter shapes at 2 bytes each (a few small norm/bias vectors differ from
    the C++ count by < 0.01 %)."""
    es = 2
    lfm = model.lfm
    layers = sum(p.numel() for p in lfm.layers.parameters())
    V, D = lfm.embed_tokens.weight.shape
    text = (layers + V * D) * es
    Q = model.codebooks
    depth = sum(p.numel() for p in model.depthformer.parameters())
    emb0 = model.depth_embeddings[0]
    per_cb = depth + emb0.to_logits.weight.numel() + emb0.embedding_norm.weight.numel()
    audio = (layers + model.depth_linear.weight.numel() + Q * per_cb) * es
    return int(text), int(audio)


def device_name(torch, device) -> str:
    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
