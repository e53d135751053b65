#!/usr/bin/env bash
# Side-by-side latency of yolod and ONNX Runtime on the same ONNX file and
# the same input tensor: ROUNDS alternating rounds of RUNS timed runs each
# (warm-up excluded), then the median of the per-round medians for each
# side and their ratio. Alternating keeps a noisy shared machine fair.
#
# Usage: bench/compare-ort.sh [MODEL.onnx] [THREADS] [ROUNDS] [RUNS]
# OURS=FILE times that model on the yolod side instead (a .yolod variant
# against ONNX Runtime running MODEL.onnx, e.g. its own int8 build).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
BUILD=${BUILD:-build}
MODEL=${1:-$SHARED/models/yolov8n.onnx}
THREADS=${2:-2}
ROUNDS=${3:-5}
RUNS=${4:-20}
INPUT=${INPUT:-$SHARED/golden/bus.input.f32}
OURS=${OURS:-$MODEL}

if [ ! -d bench/node_modules/onnxruntime-node ]; then
    (cd bench && npm install --ignore-scripts --no-audit --no-fund >/dev/null)
fi
make -s "$BUILD/yolod"

ours=() theirs=()
for round in $(seq 1 "$ROUNDS"); do
    o=$("$BUILD/yolod" bench --model "$OURS" --input "$INPUT" --threads "$THREADS" --runs "$RUNS" --json)
    t=$(node bench/ort-bench.js "$MODEL" "$INPUT" "$THREADS" "$RUNS")
    ours+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["median_ms"])' "$o")")
    theirs+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["median_ms"])' "$t")")
    echo "round $round: yolod ${ours[-1]} ms, onnxruntime ${theirs[-1]} ms" >&2
done

python3 - "$OURS" "$MODEL" "$THREADS" "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
ours_model, model, threads, ours, theirs = sys.argv[1:6]
ours, theirs = [float(v) for v in ours.split()], [float(v) for v in theirs.split()]
o, t = statistics.median(ours), statistics.median(theirs)
print(f"| {ours_model.split('/')[-1]} | {model.split('/')[-1]} | {threads} | {o:.2f} | {min(ours):.2f} | "
      f"{t:.2f} | {min(theirs):.2f} | {o / t:.2f} |")
PY
