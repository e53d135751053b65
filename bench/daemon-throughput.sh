#!/usr/bin/env bash
# Throughput of `yolod serve` over HTTP against the engine alone, for several
# workers x threads settings (`make bench-daemon`).
#
# For each setting WxT, one after the other:
#  1. engine alone: W `yolod bench --image bus.jpg --threads T` processes at
#     once, each RUNS full pipelines (decode from memory, letterbox, network,
#     head, NMS) after 3 warm-up runs. Images/s is all runs over the longest
#     process's timed seconds, so model loading and uneven finishes do not
#     count in its favour.
#  2. daemon: `yolod serve --workers W --threads T` on 127.0.0.1 with
#     yolov8n, 8 warm-up requests, then CONCURRENCY keep-alive clients POST
#     bus.jpg for DURATION seconds (tests/integration/http_load.py, which is
#     bounded in time and count): successful replies/s, p50 and p99 latency.
#  3. engine alone again. Its figure is the mean of steps 1 and 3, which
#     bracket the daemon's, so a change in the machine's other load shows as
#     a gap between the two (the "engine before/after" column).
# The table gives daemon/engine for the same setting, and the best daemon
# setting against the best engine-alone setting.
#
# Environment: BUILD (build), SHARED (../shared), DURATION (60),
# CONCURRENCY (4), CONFIGS ("1x2 2x1 1x1 2x2"), RUNS (200),
# OUT (BUILD/bench/daemon.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
DURATION=${DURATION:-60}
CONCURRENCY=${CONCURRENCY:-4}
CONFIGS=${CONFIGS:-1x2 2x1 1x1 2x2}
RUNS=${RUNS:-200}
OUT=${OUT:-$BUILD/bench/daemon.md}
YOLOD=$BUILD/yolod
MODEL=$SHARED/models/yolov8n.onnx
IMAGE=$SHARED/images/bus.jpg
LOAD=tests/integration/http_load.py

for f in "$YOLOD" "$MODEL" "$IMAGE"; do
    [ -e "$f" ] || { echo "daemon-throughput.sh: '$f' is missing (run make, or set BUILD and SHARED)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/yolod-bench.XXXXXX")
DAEMON=
cleanup() {
    if [ -n "$DAEMON" ]; then
        kill -TERM "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$(dirname "$OUT")"

# engine_alone W T: prints "images/s median_ms" of W bench processes at once.
engine_alone() {
    local workers=$1 threads=$2 dir pids=() i
    dir=$(mktemp -d "$WORK/engine.XXXXXX")
    for i in $(seq "$workers"); do
        "$YOLOD" bench --model "$MODEL" --image "$IMAGE" --threads "$threads" --runs "$RUNS" \
            --json >"$dir/$i.json" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || { echo "daemon-throughput.sh: yolod bench failed" >&2; exit 1; }
    done
    python3 - "$dir"/*.json <<'PY'
import json, statistics, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
busiest = max(r["runs"] * r["mean_ms"] / 1e3 for r in runs)
print(f"{sum(r['runs'] for r in runs) / busiest:.2f} {statistics.median(r['median_ms'] for r in runs):.2f}")
PY
}

# daemon W T: prints the JSON summary of http_load.py against a fresh daemon.
daemon() {
    local workers=$1 threads=$2 port url
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    url=http://127.0.0.1:$port
    "$YOLOD" serve --model "$MODEL" --listen "127.0.0.1:$port" --workers "$workers" \
        --threads "$threads" --log-level warn 2>"$WORK/serve.log" &
    DAEMON=$!
    for _ in $(seq 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ] && break
        kill -0 "$DAEMON" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" != 200 ]; then
        echo "daemon-throughput.sh: daemon not ready; log: $(tail -c 1000 "$WORK/serve.log")" >&2
        exit 1
    fi
    python3 "$LOAD" "$url/v1/detect" "$IMAGE" --concurrency "$CONCURRENCY" --requests 8 \
        --duration 60 >/dev/null
    python3 "$LOAD" "$url/v1/detect" "$IMAGE" --concurrency "$CONCURRENCY" \
        --duration "$DURATION" --requests 1000000 || true
    kill -TERM "$DAEMON"
    wait "$DAEMON" || true
    DAEMON=
}

: >"$WORK/rows"
for config in $CONFIGS; do
    workers=${config%x*}
    threads=${config#*x}
    if ! [[ $workers =~ ^[1-9][0-9]*$ && $threads =~ ^[1-9][0-9]*$ ]]; then
        echo "daemon-throughput.sh: invalid setting '$config' in CONFIGS (expected WORKERSxTHREADS, e.g. 2x1)" >&2
        exit 2
    fi
    # Command substitutions, not process substitutions: each step must have
    # ended before the next starts.
    engine=$(engine_alone "$workers" "$threads")
    read -r before before_median <<<"$engine"
    result=$(daemon "$workers" "$threads")
    engine=$(engine_alone "$workers" "$threads")
    read -r after after_median <<<"$engine"
    echo "$config $before $after $before_median $after_median $result" >>"$WORK/rows"
    echo "$config: engine alone $before then $after images/s; daemon $result" >&2
done

python3 - "$WORK/rows" "$DURATION" "$CONCURRENCY" "$RUNS" <<'PY' | tee "$OUT"
import datetime, json, os, subprocess, sys
rows_path, duration, concurrency, runs = sys.argv[1:5]
rows = []
for line in open(rows_path):
    config, before, after, before_median, after_median, summary = line.split(" ", 5)
    rate = (float(before) + float(after)) / 2
    median = (float(before_median) + float(after_median)) / 2
    rows.append((config, rate, median, json.loads(summary), float(before), float(after)))
lscpu = dict(l.split(":", 1) for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in l)
load = " ".join(open("/proc/loadavg").read().split()[:3])
print(f"yolov8n on bus.jpg, {datetime.date.today().isoformat()}, {lscpu.get('Model name', '?').strip()}, "
      f"{os.cpu_count()} CPUs, load average at the end {load}. Daemon: {concurrency} keep-alive "
      f"clients for {duration} s. Engine alone: W `yolod bench --image` processes of {runs} runs, "
      f"just before and just after the daemon of the same setting.")
print()
print("| workers x threads | engine alone images/s | engine before/after | engine median ms "
      "| daemon requests/s | daemon p50 ms | daemon p99 ms | failed | daemon / engine |")
print("|---|---|---|---|---|---|---|---|---|")
for config, rate, median, s, before, after in rows:
    failed = s["requests"] - s["ok"]
    print(f"| {config} | {rate:.1f} | {before:.1f}/{after:.1f} | {median:.1f} | "
          f"{s['requests_per_second']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {failed} | "
          f"{s['requests_per_second'] / rate:.0%} |")
best_daemon = max(rows, key=lambda r: r[3]["requests_per_second"])
best_engine = max(rows, key=lambda r: r[1])
print()
print(f"Best daemon setting: {best_daemon[0]}, {best_daemon[3]['requests_per_second']:.1f} requests/s; "
      f"best engine alone: {best_engine[0]}, {best_engine[1]:.1f} images/s; "
      f"ratio {best_daemon[3]['requests_per_second'] / best_engine[1]:.0%} (target 85%).")
PY
echo "written to $OUT" >&2
