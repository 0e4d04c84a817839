#!/usr/bin/env python3
"""Device-to-device copy bandwidth, the denominator of "% of floor" (bench/protocol.md "The ceiling").

    python3 bench/copy_bw.py [--gib 2] [--iters 20] [--json OUT.jsonl]

Copies a GIB-GiB bf16 buffer into another ITERS times between CUDA events and reports
(bytes read + bytes written) / time, the usual "copy bandwidth" (about 3.0 TB/s on an H100 SXM).
The decode floor of a step is then (weight bytes it must read) / this bandwidth.
"""
from __future__ import annotations

import argparse
import json
import sys


def measure(torch, gib: float = 2.0, iters: int = 20, reps: int = 3) -> dict:
    dev = torch.device("cuda")
    n = int(gib * (1 << 30)) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=dev).normal_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    best = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            dst.copy_(src)
        b.record()
        torch.cuda.synchronize()
        best.append(a.elapsed_time(b) / iters)
    ms = sorted(best)[len(best) // 2]
    nbytes = 2 * n * 2  # read + write
    del src, dst
    torch.cuda.empty_cache()
    return {"engine": "copy", "device": torch.cuda.get_device_name(dev), "buffer_bytes": 2 * n,
            "ms_per_copy": ms, "copy_gb_s": nbytes / (ms * 1e-3) / 1e9,
            "method": f"torch copy_ of a {2 * n / 2**30:.1f} GiB bf16 buffer, (read+write)/time, median of {reps}x{iters}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", help="append one JSON line here")
    args = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        print("copy_bw: no CUDA device", file=sys.stderr)
        return 1
    rec = measure(torch, args.gib, args.iters)
    print(f"copy bandwidth on {rec['device']}: {rec['copy_gb_s']:.0f} GB/s ({rec['ms_per_copy']:.3f} ms per copy)")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
