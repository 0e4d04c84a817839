#!/usr/bin/env bash
# The whole benchmark of bench/protocol.md on the GPU machine: voxrt, the official liquid-audio pipeline
# and the PyTorch peer, on the same card, in one run. Run from anywhere; it works in the repo root.
#
#   bench/run_gpu.sh OUT_DIR [STAGE ...]          (default stage: all)
#
# Stages (each is separately invocable; each makes what it needs first):
#   setup      Python packages (from tools/reference/wheels when liquid_audio/librosa/soxr are missing),
#              the full-size random checkpoint (tools/reference/make_checkpoint.py --size full --seed 0,
#              unless $MODEL/model.safetensors exists), the three inputs (bench/make_inputs.py), and the
#              card record: OUT/card.txt (nvidia-smi -q), OUT/env.jsonl (env_info.py + copy_bw.py)
#   build      configures and builds build-gpu/voxrt (-DVOXRT_CUDA=ON) only if $VOXRT is missing (with the
#              PCRE2 .debs of .carry/debs unpacked into /tmp/deps where the image lacks them)
#   voxrt      voxrt bench ... --json OUT/voxrt.jsonl
#   reference  bench/reference_bench.py ... --json OUT/reference.jsonl
#   peer       bench/torch_step_bench.py --json OUT/peer.jsonl (falls back to a faster-compiling
#              configuration if the tuned one fails or outruns $PEER_TIMEOUT)
#   report     bench/report.py OUT > OUT/results.md
#   all        setup build voxrt reference peer report   (likely > 10 minutes on a fresh machine:
#              split it over two device calls, see docs/benchmarks.md)
#
# OUT_DIR ends up with at most 7 files: card.txt env.jsonl voxrt.jsonl reference.jsonl peer.jsonl
# log.txt results.md (the device tool returns at most 8 files, 2 folders deep).
#
# Environment (defaults): MODEL=/tmp/voxrt-full/model  INPUTS=/tmp/voxrt-bench-inputs
#   AUDIO_DIR=first of ../shared/audio, shared/audio, .carry/audio (question.wav + asr.wav), else the
#     committed espeak-ng test speech of tests/data/audio (logged: not the protocol's inputs)
#   WHEELS=tools/reference/wheels  VOXRT=build-gpu/voxrt  PY=python3  STEPS=200 RUNS=5 WARMUP=1
#   VOXRT_COMMIT (recorded in env.jsonl by the first stage that writes it, usually setup: set it on that
#     call too; the tree copied to the GPU machine may carry no or a stale .git)
#   PEER_ARGS (extra torch_step_bench.py flags)  PEER_TIMEOUT=420 (seconds for the tuned compile)
#   DEADLINE_S=580: this call's time budget (a device command may run 600 s); the peer's tuned attempt
#     stops early enough to leave the quicker fallback ~170 s
#   STATE=/tmp/voxrt-bench-state: the JSON of earlier calls on this same machine (it stays warm for a
#     while after a call) is copied from there into OUT_DIR first, so a second call's report holds both
#     calls' results; each stage's files are saved there again when it ends. STATE=none turns this off.
#   DEVICE=cuda (cpu: a smoke test of this script on the tiny checkpoint, e.g.
#     DEVICE=cpu MODEL=tests/data/tiny/model STEPS=8 RUNS=1 VOXRT=build/voxrt PEER_ARGS="--compile-mode none")
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
OUT="${1:?usage: bench/run_gpu.sh OUT_DIR [setup|build|voxrt|reference|peer|report|all ...]}"; shift
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STAGES=("$@"); [[ ${#STAGES[@]} -eq 0 ]] && STAGES=(all)
MODEL="${MODEL:-/tmp/voxrt-full/model}"
INPUTS="${INPUTS:-/tmp/voxrt-bench-inputs}"
WHEELS="${WHEELS:-$REPO/tools/reference/wheels}"
VOXRT="${VOXRT:-$REPO/build-gpu/voxrt}"
PY="${PY:-python3}"
STEPS="${STEPS:-200}" RUNS="${RUNS:-5}" WARMUP="${WARMUP:-1}"
PEER_TIMEOUT="${PEER_TIMEOUT:-420}"
DEVICE="${DEVICE:-cuda}"
DEADLINE_S="${DEADLINE_S:-580}"
T_START=$(date +%s)
remaining() { echo $(( DEADLINE_S - ($(date +%s) - T_START) )); }
STATE="${STATE:-/tmp/voxrt-bench-state}"
KEPT=(card.txt env.jsonl voxrt.jsonl reference.jsonl peer.jsonl)
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/voxrt-inductor}"
export VOXRT_BENCH_COMMAND="bench/run_gpu.sh $OUT ${STAGES[*]} (MODEL=$MODEL STEPS=$STEPS RUNS=$RUNS WARMUP=$WARMUP)"
FAILED=()

log() { echo "[run_gpu $(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
# run CMD...: echo it, run it with stdout+stderr into the log, return its status
run() {
  log "\$ $*"
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [[ $rc -ne 0 ]] && log "exit status $rc: $*"
  return "$rc"
}
INPUT_FILES=("$INPUTS/speech_03.8s.wav" "$INPUTS/speech_11.2s.wav" "$INPUTS/speech_34.7s.wav")

ensure_python() {
  if [[ -d /tmp/voxrt-site ]]; then export PYTHONPATH="/tmp/voxrt-site${PYTHONPATH:+:$PYTHONPATH}"; fi
  "$PY" -c "import liquid_audio, librosa, soxr" 2>/dev/null && return 0
  log "installing liquid-audio and its missing dependencies from $WHEELS"
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { log "no wheels in $WHEELS (run tools/reference/fetch_wheels.sh here and carry tools/reference/wheels)"; return 1; }
  # Into the active environment, as tools/reference/make_full.sh does; where pip may not write there
  # (an externally managed system Python), into /tmp/voxrt-site on PYTHONPATH.
  if ! run "$PY" -m pip install -q --no-index --find-links "$WHEELS" \
        liquid-audio==1.3.0 librosa==1.0.0 soundfile==0.14.0 soxr==1.1.0; then
    run "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/voxrt-site "$WHEELS"/*.whl || return 1
    export PYTHONPATH="/tmp/voxrt-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$PY" -c "import liquid_audio, librosa, soxr" || { log "liquid_audio still not importable"; return 1; }
}

ensure_model() {
  [[ -f "$MODEL/model.safetensors" && -f "$MODEL/audio_detokenizer/model.safetensors" ]] && return 0
  ensure_python || return 1
  log "building the full-size random checkpoint in $MODEL"
  run "$PY" tools/reference/make_checkpoint.py --size full --out "$MODEL" --seed 0
}

ensure_inputs() {
  local f ok=1
  for f in "${INPUT_FILES[@]}" "$INPUTS/inputs.json"; do [[ -f "$f" ]] || ok=0; done
  [[ $ok -eq 1 ]] && return 0
  local dir="${AUDIO_DIR:-}"
  if [[ -z "$dir" ]]; then
    for d in "$REPO/../shared/audio" "$REPO/shared/audio" "$REPO/.carry/audio"; do
      [[ -f "$d/question.wav" && -f "$d/asr.wav" ]] && { dir="$d"; break; }
    done
  fi
  if [[ -z "$dir" ]]; then
    dir="$REPO/tests/data/audio"
    log "WARNING: no recordings (question.wav + asr.wav) in ../shared/audio, shared/audio or .carry/audio: the inputs come from the committed espeak-ng test speech ($dir), not the protocol's recordings; results are not comparable with docs/benchmarks.md (set AUDIO_DIR, or carry .carry/audio)"
  fi
  run "$PY" bench/make_inputs.py --audio-dir "$dir" --out "$INPUTS"
}

ensure_env() {
  grep -q '"engine": "env"' "$OUT/env.jsonl" 2>/dev/null && return 0
  command -v nvidia-smi >/dev/null && nvidia-smi -q > "$OUT/card.txt" 2>&1
  run "$PY" bench/env_info.py --json "$OUT/env.jsonl" --inputs-manifest "$INPUTS/inputs.json"
  run "$PY" bench/copy_bw.py --json "$OUT/env.jsonl" || log "no copy bandwidth: the report shows no % of floor"
  return 0
}

stage_setup() {
  ensure_python || return 1
  ensure_model || return 1
  ensure_inputs || return 1
  ensure_env
}

# The GPU image has no PCRE2 development files: where pkg-config cannot find them and the .debs are
# carried in .carry/debs (scripts/gpu_session.sh does the same), unpack them into /tmp/deps.
ensure_build_deps() {
  pkg-config --exists libpcre2-8 2>/dev/null && return 0
  local deps=/tmp/deps f
  if [[ ! -d $deps/usr ]]; then
    ls "$REPO"/.carry/debs/*.deb >/dev/null 2>&1 || { log "libpcre2-8 not found and no .carry/debs"; return 1; }
    for f in "$REPO"/.carry/debs/*.deb; do dpkg -x "$f" $deps; done
    sed -i "s|^prefix=.*|prefix=$deps/usr|" $deps/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
  fi
  export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export CMAKE_PREFIX_PATH=$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
}

stage_build() {
  [[ -x "$VOXRT" ]] && { log "$VOXRT exists"; return 0; }
  ensure_build_deps || return 1
  export PATH=/usr/local/cuda/bin:$PATH
  local gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  run cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVOXRT_CUDA=ON -DVOXRT_TESTS=OFF || return 1
  run cmake --build build-gpu --target voxrt_cli -j "$(nproc)"
}

stage_voxrt() {
  ensure_build_deps || true  # the libraries voxrt was linked against, if they were unpacked
  ensure_model && ensure_inputs || return 1
  ensure_env
  [[ -x "$VOXRT" ]] || stage_build || return 1
  local args=()
  for f in "${INPUT_FILES[@]}"; do args+=(-i "$f"); done
  rm -f "$OUT/voxrt.jsonl"
  run "$VOXRT" bench -m "$MODEL" --device "$DEVICE" "${args[@]}" -n "$STEPS" --runs "$RUNS" --warmup "$WARMUP" \
      --json "$OUT/voxrt.jsonl"
}

stage_reference() {
  ensure_python && ensure_model && ensure_inputs || return 1
  ensure_env
  rm -f "$OUT/reference.jsonl"
  run "$PY" bench/reference_bench.py --model "$MODEL" --inputs "${INPUT_FILES[@]}" --steps "$STEPS" \
      --runs "$RUNS" --warmup "$WARMUP" --device "$DEVICE" --json "$OUT/reference.jsonl"
}

stage_peer() {
  ensure_python && ensure_model || return 1
  ensure_env
  rm -f "$OUT/peer.jsonl"
  local extra=(); read -ra extra <<< "${PEER_ARGS:-}"
  local budget; budget=$(( $(remaining) - 170 )); (( budget > PEER_TIMEOUT )) && budget=$PEER_TIMEOUT
  (( budget < 60 )) && budget=60
  log "peer: tuned attempt gets ${budget}s"
  run timeout -k 10 "$budget" "$PY" bench/torch_step_bench.py --model "$MODEL" --device "$DEVICE" \
      --json "$OUT/peer.jsonl" "${extra[@]}"
  # A verified, compiled, graph-captured line is what the table needs; if the tuned configuration did
  # not give one (compile error, fell back to eager, or timed out), try the quicker-compiling one.
  if [[ "$DEVICE" == cuda ]] && ! "$PY" - "$OUT/peer.jsonl" <<'PYEOF'
import json, sys
ok = False
try:
    for ln in open(sys.argv[1]):
        r = json.loads(ln)
        ok |= r.get("mode") == "compiled+cudagraph" and bool(r.get("verified"))
except OSError:
    pass
sys.exit(0 if ok else 1)
PYEOF
  then
    log "no verified compiled+cudagraph peer yet: trying torch.compile mode=default without coordinate descent"
    budget=$(( $(remaining) - 10 )); (( budget < 60 )) && budget=60
    run timeout -k 10 "$budget" "$PY" bench/torch_step_bench.py --model "$MODEL" --device "$DEVICE" --compile-mode default \
        --no-coordinate-descent --json "$OUT/peer.jsonl" "${extra[@]}"
  fi
}

stage_report() {
  run "$PY" bench/report.py "$OUT" > "$OUT/results.md.tmp" && mv "$OUT/results.md.tmp" "$OUT/results.md"
  rm -f "$OUT/results.md.tmp"
  [[ -f "$OUT/results.md" ]] && cat "$OUT/results.md"
}

expanded=()
for s in "${STAGES[@]}"; do
  case "$s" in
    all) expanded+=(setup build voxrt reference peer report);;
    setup|build|voxrt|reference|peer|report) expanded+=("$s");;
    *) echo "unknown stage $s (setup build voxrt reference peer report all)" >&2; exit 2;;
  esac
done
save_state() {
  [[ "$STATE" == none ]] && return 0
  mkdir -p "$STATE" && for f in "${KEPT[@]}"; do [[ -f "$OUT/$f" ]] && cp "$OUT/$f" "$STATE/$f"; done
  return 0
}
if [[ "$STATE" != none && -d "$STATE" ]]; then
  for f in "${KEPT[@]}"; do
    if [[ -f "$STATE/$f" && ! -f "$OUT/$f" ]]; then cp "$STATE/$f" "$OUT/$f"; log "kept from an earlier call on this machine: $f"; fi
  done
fi
# one "call" line per invocation, so the report names every command that produced its lines
"$PY" -c 'import json, sys, datetime; print(json.dumps({"engine": "call", "command": sys.argv[1], "stages": sys.argv[2],
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}))' \
  "$VOXRT_BENCH_COMMAND" "${expanded[*]}" >> "$OUT/env.jsonl"
T0=$(date +%s)
for s in "${expanded[@]}"; do
  t=$(date +%s)
  log "== stage $s"
  if ! "stage_$s"; then FAILED+=("$s"); log "== stage $s FAILED"; fi
  log "== stage $s: $(( $(date +%s) - t )) s"
  save_state
done
log "done in $(( $(date +%s) - T0 )) s; failed stages: ${FAILED[*]:-none}; files in $OUT:"
find "$OUT" -maxdepth 1 -type f -printf "%10s  %f\n" | sort -k2 | tee -a "$LOG" >&2
[[ ${#FAILED[@]} -eq 0 ]]
