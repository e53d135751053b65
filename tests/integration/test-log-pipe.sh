#!/usr/bin/env bash
# serve keeps running when its log output breaks: a pipe whose reader has
# exited, or stderr closed at start.
. "$(dirname "$0")/lib.sh"

# wait_ready URL PID: waits up to 120 s for /readyz; fails if PID exits.
wait_ready() {
    local i
    for i in $(seq 1200); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# --- The log pipe's reader exits after the first line; SIGHUP logs more.
port=$(free_port)
URL=http://127.0.0.1:$port
"$YOLOD" serve --model "$MODEL" --listen "127.0.0.1:$port" 2> >(head -n 1 >/dev/null) &
PID=$!
DAEMON_PIDS+=("$PID")
if wait_ready "$URL" "$PID"; then
    ok "daemon starts with a log pipe whose reader exits"
else
    fail "daemon starts with a log pipe whose reader exits" "exited or not ready"
fi
# Each SIGHUP reloads the models and logs lines into the broken pipe.
kill -HUP "$PID"
sleep 1
kill -HUP "$PID"
sleep 1
if kill -0 "$PID" 2>/dev/null; then
    ok "daemon survives SIGHUP with a broken log pipe"
else
    wait "$PID"
    fail "daemon survives SIGHUP with a broken log pipe" "exit status $?"
fi
expect_status "serving after the log pipe broke" 200 "$WORK/pipe.json" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"

# --- stderr closed at start: fd 2 must not become a socket.
port=$(free_port)
URL=http://127.0.0.1:$port
"$YOLOD" serve --model "$MODEL" --listen "127.0.0.1:$port" 2>&- &
PID=$!
DAEMON_PIDS+=("$PID")
if wait_ready "$URL" "$PID"; then
    ok "daemon starts with stderr closed"
else
    fail "daemon starts with stderr closed" "exited or not ready"
fi
check "closed stderr reopened on /dev/null" test "$(readlink "/proc/$PID/fd/2")" = /dev/null
kill -HUP "$PID"
sleep 1
expect_status "serving with stderr closed" 200 "$WORK/closed.json" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"

finish
