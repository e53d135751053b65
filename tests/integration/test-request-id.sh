#!/usr/bin/env bash
# Request ids: the X-Request-Id reply header and the request_id= field of
# the access log line, taken from the client's header when valid (1 to 64
# printable ASCII characters) and otherwise generated as 16 hex digits.
source "$(dirname "$0")/lib.sh"

start_daemon request-id

# reply_id PATH [CURL_ARGS...]: prints the X-Request-Id of the reply to GET PATH.
reply_id() {
    local path=$1
    shift
    curl -s -o /dev/null -D - --max-time 30 "$@" "$URL$path" |
        tr -d '\r' | sed -n 's/^[Xx]-[Rr]equest-[Ii][Dd]: //p'
}

# logged PATTERN: waits up to 5 s for an access log line matching PATTERN (grep -E).
logged() {
    local waited=0
    while [ "$waited" -lt 50 ]; do
        grep -qE "$1" "$LOG" && return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    return 1
}

# Client ids.
got=$(reply_id /healthz -H 'X-Request-Id: client-id-42')
[ "$got" = client-id-42 ] && ok "client id echoed" || fail "client id echoed" "got '$got'"
check "client id in the access log" logged 'GET /healthz 200 .* request_id=client-id-42$'

long64=$(printf 'a%.0s' $(seq 64))
got=$(reply_id /healthz -H "X-Request-Id: $long64")
[ "$got" = "$long64" ] && ok "64-character id kept" || fail "64-character id kept" "got '$got'"

spaced='trace 1/2 {x=y}'
got=$(reply_id /healthz -H "X-Request-Id: $spaced")
[ "$got" = "$spaced" ] && ok "id with spaces and punctuation kept" \
    || fail "id with spaces and punctuation kept" "got '$got'"
check "id with spaces logged in quotes" logged 'GET /healthz 200 .* request_id="trace 1/2 \{x=y\}"$'
got=$(reply_id /healthz -H 'X-Request-Id: a" status=500 "\')
check "id posing as log fields stays one field" logged 'GET /healthz 200 .* request_id="a\\" status=500 \\"\\\\"$'
curl -s -o /dev/null "$URL/no%20such%20route"
check "path with a space logged in quotes" logged 'GET "/no such route" 404 '

# Invalid ids are replaced by generated ones.
expect_generated() {
    local name=$1 header=$2 got
    got=$(reply_id /healthz -H "$header")
    if [[ "$got" =~ ^[0-9a-f]{16}$ ]]; then
        ok "$name replaced"
    else
        fail "$name replaced" "got '$got'"
    fi
}
expect_generated "65-character id" "X-Request-Id: ${long64}b"
expect_generated "non-ASCII id" $'X-Request-Id: caf\xc3\xa9'
expect_generated "id with a tab" $'X-Request-Id: a\tb'
expect_generated "empty id" "X-Request-Id;"

# Generated ids: well-formed, unique, logged.
ids=()
for i in 1 2 3 4 5 6; do
    ids+=("$(reply_id /healthz)")
done
bad=0
for id in "${ids[@]}"; do
    [[ "$id" =~ ^[0-9a-f]{16}$ ]] || bad=$((bad + 1))
done
[ "$bad" -eq 0 ] && ok "generated ids are 16 hex digits" \
    || fail "generated ids are 16 hex digits" "got: ${ids[*]}"
unique=$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)
[ "$unique" -eq 6 ] && ok "generated ids unique" || fail "generated ids unique" "got: ${ids[*]}"
check "generated id in the access log" logged "GET /healthz 200 .* request_id=${ids[5]}\$"

# Replies from each path that queues one carry the header: an error, /metrics, a detection.
got=$(reply_id /no-such-route -H 'X-Request-Id: on-404')
[ "$got" = on-404 ] && ok "404 reply carries the id" || fail "404 reply carries the id" "got '$got'"
check "404 logged with the id" logged 'GET /no-such-route 404 .* request_id=on-404$'
got=$(reply_id /metrics -H 'X-Request-Id: on-metrics')
[ "$got" = on-metrics ] && ok "/metrics reply carries the id" || fail "/metrics reply carries the id" "got '$got'"
got=$(curl -s -o /dev/null -D - --max-time 120 -H 'X-Request-Id: on-detect' \
          --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect" | tr -d '\r' | sed -n 's/^X-Request-Id: //Ip')
[ "$got" = on-detect ] && ok "detection reply carries the id" || fail "detection reply carries the id" "got '$got'"
check "detection logged with the id" logged 'POST /v1/detect 200 .* request_id=on-detect$'

finish
