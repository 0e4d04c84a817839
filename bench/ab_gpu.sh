#!/usr/bin/env bash
# Same-run A/B of one spoken turn on the GPU machine: `voxrt bench` of this tree (build-gpu/voxrt)
# against another commit's tree, on the same card, checkpoint and inputs, runs alternating.
#
#   bench/ab_gpu.sh OUT_DIR BASE_SRC [ROUNDS]
#
# BASE_SRC: the other commit's sources (here: `git archive BASE | tar -x -C .carry/base`, carried).
# Needs the full checkpoint and inputs of bench/run_gpu.sh's setup stage (MODEL, INPUTS). Builds
# BASE_SRC/build-gpu/voxrt if missing. Writes OUT_DIR/{a,b}_N.jsonl and OUT_DIR/ab.txt (the turn's
# decode ms/step and time to first audio of each run, then the medians).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/ab_gpu.sh OUT_DIR BASE_SRC [ROUNDS]}"
BASE="${2:?BASE_SRC}"
ROUNDS="${3:-3}"
MODEL="${MODEL:-/tmp/voxrt-full/model}"
INPUTS="${INPUTS:-/tmp/voxrt-bench-inputs}"
STEPS="${STEPS:-200}" RUNS="${RUNS:-5}"
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
if [[ ! -x "$BASE/build-gpu/voxrt" ]]; then
  (cd "$BASE" && cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DVOXRT_CUDA=ON \
     -DVOXRT_CUDA_ARCHS=90a -DVOXRT_TESTS=OFF ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH} >/dev/null &&
   ninja -C build-gpu -j"$(nproc)" voxrt_cli >/dev/null) || { echo "base build failed" >&2; exit 1; }
fi
args=()
for f in "$INPUTS"/*.wav; do args+=(-i "$f"); done
for ((r = 1; r <= ROUNDS; r++)); do
  for side in a b; do
    bin=build-gpu/voxrt; [[ $side == b ]] && bin="$BASE/build-gpu/voxrt"
    "$bin" bench -m "$MODEL" --device cuda "${args[@]}" -n "$STEPS" --runs "$RUNS" --warmup 1 \
      --json "$OUT/${side}_$r.jsonl" > "$OUT/${side}_$r.txt" 2>&1 || echo "$side round $r failed" >&2
  done
done
python3 - "$OUT" > "$OUT/ab.txt" <<'PY'
import json, statistics, sys, glob, os
out = sys.argv[1]
KEYS = ["total_ms_median", "prefill_ms", "encoder_ms", "first_sample_ms", "decode_ms",
        "text_step_ms", "audio_frame_ms", "steps_per_s", "decode_gb_s"]
data = {}
for side in ("a", "b"):
    for f in sorted(glob.glob(os.path.join(out, f"{side}_*.jsonl"))):
        for line in open(f):
            try: r = json.loads(line)
            except ValueError: continue
            data.setdefault((os.path.basename(r["input"]), side), []).append(r)
dev = next((r[0].get("device") for r in data.values() if r), "?")
print(f"device: {dev}; a = this tree, b = base; median over rounds (each round: bench's median of its runs)")
for inp in sorted({k[0] for k in data}):
    print(f"== {inp}")
    print("  " + " | ".join(["metric", "a", "b", "a/b"]))
    for k in KEYS:
        va = [r[k] for r in data.get((inp, "a"), []) if k in r]
        vb = [r[k] for r in data.get((inp, "b"), []) if k in r]
        if not va or not vb: continue
        ma, mb = statistics.median(va), statistics.median(vb)
        print(f"  {k} | {ma:.4g} | {mb:.4g} | {ma / mb if mb else float('nan'):.3f}")
PY
cat "$OUT/ab.txt"
