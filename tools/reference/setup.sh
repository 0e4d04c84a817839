#!/usr/bin/env bash
# Create the reference venv (the official liquid-audio package and everything the tools here use)
# from PyPI, with the versions the committed fixtures were made with.
#   tools/reference/setup.sh [VENV_DIR]        (default /opt/venvs/ref; needs python3.12 and network)
# torch/torchaudio come from PyPI (the Linux wheels there are CUDA builds; they also run on CPU).
set -euo pipefail
VENV="${1:-/opt/venvs/ref}"
PYTHON="${PYTHON:-python3.12}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install \
  torch==2.11.0 torchaudio==2.11.0 transformers==5.17.0 liquid-audio==1.3.0 \
  accelerate==1.15.0 einops==0.8.2 sentencepiece==0.2.3 datasets==5.2.0 huggingface_hub==1.33.0 \
  librosa==1.0.0 numba==0.68.1 llvmlite==0.50.0 scipy==1.18.1 scikit-learn==1.9.1 soxr==1.1.0 \
  soundfile==0.14.0 tokenizers==0.23.3 safetensors==0.8.0 numpy==2.5.5 pytest==9.2.0
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version
for p in ["liquid-audio", "torch", "torchaudio", "transformers", "accelerate", "librosa", "soxr",
          "soundfile", "tokenizers", "safetensors", "numpy", "pytest"]:
    print(f"{p:14s} {version(p)}")
import liquid_audio  # noqa: F401  (import check)
EOF
