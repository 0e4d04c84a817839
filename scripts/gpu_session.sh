#!/usr/bin/env bash
# On the GPU machine (Ubuntu 24.04 image with CUDA 13, Python 3.12 + torch; no network), from the
# repo root: build voxrt with CUDA and its tests, run the CUDA op tests and the tiny-checkpoint
# parity tests on the GPU, make a full-size random checkpoint + reference dumps with the official
# package, and run the full-size parity tests on the GPU. Logs go to OUT_DIR.
#
#   scripts/gpu_session.sh OUT_DIR [build] [tests] [full] [parity]      (default: all four)
#
# Needs (carried, git-ignored; bench/make_carry.sh makes .carry): .carry/debs (PCRE2 .debs), .carry/boost-headers.tar.xz (voxrt serve), tools/reference/wheels (liquid-audio and
# the packages the image lacks). The tests and the reference dumps read only tests/data. The `full`
# stage's setup also derives the benchmark inputs (bench/make_inputs.py) from real speech when
# .carry/audio (question.wav, asr.wav) is carried, else from the committed test speech (bench/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/gpu_session.sh OUT_DIR [stages]}"; shift
mkdir -p "$OUT"
STAGES=("$@"); [[ ${#STAGES[@]} -eq 0 ]] && STAGES=(build tests full parity)
FULL="${FULL:-/tmp/voxrt-full}"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
P=/tmp/deps
export PKG_CONFIG_PATH=$P/usr/lib/x86_64-linux-gnu/pkgconfig LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }

for stage in "${STAGES[@]}"; do
  case "$stage" in
    build)
      if [[ ! -d $P/usr ]]; then
        for f in .carry/debs/*.deb; do dpkg -x "$f" $P; done
        sed -i "s|^prefix=.*|prefix=$P/usr|" $P/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
        # voxrt serve's Boost.Beast/Asio: the headers it includes and Boost's CMake package, from
        # Debian 12's libboost1.81-dev (bench/make_carry.sh), when the image has no Boost.
        [[ -f .carry/boost-headers.tar.xz ]] && tar -xJf .carry/boost-headers.tar.xz -C $P
      fi
      log "configure + build"
      cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DVOXRT_CUDA=ON -DVOXRT_CUDA_ARCHS=90a \
        -DCMAKE_PREFIX_PATH=$P/usr > "$OUT/build.log" 2>&1 &&
      ninja -C build-gpu -j"$(nproc)" voxrt_cli ops_cuda_test fused_cuda_test mel_cuda_test istft_cuda_test backbone_parity_test \
        greedy_e2e_test multiturn_test encoder_parity_test detokenizer_parity_test detokenizer_streaming_test \
        api_session_test audio_input_streaming_test device_test voxrt_serve \
        >> "$OUT/build.log" 2>&1 || { log "build failed"; tail -30 "$OUT/build.log"; exit 1; }
      log "built"
      ;;
    tests)
      log "CUDA op tests"
      build-gpu/ops_cuda_test > "$OUT/tests.log" 2>&1; log "ops_cuda_test rc=$?"
      build-gpu/fused_cuda_test >> "$OUT/tests.log" 2>&1; log "fused_cuda_test (tiny) rc=$?"
      for t in mel_cuda_test istft_cuda_test device_test; do
        build-gpu/$t >> "$OUT/tests.log" 2>&1; log "$t rc=$?"
      done
      log "tiny checkpoint on CUDA"
      for t in backbone_parity_test greedy_e2e_test multiturn_test encoder_parity_test detokenizer_parity_test \
               detokenizer_streaming_test; do
        VOXRT_PARITY_DEVICE=cuda timeout 120 build-gpu/$t >> "$OUT/tests.log" 2>&1; log "$t (tiny, cuda) rc=$?"
      done
      log "public API on CUDA (truncation, sessions on threads, streamed input; CPU and CUDA cases)"
      for t in api_session_test audio_input_streaming_test; do
        timeout 300 build-gpu/$t > "$OUT/$t.log" 2>&1; log "$t rc=$? ($(grep -c '^\[       OK \]' "$OUT/$t.log") ok, $(grep -c '^\[  SKIPPED \]' "$OUT/$t.log") skipped lines)"
      done
      ;;
    full)
      log "full-size checkpoint + dumps"
      MODEL="$FULL/model" bash bench/run_gpu.sh "$OUT/bench" setup >> "$OUT/full.log" 2>&1; log "setup rc=$?"
      python3 tools/reference/make_dumps.py --model "$FULL/model" --out "$FULL/dumps" --precision both \
        --device cuda --modes s2s,asr,tts --cases question,asr >> "$OUT/full.log" 2>&1; log "dumps rc=$?"
      cp "$FULL/dumps/manifest.json" "$OUT/full_manifest.json" 2>/dev/null
      ;;
    parity)
      log "full-size parity on CUDA"
      for t in fused_cuda_test backbone_parity_test greedy_e2e_test; do
        VOXRT_PARITY_DIR="$FULL" VOXRT_PARITY_DEVICE=cuda timeout 300 build-gpu/$t > "$OUT/parity_full_$t.log" 2>&1
        log "$t (full, cuda) rc=$?"
      done
      ;;
  esac
done
