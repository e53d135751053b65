#!/usr/bin/env bash
# Runs `yolod serve` under valgrind memcheck through one request on each
# detection route, a /metrics scrape, a SIGHUP and a SIGTERM, and fails on
# any leak or invalid access. It takes several minutes: valgrind runs the
# model load and each inference about 50 times slower.
set -u
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
MODEL=$SHARED/models/yolov8n.onnx
IMAGE=$SHARED/images/bus.jpg
if [ ! -f "$MODEL" ]; then
    echo "FATAL: $MODEL not found (set SHARED=DIR)" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "FATAL: valgrind is not installed" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
printf 'model = %s\nlisten = 127.0.0.1:%s\nthreads = 1\n' "$MODEL" "$port" >"$work/yolod.conf"

# One OpenMP thread, as in memcheck.sh: libgomp keeps its threads until exit.
OMP_NUM_THREADS=1 GOMP_SPINCOUNT=2000 valgrind --tool=memcheck --leak-check=full \
    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
    --error-exitcode=99 --log-file="$work/valgrind.log" \
    "$BUILD/yolod" serve --config "$work/yolod.conf" 2>"$work/serve.log" &
pid=$!

failed=0
step() {
    local name=$1 want=$2 got
    shift 2
    got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 600 "$@")
    if [ "$got" = "$want" ]; then
        echo "ok $name"
    else
        echo "FAIL $name: status $got, expected $want"
        failed=1
    fi
}

for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$url/readyz")" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
step "detect" 200 --data-binary @"$IMAGE" "$url/v1/detect"
step "deepstack custom route" 200 -F image=@"$IMAGE" "$url/v1/vision/custom/yolov8n"
step "metrics" 200 "$url/metrics"
kill -HUP "$pid"
for _ in $(seq 300); do grep -q "SIGHUP: configuration reread" "$work/serve.log" && break; sleep 1; done
step "detect after SIGHUP" 200 --data-binary @"$IMAGE" "$url/v1/detect"
kill -TERM "$pid"
wait "$pid"
rc=$?
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|Invalid' "$work/valgrind.log"
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    cat "$work/valgrind.log" "$work/serve.log"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "1 passed, 0 failed"
