#!/usr/bin/env python3
"""Which tensors differ between the official float32 load and the bf16 load cast to float.

    python tools/reference/diff_loads.py --model tests/data/tiny/model

Compares every parameter and buffer (persistent or not) of
LFM2AudioModel.from_pretrained(dir, dtype=torch.float32) against
LFM2AudioModel.from_pretrained(dir).float() and prints those that are not bit-identical.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from liquid_audio import LFM2AudioModel


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in model.named_parameters()}
    out.update({k: v for k, v in model.named_buffers()})
    # plain tensor attributes (e.g. precomputed tables that are not registered buffers)
    for mname, mod in model.named_modules():
        for k, v in vars(mod).items():
            if isinstance(v, torch.Tensor) and not k.startswith("_"):
                out.setdefault(f"{mname}.{k}" if mname else k, v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    a = ap.parse_args()
    f32 = tensors(LFM2AudioModel.from_pretrained(a.model, device="cpu", dtype=torch.float32).eval())
    b2f = tensors(LFM2AudioModel.from_pretrained(a.model, device="cpu").eval().float())
    ndiff = 0
    for k in sorted(set(f32) | set(b2f)):
        x, y = f32.get(k), b2f.get(k)
        if x is None or y is None:
            print(f"{k}: only in {'bf16->float' if x is None else 'float32'} load")
            continue
        if x.shape != y.shape:
            print(f"{k}: shape {tuple(x.shape)} vs {tuple(y.shape)}")
            continue
        xf, yf = x.detach().to(torch.complex64 if x.is_complex() else torch.float64), \
            y.detach().to(torch.complex64 if y.is_complex() else torch.float64)
        if x.dtype != y.dtype or not torch.equal(xf, yf):
            d = (xf - yf).abs().max().item()
            print(f"{k}: {x.dtype} vs {y.dtype} shape {tuple(x.shape)} max|diff| {d:.3g}")
            ndiff += 1
    print(f"{ndiff} of {len(f32)} tensors differ")


if __name__ == "__main__":
    main()
