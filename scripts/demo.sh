#!/usr/bin/env bash
# The README's first command: install what is needed, build, and run speech-to-speech on the demo
# model (the tiny random-weight checkpoint in tests/data/tiny/model) with a demo question spoken
# by espeak-ng. The demo model's weights are random: its text and audio are noise, not speech.
# Point -m at a real LFM2.5-Audio-1.5B download to get real answers:
#   build/voxrt s2s -m /path/to/LFM2.5-Audio-1.5B -i question.wav -o answer.wav
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p build/demo
espeak-ng -v en-us -s 150 -w build/demo/question.wav \
  "Can you suggest a short slogan for my woodworking business?"
echo "voxrt: demo input build/demo/question.wav (espeak-ng); model tests/data/tiny/model (random weights: the output is noise)" >&2
build/voxrt s2s -m tests/data/tiny/model -i build/demo/question.wav -o build/demo/answer.wav -n 200
echo "voxrt: answer audio in build/demo/answer.wav" >&2
