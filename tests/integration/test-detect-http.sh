#!/usr/bin/env bash
# POST /v1/detect end to end against the real daemon: golden detections for
# bus.jpg and zidane.jpg (raw body and multipart), parameters, errors,
# body and pixel limits, health endpoints.
source "$(dirname "$0")/lib.sh"

start_daemon main
MAIN_PORT=${URL##*:}
R=$WORK/reply.json

# --- health
expect_status "healthz returns 200" 200 "$R" "$URL/healthz"
check "healthz body" python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"status": "ok"}' "$R"
expect_status "readyz returns 200" 200 "$R" "$URL/readyz"

# --- golden detections
if expect_status "bus raw body" 200 "$R" --data-binary @"$IMAGES/bus.jpg" \
        -H 'Content-Type: image/jpeg' "$URL/v1/detect"; then
    check "bus raw reply shape" $CHECK shape "$R" --model yolov8n
    check "bus raw golden detections" $CHECK golden "$R" "$GOLDEN/bus.detections.json" --size 810x1080
    check "bus raw 4 persons" $CHECK count "$R" --label person --min 4 --max 4
    check "bus raw 1 bus" $CHECK count "$R" --label bus --min 1 --max 1
fi

if expect_status "bus octet-stream body" 200 "$R" --data-binary @"$IMAGES/bus.jpg" \
        -H 'Content-Type: application/octet-stream' "$URL/v1/detect"; then
    check "bus octet-stream golden detections" $CHECK golden "$R" "$GOLDEN/bus.detections.json" --size 810x1080
fi

if expect_status "bus multipart" 200 "$R" -F image=@"$IMAGES/bus.jpg" "$URL/v1/detect"; then
    check "bus multipart golden detections" $CHECK golden "$R" "$GOLDEN/bus.detections.json" --size 810x1080
fi

if expect_status "bus chunked body" 200 "$R" --data-binary @"$IMAGES/bus.jpg" \
        -H 'Transfer-Encoding: chunked' -H 'Content-Type: image/jpeg' "$URL/v1/detect"; then
    check "bus chunked golden detections" $CHECK golden "$R" "$GOLDEN/bus.detections.json" --size 810x1080
fi

# zidane: its 0.2527 person sits at the threshold and may be missing
# (--margin), and its two 0.797 persons may swap order (matching ignores order).
if expect_status "zidane raw body" 200 "$R" --data-binary @"$IMAGES/zidane.jpg" "$URL/v1/detect"; then
    check "zidane reply shape" $CHECK shape "$R"
    check "zidane golden detections" $CHECK golden "$R" "$GOLDEN/zidane.detections.json" --size 1280x720
    check "zidane tie found" $CHECK count "$R" --label tie --min 1 --max 1
fi
if expect_status "zidane multipart" 200 "$R" -F image=@"$IMAGES/zidane.jpg" "$URL/v1/detect"; then
    check "zidane multipart golden detections" $CHECK golden "$R" "$GOLDEN/zidane.detections.json" --size 1280x720
fi

# --- parameters
if expect_status "conf 0.5 accepted" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=0.5"; then
    check "conf 0.5 drops the 0.44 person" $CHECK count "$R" --label person --min 3 --max 3
    check "conf 0.5 all above" $CHECK shape "$R" --min-conf 0.5
fi
if expect_status "max_det 2 accepted" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?max_det=2"; then
    check "max_det 2 keeps two" $CHECK total "$R" --min 2 --max 2
fi
if expect_status "classes by name" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?classes=bus"; then
    check "classes bus only" $CHECK shape "$R" --classes 5
    check "classes bus found" $CHECK count "$R" --label bus --min 1 --max 1
fi
if expect_status "classes by id" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?classes=0,27"; then
    check "classes 0,27 only" $CHECK shape "$R" --classes 0,27
    check "classes 0 keeps 4 persons" $CHECK count "$R" --label person --min 4 --max 4
fi
if expect_status "iou 0.5 accepted" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?iou=0.5"; then
    check "iou 0.5 reply shape" $CHECK shape "$R"
fi
if expect_status "multipart fields as parameters" 200 "$R" -F image=@"$IMAGES/bus.jpg" \
        -F conf=0.5 -F classes=person "$URL/v1/detect"; then
    check "multipart conf and classes" $CHECK count "$R" --label person --min 3 --max 3
    check "multipart classes person only" $CHECK shape "$R" --classes 0 --min-conf 0.5
fi
# --- Expect: 100-continue. A request that its headers show to be invalid
# gets its error instead of 100 Continue, so the body is never uploaded.
C=$WORK/continue.json
if expect_continue "100-continue bad conf gets 400 first" no 400 "$C" \
        -H 'Content-Type: image/jpeg' --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=5"; then
    check "100-continue bad conf body" $CHECK error "$C" --code bad_parameter --contains "conf '5'"
fi
if expect_continue "100-continue bad classes gets 400 first" no 400 "$C" \
        --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?classes=bus,nope"; then
    check "100-continue bad classes body" $CHECK error "$C" --code bad_parameter --contains "unknown class 'nope'"
fi
if expect_continue "100-continue unknown model gets 404 first" no 404 "$C" \
        --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?model=nope"; then
    check "100-continue unknown model body" $CHECK error "$C" --code model_not_found --contains "nope"
fi
if expect_continue "100-continue repeated conf gets 400 first" no 400 "$C" \
        -F image=@"$IMAGES/bus.jpg" "$URL/v1/detect?conf=0.5&conf=0.6"; then
    check "100-continue repeated conf body" $CHECK error "$C" --code bad_parameter --contains "2 times"
fi
if expect_continue "100-continue valid request gets 100 and 200" yes 200 "$C" \
        -H 'Content-Type: image/jpeg' --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=0.5"; then
    check "100-continue valid request detections" $CHECK count "$C" --label person --min 3 --max 3
fi
# Routes that read no body reject a declared body over 64 KiB before it is
# sent, and drop a small one.
if expect_continue "100-continue big body on reload gets 413" no 413 "$C" \
        --data-binary @"$IMAGES/bus.jpg" "$URL/v1/models/yolov8n/reload"; then
    check "big body on reload body" $CHECK error "$C" --code body_too_large --contains "which reads no body"
fi
expect_status "small body on reload is dropped" 200 "$C" --data-binary '{}' -X POST "$URL/v1/models/yolov8n/reload"
expect_error "load without a model directory" 404 model_not_found "without a model directory (--model-dir)" \
    -X POST "$URL/v1/models/nope/load"
# A multipart field replaces the query argument of its name, so an invalid
# query value is checked only once the body shows no field replaces it.
if expect_continue "100-continue multipart conf replaces query" yes 200 "$C" \
        -F image=@"$IMAGES/bus.jpg" -F conf=0.5 "$URL/v1/detect?conf=5"; then
    check "multipart conf replaces query conf" $CHECK count "$C" --label person --min 3 --max 3
fi
expect_continue "100-continue multipart bad query conf gets 400" yes 400 "$C" \
    -F image=@"$IMAGES/bus.jpg" "$URL/v1/detect?conf=5"
expect_error "Expect 200-ok gets 417" 417 expectation_failed "200-ok" \
    -H 'Expect: 200-ok' --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
expect_error "Expect 200-ok on healthz gets 417" 417 expectation_failed "200-ok" \
    -H 'Expect: 200-ok' "$URL/healthz"
expect_status "Expect 100-continue on healthz gets 200" 200 "$R" -H 'Expect: 100-continue' "$URL/healthz"

# --- multipart headers that libmicrohttpd's post processor misread: a
# parameter after the boundary (Apache HttpClient sends charset), a
# parameter name not in lowercase, and an unquoted part name.
multipart_body "$WORK/quoted.body" "$IMAGES/bus.jpg" 'name="image"; filename="bus.jpg"'
multipart_body "$WORK/unquoted.body" "$IMAGES/bus.jpg" 'name=image; filename=bus.jpg'
for content_type in 'multipart/form-data; boundary=XyZ; charset=utf-8' \
        'multipart/form-data; boundary="XyZ"; charset=utf-8' \
        'multipart/form-data; charset=utf-8; boundary=XyZ' \
        'multipart/form-data; Boundary=XyZ' 'Multipart/Form-Data; BOUNDARY="XyZ"'; do
    if expect_status "multipart '$content_type'" 200 "$R" -H "Content-Type: $content_type" \
            --data-binary @"$WORK/quoted.body" "$URL/v1/detect"; then
        check "multipart '$content_type' golden detections" $CHECK golden "$R" \
            "$GOLDEN/bus.detections.json" --size 810x1080
    fi
done
if expect_status "multipart unquoted name=image" 200 "$R" \
        -H 'Content-Type: multipart/form-data; boundary=XyZ' --data-binary @"$WORK/unquoted.body" \
        "$URL/v1/detect"; then
    check "multipart unquoted name golden detections" $CHECK golden "$R" \
        "$GOLDEN/bus.detections.json" --size 810x1080
fi
{
    printf -- '--XyZ\r\nContent-Disposition: form-data; name=classes\r\n\r\nbus\r\n'
    cat "$WORK/unquoted.body"
} >"$WORK/unquoted-classes.body"
if expect_status "multipart unquoted name=classes" 200 "$R" \
        -H 'Content-Type: multipart/form-data; boundary=XyZ; charset=utf-8' \
        --data-binary @"$WORK/unquoted-classes.body" "$URL/v1/detect"; then
    check "multipart unquoted classes bus only" $CHECK shape "$R" --classes 5
    check "multipart unquoted classes 1 bus" $CHECK count "$R" --label bus --min 1 --max 1
fi

if expect_status "model by name" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?model=yolov8n"; then
    check "model by name reply" $CHECK shape "$R" --model yolov8n
fi

expect_error "conf above 1" 400 bad_parameter "conf" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=1.5"
check "conf above 1 names value" $CHECK error "$WORK/error.json" --code bad_parameter --contains 1.5
if expect_status "conf too small for a double is 0" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=1e-400"; then
    check "conf 1e-400 keeps low-confidence detections" $CHECK total "$R" --min 50
fi
expect_status "repeated parameter of the other route ignored" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?min_confidence=0.1&min_confidence=x"
expect_status "repeated DeepStack parameter in a form ignored" 200 "$R" -F image=@"$IMAGES/bus.jpg" -F min_confidence=1 -F min_confidence=2 "$URL/v1/detect"
expect_status "repeated native conf on DeepStack ignored" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/vision/detection?conf=1&conf=2"
expect_error "conf huge exponent" 400 bad_parameter "1e400" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=1e400"
expect_error "conf not a number" 400 bad_parameter "abc" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=abc"
expect_error "iou negative" 400 bad_parameter "iou" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?iou=-0.1"
expect_error "max_det zero" 400 bad_parameter "max_det" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?max_det=0"
expect_error "max_det above 300" 400 bad_parameter "301" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?max_det=301"
expect_error "classes unknown name" 400 bad_parameter "zebra2" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?classes=person,zebra2"
expect_error "classes id out of range" 400 bad_parameter "80" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?classes=80"
expect_error "multipart bad conf" 400 bad_parameter "conf" -F image=@"$IMAGES/bus.jpg" -F conf=2 "$URL/v1/detect"
expect_error "unknown model" 404 model_not_found "nosuchmodel" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?model=nosuchmodel"

# --- routes and methods
expect_error "unknown route" 404 not_found "/v2/nothing" "$URL/v2/nothing"
expect_error "GET on detect" 405 method_not_allowed "GET" "$URL/v1/detect"
allow=$(curl -s -o /dev/null -D - "$URL/v1/detect" | tr -d '\r' | awk -F': ' 'tolower($1) == "allow" {print $2}')
if [ "$allow" = "POST" ]; then ok "405 has Allow: POST"; else fail "405 has Allow: POST" "got '$allow'"; fi
expect_error "POST on healthz" 405 method_not_allowed "POST" -X POST "$URL/healthz"
# 20 MB of a chunked body sent to /healthz, and the memory measured before its end.
rss_growth=$(python3 - "${URL##*:}" "$PID" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
chunk = b"%x\r\n" % 1000000 + b"\0" * 1000000 + b"\r\n"
for _ in range(20):
    s.sendall(chunk)
time.sleep(0.5)
print(rss() - before)
s.close()
PY
)
if [ -n "$rss_growth" ] && [ "$rss_growth" -lt 8000 ]; then
    ok "a body on a route without one is not buffered"
else
    fail "a body on a route without one is not buffered" "RSS grew by ${rss_growth:-?} kB"
fi
expect_error "empty body" 400 empty_body "empty" -X POST -H 'Content-Type: image/jpeg' "$URL/v1/detect"
expect_error "multipart without image" 400 bad_request "image" -F picture=@"$IMAGES/bus.jpg" "$URL/v1/detect"
expect_error "text body" 415 unsupported_media_type "PNG" --data-binary 'hello, not an image' "$URL/v1/detect"

# --- limits: 300 KiB body, 900000 pixels (zidane is 921600, 1x1 is 1), one queue slot
# (--max-decodes 8 so that every 503 below comes from the queue, not the decode slots)
start_daemon limits --max-body-bytes 300K --max-pixels 900000 --queue-size 1 --workers 1 --max-decodes 8
expect_status "limits daemon accepts small image" 200 "$R" --data-binary @"$IMAGES/odd/bus_1x1.jpg" "$URL/v1/detect"
expect_error "body over limit" 413 body_too_large "max_body_bytes" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
expect_error "multipart body over limit" 413 body_too_large "max_body_bytes" -F image=@"$IMAGES/bus.jpg" "$URL/v1/detect"
expect_error "chunked body over limit" 413 body_too_large "max_body_bytes" --data-binary @"$IMAGES/bus.jpg" \
    -H 'Transfer-Encoding: chunked' "$URL/v1/detect"
expect_error "pixels over limit" 413 image_too_large "900000" --data-binary @"$IMAGES/zidane.jpg" "$URL/v1/detect"
expect_status "limits daemon still ready" 200 "$R" "$URL/readyz"

# Six requests at once on one worker with one queue slot: one runs, one
# waits, the rest get 503 with Retry-After (inference takes far longer than
# starting six curl processes).
curl_pids=()
for i in 1 2 3 4 5 6; do
    curl -s -D "$WORK/queue-$i.headers" -o "$WORK/queue-$i.json" --max-time 60 \
        --data-binary @"$IMAGES/odd/bus_1x1.jpg" "$URL/v1/detect" &
    curl_pids+=($!)
done
wait "${curl_pids[@]}"
ok_count=$(grep -l '^HTTP/1.1 200' "$WORK"/queue-*.headers | wc -l)
busy_count=$(grep -l '^HTTP/1.1 503' "$WORK"/queue-*.headers | wc -l)
if [ "$ok_count" -ge 1 ] && [ "$busy_count" -ge 1 ] && [ $((ok_count + busy_count)) -eq 6 ]; then
    ok "full queue gives 503"
else
    fail "full queue gives 503" "$ok_count replies 200, $busy_count replies 503 of 6"
fi
busy=$(grep -l '^HTTP/1.1 503' "$WORK"/queue-*.headers | head -n 1)
if [ -n "$busy" ] && grep -qi '^Retry-After: 1' "$busy"; then ok "503 has Retry-After"; else fail "503 has Retry-After" "${busy:-no 503 reply}"; fi
if [ -n "$busy" ]; then
    check "503 body" $CHECK error "${busy%.headers}.json" --code queue_full --contains retry
fi
if grep -q "error.*queue slots are busy" "$LOG"; then
    fail "full queue logs no error line" "$(grep 'queue slots are busy' "$LOG" | head -2)"
else
    ok "full queue logs no error line"
fi

# --- startup errors
port=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$port" &
blocker=$!
sleep 0.3
out=$("$YOLOD" serve --model "$MODEL" --listen "127.0.0.1:$port" 2>&1)
rc=$?
kill "$blocker" 2>/dev/null
wait "$blocker" 2>/dev/null
if [ "$rc" -ne 0 ] && grep -q "Address already in use" <<<"$out"; then
    ok "port in use exits non-zero"
else
    fail "port in use exits non-zero" "exit $rc: $out"
fi
grep -q "choose another address with --listen" <<<"$out" && ok "port in use says what to do" || fail "port in use says what to do" "$out"
grep -q "loaded model" <<<"$out" && fail "port in use fails before loading the model" "$out" || ok "port in use fails before loading the model"
out=$("$YOLOD" serve --model "$MODEL" --listen "127.0.0.1:$(free_port)" --workers 256 --threads 1024 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && grep -q "256 x 1024 = 262144 inference threads, more than 1024" <<<"$out"; then
    ok "too many inference threads rejected"
else
    fail "too many inference threads rejected" "exit $rc: $out"
fi
out=$("$YOLOD" serve --model "$MODEL" --listen "127.0.0.1:$(free_port)" --max-buffered-bytes 1M 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && grep -q "max_buffered_bytes (1048576) is below max_body_bytes (33554432)" <<<"$out"; then
    ok "buffer budget below the body limit rejected"
else
    fail "buffer budget below the body limit rejected" "exit $rc: $out"
fi
out=$("$YOLOD" serve --model "$WORK/missing.onnx" --listen "127.0.0.1:$(free_port)" 2>&1)
rc=$?
if [ "$rc" -ne 0 ] && grep -q "missing.onnx" <<<"$out"; then
    ok "missing model exits non-zero"
else
    fail "missing model exits non-zero" "exit $rc: $out"
fi

# --- SIGTERM: requests in progress complete, then the daemon exits 0
main_url=http://127.0.0.1:${MAIN_PORT}
curl_pids=()
for i in 1 2; do
    curl -s -o "$WORK/drain-$i.json" -w '%{http_code}' --max-time 60 \
        --data-binary @"$IMAGES/bus.jpg" "$main_url/v1/detect" >"$WORK/drain-$i.status" &
    curl_pids+=($!)
done
sleep 0.2
kill -TERM "${DAEMON_PIDS[0]}"
wait "${DAEMON_PIDS[0]}"
rc=$?
wait "${curl_pids[@]}"
if [ "$rc" -eq 0 ]; then ok "SIGTERM exits 0"; else fail "SIGTERM exits 0" "exit $rc"; fi
for i in 1 2; do
    status=$(cat "$WORK/drain-$i.status")
    if [ "$status" = 200 ]; then ok "request $i in progress at SIGTERM completes"; else fail "request $i in progress at SIGTERM completes" "status $status"; fi
done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$main_url/healthz")
if [ "$code" = 000 ]; then ok "stopped daemon refuses connections"; else fail "stopped daemon refuses connections" "status $code"; fi

# --- the same --model twice, spelled two ways, is loaded once
start_daemon twice --model "$(dirname "$MODEL")/../models/$(basename "$MODEL")"
grep -q "is given twice; loading it once" "$LOG" && ok "repeated --model logged" || fail "repeated --model logged" "$(head -5 "$LOG")"
expect_status "models with a repeated --model" 200 "$R" "$URL/v1/models"
got=$(json_get "$R" '[(m["name"], [v["version"] for v in m["variants"]]) for m in j["models"]]')
[ "$got" = "[('yolov8n', [1])]" ] && ok "repeated --model is version 1" || fail "repeated --model is version 1" "$got"
[ "$(cat "/proc/$PID/comm")" = yolod ] && ok "process is named yolod for pgrep" || fail "process is named yolod for pgrep" "$(cat "/proc/$PID/comm")"

# --- max_buffered_bytes: a half-sent body of Content-Length 960000 takes
# 960000 bytes of the 1100 KiB budget, so bus.jpg (487438 bytes) gets 503
# buffers_full. Once the first connection closes, the same request
# succeeds. A body of Content-Length 600000 is charged 600000 bytes, not
# its buffer's next power of 2 (1 MiB), so bus.jpg fits beside it.
start_daemon budget --max-buffered-bytes 1100K --max-body-bytes 1M
# hold_body LENGTH SENT READY: sends SENT bytes of a body of Content-Length
# LENGTH, keeps the connection open for 3 s, and creates READY once sent.
hold_body() {
    rm -f "$3"
    python3 - "${URL##*:}" "$1" "$2" "$3" <<'PY' &
import socket, sys, time
length, sent = int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length + b"x" * sent)
time.sleep(0.5)
open(sys.argv[4], "w").close()
time.sleep(3)
s.close()
PY
    holder=$!
    for i in $(seq 50); do [ -e "$3" ] && break; sleep 0.1; done
}
hold_body 960000 900000 "$WORK/budget-holder.ready"
expect_error "body over the buffer budget" 503 buffers_full "max_buffered_bytes" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
wait "$holder"
expect_status "body after the budget frees up" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
hold_body 600000 599999 "$WORK/budget-holder.ready"
expect_status "budget charges the Content-Length" 200 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
wait "$holder"

# --- A client that shuts down its sending side after the request (nc -N,
# socat) still gets its reply.
python3 - "${URL##*:}" "$IMAGES/bus.jpg" >"$WORK/half-close.txt" 2>&1 <<'PY'
import socket, sys
port, image = int(sys.argv[1]), open(sys.argv[2], "rb").read()
s = socket.create_connection(("127.0.0.1", port), timeout=60)
s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
          % len(image) + image)
s.shutdown(socket.SHUT_WR)
reply = b""
while chunk := s.recv(65536):
    reply += chunk
print(reply.split(b"\r\n")[0].decode())
PY
grep -q '^HTTP/1.1 200 OK$' "$WORK/half-close.txt" && ok "half-closed client gets its reply" || fail "half-closed client gets its reply" "$(cat "$WORK/half-close.txt")"

# --- SIGTERM drain: a request on a kept-alive connection gets 503
# shutting_down with Connection: close, a body that was arriving is served,
# and a new connection fails at once.
# A half-sent body keeps the drain going until the 3 s request timeout.
start_daemon drain --request-timeout 3 --workers 1 --threads 1
DRAIN_PORT=${URL##*:}
python3 - "$DRAIN_PORT" "$PID" "$IMAGES/bus.jpg" >"$WORK/drain.txt" 2>&1 <<'PY'
import http.client, os, signal, socket, sys, time
port, pid, image = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
keepalive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
keepalive.request("POST", "/v1/detect", body=image)
first = keepalive.getresponse(); first.read()
print("first", first.status)
admin = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
admin.request("GET", "/healthz")
admin.getresponse().read()
slow = socket.create_connection(("127.0.0.1", port))
slow.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
upload = socket.create_connection(("127.0.0.1", port), timeout=10)
upload.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(image)
               + image[:1000])
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
time.sleep(0.3)
keepalive.request("POST", "/v1/detect", body=image)
second = keepalive.getresponse()
body = second.read().decode()
print("second", second.status, second.getheader("Connection"), "shutting_down" in body)
admin.request("POST", "/v1/models/yolov8n/reload")
reload = admin.getresponse()
print("reload", reload.status, "shutting_down" in reload.read().decode())
upload.sendall(image[1000:])
reply = b""
while b"\r\n\r\n" not in reply:
    chunk = upload.recv(4096)
    if not chunk:
        break
    reply += chunk
print("upload", reply.split(b"\r\n")[0].decode())
start = time.monotonic()
try:
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    print("new connection accepted")
except ConnectionRefusedError:
    print("new connection refused after %.1f s" % (time.monotonic() - start))
PY
wait "$PID"
rc=$?
grep -q '^first 200$' "$WORK/drain.txt" && ok "drain: first request on the connection gets 200" || fail "drain: first request on the connection gets 200" "$(cat "$WORK/drain.txt")"
grep -q '^second 503 close True$' "$WORK/drain.txt" && ok "drain: kept-alive request gets 503 and Connection: close" || fail "drain: kept-alive request gets 503 and Connection: close" "$(cat "$WORK/drain.txt")"
grep -q '^upload HTTP/1.1 200 OK$' "$WORK/drain.txt" && ok "drain: a body arriving at SIGTERM is served" || fail "drain: a body arriving at SIGTERM is served" "$(cat "$WORK/drain.txt")"
grep -q '^reload 503 True$' "$WORK/drain.txt" && ok "drain: a model reload gets 503" || fail "drain: a model reload gets 503" "$(cat "$WORK/drain.txt")"
grep -q '^new connection refused after 0\.[0-9] s$' "$WORK/drain.txt" && ok "drain: a new connection is refused at once" || fail "drain: a new connection is refused at once" "$(cat "$WORK/drain.txt")"
[ "$rc" -eq 0 ] && ok "drain: daemon exits 0" || fail "drain: daemon exits 0" "exit $rc"

# --- Requests still queued or waiting for a decode slot when the drain's
# request_timeout ends get 503 shutting_down, not a closed connection.
# yolov8s on one thread takes longer per image than the 1 s drain allows
# for 24 of them.
start_serve backlog --model "$SHARED/models/yolov8s-random.onnx" --threads 1 --request-timeout 1 \
    --queue-size 24 --max-decodes 4
clients=()
for i in $(seq 24); do
    curl -s -o "$WORK/backlog-$i.json" -w '%{http_code}\n' --max-time 30 \
        --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect" >"$WORK/backlog-$i.code" &
    clients+=($!)
done
# SIGTERM once the daemon has every request, in flight or done, so that a
# loaded machine cannot leave one still connecting. The scrape counts itself.
for _ in $(seq 300); do
    seen=$(curl -s "$URL/metrics" | awk '$1 == "yolod_requests_in_flight" {n += $2 - 1}
        /^yolod_http_requests_total\{route="\/v1\/detect"/ {n += $2} END {print n + 0}')
    [ "$seen" -ge 24 ] && break
    sleep 0.1
done
sleep 0.3
kill -TERM "$PID"
wait "$PID"
wait "${clients[@]}"
codes=$(cat "$WORK"/backlog-*.code | sort | uniq -c | tr -s ' \n' ' ')
if ! grep -qv '^\(200\|503\)$' "$WORK"/backlog-*.code; then
    ok "drain: every queued request gets a reply ($codes)"
else
    fail "drain: every queued request gets a reply" "$codes"
fi
busy=$(grep -l '^503$' "$WORK"/backlog-*.code | head -n 1)
if [ -n "$busy" ]; then
    check "drain: a cut-off request gets shutting_down" $CHECK error "${busy%.code}.json" --code shutting_down \
        --contains "shutting down"
else
    fail "drain: a cut-off request gets shutting_down" "every request finished within the drain: $codes"
fi

finish
