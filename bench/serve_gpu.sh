#!/usr/bin/env bash
# voxrt serve on the GPU machine, measured through the Realtime WebSocket (bench/serve_bench.py):
# time to first audio after the end of the user's speech, and how many conversations hold real
# time. Full-size random-weight checkpoint (bench/run_gpu.sh setup makes it): answers are not
# speech, and --bench-no-early-end makes each run to max_output_tokens so every level does the
# same work.
#
#   bench/serve_gpu.sh OUT_DIR [CONCURRENCY]      (default 1,2,4,8,16,24,32)
#   PRECISION=int8|fp8 (default bf16): the weights the server loads
#   BIN=path/to/voxrt (default build-gpu/voxrt): another build's server, e.g. a base tree's
#   CHUNK_MS (default 20): audio per input_audio_buffer.append
#   STAGGER_S (default 0): spread each level's conversation starts over this many seconds
#   SERVE_ARGS: more flags for voxrt serve (e.g. --round-budget-ms 0: no admission control)
#
# Needs build-gpu/voxrt (scripts/gpu_session.sh build) and the websockets wheel in .carry/pyserve
# (pip download websockets==17.4 for CPython 3.12) when the image lacks it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/serve_gpu.sh OUT_DIR [CONCURRENCY]}"
LEVELS="${2:-1,2,4,8,16,24,32}"
MODEL="${MODEL:-/tmp/voxrt-full/model}"
WAV="${WAV:-.carry/audio/question.wav}"
[[ -f $WAV ]] || WAV=tests/data/audio/question.wav
PORT="${PORT:-8091}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! python3 -c "import websockets" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/voxrt-pyserve .carry/pyserve/*.whl &&
    export PYTHONPATH=/tmp/voxrt-pyserve${PYTHONPATH:+:$PYTHONPATH}
fi
max=$(echo "$LEVELS" | tr ',' '\n' | sort -n | tail -1)
"${BIN:-build-gpu/voxrt}" serve -m "$MODEL" --device cuda --precision "${PRECISION:-bf16}" --port "$PORT" --max-sessions "$max" \
  --bench-no-early-end ${SERVE_ARGS:-} > "$OUT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -s "http://127.0.0.1:$PORT/v1/models"; echo
python3 bench/serve_bench.py --url "ws://127.0.0.1:$PORT/v1/realtime" --wav "$WAV" \
  --concurrency "$LEVELS" --chunk-ms "${CHUNK_MS:-20}" --stagger-s "${STAGGER_S:-0}" --out "$OUT/serve_bench.json" 2>&1 | tee "$OUT/serve_bench.txt"
# slots are freed when the server notices a closed socket: give it up to 30 s before the last scrape
for _ in $(seq 60); do
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -q '^voxrt_sessions_active 0$' && break
  sleep 0.5
done
curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics.txt"
kill -TERM $pid; wait $pid; echo "serve exit $?" >> "$OUT/serve.log"
grep -E "^voxrt_sessions_active|^voxrt_sessions_refused" "$OUT/metrics.txt"
