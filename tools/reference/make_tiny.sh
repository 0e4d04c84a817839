#!/usr/bin/env bash
# Regenerate every tiny fixture: tests/data/tiny/model (checkpoint) and tests/data/tiny/dumps.
# Usage: tools/reference/make_tiny.sh            (uses $PY or /opt/venvs/ref/bin/python)
# Deterministic: re-running on the same package versions rewrites identical files.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-/opt/venvs/ref/bin/python}"
cd "$REPO"
export CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONHASHSEED=0
rm -rf tests/data/tiny/model tests/data/tiny/dumps
"$PY" tools/reference/make_checkpoint.py --size tiny --out tests/data/tiny/model --seed 0
"$PY" tools/reference/make_dumps.py --model tests/data/tiny/model --out tests/data/tiny/dumps \
    --precision both --device cpu --steps 64 --greedy-steps 64
chmod -R u+rw,go+r tests/data/tiny   # safetensors writes files 0600
VOXRT_TINY_CKPT=tests/data/tiny/model "$PY" -m pytest -q -p no:cacheprovider tools/reference/test_layout.py
du -sb tests/data/tiny/model tests/data/tiny/dumps
