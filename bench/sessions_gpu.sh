#!/usr/bin/env bash
# Many conversations on one GPU, in one device call: builds this tree (and optionally another
# commit's tree beside it), runs the batch tests on CUDA, then `voxrt bench --sessions` ramps of
# both trees alternating level by level, a profiled run and the kernel time by name (bench/kprof).
#
#   bench/sessions_gpu.sh OUT_DIR [BASE_SRC]
#
# BASE_SRC: another commit's sources (`git archive BASE | tar -x -C .carry/base`, carried), or the
# same as a .tar.xz (`git archive BASE -- . ':!tests/data' | xz > .carry/base.tar.xz`); its
# voxrt is built beside this tree's and each ramp level runs on both, this tree first.
# Needs what scripts/gpu_session.sh's build stage needs (.carry/debs, .carry/boost-headers.tar.xz)
# and bench/run_gpu.sh's setup (tools/reference/wheels; .carry/audio for the protocol's inputs).
# Environment (defaults): LEVELS="32 48 64 96 128"  STEPS=100  CONTEXT=1024  PROFILE_AT=64
#   PRECISION=bf16  MODEL=/tmp/voxrt-full/model  INPUTS=/tmp/voxrt-bench-inputs
#   STAGES="setup build tests ramp profile kprof"  TESTS="batch_step_test batch_test"  TEST_FILTER=*
# Writes OUT_DIR/log.txt (every line the stages print that the docs quote) and one file per run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/sessions_gpu.sh OUT_DIR [BASE_SRC]}"
BASE="${2:-}"
mkdir -p "$OUT"
if [[ $BASE == *.tar.xz ]]; then  # a compressed tree (`git archive BASE | xz`): unpacked once
  [[ -d /tmp/voxrt-base ]] || { mkdir -p /tmp/voxrt-base && tar -xJf "$BASE" -C /tmp/voxrt-base; }
  BASE=/tmp/voxrt-base
fi
LEVELS="${LEVELS:-32 48 64 96 128}" STEPS="${STEPS:-100}" CONTEXT="${CONTEXT:-1024}"
PROFILE_AT="${PROFILE_AT:-64}" PRECISION="${PRECISION:-bf16}"
STAGES="${STAGES:-setup build tests ramp profile kprof}"
export MODEL="${MODEL:-/tmp/voxrt-full/model}" INPUTS="${INPUTS:-/tmp/voxrt-bench-inputs}"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
P=/tmp/deps
export PKG_CONFIG_PATH=$P/usr/lib/x86_64-linux-gnu/pkgconfig LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
in="$INPUTS/speech_03.8s.wav"
bench_args=(bench -m "$MODEL" --device cuda --precision "$PRECISION" -i "$in" --context "$CONTEXT" -n "$STEPS")

if has setup; then
  if [[ ! -d $P/usr ]]; then
    for f in .carry/debs/*.deb; do dpkg -x "$f" $P; done
    sed -i "s|^prefix=.*|prefix=$P/usr|" $P/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
    [[ -f .carry/boost-headers.tar.xz ]] && tar -xJf .carry/boost-headers.tar.xz -C $P
  fi
  log "setup: checkpoint, inputs, card"
  STATE=none bash bench/run_gpu.sh "$OUT/setup" setup > "$OUT/setup.log" 2>&1
  log "setup rc=$? ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
fi

build_tree() {  # DIR TESTS(ON|OFF) TARGETS...
  local dir="$1" tests="$2"; shift 2
  (cd "$dir" && cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DVOXRT_CUDA=ON \
     -DVOXRT_CUDA_ARCHS=90a -DVOXRT_TESTS="$tests" -DCMAKE_PREFIX_PATH=$P/usr > /dev/null &&
   ninja -C build-gpu -j"$(nproc)" "$@")
}
if has build; then
  log "build"
  # Both trees at once (ninja is incremental: on a machine still warm from a call, nothing to do).
  [[ -n $BASE ]] && { build_tree "$BASE" OFF voxrt_cli > "$OUT/build_base.log" 2>&1; echo $? > "$OUT/.base_rc"; } &
  build_tree . ON ${TARGETS:-voxrt_cli batch_test batch_step_test voxrt_kprof} > "$OUT/build.log" 2>&1 ||
    { log "build failed"; tail -30 "$OUT/build.log"; exit 1; }
  wait
  if [[ -n $BASE && "$(cat "$OUT/.base_rc")" != 0 ]]; then
    log "base build failed"; tail -30 "$OUT/build_base.log"; exit 1
  fi
  log "built"
fi

if has tests; then
  for t in ${TESTS:-batch_step_test batch_test}; do
    timeout 300 build-gpu/$t --gtest_filter="${TEST_FILTER:-*}" > "$OUT/$t.log" 2>&1
    log "$t rc=$? ($(grep -c '^\[       OK \]' "$OUT/$t.log") ok, $(grep -c '^\[  FAILED  \]' "$OUT/$t.log") failed lines)"
  done
fi

summary() {  # the bench's table lines
  grep '^|' "$1" | grep -v '^|---' | head -40 | tee -a "$OUT/log.txt"
}
if has ramp; then
  for n in $LEVELS; do
    log "ramp: $n sessions, this tree"
    timeout 240 build-gpu/voxrt "${bench_args[@]}" --sessions "$n" > "$OUT/ramp_${n}_a.txt" 2>&1
    log "rc=$?"; summary "$OUT/ramp_${n}_a.txt"
    if [[ -n $BASE ]]; then
      log "ramp: $n sessions, base tree"
      timeout 240 "$BASE/build-gpu/voxrt" "${bench_args[@]}" --sessions "$n" > "$OUT/ramp_${n}_b.txt" 2>&1
      log "rc=$?"; summary "$OUT/ramp_${n}_b.txt"
    fi
  done
fi
if has profile; then
  log "profile: $PROFILE_AT sessions"
  timeout 240 build-gpu/voxrt "${bench_args[@]}" --sessions "$PROFILE_AT" --profile > "$OUT/profile.txt" 2>&1
  log "rc=$?"; grep '^|' "$OUT/profile.txt" | tail -30 >> "$OUT/log.txt"
fi
if has kprof && [[ -f build-gpu/libvoxrt_kprof.so ]]; then
  log "kprof: $PROFILE_AT sessions"
  CUDA_INJECTION64_PATH=$PWD/build-gpu/libvoxrt_kprof.so VOXRT_KPROF_OUT="$OUT/kprof.txt" \
    timeout 240 build-gpu/voxrt "${bench_args[@]}" --sessions "$PROFILE_AT" > "$OUT/kprof_run.txt" 2>&1
  log "rc=$?"; head -45 "$OUT/kprof.txt" >> "$OUT/log.txt" 2>/dev/null
fi
log "done"
