#!/usr/bin/env bash
# Resident memory of a daemon serving yolov8n in fp32 and int8 from one
# --model-dir with one worker: 2000 requests from 8 keep-alive clients,
# alternating the two variants, all succeed with the variant they asked for;
# the worker keeps one session per variant; VmRSS afterwards is at most
# 150 MiB.
source "$(dirname "$0")/lib.sh"

CALIB=$SHARED/datasets/coco128/images/train2017
LOAD="python3 $HERE/http_load.py"
LIMIT_KB=$((150 * 1024))
DIR=$WORK/models
mkdir -p "$DIR"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$DIR/yolov8n.onnx"
check "compress int8 into the model dir" "$YOLOD" compress "$MODEL" --variant int8 \
    --calib "$CALIB" --calib-limit 8 -o "$DIR/yolov8n.int8.yolod"

# start_daemon always adds --model yolov8n.onnx, which would load the same
# (name, variant) twice, so this daemon starts from the directory alone.
port=$(free_port)
LOG=$WORK/memory.log
URL=http://127.0.0.1:$port
# --max-decodes 8, one per client: the default, twice the online cores, is
# below 8 on machines with fewer than 4 cores, and then the extra uploads get
# 503.
"$YOLOD" serve --model-dir "$DIR" --listen "127.0.0.1:$port" --workers 1 --max-decodes 8 \
    --log-level debug 2>"$LOG" &
PID=$!
DAEMON_PIDS+=("$PID")
for _ in $(seq 1200); do
    kill -0 "$PID" 2>/dev/null || break
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] && break
    sleep 0.1
done
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" != 200 ]; then
    fail "daemon starts with --model-dir" "log: $(tail -c 1500 "$LOG")"
    finish
fi
ok "daemon starts with --model-dir"

status_kb() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$PID/status"; }
rss_ready=$(status_kb VmRSS)

# Bounded: 2000 requests or 300 s, whichever comes first.
started=$(date +%s)
$LOAD "$URL/v1/detect" "$IMAGES/bus.jpg" --concurrency 8 --requests 2000 --duration 300 \
    --query variant=fp32 --query variant=int8 --check-field variant >"$WORK/load.json"
seconds=$(($(date +%s) - started))
summary=$(cat "$WORK/load.json")
echo "load: $summary"
got=$(python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j["requests"], j["ok"])' \
    "$WORK/load.json" 2>&1)
if [ "$got" = "2000 2000" ]; then
    ok "2000 requests alternating fp32 and int8 succeed (${seconds} s)"
else
    fail "2000 requests alternating fp32 and int8 succeed" "sent and succeeded: $got; $summary"
fi

sessions=$(grep -c 'worker 0 created a session' "$LOG")
destroyed=$(grep -c 'destroyed its session' "$LOG")
if [ "$destroyed" -eq 0 ] && [ "$sessions" -le 2 ]; then
    ok "worker keeps one session per variant ($sessions created after start)"
else
    fail "worker keeps one session per variant" "$sessions created after start, $destroyed destroyed"
fi

sleep 1
rss=$(status_kb VmRSS)
peak=$(status_kb VmHWM)
echo "VmRSS: $rss_ready kB when ready, $rss kB after the load (peak $peak kB)"
if [ -n "$rss" ] && [ "$rss" -le "$LIMIT_KB" ]; then
    ok "VmRSS after 2000 requests at most 150 MiB ($rss kB)"
else
    fail "VmRSS after 2000 requests at most 150 MiB" "$rss kB (ready: $rss_ready kB, peak $peak kB);" \
        "mappings above 4 MiB (address, kB resident): $(pmap -x "$PID" 2>/dev/null |
            awk '$1 ~ /^[0-9a-f]+$/ && $3 > 4096 {printf "%s %s; ", $1, $3}')"
fi

finish
