#!/usr/bin/env bash
# Misbehaving clients against the real daemon: malformed multipart parts,
# inexact methods, repeated or over-long parameters, bytes that are not
# UTF-8, forged log lines, NUL in paths, ambiguous request framing, slow
# bodies and headers, too many connections from one address and concurrent
# decodes.
# Every error reply must be strict UTF-8 JSON, and the daemon must survive.
source "$(dirname "$0")/lib.sh"

CLIENT="python3 $HERE/hostile_client.py"
TINY=$IMAGES/odd/bus_1x1.jpg

start_daemon hostile --request-timeout 2 --max-connections-per-ip 4
PORT=${URL##*:}
HOSTILE_LOG=$LOG
R=$WORK/reply.json

# json_error NAME STATUS CODE [WORD...] -- CURL_ARGS...: checks the status,
# then that the body is strict UTF-8 JSON with the error code and words.
json_error() {
    local name=$1 status=$2 code=$3 words=() got
    shift 3
    while [ "$1" != "--" ]; do
        words+=(--contains "$1")
        shift
    done
    shift
    got=$(http_request "$R" "$@")
    if [ "$got" != "$status" ]; then
        fail "$name" "status $got, expected $status; body: $(head -c 300 "$R")"
        return 1
    fi
    check "$name" $CLIENT json-error "$R" --code "$code" "${words[@]}"
}

# raw_error NAME STATUS CODE WORD REQUEST: sends REQUEST (printf format) as
# raw bytes and checks the reply like json_error.
raw_error() {
    local name=$1 status=$2 code=$3 word=$4 got
    got=$(printf "$5" | $CLIENT raw "$PORT" --out "$R")
    if [ "$got" != "$status" ]; then
        fail "$name" "status $got, expected $status; body: $(head -c 300 "$R")"
        return 1
    fi
    check "$name" $CLIENT json-error "$R" --code "$code" --contains "$word"
}

alive() {
    expect_status "daemon alive after $1" 200 "$WORK/health.json" "$URL/healthz"
}

MP='Content-Type: multipart/form-data; boundary=XB'

# --- multipart parts without a name
json_error "part with empty headers" 400 bad_request "no name" -- \
    -H "$MP" --data-binary $'--XB\r\n\r\n\r\n--XB--\r\n' "$URL/v1/detect"
json_error "part with only Content-Type" 400 bad_request "no name" -- \
    -H "$MP" --data-binary $'--XB\r\nContent-Type: image/jpeg\r\n\r\nx\r\n--XB--\r\n' "$URL/v1/detect"
json_error "part with filename only" 400 bad_request "no name" -- \
    -H "$MP" --data-binary $'--XB\r\nContent-Disposition: form-data; filename="a.jpg"\r\n\r\nx\r\n--XB--\r\n' "$URL/v1/detect"
# An unquoted name is valid: the part "x" is the image, which is not JPEG or PNG.
json_error "part with unquoted name is the image" 415 unsupported_media_type "JPEG" -- \
    -H "$MP" --data-binary $'--XB\r\nContent-Disposition: form-data; name=image\r\n\r\nx\r\n--XB--\r\n' "$URL/v1/detect"
alive "unnamed parts"

# --- malformed multipart bodies and boundaries
json_error "multipart without closing delimiter" 400 bad_request "closing boundary line '--XB--'" -- \
    -H "$MP" --data-binary @"$TINY" "$URL/v1/detect"
{ printf -- '--XB\r\nContent-Disposition: form-data; name="image"\r\n\r\n'; cat "$TINY"; } >"$WORK/open.body"
json_error "multipart image without closing delimiter" 400 bad_request "closing boundary" -- \
    -H "$MP" --data-binary @"$WORK/open.body" "$URL/v1/detect"
json_error "multipart with bare LF lines" 400 bad_request "CRLF" -- \
    -H "$MP" --data-binary $'--XB\nContent-Disposition: form-data; name=image\n\nx\n--XB--\n' "$URL/v1/detect"
json_error "multipart Content-Disposition attachment" 400 bad_request "form-data" -- \
    -H "$MP" --data-binary $'--XB\r\nContent-Disposition: attachment; name=image\r\n\r\nx\r\n--XB--\r\n' "$URL/v1/detect"
json_error "multipart header without colon" 400 bad_request "malformed part header" -- \
    -H "$MP" --data-binary $'--XB\r\nContent-Disposition form-data\r\n\r\nx\r\n--XB--\r\n' "$URL/v1/detect"
long_header=$(head -c 5000 /dev/zero | tr '\0' a)
json_error "multipart header line over 4096 bytes" 400 bad_request "4096" -- \
    -H "$MP" --data-binary $'--XB\r\nX-Long: '"$long_header"$'\r\n\r\nx\r\n--XB--\r\n' "$URL/v1/detect"
python3 -c '
import sys
header = b"X-Padding: " + b"p" * 1000 + b"\r\n"
sys.stdout.buffer.write(b"--XB\r\n" + header * 1000 + b"\r\nx\r\n--XB--\r\n")' >"$WORK/headers.body"
rss_before=$(rss_kb)
json_error "multipart header block over 16384 bytes" 400 bad_request "16384" -- \
    -H "$MP" --data-binary @"$WORK/headers.body" "$URL/v1/detect"
rss_growth=$(( $(rss_kb) - rss_before ))
if [ "$rss_growth" -lt 8000 ]; then
    ok "1 MB of part headers is not buffered"
else
    fail "1 MB of part headers is not buffered" "RSS grew by $rss_growth kB"
fi
for value in 'boundary=' 'boundary=""' 'charset=utf-8' 'boundary=a#b' 'boundary="XB' \
        'boundary=XB; boundary=XB' "boundary=$(head -c 71 /dev/zero | tr '\0' b)"; do
    json_error "multipart Content-Type '$value'" 400 bad_request "boundary" -- \
        -H "Content-Type: multipart/form-data; $value" --data-binary @"$TINY" "$URL/v1/detect"
done
expect_status "multipart boundary of 70 characters" 200 "$R" \
    -H "Content-Type: multipart/form-data; boundary=$(head -c 70 /dev/zero | tr '\0' b)" \
    --data-binary @<(printf -- '--%s\r\nContent-Disposition: form-data; name=image\r\n\r\n' \
        "$(head -c 70 /dev/zero | tr '\0' b)"; cat "$TINY"; printf -- '\r\n--%s--\r\n' \
        "$(head -c 70 /dev/zero | tr '\0' b)") "$URL/v1/detect"
alive "malformed multipart bodies"

# --- methods compare exactly, not as substrings of the Allow list
json_error "method OST on detect" 405 method_not_allowed "OST" -- -X OST "$URL/v1/detect"
json_error "method T on detect" 405 method_not_allowed "method T " -- -X T "$URL/v1/detect"
json_error "method ET on healthz" 405 method_not_allowed "method ET " -- -X ET "$URL/healthz"
json_error "method GETX on healthz" 405 method_not_allowed "GETX" -- -X GETX "$URL/healthz"
expect_status "method HEAD on healthz" 200 "$R" -I "$URL/healthz"

# --- multipart parameter fields: over-long, repeated, with NUL
long_conf="0.5$(printf '0%.0s' $(seq 1 1100))x"
json_error "long multipart conf" 400 bad_parameter "conf" -- \
    -F image=@"$TINY" -F "conf=$long_conf" "$URL/v1/detect"
huge_field=$(head -c 5000 /dev/zero | tr '\0' 0)
json_error "multipart field over 4096 bytes" 400 bad_parameter "'conf'" "4096" -- \
    -F image=@"$TINY" -F "conf=$huge_field" "$URL/v1/detect"
long_classes="$(printf '0,%.0s' $(seq 1 600))555"
json_error "long multipart classes names bad class" 400 bad_parameter "unknown class '555'" -- \
    -F image=@"$TINY" -F "classes=$long_classes" "$URL/v1/detect"
check "long classes echo capped" $CLIENT json-error "$R" --code bad_parameter --contains "..." --max-length 300
json_error "repeated multipart conf" 400 bad_parameter "'conf'" "once" -- \
    -F image=@"$TINY" -F conf=0.5 -F conf=0.6 "$URL/v1/detect"
printf -- '--XB\r\nContent-Disposition: form-data; name="conf"\r\n\r\n0.5\0garbage\r\n' >"$WORK/nul.body"
printf -- '--XB\r\nContent-Disposition: form-data; name="image"\r\n\r\n' >>"$WORK/nul.body"
cat "$TINY" >>"$WORK/nul.body"
printf -- '\r\n--XB--\r\n' >>"$WORK/nul.body"
json_error "multipart conf with NUL" 400 bad_parameter "NUL" -- \
    -H "$MP" --data-binary @"$WORK/nul.body" "$URL/v1/detect"
expect_status "multipart conf and classes still work" 200 "$R" \
    -F image=@"$TINY" -F conf=0.5 -F classes=person,bus "$URL/v1/detect"

# --- query parameters: repeated, no value, strict numbers
json_error "repeated query conf" 400 bad_parameter "'conf'" "2 times" -- \
    --data-binary @"$TINY" "$URL/v1/detect?conf=0.5&conf=0.6"
json_error "query conf without value" 400 bad_parameter "conf" -- \
    --data-binary @"$TINY" "$URL/v1/detect?conf"
for value in '%200.5' '0.5%20' '%2B0.5' '0x0.8p0' 'inf' 'nan' '-0' '0.5.1' '1e' '.' ; do
    json_error "conf '$value' rejected" 400 bad_parameter "conf" -- \
        --data-binary @"$TINY" "$URL/v1/detect?conf=$value"
done
for value in '0.5' '.5' '1.' '5e-1' '1E0' '0'; do
    expect_status "conf '$value' accepted" 200 "$R" --data-binary @"$TINY" "$URL/v1/detect?conf=$value"
done
json_error "max_det with plus" 400 bad_parameter "max_det" -- --data-binary @"$TINY" "$URL/v1/detect?max_det=%2B5"
json_error "max_det with space" 400 bad_parameter "max_det" -- --data-binary @"$TINY" "$URL/v1/detect?max_det=%205"
json_error "class id with plus" 400 bad_parameter "'+5'" -- --data-binary @"$TINY" "$URL/v1/detect?classes=%2B5"
json_error "empty class in list" 400 bad_parameter "empty class" -- --data-binary @"$TINY" "$URL/v1/detect?classes=person,,bus"

# --- NUL after decoding: kept as %00 so it cannot cut the path or a value
json_error "healthz with NUL" 404 not_found "%00" -- "$URL/healthz%00abc"
json_error "conf with NUL" 400 bad_parameter "%00" -- --data-binary @"$TINY" "$URL/v1/detect?conf=0.5%00x"

# --- error bodies are valid UTF-8 however the request is encoded
json_error "model not UTF-8" 404 model_not_found "unknown model" -- \
    --data-binary @"$TINY" "$URL/v1/detect?model=%FF%FE"
json_error "variant with control bytes" 404 variant_not_found "unknown variant" -- \
    --data-binary @"$TINY" "$URL/v1/detect?variant=a%1B%5B31mb"
if grep -q $'\x1b' "$R"; then fail "variant escape byte removed" "$(head -c 200 "$R")"; else ok "variant escape byte removed"; fi
snowmen=$(printf '%%E2%%98%%83%.0s' $(seq 1 400))
json_error "long UTF-8 path" 404 not_found "/a☃" -- "$URL/a$snowmen"
check "long UTF-8 path echo capped" $CLIENT json-error "$R" --code not_found --contains "..." --max-length 200
json_error "path cut inside a character" 404 not_found "no route" -- "$URL/a%E2%98"
json_error "classes not UTF-8" 400 bad_parameter "unknown class" -- \
    --data-binary @"$TINY" "$URL/v1/detect?classes=%C3%28,%ED%A0%80"

# --- log lines: client bytes cannot start a line of their own
curl -s -o /dev/null "$URL/forge%0aFORGED%20error%20line%0d"
sleep 0.2
if grep -q '^FORGED' "$HOSTILE_LOG"; then
    fail "encoded newline in path not logged raw" "$(grep -n FORGED "$HOSTILE_LOG" | head -n 3)"
else
    ok "encoded newline in path not logged raw"
fi
if grep -qF '/forge\x0AFORGED error line\x0D' "$HOSTILE_LOG"; then
    ok "newline in path logged as \\x0A"
else
    fail "newline in path logged as \\x0A" "$(grep -n forge "$HOSTILE_LOG" | head -n 3)"
fi
curl -s -o /dev/null --data-binary @"$TINY" "$URL/v1/detect?model=%FF%0Aevil"
sleep 0.2
if python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$HOSTILE_LOG" 2>/dev/null; then
    ok "log is valid UTF-8"
else
    fail "log is valid UTF-8" "invalid bytes in $HOSTILE_LOG"
fi

# --- framing a proxy could read differently
raw_error "two Content-Length headers" 400 bad_request "Content-Length" \
    'POST /v1/detect HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!'
raw_error "Content-Length and Transfer-Encoding" 400 bad_request "Transfer-Encoding" \
    'POST /v1/detect HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
raw_error "two Transfer-Encoding headers" 400 bad_request "Transfer-Encoding" \
    'POST /v1/detect HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n'
# A transfer coding other than chunked gets 501 at once, not the request timeout.
for coding in gzip identity 'chunked, gzip'; do
    raw_error "Transfer-Encoding $coding" 501 not_implemented "Transfer-Encoding" \
        "POST /v1/detect HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: $coding\r\nConnection: close\r\n\r\nhello"
done
got=$(printf 'POST /v1/vision/detection HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nhello' |
    $CLIENT raw "$PORT" --out "$R")
if [ "$got" = 501 ] && grep -q '"success":false' "$R" && grep -q '"code":501' "$R"; then
    ok "DeepStack Transfer-Encoding gzip gets its error shape"
else
    fail "DeepStack Transfer-Encoding gzip gets its error shape" "status $got: $(head -c 300 "$R")"
fi
got=$(printf 'GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: %s\r\nConnection: close\r\n\r\n' \
    "$(head -c 100000 /dev/zero | tr '\0' a)" | $CLIENT raw "$PORT" --out "$R")
if [ "$got" = 431 ]; then ok "100 KB header gets 431"; else fail "100 KB header gets 431" "status $got"; fi
alive "framing errors"

# --- slow body: closed request_timeout (2 s) after the headers, though bytes keep coming
elapsed=$($CLIENT trickle "$PORT" --limit 10)
if awk -v t="$elapsed" 'BEGIN { exit !(t >= 1.5 && t < 6) }'; then
    ok "trickled body closed after request_timeout"
else
    fail "trickled body closed after request_timeout" "closed after $elapsed s (limit 10 s)"
fi
if grep -q 'body not complete 2 s after the headers' "$HOSTILE_LOG"; then
    ok "trickled body close logged"
else
    fail "trickled body close logged" "no such line in $HOSTILE_LOG"
fi

# --- slow headers: closed about a second after request_timeout (2 s), though
# bytes keep coming, while another connection from the address is served.
# The limit is 4 connections per address, so 3 slow ones leave one free.
# header_timeouts: the value of yolod_http_header_timeouts_total.
header_timeouts() {
    curl -s --max-time 10 "http://127.0.0.1:$PORT/metrics" | awk '$1 == "yolod_http_header_timeouts_total" {print $2}'
}
timeouts_before=$(header_timeouts)
got=$($CLIENT slow-headers "$PORT" --clients 3 --limit 10)
read -r closed longest healthz <<<"$got"
if [ "$closed" = closed=3 ] && awk -v t="${longest#max=}" 'BEGIN { exit !(t >= 1.5 && t < 6) }'; then
    ok "slow headers closed after request_timeout"
else
    fail "slow headers closed after request_timeout" "got '$got' (limit 10 s)"
fi
if [ "$healthz" = healthz=200 ]; then
    ok "healthz served beside slow headers"
else
    fail "healthz served beside slow headers" "got '$got'"
fi
timeouts=$(( $(header_timeouts) - timeouts_before ))
if [ "$timeouts" -ge 3 ]; then
    ok "slow headers counted in metrics ($timeouts)"
else
    fail "slow headers counted in metrics" "$timeouts counted for three slow connections"
fi
# Slow headers on all 4 connections of the address: once they are closed,
# the address is served again (a health check at 4.5 s, before the 10 s
# the clients would keep sending).
got=$($CLIENT slow-headers "$PORT" --clients 4 --healthz-at 4.5 --limit 10)
if [ "$got" != "${got#closed=4 }" ] && [ "${got##* }" = healthz=200 ]; then
    ok "address served again after slow headers"
else
    fail "address served again after slow headers" "got '$got'"
fi
if grep -q 'closed [0-9]* connections* whose request headers were not complete 2 s after' "$HOSTILE_LOG" &&
        ! grep -q 'Connection socket is closed' "$HOSTILE_LOG"; then
    ok "slow headers close logged"
else
    fail "slow headers close logged" "$(grep -i 'headers\|socket is closed' "$HOSTILE_LOG" | tail -n 3)"
fi

# A kept-alive connection serves requests 1.5 s apart, 3 s in all, so the
# deadline restarts when a request finishes. Headers trickled after the
# third reply are closed like those of a new connection, and a kept-alive
# connection left idle is closed by the idle timeout (request_timeout).
got=$($CLIENT keep-alive "$PORT" --pause 1.5 --limit 6)
read -r replies trickled idle <<<"$got"
if [ "$replies" = replies=200,200,200 ]; then
    ok "kept-alive connection serves three requests"
else
    fail "kept-alive connection serves three requests" "got '$got'"
fi
if awk -v t="${trickled#trickle_closed=}" 'BEGIN { exit !(t >= 1.5 && t < 5) }'; then
    ok "slow headers after a kept-alive request closed"
else
    fail "slow headers after a kept-alive request closed" "got '$got' (limit 6 s)"
fi
if awk -v t="${idle#idle_closed=}" 'BEGIN { exit !(t >= 1.5 && t < 5) }'; then
    ok "idle kept-alive connection closed"
else
    fail "idle kept-alive connection closed" "got '$got' (limit 6 s)"
fi
alive "slow headers"

# --- one address cannot take every connection
got=$($CLIENT per-address "$PORT" --limit 4)
if [ "$got" = "extra=closed other=200" ]; then
    ok "per-address connection limit"
else
    fail "per-address connection limit" "got '$got', expected 'extra=closed other=200'"
fi
# A burst of rejected connections: counted on one log line a second, not one
# each. The pause lets the burst's first rejection start a new line.
# Every rejection is counted in yolod_http_connections_rejected_total.
sleep 1.1
lines_before=$(grep -c "libmicrohttpd rejected" "$HOSTILE_LOG")
# rejected_total: the value of yolod_http_connections_rejected_total.
rejected_total() {
    curl -s --max-time 10 "http://127.0.0.1:$PORT/metrics" | awk '$1 == "yolod_http_connections_rejected_total" {print $2}'
}
rejected_before=$(rejected_total)
$CLIENT per-address "$PORT" --limit 4 >/dev/null
$CLIENT per-address "$PORT" --limit 4 >/dev/null
$CLIENT per-address "$PORT" --limit 4 >/dev/null
sleep 0.2
rejected=$(( $(rejected_total) - rejected_before ))
if [ "$rejected" -ge 3 ]; then
    ok "rejected connections counted in metrics ($rejected)"
else
    fail "rejected connections counted in metrics" "$rejected counted for three rejected connections"
fi
lines=$(( $(grep -c "libmicrohttpd rejected" "$HOSTILE_LOG") - lines_before ))
if [ "$lines" -ge 1 ] && [ "$lines" -le 2 ] && ! grep -q "Server reached connection limit" "$HOSTILE_LOG"; then
    ok "rejected connections logged once a second"
else
    fail "rejected connections logged once a second" "$lines new lines: $(grep -i "rejected\|connection limit" "$HOSTILE_LOG" | tail -n 3)"
fi
alive "connection flood"

# --- decodes: a 4000 x 4000 PNG takes far longer to decode than to upload
$CLIENT png 4000 --out "$WORK/slow.png"

# run_concurrent N PREFIX URL: POSTs slow.png N times at once.
run_concurrent() {
    local n=$1 prefix=$2 url=$3 pids=()
    for i in $(seq 1 "$n"); do
        curl -s -D "$WORK/$prefix-$i.headers" -o "$WORK/$prefix-$i.json" -w '%{time_total}' \
            --max-time 60 --data-binary @"$WORK/slow.png" "$url/v1/detect" >"$WORK/$prefix-$i.time" &
        pids+=($!)
    done
    wait "${pids[@]}"
}

# One decode slot, three requests with queue slots: they decode in turn and
# all are served.
start_daemon decode --max-decodes 1 --queue-size 8
run_concurrent 3 decode "$URL"
ok_count=$(grep -l '^HTTP/1.1 200' "$WORK"/decode-*.headers | wc -l)
if [ "$ok_count" -eq 3 ]; then
    ok "requests wait for a decode slot"
else
    fail "requests wait for a decode slot" "$ok_count of 3 replies 200: $(head -qn 1 "$WORK"/decode-*.headers)"
fi

# A request that waits request_timeout seconds for a decode slot gets 503.
# A 7000 x 7000 PNG takes about 0.3 s to decode, so of eight requests
# decoding in turn the last ones wait past the 1 s timeout.
$CLIENT png 7000 --out "$WORK/slow.png"
start_daemon decode-wait --max-decodes 1 --queue-size 8 --request-timeout 1
run_concurrent 8 decode-wait "$URL"
busy=$(grep -l '^HTTP/1.1 503' "$WORK"/decode-wait-*.headers | head -n 1)
if [ -n "$busy" ]; then
    ok "decode slot wait bounded by request_timeout"
    check "decode 503 body" $CLIENT json-error "${busy%.headers}.json" --code decode_slots_full --contains max_decodes
    if grep -qi '^Retry-After: 1' "$busy"; then ok "decode 503 has Retry-After"; else fail "decode 503 has Retry-After" "$(cat "$busy")"; fi
else
    fail "decode slot wait bounded by request_timeout" "no 503 among: $(head -qn 1 "$WORK"/decode-wait-*.headers)"
fi

# One queue slot: the slot is taken before decoding, so a second request
# gets queue_full while the first still decodes (before, both decoded and
# both were served).
start_daemon queue --max-decodes 4 --queue-size 1
run_concurrent 3 queue "$URL"
ok_file=$(grep -l '^HTTP/1.1 200' "$WORK"/queue-*.headers | head -n 1)
busy=$(grep -l '^HTTP/1.1 503' "$WORK"/queue-*.headers | head -n 1)
if [ -n "$ok_file" ] && [ -n "$busy" ]; then
    ok "queue slot taken before decoding"
    check "queue 503 body" $CLIENT json-error "${busy%.headers}.json" --code queue_full --contains retry
    ok_time=$(cat "${ok_file%.headers}.time")
    busy_time=$(cat "${busy%.headers}.time")
    if awk -v b="$busy_time" -v o="$ok_time" 'BEGIN { exit !(b < o) }'; then
        ok "queue_full sent before the decode ends"
    else
        fail "queue_full sent before the decode ends" "503 after $busy_time s, 200 after $ok_time s"
    fi
else
    fail "queue slot taken before decoding" "200 reply: ${ok_file:-none}, 503 reply: ${busy:-none}"
fi

finish
