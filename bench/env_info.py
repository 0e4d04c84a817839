#!/usr/bin/env python3
"""Record what a benchmark ran on, as JSON lines for bench/report.py.

    python3 bench/env_info.py --json OUT/env.jsonl [--inputs-manifest DIR/inputs.json] [--command "..."]

Appends one line of engine "env" (UTC date, commit, command, GPU name / driver / memory / clocks from
nvidia-smi, CPU, package versions) and, given the manifest bench/make_inputs.py wrote, one line of
engine "inputs". The commit comes from $VOXRT_COMMIT, else from `git rev-parse` (the copy of the tree
on the GPU machine may have no .git).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def ver(p: str) -> str:
    try:
        return version(p)
    except PackageNotFoundError:
        return "not installed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--inputs-manifest")
    ap.add_argument("--command", default=os.environ.get("VOXRT_BENCH_COMMAND", ""))
    args = ap.parse_args()
    commit = os.environ.get("VOXRT_COMMIT") or sh(["git", "rev-parse", "--short=12", "HEAD"]) or "unknown"
    if commit != "unknown" and not os.environ.get("VOXRT_COMMIT") and sh(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += "+dirty"
    q = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit",
            "--format=csv,noheader"]).splitlines()
    g = [s.strip() for s in q[0].split(",")] if q else []
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except Exception:  # noqa: BLE001
        cpu = platform.processor()
    rec = {"engine": "env", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "commit": commit, "command": args.command,
           "gpu": g[0] if g else "none", "driver": g[1] if len(g) > 1 else "", "gpu_memory": g[2] if len(g) > 2 else "",
           "max_sm_clock": g[3] if len(g) > 3 else "", "max_mem_clock": g[4] if len(g) > 4 else "",
           "power_limit": g[5] if len(g) > 5 else "", "n_gpus": len(q),
           "cpu": cpu, "n_cpus": os.cpu_count(), "python": platform.python_version(),
           "torch": ver("torch"), "transformers": ver("transformers"), "liquid_audio": ver("liquid-audio"),
           "torchaudio": ver("torchaudio"), "flash_attn": ver("flash-attn")}
    try:
        import torch
        rec["torch_cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        rec["torch_cuda"] = None
    lines = [rec]
    if args.inputs_manifest and Path(args.inputs_manifest).is_file():
        m = json.loads(Path(args.inputs_manifest).read_text())
        lines.append({"engine": "inputs", "inputs": m["inputs"], "sources": m.get("sources", {})})
    with open(args.json, "a") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
