# Shared helpers for the integration tests: sourced, not run.
#
# Each test script sources this file, calls start_daemon, makes requests with
# http_request and reports with ok/fail; finish prints "N passed, N failed"
# and sets the exit status. The daemon is always stopped on exit.

set -u

BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
YOLOD=$BUILD/yolod
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECK="python3 $HERE/check_detections.py"
MODEL=$SHARED/models/yolov8n.onnx
IMAGES=$SHARED/images
GOLDEN=$SHARED/golden

if [ ! -f "$MODEL" ]; then
    echo "FATAL: shared data not found: '$MODEL' is missing (set SHARED=DIR)" >&2
    exit 2
fi
if [ ! -x "$YOLOD" ]; then
    echo "FATAL: '$YOLOD' not found or not executable (run make, or set BUILD=DIR)" >&2
    exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/yolod-test.XXXXXX")
PASSED=0
FAILED=0
DAEMON_PIDS=()

cleanup() {
    local pid
    for pid in "${DAEMON_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${DAEMON_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() {
    echo "ok $1"
    PASSED=$((PASSED + 1))
}

# fail NAME [DETAIL...]
fail() {
    local name=$1
    shift
    echo "FAIL $name${1:+: $*}"
    FAILED=$((FAILED + 1))
}

# check NAME COMMAND...: ok if the command succeeds, else FAIL with its output.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$name"
    else
        fail "$name" "$out"
    fi
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# free_port: prints a free loopback TCP port, which the kernel picks. With
# TEST_PORTS=LOW-HIGH (for example 49000-49999) it picks one from that
# range instead, for hosts that allow servers only on some ports.
free_port() {
    python3 - "${TEST_PORTS:-}" <<'EOF'
import random, socket, sys

candidates = [0]
if sys.argv[1]:
    low, high = (int(p) for p in sys.argv[1].split("-"))
    candidates = random.sample(range(low, high + 1), high - low + 1)
for candidate in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", candidate))
    except OSError:
        s.close()
        continue
    print(s.getsockname()[1])
    s.close()
    sys.exit(0)
sys.exit("free_port: no free port in TEST_PORTS=" + sys.argv[1])
EOF
}

# start_daemon NAME [ARGS...]: starts `yolod serve` on a free loopback port
# with the yolov8n model and waits up to 120 s for /readyz. Sets URL (base
# URL), PID and LOG. Exits the script if the daemon does not become ready.
start_daemon() {
    local name=$1
    shift
    start_serve "$name" --model "$MODEL" "$@"
}

# start_serve NAME [ARGS...]: start_daemon without the default model, for
# daemons that load theirs from --model-dir or --config.
start_serve() {
    local name=$1
    shift
    local port
    port=$(free_port)
    LOG=$WORK/$name.log
    URL=http://127.0.0.1:$port
    "$YOLOD" serve --listen "127.0.0.1:$port" "$@" 2>"$LOG" &
    PID=$!
    DAEMON_PIDS+=("$PID")

    local waited=0
    while [ "$waited" -lt 1200 ]; do
        if ! kill -0 "$PID" 2>/dev/null; then
            fail "daemon $name starts" "exited early; log:"
            cat "$LOG"
            finish
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ]; then
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    fail "daemon $name starts" "not ready after 120 s; log:"
    cat "$LOG"
    finish
}

# json_get FILE EXPR: prints a Python expression over the parsed JSON `j` of FILE.
json_get() {
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>&1
}

# rss_kb: resident memory of $PID in kB.
rss_kb() {
    awk '/^VmRSS/ {print $2}' "/proc/$PID/status"
}

# http_request OUTFILE CURL_ARGS...: prints the status code, body in OUTFILE.
http_request() {
    local out=$1
    shift
    curl -s -o "$out" -w '%{http_code}' --max-time 120 "$@"
}

# expect_status NAME WANT OUTFILE CURL_ARGS...: checks the status code.
expect_status() {
    local name=$1 want=$2 out=$3 got
    shift 3
    got=$(http_request "$out" "$@")
    if [ "$got" = "$want" ]; then
        ok "$name"
        return 0
    fi
    fail "$name" "status $got, expected $want; body: $(head -c 400 "$out")"
    return 1
}

# multipart_body OUT FILE PARAMS: writes to OUT a multipart/form-data body,
# boundary XyZ, whose one part is FILE with the Content-Disposition
# parameters PARAMS, as in `multipart_body b.body bus.jpg 'name=image'`.
multipart_body() {
    {
        printf -- '--XyZ\r\nContent-Disposition: form-data; %s\r\n' "$3"
        printf -- 'Content-Type: application/octet-stream\r\n\r\n'
        cat "$2"
        printf -- '\r\n--XyZ--\r\n'
    } >"$1"
}

# expect_error NAME STATUS CODE MESSAGE_WORD CURL_ARGS...: checks an error
# reply: status, JSON error code, and a word the message must contain
# (case-insensitive).
expect_error() {
    local name=$1 status=$2 code=$3 word=$4 out=$WORK/error.json
    shift 4
    if expect_status "$name status" "$status" "$out" "$@"; then
        check "$name body" $CHECK error "$out" --code "$code" --contains "$word"
    fi
}

# expect_continue NAME CONTINUE STATUS OUTFILE CURL_ARGS...: sends the
# request with Expect: 100-continue and checks the final status and whether
# 100 Continue came before it (CONTINUE is yes or no). Without 100 Continue
# curl must not have uploaded the body. The final body goes to OUTFILE.
expect_continue() {
    local name=$1 want=$2 status=$3 out=$4 headers=$WORK/continue.headers got uploaded interim=no
    shift 4
    got=$(curl -s -D "$headers" -o "$out" -w '%{http_code} %{size_upload}' --max-time 120 \
        -H 'Expect: 100-continue' "$@")
    uploaded=${got#* }
    got=${got%% *}
    if grep -q '^HTTP/1.1 100' "$headers"; then
        interim=yes
    fi
    if [ "$got" != "$status" ] || [ "$interim" != "$want" ]; then
        fail "$name" "status $got (expected $status), 100 Continue: $interim (expected $want); body: $(head -c 300 "$out")"
        return 1
    fi
    if [ "$interim" = no ] && [ "$uploaded" != 0 ]; then
        fail "$name" "$uploaded body bytes uploaded without 100 Continue"
        return 1
    fi
    ok "$name"
}
