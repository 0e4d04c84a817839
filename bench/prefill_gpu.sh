#!/usr/bin/env bash
# New turns' prefill joined into one backbone call a step (voxrt::Batch::set_prefill_rows) against
# each turn's chunk alone, side by side in one device call and one build: the batch tests on CUDA,
# `voxrt bench --sessions N` once per entry of RAMP_CONFIGS (bench flags, '|'-separated; by default
# --prefill-rows 0, the default, the default after Batch::warm_up, and the default with 256 rows a
# batched call instead of 64; every
# conversation starts together, so the first steps prefill all N; one newcomer joins later), then
# voxrt serve with N Realtime conversations whose starts are spread over STAGGER_S seconds, once
# per entry of SERVE_CONFIGS (voxrt serve flags, entries separated by '|'; by default no commands budget and
# each prefill alone, then the commands budget, then both it and the joined prefill, then those
# with 256 answers a batched call instead of 64).
# Full-size random-weight checkpoint: the answers are not speech.
#
#   bench/prefill_gpu.sh OUT_DIR
#
# Environment (defaults): LEVELS="128 256"  SERVE_LEVEL=256  STAGGER_S=4  STEPS=100
#   STAGES="setup build tests serve ramp"  SERVE_CONFIGS, RAMP_CONFIGS (above)
#   TESTS, TEST_FILTER (as bench/sessions_gpu.sh)
# Needs what bench/sessions_gpu.sh and bench/serve_gpu.sh need (.carry: debs, boost headers,
# audio, the websockets wheel; tools/reference/wheels).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/prefill_gpu.sh OUT_DIR}"
mkdir -p "$OUT"
LEVELS="${LEVELS:-128 256}" SERVE_LEVEL="${SERVE_LEVEL:-256}" STAGGER_S="${STAGGER_S:-4}"
STAGES="${STAGES:-setup build tests ramp serve}"
export MODEL="${MODEL:-/tmp/voxrt-full/model}" INPUTS="${INPUTS:-/tmp/voxrt-bench-inputs}"
has() { [[ " $STAGES " == *" $1 "* ]]; }
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
pre=""
for s in setup build tests; do has $s && pre="$pre $s"; done
if [[ -n $pre ]]; then
  TARGETS="voxrt_cli batch_test batch_step_test" TESTS="${TESTS:-batch_test batch_step_test}" \
    STAGES="$pre" bash bench/sessions_gpu.sh "$OUT/s" || exit 1
  cat "$OUT/s/log.txt" >> "$OUT/log.txt"
fi
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
SERVE_CONFIGS="${SERVE_CONFIGS:---commands-budget-ms 0 --prefill-rows 0|--commands-budget-ms 10 --prefill-rows 0|--commands-budget-ms 10 --prefill-rows -1|--commands-budget-ms 10 --prefill-rows -1 --batch-rows 256}"
if has serve; then
  IFS='|' read -r -a configs <<< "$SERVE_CONFIGS"
  k=0
  for cfg in "${configs[@]}"; do
    k=$((k + 1))
    log "serve $k: $SERVE_LEVEL conversations over ${STAGGER_S} s, $cfg"
    STAGGER_S=$STAGGER_S SERVE_ARGS="--round-budget-ms 0 $cfg" PORT=$((8090 + k)) \
      timeout 200 bash bench/serve_gpu.sh "$OUT/serve_$k" "$SERVE_LEVEL" > "$OUT/serve_$k.txt" 2>&1
    log "rc=$?"
    tail -15 "$OUT/serve_$k.txt" >> "$OUT/log.txt"
    grep -E "^voxrt_commands_deferred_total|^voxrt_batch_rows_(sum|count)" "$OUT/serve_$k/metrics.txt" >> "$OUT/log.txt" 2>/dev/null
  done
fi
RAMP_CONFIGS="${RAMP_CONFIGS:---prefill-rows 0|--prefill-rows -1|--prefill-rows -1 --warm-graphs|--prefill-rows -1 --max-rows 256}"
if has ramp; then
  IFS='|' read -r -a rconfigs <<< "$RAMP_CONFIGS"
  for n in $LEVELS; do
    k=0
    for cfg in "${rconfigs[@]}"; do
      k=$((k + 1))
      log "ramp: $n sessions, $cfg"
      timeout 240 build-gpu/voxrt bench -m "$MODEL" --device cuda -i "$INPUTS/speech_03.8s.wav" \
        --context 1024 -n "${STEPS:-100}" --sessions "$n" $cfg > "$OUT/ramp_${n}_$k.txt" 2>&1
      log "rc=$?"
      grep '^|' "$OUT/ramp_${n}_$k.txt" | grep -v '^|---' | tail -1 | tee -a "$OUT/log.txt"
    done
  done
fi
log "done"
