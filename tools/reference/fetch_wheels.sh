#!/usr/bin/env bash
# Download (here, with network) exactly the wheels that make_full.sh installs on the offline GPU machine
# (Ubuntu 24.04, CPython 3.12, x86_64, torch 2.11 + transformers 5.17 preinstalled).
# The list is the dependency closure of liquid-audio 1.3.0 (+ soundfile, soxr, pytest) minus the
# closure of torch + transformers, pinned to the versions recorded in README.md.
# Usage: tools/reference/fetch_wheels.sh [--all] [DEST]   (default tools/reference/wheels, git-ignored)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PIP="${PIP:-/opt/venvs/ref/bin/pip}"
# Missing on the lent GPU image (it has torch/torchaudio 2.11, transformers 5.17, accelerate, einops,
# numba, scipy, scikit-learn, pandas, pyarrow, sentencepiece, pytest, ...): ~4 MB, fits a `run` carry.
MISSING=(
  liquid-audio==1.3.0 librosa==1.0.0 soundfile==0.14.0 soxr==1.1.0 pooch==1.9.0 decorator==5.3.1
  platformdirs==4.14.8 cffi==2.1.1 pycparser==3.12 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  xxhash==4.1.0
)
# Everything liquid-audio needs beyond the torch + transformers closure (~180 MB), for a barer image.
ALL=(
  "${MISSING[@]}"
  accelerate==1.15.0 einops==0.8.2 sentencepiece==0.2.3 torchaudio==2.11.0
  numba==0.68.1 llvmlite==0.50.0 scipy==1.18.1 scikit-learn==1.9.1 joblib==1.6.0
  threadpoolctl==3.8.0 lazy-loader==0.6 msgpack==1.2.4
  requests==2.34.2 urllib3==2.8.0 charset-normalizer==3.5.3 psutil==7.2.2
  pyarrow==26.0.1 pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 narwhals==2.29.0 cloudpickle==3.1.3
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1
)
WHEELS=("${MISSING[@]}")
if [[ "${1:-}" == "--all" ]]; then WHEELS=("${ALL[@]}"); shift; fi
DEST="${1:-$HERE/wheels}"
mkdir -p "$DEST"
"$PIP" download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform linux_x86_64 --platform any -d "$DEST" "${WHEELS[@]}"
ls -la "$DEST"
du -sh "$DEST"
