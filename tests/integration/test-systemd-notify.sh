#!/usr/bin/env bash
# systemd integration: the sd_notify messages `yolod serve` sends to
# $NOTIFY_SOCKET (READY=1, WATCHDOG=1, STOPPING=1, STATUS=), checked with a
# Python socket standing in for systemd, and `systemd-analyze verify` on
# the shipped unit file.
source "$(dirname "$0")/lib.sh"

LISTENER="python3 $HERE/notify_listener.py"

# start_listener ADDRESS OUTFILE: runs notify_listener.py in the background
# and waits up to 10 s for it to bind. Sets LISTENER_PID.
start_listener() {
    local address=$1 out=$2 waited=0
    $LISTENER "$address" "$out" 120 &
    LISTENER_PID=$!
    while [ ! -f "$out" ] && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    [ -f "$out" ] || { fail "listener binds $address"; finish; }
}

# wait_for_message OUTFILE MESSAGE: waits up to 5 s for a datagram equal to MESSAGE.
wait_for_message() {
    local out=$1 message=$2 waited=0
    while [ "$waited" -lt 50 ]; do
        grep -qF "\"$message\"" "$out" && return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    return 1
}

# first_line OUTFILE MESSAGE: line number of the first datagram equal to MESSAGE.
first_line() {
    grep -nF "\"$2\"" "$1" | head -n 1 | cut -d: -f1
}

# stop_daemon NAME: sends SIGTERM to $PID and checks it exits 0 within 30 s.
stop_daemon() {
    local name=$1 waited=0 rc
    kill -TERM "$PID"
    while kill -0 "$PID" 2>/dev/null && [ "$waited" -lt 300 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    wait "$PID"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        ok "$name exits 0 after SIGTERM"
    else
        fail "$name exits 0 after SIGTERM" "exit status $rc; log: $(tail -n 5 "$LOG")"
    fi
}

# --- Path socket with the watchdog on (WATCHDOG_USEC=200000, so a ping every 100 ms).
socket_path=$WORK/notify.sock
messages=$WORK/notify.txt
start_listener "$socket_path" "$messages"
export NOTIFY_SOCKET=$socket_path WATCHDOG_USEC=200000
start_daemon notify
unset NOTIFY_SOCKET WATCHDOG_USEC

if wait_for_message "$messages" READY=1; then
    ok "READY=1 sent once /readyz answers 200"
else
    fail "READY=1 sent once /readyz answers 200" "received: $(cat "$messages")"
fi
check "STATUS names the listen address" grep -qE '"STATUS=listening on 127\.0\.0\.1:[0-9]+, models: yolov8n' "$messages"
ready_count=$(grep -cF '"READY=1"' "$messages")
[ "$ready_count" -eq 1 ] && ok "READY=1 sent once" || fail "READY=1 sent once" "sent $ready_count times"

sleep 1.2
watchdog_count=$(grep -cF '"WATCHDOG=1"' "$messages")
# About 12 pings are due in 1.2 s; 5 leaves room for a loaded machine.
if [ "$watchdog_count" -ge 5 ]; then
    ok "WATCHDOG=1 repeats every 100 ms ($watchdog_count in 1.2 s)"
else
    fail "WATCHDOG=1 repeats every 100 ms" "$watchdog_count pings in 1.2 s, expected at least 5"
fi
if [ "$watchdog_count" -le 20 ]; then
    ok "WATCHDOG=1 not sent faster than every 100 ms"
else
    fail "WATCHDOG=1 not sent faster than every 100 ms" "$watchdog_count pings in 1.2 s"
fi
ready_line=$(first_line "$messages" READY=1)
watchdog_line=$(first_line "$messages" WATCHDOG=1)
if [ -n "$ready_line" ] && [ -n "$watchdog_line" ] && [ "$ready_line" -lt "$watchdog_line" ]; then
    ok "READY=1 precedes the first WATCHDOG=1"
else
    fail "READY=1 precedes the first WATCHDOG=1" "READY=1 at line ${ready_line:-none}, WATCHDOG=1 at ${watchdog_line:-none}"
fi
check "daemon logs no notification error" bash -c "! grep -F NOTIFY_SOCKET '$LOG'"

# SIGUSR1, which log rotation setups send, is logged and ignored.
kill -USR1 "$PID"
for i in $(seq 50); do grep -q "received SIGUSR1" "$LOG" && break; sleep 0.1; done
check "SIGUSR1 logged" grep -q "received SIGUSR1; ignored" "$LOG"
expect_status "serving after SIGUSR1" 200 "$WORK/usr1.json" "$URL/readyz"

stop_daemon "notifying daemon"
if wait_for_message "$messages" STOPPING=1; then
    ok "STOPPING=1 sent after SIGTERM"
else
    fail "STOPPING=1 sent after SIGTERM" "received: $(tail -n 3 "$messages")"
fi
check "STATUS reports the drain" grep -qF '"STATUS=received Terminated, finishing requests in progress"' "$messages"
stopping_line=$(first_line "$messages" STOPPING=1)
if [ -n "$stopping_line" ] && [ "$stopping_line" -gt "$ready_line" ]; then
    ok "STOPPING=1 follows READY=1"
else
    fail "STOPPING=1 follows READY=1" "STOPPING=1 at line ${stopping_line:-none}, READY=1 at $ready_line"
fi
kill "$LISTENER_PID" 2>/dev/null
wait "$LISTENER_PID" 2>/dev/null

# --- Abstract socket, and WATCHDOG_PID naming another process: no pings.
abstract=@yolod-test-$$-$RANDOM
messages=$WORK/notify-abstract.txt
start_listener "$abstract" "$messages"
export NOTIFY_SOCKET=$abstract WATCHDOG_USEC=200000 WATCHDOG_PID=1
start_daemon notify-abstract
unset NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
if wait_for_message "$messages" READY=1; then
    ok "READY=1 sent to an abstract socket"
else
    fail "READY=1 sent to an abstract socket" "received: $(cat "$messages")"
fi
sleep 0.5
watchdog_count=$(grep -cF '"WATCHDOG=1"' "$messages")
[ "$watchdog_count" -eq 0 ] && ok "no WATCHDOG=1 when WATCHDOG_PID is another process" \
    || fail "no WATCHDOG=1 when WATCHDOG_PID is another process" "$watchdog_count pings"
stop_daemon "daemon on an abstract socket"
check "STOPPING=1 sent to an abstract socket" wait_for_message "$messages" STOPPING=1
kill "$LISTENER_PID" 2>/dev/null
wait "$LISTENER_PID" 2>/dev/null

# --- Nobody listening: the daemon logs the failure once and keeps serving.
export NOTIFY_SOCKET=$WORK/nobody.sock WATCHDOG_USEC=100000
start_daemon notify-nobody
unset NOTIFY_SOCKET WATCHDOG_USEC
sleep 0.5
expect_status "serves with nobody on NOTIFY_SOCKET" 200 "$WORK/readyz.json" "$URL/readyz"
failures=$(grep -c "cannot send .* to NOTIFY_SOCKET" "$LOG")
[ "$failures" -eq 1 ] && ok "send failure logged once" \
    || fail "send failure logged once" "logged $failures times; log: $(tail -n 5 "$LOG")"
stop_daemon "daemon with nobody on NOTIFY_SOCKET"

# --- Invalid values are rejected with a warning, not fatal.
export NOTIFY_SOCKET=relative.sock
start_daemon notify-invalid
unset NOTIFY_SOCKET
check "relative NOTIFY_SOCKET logged as invalid" grep -qF "invalid NOTIFY_SOCKET 'relative.sock'" "$LOG"
stop_daemon "daemon with an invalid NOTIFY_SOCKET"

# --- SIGTERM while the models load: the daemon stops at once, without
# loading the rest or sending READY=1. Each of the 12 links is a full load
# (about 0.1 s), so a signal sent after the first load arrives mid-startup.
messages=$WORK/notify-loading.txt
start_listener "$WORK/loading.sock" "$messages"
mkdir "$WORK/many"
model_path=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
for i in $(seq -w 1 12); do
    ln -s "$model_path" "$WORK/many/m$i.onnx"
done
LOG=$WORK/loading.log
loading_port=$(free_port)
NOTIFY_SOCKET=$WORK/loading.sock "$YOLOD" serve --listen "127.0.0.1:$loading_port" \
    --model-dir "$WORK/many" 2>"$LOG" &
PID=$!
DAEMON_PIDS+=("$PID")
waited=0
while ! grep -qs "loaded model" "$LOG" && [ "$waited" -lt 600 ]; do
    sleep 0.05
    waited=$((waited + 1))
done
# The port is open while the models load: /healthz returns 200, /readyz
# and the KServe model readiness 503, and detections get 503 starting.
LOADING_URL=http://127.0.0.1:$loading_port
expect_status "healthz while loading" 200 "$WORK/loading-live.json" "$LOADING_URL/healthz"
expect_status "readyz while loading" 503 "$WORK/loading-ready.json" "$LOADING_URL/readyz"
expect_status "detect while loading" 503 "$WORK/loading-detect.json" --data-binary @"$IMAGES/bus.jpg" "$LOADING_URL/v1/detect"
check "detect while loading says starting" grep -q '"code":"starting"' "$WORK/loading-detect.json"
# m12 loads last, so it is not loaded yet: not ready, not unknown.
expect_status "KServe model ready while loading" 503 "$WORK/loading-model.json" "$LOADING_URL/v2/models/m12/ready"
check "KServe model not ready while loading" grep -q '"ready":false' "$WORK/loading-model.json"
stop_daemon "daemon stopped while loading"
loaded=$(grep -c "loaded model" "$LOG")
if [ "$loaded" -lt 12 ] && grep -qF "received Terminated while loading the models; stopped before serving" "$LOG"; then
    ok "SIGTERM while loading stops early ($loaded of 12 loaded)"
else
    fail "SIGTERM while loading stops early" "$loaded of 12 loaded; log: $(tail -n 3 "$LOG")"
fi
check "no ready line after SIGTERM while loading" bash -c "! grep -q ' yolod ready on ' '$LOG'"
check "listening line while loading" grep -qE " listening on http://127\.0\.0\.1:[0-9]+, loading the models" "$LOG"
check "STOPPING=1 sent after SIGTERM while loading" wait_for_message "$messages" STOPPING=1
check "no READY=1 after SIGTERM while loading" bash -c "! grep -qF '\"READY=1\"' '$messages'"
kill "$LISTENER_PID" 2>/dev/null
wait "$LISTENER_PID" 2>/dev/null

# --- The shipped unit: systemd-analyze verify checks every key and value.
# It also requires ExecStart's binary to exist, so a copy of the unit points
# ExecStart at the built binary. Unknown keys are only warnings (exit 0), so
# any output fails the check too.
if ! command -v systemd-analyze >/dev/null; then
    fail "systemd-analyze available" "not found; scripts/install-deps.sh installs the systemd package"
else
    mkdir -p "$WORK/unit"
    yolod_path=$(cd "$(dirname "$YOLOD")" && pwd)/$(basename "$YOLOD")
    sed "s|^ExecStart=/usr/local/bin/yolod |ExecStart=$yolod_path |" systemd/yolod.service \
        >"$WORK/unit/yolod.service"
    if ! grep -qF "ExecStart=$yolod_path serve --config /etc/yolod/yolod.conf" "$WORK/unit/yolod.service"; then
        fail "unit ExecStart rewritten for verify" "ExecStart in systemd/yolod.service is not /usr/local/bin/yolod serve ..."
    elif out=$(systemd-analyze verify "$WORK/unit/yolod.service" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify yolod.service"
    else
        fail "systemd-analyze verify yolod.service" "$out"
    fi
    for key in Type=notify NotifyAccess=main WatchdogSec=30 DynamicUser=yes ProtectSystem=strict \
               MemoryDenyWriteExecute=yes "CapabilityBoundingSet=$"; do
        check "unit sets ${key%$}" grep -q "^$key" systemd/yolod.service
    done
fi

finish
