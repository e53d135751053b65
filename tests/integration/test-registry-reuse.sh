#!/usr/bin/env bash
# Registry entries of unloaded models are reused, so the distinct (name,
# variant) pairs a daemon can serve over its life are not limited by the
# registry size. YOLOD_TEST_REGISTRY_ENTRIES lowers the registry to a few
# entries, so the pair after them already needs the entry of an unloaded
# one. The cases:
# 1. dated files dropped into and removed from the watched model directory,
#    one after another;
# 2. the pair unloaded longest ago loses its entry first, while another
#    unloaded pair keeps its counters and version;
# 3. a full registry, and an admin-unloaded file still on disk;
# 4. detection requests in flight on a model that is unloaded while a new
#    model wants its entry.
source "$(dirname "$0")/lib.sh"

MODEL_PATH=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
DIR=$WORK/models
mkdir -p "$DIR"
ln -s "$MODEL_PATH" "$DIR/base.onnx"

# served_names: names in GET /v1/models, sorted, as a Python list.
served_names() {
    curl -s --max-time 10 "$URL/v1/models" >"$WORK/served.json"
    json_get "$WORK/served.json" 'sorted(m["name"] for m in j["models"])'
}

# wait_names WANT: waits up to 30 s for served_names to print WANT.
wait_names() {
    local i
    for i in $(seq 300); do
        [ "$(served_names)" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# metric_value SERIES: the value of one exact series in GET /metrics, or "absent".
metric_value() {
    curl -s --max-time 10 "$URL/metrics" | awk -v series="$1" '$1 == series {v = $2} END {print v == "" ? "absent" : v}'
}

# detections_of MODEL: the yolod_detections_total value of MODEL, variant fp32.
detections_of() {
    metric_value "yolod_detections_total{model=\"$1\",variant=\"fp32\"}"
}

# model_series: the distinct model labels of every yolod_detections_total series, sorted.
model_series() {
    curl -s --max-time 10 "$URL/metrics" | sed -n 's/^yolod_detections_total{model="\([^"]*\)".*/\1/p' |
        sort | tr '\n' ' '
}

# detect_count MODEL OUT: posts bus.jpg to MODEL; prints the status, the model of the reply and its detections.
detect_count() {
    local code
    code=$(http_request "$2" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?model=$1")
    echo "$code $(json_get "$2" 'j.get("model"), len(j.get("detections", []))')"
}

export YOLOD_TEST_REGISTRY_ENTRIES=3
start_serve reuse --model-dir "$DIR" --workers 1 --threads 1
unset YOLOD_TEST_REGISTRY_ENTRIES
ok "daemon starts with a registry of 3 entries"

got=$(detect_count base "$WORK/base.json")
BASELINE=$(json_get "$WORK/base.json" 'len(j["detections"])')
if [ "${got%% *}" = 200 ] && [ "$BASELINE" -gt 0 ]; then
    ok "base model detects $BASELINE objects in bus.jpg"
else
    fail "base model detects objects in bus.jpg" "$got"
fi

# 1. Eight dated files through the watched directory, one at a time: each
# needs an entry, and from the third on it takes one of an unloaded pair.
cycle_fail=0
for day in 01 02 03 04 05 06 07 08; do
    name=day-$day
    ln -s "$MODEL_PATH" "$DIR/$name.onnx"
    if ! wait_names "['base', '$name']"; then
        cycle_fail=$((cycle_fail + 1))
        echo "$name not loaded: $(served_names); $(grep "$name" "$LOG" | tail -2)"
        continue
    fi
    got=$(detect_count "$name" "$WORK/day.json")
    if [ "$got" != "200 ('$name', $BASELINE)" ]; then
        cycle_fail=$((cycle_fail + 1))
        echo "$name detect: $got"
    fi
    rm "$DIR/$name.onnx"
    wait_names "['base']" || { cycle_fail=$((cycle_fail + 1)); echo "$name not unloaded"; }
done
if [ "$cycle_fail" -eq 0 ]; then
    ok "8 dated files loaded, detected with and removed, 3 entries"
else
    fail "8 dated files loaded, detected with and removed, 3 entries" "$cycle_fail steps failed"
fi
reused=$(grep -c "takes the registry entry of model day-" "$LOG")
[ "$reused" = 6 ] && ok "6 entries reused" || fail "6 entries reused" "log shows $reused"

expect_status "readyz after the cycle" 200 "$WORK/ready.json" "$URL/readyz"
got=$(json_get "$WORK/ready.json" 'j["models"]')
[ "$got" = "['base']" ] && ok "readyz lists base only" || fail "readyz lists base only" "$got"
got=$(model_series)
[ "$got" = "base day-07 day-08 " ] && ok "metrics keep the series of the pairs with entries" ||
    fail "metrics keep the series of the pairs with entries" "$got"
got="$(detections_of day-07) $(detections_of day-08) $(detections_of day-01)"
[ "$got" = "$BASELINE $BASELINE absent" ] && ok "reused entries count from zero" ||
    fail "reused entries count from zero" "day-07, day-08, day-01: $got"
got=$(curl -s "$URL/metrics" | grep -c '^yolod_model_info{')
[ "$got" = 1 ] && ok "model info for the one loaded pair" || fail "model info for the one loaded pair" "$got lines"

# 2. The oldest unloaded pair (day-07) loses its entry; day-08 keeps its
# counters and gets version 2 when its file comes back.
ln -s "$MODEL_PATH" "$DIR/keep.onnx"
wait_names "['base', 'keep']" && ok "keep loaded" || fail "keep loaded" "$(served_names)"
got="$(detections_of day-07) $(detections_of day-08)"
[ "$got" = "absent $BASELINE" ] && ok "day-07 lost its entry, day-08 kept it" ||
    fail "day-07 lost its entry, day-08 kept it" "$got"
ln -s "$MODEL_PATH" "$DIR/day-08.onnx"
wait_names "['base', 'day-08', 'keep']" && ok "day-08 loaded again" || fail "day-08 loaded again" "$(served_names)"
got=$(json_get "$WORK/served.json" '[v["version"] for m in j["models"] if m["name"] == "day-08" for v in m["variants"]]')
[ "$got" = "[2]" ] && ok "day-08 is version 2" || fail "day-08 is version 2" "$got"
got=$(detect_count day-08 "$WORK/day.json")
[ "$got" = "200 ('day-08', $BASELINE)" ] && ok "day-08 detects" || fail "day-08 detects" "$got"
got=$(detections_of day-08)
[ "$got" = $((2 * BASELINE)) ] && ok "day-08 counter went on from its old value" ||
    fail "day-08 counter went on from its old value" "$got"

# 3. Three loaded pairs fill the registry, so a fourth fails. An
# admin-unloaded file still on disk keeps its entry, so a rescan cannot load
# it again. Once the file is gone, its entry goes to the new pair.
ln -s "$MODEL_PATH" "$DIR/extra.onnx"
for i in $(seq 300); do grep -q "load of $DIR/extra.onnx failed" "$LOG" && break; sleep 0.1; done
if grep -q "load of $DIR/extra.onnx failed: cannot add model 'extra' variant 'fp32': all 3 registry entries" "$LOG"; then
    ok "full registry: the new file fails with a message"
else
    fail "full registry: the new file fails with a message" "$(grep extra "$LOG" | tail -2)"
fi
expect_status "unload keep" 200 "$WORK/unload.json" -X POST "$URL/v1/models/keep/unload"
expect_error "load extra while keep's file remains" 500 load_failed "failed" \
    -X POST "$URL/v1/models/extra/load"
got=$(json_get "$WORK/error.json" 'j["variants"][0]["error"]')
case $got in
*"unloaded directory files still on disk"*) ok "load error names the cause" ;;
*) fail "load error names the cause" "$got" ;;
esac
# A link to a missing file changes the directory, so the watch rescans it.
ln -s "$WORK/missing.onnx" "$DIR/ghost.onnx"
for i in $(seq 300); do grep -q "skipping $DIR/ghost.onnx" "$LOG" && break; sleep 0.1; done
grep -q "skipping $DIR/ghost.onnx" "$LOG" || fail "rescan after the unload" "no rescan logged"
[ "$(served_names)" = "['base', 'day-08']" ] && ok "rescan leaves keep unloaded" ||
    fail "rescan leaves keep unloaded" "$(served_names)"
rm "$DIR/ghost.onnx"
rm "$DIR/keep.onnx"
expect_status "load extra once keep's file is gone" 200 "$WORK/load.json" -X POST "$URL/v1/models/extra/load"
if grep -q "model extra variant fp32 takes the registry entry of model keep variant fp32" "$LOG"; then
    ok "extra took keep's entry"
else
    fail "extra took keep's entry" "$(grep 'takes the registry entry' "$LOG" | tail -1)"
fi
got=$(detect_count extra "$WORK/extra.json")
[ "$got" = "200 ('extra', $BASELINE)" ] && ok "extra detects" || fail "extra detects" "$got"

# A new file that finds every entry taken is not remembered as failed: the
# rescan that removes a loaded model's file gives it that entry.
want=$(served_names | python3 -c 'import ast, sys; names = ast.literal_eval(sys.stdin.read()); print(sorted(n if n != "extra" else "late" for n in names))')
ln -s "$MODEL_PATH" "$DIR/late.onnx"
for i in $(seq 300); do grep -q "load of $DIR/late.onnx failed" "$LOG" && break; sleep 0.1; done
grep -q "load of $DIR/late.onnx failed: cannot add model 'late'" "$LOG" && ok "full registry: late fails" ||
    fail "full registry: late fails" "$(grep late "$LOG" | tail -2)"
rm "$DIR/extra.onnx"
if wait_names "$want"; then
    ok "late takes the entry of the removed file in the same rescan"
else
    fail "late takes the entry of the removed file in the same rescan" "served $(served_names), expected $want; $(grep late "$LOG" | tail -2)"
fi

kill -TERM "$PID"
wait "$PID"

# 4. Requests in flight on a model that is unloaded while a new model wants
# its entry. Sixteen clients queue on one single-thread worker, so at the
# unload many requests still use the old model, and draining them takes
# several inference times, usually longer than loading the new model. The
# load fails while they use the entry and is retried. Every reply must
# still come from the old model, whole, and the new model's counters must
# start at zero.
RACE=$WORK/race-models
mkdir -p "$RACE"
ln -s "$MODEL_PATH" "$RACE/base.onnx"
ln -s "$MODEL_PATH" "$RACE/hot1.onnx"
export YOLOD_TEST_REGISTRY_ENTRIES=2
start_serve race --model-dir "$RACE" --watch-model-dir no --workers 1 --threads 1 --queue-size 32 \
    --max-decodes 16
unset YOLOD_TEST_REGISTRY_ENTRIES

# client NAME N: posts bus.jpg to model NAME until a reply is not 200 or
# $WORK/stop exists; one "STATUS BODY" line per reply. Stopping at the first
# 404 keeps the cores free for the load and the requests still queued.
client() {
    local out=$WORK/race-$1-$2.txt reply body
    : >"$out"
    while [ ! -e "$WORK/stop" ]; do
        reply=$(curl -s --max-time 60 -w '\n%{http_code}' --data-binary @"$IMAGES/bus.jpg" \
            "$URL/v1/detect?model=$1")
        body=${reply%$'\n'*}
        printf '%s %s\n' "${reply##*$'\n'}" "${body%$'\n'}" >>"$out"
        [ "${reply##*$'\n'}" = 200 ] || break
    done
}

# replies_ok NAME FILES...: checks that every reply is 200 from NAME with
# BASELINE detections, or 404 model_not_found after the unload; at least one 200.
replies_ok() {
    python3 - "$BASELINE" "$@" <<'EOF'
import json, sys

want, name, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
served = gone = 0
bad = []
for path in files:
    for line in open(path, errors="replace"):
        status, _, body = line.rstrip("\n").partition(" ")
        try:
            reply = json.loads(body)
            if status == "200" and reply["model"] == name and len(reply["detections"]) == want:
                served += 1
                continue
            if status == "404" and reply["error"]["code"] == "model_not_found":
                gone += 1
                continue
        except (ValueError, KeyError, TypeError):
            pass
        bad.append(line[:200])
if bad or served == 0:
    sys.exit(f"{served} served, {gone} not found, {len(bad)} wrong: {bad[:3]}")
print(f"{served} served, {gone} not found")
EOF
}

refused=0
for round in 1 2 3 4 5; do
    old=hot$round new=hot$((round + 1))
    rm -f "$WORK/stop"
    pids=()
    for n in $(seq 16); do
        client "$old" "$n" &
        pids+=($!)
    done
    sleep 1
    code=$(http_request "$WORK/unload.json" -X POST "$URL/v1/models/$old/unload")
    [ "$code" = 200 ] || fail "round $round: unload $old" "status $code"
    rm "$RACE/$old.onnx"
    ln -s "$MODEL_PATH" "$RACE/$new.onnx"
    loaded=no
    for attempt in $(seq 100); do
        code=$(http_request "$WORK/load.json" -X POST "$URL/v1/models/$new/load")
        if [ "$code" = 200 ]; then
            loaded=yes
            break
        fi
        if ! grep -q "in use by requests" "$WORK/load.json"; then
            fail "round $round: load $new" "status $code: $(head -c 300 "$WORK/load.json")"
            break
        fi
        refused=$((refused + 1))
        sleep 0.05
    done
    touch "$WORK/stop"
    wait "${pids[@]}"
    echo "round $round: $new loaded at attempt $attempt"
    [ "$loaded" = yes ] || fail "round $round: $new loaded" "not loaded after $attempt attempts"
    check "round $round: replies in flight came from $old" replies_ok "$old" "$WORK"/race-"$old"-*.txt
    got="$(detections_of "$old") $(detections_of "$new") $(served_names)"
    [ "$got" = "absent 0 ['base', '$new']" ] && ok "round $round: $new has a fresh entry" ||
        fail "round $round: $new has a fresh entry" "$old, $new detections and models: $got"
done
if [ "$refused" -gt 0 ]; then
    ok "loads waited $refused times for requests holding an entry"
else
    fail "loads waited for requests holding an entry" "no load was refused: the race was not reached"
fi
got=$(detect_count hot6 "$WORK/hot6.json")
[ "$got" = "200 ('hot6', $BASELINE)" ] && ok "hot6 detects" || fail "hot6 detects" "$got"
[ "$(detections_of hot6)" = "$BASELINE" ] && ok "hot6 counts its own detections only" ||
    fail "hot6 counts its own detections only" "$(detections_of hot6)"
kill -0 "$PID" && ok "daemon still runs" || fail "daemon still runs"

finish
