#!/usr/bin/env bash
# A soak of voxrt serve on the GPU machine: one server process on the full-size checkpoint, rounds
# of bench/serve_bench.py (N Realtime conversations at once, each a streamed question and a
# 200-step spoken answer) for SECONDS, recording after each round the server's resident memory,
# threads and file descriptors, the GPU memory in use and the slots still held.
#
#   bench/serve_soak_gpu.sh OUT_DIR [SECONDS] [CONCURRENCY]     (default 360 s, 4)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/serve_soak_gpu.sh OUT_DIR [SECONDS] [CONCURRENCY]}"
SECS="${2:-360}" N="${3:-4}"
MODEL="${MODEL:-/tmp/voxrt-full/model}" PORT="${PORT:-8092}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
python3 -c "import websockets" 2>/dev/null || export PYTHONPATH=/tmp/voxrt-pyserve${PYTHONPATH:+:$PYTHONPATH}
build-gpu/voxrt serve -m "$MODEL" --device cuda --port "$PORT" --max-sessions "$N" --bench-no-early-end \
  > "$OUT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break; sleep 0.5; done
echo "round elapsed_s answered real_time rss_kib threads fds gpu_mib sessions_active" | tee "$OUT/soak.txt"
t0=$(date +%s); r=0
while (( $(date +%s) - t0 < SECS )); do
  r=$((r + 1))
  python3 bench/serve_bench.py --url "ws://127.0.0.1:$PORT/v1/realtime" --wav tests/data/audio/question.wav \
    --concurrency "$N" --out "$OUT/round.json" > "$OUT/round.txt" 2>&1
  ans=$(python3 -c "import json;r=json.load(open('$OUT/round.json'))['rows'][0];print(r.get('answered'),r.get('real_time'))" 2>/dev/null)
  sleep 1
  act=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^voxrt_sessions_active /{print $2}')
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status); thr=$(awk '/Threads/{print $2}' /proc/$pid/status)
  fds=$(ls /proc/$pid/fd | wc -l)
  gpu=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits | awk -F', ' -v p=$pid '$1==p{print $2}')
  echo "$r $(( $(date +%s) - t0 )) ${ans:-? ?} $rss $thr $fds ${gpu:-?} $act" | tee -a "$OUT/soak.txt"
done
kill -TERM $pid; wait $pid; echo "serve exit $?" | tee -a "$OUT/soak.txt"
