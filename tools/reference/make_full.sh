#!/usr/bin/env bash
# Full-size random checkpoint + reference dumps, for the GPU machine (Ubuntu 24.04, CPython 3.12,
# torch 2.11 + transformers 5.17 preinstalled, no network).
#
#   tools/reference/make_full.sh OUT_DIR [WHEELS_DIR] [--precision both|fp32|bf16] [--skip-model]
#
# 1. If liquid_audio / librosa / soundfile / soxr are not importable, installs them (and whatever else
#    is missing) into the active Python environment from WHEELS_DIR (default tools/reference/wheels,
#    filled beforehand by fetch_wheels.sh on a machine with network): pip --no-index --find-links.
# 2. OUT_DIR/model  <- make_checkpoint.py --size full --seed 0   (~3.1 GB; skipped with --skip-model
#    when OUT_DIR/model/model.safetensors exists)
# 3. OUT_DIR/dumps  <- make_dumps.py --device cuda (falls back to cpu without a GPU)
# 4. layout test (VOXRT_FULL_CKPT), sizes, and dump_stats.py statistics (also saved to OUT_DIR/stats.json).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:?usage: make_full.sh OUT_DIR [WHEELS_DIR] [--precision P] [--skip-model]}"; shift
WHEELS="$HERE/wheels"
if [[ $# -gt 0 && "$1" != --* ]]; then WHEELS="$1"; shift; fi
PRECISION=both; SKIP_MODEL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --precision) PRECISION="$2"; shift 2;;
    --skip-model) SKIP_MODEL=1; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
PY="${PY:-python3}"
cd "$REPO"

if ! "$PY" -c "import liquid_audio, librosa, soundfile, soxr" 2>/dev/null; then
  echo "== installing liquid-audio and missing dependencies from $WHEELS"
  "$PY" -m pip install --no-index --find-links "$WHEELS" \
      liquid-audio==1.3.0 librosa==1.0.0 soundfile==0.14.0 soxr==1.1.0
fi
"$PY" -c "import pytest" 2>/dev/null || "$PY" -m pip install --no-index --find-links "$WHEELS" pytest || true
"$PY" - <<'PYEOF'
from importlib.metadata import version
for p in ["liquid-audio", "torch", "torchaudio", "transformers", "accelerate", "librosa", "safetensors", "tokenizers", "numpy"]:
    print(f"  {p:14s} {version(p)}")
import torch; print("  cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PYEOF
DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")

mkdir -p "$OUT"
if [[ $SKIP_MODEL -eq 0 || ! -f "$OUT/model/model.safetensors" ]]; then
  echo "== building full checkpoint in $OUT/model"
  time "$PY" tools/reference/make_checkpoint.py --size full --out "$OUT/model" --seed 0
fi
echo "== layout test"
VOXRT_FULL_CKPT="$OUT/model" VOXRT_TINY_CKPT="${VOXRT_TINY_CKPT:-tests/data/tiny/model}" \
  "$PY" -m pytest -q -p no:cacheprovider tools/reference/test_layout.py || echo "LAYOUT TEST FAILED"
echo "== dumps on $DEVICE"
time "$PY" tools/reference/make_dumps.py --model "$OUT/model" --out "$OUT/dumps" --precision "$PRECISION" \
  --device "$DEVICE" --steps 64 --greedy-steps 64
chmod -R u+rw,go+r "$OUT/model" "$OUT/dumps"   # safetensors writes files 0600
echo "== sizes"
du -ab "$OUT/model" "$OUT/dumps" | sort -k2
echo "== statistics"
"$PY" tools/reference/dump_stats.py "$OUT/dumps" "$OUT/stats.json"
