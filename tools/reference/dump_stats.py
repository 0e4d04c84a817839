#!/usr/bin/env python3
"""Print sizes and statistics of a reference dump directory (output of make_dumps.py).

    python tools/reference/dump_stats.py tests/data/tiny/dumps

Per file: bytes and tensor count. Per stage: mean/std/absmax and the reference's own bf16-vs-fp32 error.
Per mode: the reference's own bf16-vs-fp32 teacher-forced agreement (text top-1, per-codebook top-1,
mean KL(fp32 || bf16)), the median top-2 logit gap in units of the logit std, and where the greedy
fp32 and bf16 sequences first differ. These are the floors voxrt's bf16 path is judged against.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    lp, lq = p_logits.float().log_softmax(-1), q_logits.float().log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1)


def main(d: Path) -> dict:
    out: dict = {"files": {}, "stages": {}, "modes": {}}
    for p in sorted(d.glob("*.safetensors")):
        t = load_file(str(p))
        out["files"][p.name] = {"bytes": p.stat().st_size, "tensors": len(t)}
        print(f"{p.stat().st_size:>12,d}  {p.name}  ({len(t)} tensors)")
    if (d / "stages_fp32.safetensors").exists():
        s = load_file(str(d / "stages_fp32.safetensors"))
        b = load_file(str(d / "stages_bf16.safetensors")) if (d / "stages_bf16.safetensors").exists() else {}
        for k in sorted(s):
            v = s[k].float()
            row = {"shape": list(v.shape), "mean": v.mean().item(), "std": v.std().item(), "absmax": v.abs().max().item()}
            if k in b:
                row["bf16_relL2"] = ((b[k].float() - v).norm() / v.norm().clamp_min(1e-30)).item()
            out["stages"][k] = row
            print(f"  {k:22s} {str(tuple(v.shape)):14s} mean {row['mean']:+.3f} std {row['std']:.3f} "
                  f"absmax {row['absmax']:.2f}" + (f"  bf16 relL2 {row['bf16_relL2']:.2e}" if k in b else ""))
    for mode in ["s2s", "asr", "tts"]:
        fp = d / f"tf_{mode}_fp32.safetensors"
        if not fp.exists():
            continue
        f = load_file(str(fp))
        tl = f["tf.text_logits"].float()
        top2 = tl.topk(2, -1).values
        row = {"prompt_len": f["prompt.modality"].numel(), "steps": f["seq.kind"].numel(),
               "frames": int(f["seq.kind"].sum()),
               "kind": "".join(map(str, f["seq.kind"].tolist())),
               "hidden_std": f["tf.hidden"].std().item(), "text_logit_std": tl.std().item(),
               "top2_gap_over_std_median": ((top2[:, 0] - top2[:, 1]) / tl.std(-1)).median().item()}
        bp = d / f"tf_{mode}_bf16.safetensors"
        if bp.exists():
            g = load_file(str(bp))
            gl = g["tf.text_logits"].float()
            row["bf16_text_top1"] = (tl.argmax(-1) == gl.argmax(-1)).float().mean().item()
            row["bf16_text_kl_mean"] = kl(tl, gl).mean().item()
            if "tf.depth_logits" in f:
                dl, dg = f["tf.depth_logits"].float(), g["tf.depth_logits"].float()
                row["bf16_depth_top1_per_codebook"] = (dl.argmax(-1) == dg.argmax(-1)).float().mean(0).tolist()
                row["bf16_depth_kl_mean"] = kl(dl, dg).mean().item()
        gf, gb = d / f"greedy_{mode}_fp32.safetensors", d / f"greedy_{mode}_bf16.safetensors"
        if gf.exists() and gb.exists():
            a, c = load_file(str(gf)), load_file(str(gb))
            n = min(a["greedy.kind"].numel(), c["greedy.kind"].numel())
            same = (a["greedy.text"][:n] == c["greedy.text"][:n]) & (a["greedy.codes"][:n] == c["greedy.codes"][:n]).all(-1)
            diff = (~same).nonzero()
            row["greedy_len_fp32_bf16"] = [a["greedy.kind"].numel(), c["greedy.kind"].numel()]
            row["greedy_first_divergence"] = int(diff[0]) if len(diff) else None
            row["greedy_fp32_kind"] = "".join(map(str, a["greedy.kind"].tolist()))
        out["modes"][mode] = row
        print(f"  {mode}: " + json.dumps({k: (round(v, 5) if isinstance(v, float) else
                                            [round(x, 3) for x in v] if isinstance(v, list) and v and isinstance(v[0], float) else v)
                                        for k, v in row.items()}))
    if (d / "detok.safetensors").exists():
        t = load_file(str(d / "detok.safetensors"))
        for k, v in t.items():
            print(f"  detok.{k:8s} {str(tuple(v.shape)):14s} {str(v.dtype):14s} std {v.float().std():.4f} absmax {v.float().abs().max():.4f}")
    return out


if __name__ == "__main__":
    res = main(Path(sys.argv[1]))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(res, indent=1) + "\n")
