#!/usr/bin/env bash
# Side-by-side latency of yolod and ONNX Runtime on the same ONNX file and
# the same input tensor: ROUNDS alternating rounds of RUNS timed runs each
# (warm-up excluded), then the median of the per-round medians for each
# side and their ratio. Alternating keeps a noisy shared machine fair.
#
# Usage: bench/compare-ort.sh [MODEL.onnx] [THREADS] [ROUNDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
BUILD=${BUILD:-build}
MODEL=${1:-$SHARED/models/yolov8n.onnx}
THREADS=${2:-2}
ROUNDS=${3:-5}
RUNS=${4:-20}
INPUT=${INPUT:-$SHARED/golden/bus.input.f32}

if [ ! -d bench/node_modules/onnxruntime-node ]; then
    (cd bench && npm install --ignore-scripts --no-audit --no-fund >/dev/null)
fi
make -s "$BUILD/yolod"

ours=() theirs=()
for round in $(seq 1 "$ROUNDS"); do
    o=$("$BUILD/yolod" bench --model "$MODEL" --input "$INPUT" --threads "$THREADS" --runs "$RUNS" --json)
    t=$(node bench/ort-bench.js "$MODEL" "$INPUT" "$THREADS" "$RUNS")
    ours+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["median_ms"])' "$o")")
    theirs+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["median_ms"])' "$t")")
    echo "round $round: yolod ${ours[-1]} ms, onnxruntime ${theirs[-1]} ms" >&2
done

python3 - "$MODEL" "$THREADS" "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
model, threads, ours, theirs = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
o = statistics.median(map(float, ours)); t = statistics.median(map(float, theirs))
print(f"| {model.split('/')[-1]} | {threads} | {o:.2f} | {min(map(float, ours)):.2f} | "
      f"{t:.2f} | {min(map(float, theirs)):.2f} | {o / t:.2f} |")
PY
