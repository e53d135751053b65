#!/usr/bin/env bash
# Hot swap of models loaded with --model-dir: GET /v1/models, repeated
# POST /v1/models/{name}/reload under detection load with no failed request
# and rising versions, a reload of a truncated file that keeps the old
# version serving, and resident memory after the swaps close to before.
source "$(dirname "$0")/lib.sh"

CALIB=$SHARED/datasets/coco128/images/train2017
DIR=$WORK/models
mkdir -p "$DIR"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$DIR/yolov8n.onnx"
check "compress int8 into the model dir" "$YOLOD" compress "$MODEL" --variant int8 \
    --calib "$CALIB" --calib-limit 8 -o "$DIR/yolov8n.int8.yolod"
cp "$DIR/yolov8n.int8.yolod" "$WORK/int8.good"

# start_daemon always adds --model yolov8n.onnx, which would load the same
# (name, variant) twice, so this daemon starts from the directory alone.
# The directory watch is off: this test drives reloads through the API
# alone (test-model-admin.sh covers the watch and SIGHUP).
start_serve hot-swap --model-dir "$DIR" --watch-model-dir no --workers 2 --threads 1 \
    --log-level debug
ok "daemon starts with --model-dir"

expect_status "models list" 200 "$WORK/models.json" "$URL/v1/models"
got=$(json_get "$WORK/models.json" \
    '[(m["name"], m["default_variant"], sorted(v["variant"] for v in m["variants"])) for m in j["models"]]')
if [ "$got" = "[('yolov8n', 'fp32', ['fp32', 'int8'])]" ]; then
    ok "models list names both variants, fp32 default"
else
    fail "models list names both variants, fp32 default" "$got"
fi
got=$(json_get "$WORK/models.json" \
    '[(v["version"], v["size_bytes"] > 0, v["source"].endswith(".yolod") or v["source"].endswith(".onnx"), v["loaded_at"] > 1e9) for v in j["models"][0]["variants"]]')
if [ "$got" = "[(1, True, True, True), (1, True, True, True)]" ]; then
    ok "models list versions, sizes, sources, load times"
else
    fail "models list versions, sizes, sources, load times" "$got"
fi
expect_status "model by name" 200 "$WORK/model.json" "$URL/v1/models/yolov8n"
expect_error "unknown model" 404 model_not_found "yolov8x" "$URL/v1/models/yolov8x"
expect_error "reload unknown model" 404 model_not_found "nope" -X POST "$URL/v1/models/nope/reload"
expect_error "reload with GET" 405 method_not_allowed "POST" "$URL/v1/models/yolov8n/reload"

expect_status "detect int8 variant" 200 "$WORK/int8.json" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=int8"
got=$(json_get "$WORK/int8.json" '(j["variant"], j["version"], len(j["detections"]) > 0)')
if [ "$got" = "('int8', '1', True)" ]; then ok "int8 reply names variant and version"; else fail "int8 reply names variant and version" "$got"; fi
expect_error "unknown variant" 404 variant_not_found "fp16" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=fp16"

# Baseline after both workers ran both variants from parallel connections,
# so thread arenas and sessions are in place before the swaps.
for round in 1 2; do
    curl -s -o /dev/null --max-time 60 --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=fp32" &
    first=$!
    curl -s -o /dev/null --max-time 60 --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=int8" &
    second=$!
    wait "$first" "$second"
done
rss_before=$(rss_kb)

# Two bounded client loops, 50 requests each, alternating the variants.
client() {
    local out=$WORK/client$1.txt i variant
    : >"$out"
    for i in $(seq 50); do
        if [ $((i % 2)) -eq 0 ]; then variant=int8; else variant=fp32; fi
        curl -s --max-time 60 -o "$WORK/reply$1.json" -w '%{http_code} ' \
            --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=$variant" >>"$out"
        python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j.get("variant"), j.get("version"))' \
            "$WORK/reply$1.json" >>"$out" 2>/dev/null || echo "unparsable" >>"$out"
    done
}
client 1 &
c1=$!
client 2 &
c2=$!

reload_fail=0
for i in $(seq 10); do
    code=$(http_request "$WORK/reload$i.json" -X POST "$URL/v1/models/yolov8n/reload")
    [ "$code" = 200 ] || { reload_fail=$((reload_fail + 1)); echo "reload $i: $code $(head -c 300 "$WORK/reload$i.json")"; }
    sleep 0.3
done
wait "$c1" "$c2"
if [ "$reload_fail" -eq 0 ]; then ok "10 reloads under load return 200"; else fail "10 reloads under load return 200" "$reload_fail failed"; fi

total=$(cat "$WORK/client1.txt" "$WORK/client2.txt" | wc -l)
bad=$(cat "$WORK/client1.txt" "$WORK/client2.txt" | grep -vc '^2[0-9][0-9] ')
if [ "$total" -eq 100 ] && [ "$bad" -eq 0 ]; then
    ok "100 requests during reloads, none failed"
else
    fail "100 requests during reloads, none failed" "$total replies, $bad not 2xx: $(grep -v '^2' "$WORK"/client*.txt | head -3)"
fi
versions=$(cat "$WORK/client1.txt" "$WORK/client2.txt" | awk '{print $2 "/" $3}' | sort -u | wc -l)
if [ "$versions" -ge 3 ]; then
    ok "replies show several versions ($versions variant/version pairs)"
else
    fail "replies show several versions" "$(sort -u "$WORK"/client*.txt | head)"
fi
got=$(json_get "$WORK/reload10.json" '[(v["variant"], v["result"], v["version"]) for v in j["variants"]]')
if [ "$got" = "[('fp32', 'reloaded', 11), ('int8', 'reloaded', 11)]" ]; then
    ok "tenth reload publishes version 11"
else
    fail "tenth reload publishes version 11" "$got"
fi

# A truncated int8 file: the reload fails, version 11 keeps serving.
head -c 4096 "$WORK/int8.good" >"$DIR/yolov8n.int8.yolod"
expect_status "reload of truncated file fails" 422 "$WORK/bad.json" -X POST "$URL/v1/models/yolov8n/reload"
got=$(json_get "$WORK/bad.json" '[(v["variant"], v["result"], v["version"]) for v in j["variants"]]')
if [ "$got" = "[('fp32', 'reloaded', 12), ('int8', 'failed', 11)]" ]; then
    ok "failed variant keeps version 11"
else
    fail "failed variant keeps version 11" "$got $(head -c 400 "$WORK/bad.json")"
fi
expect_status "old int8 version still serves" 200 "$WORK/after.json" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=int8"
got=$(json_get "$WORK/after.json" '(j["variant"], j["version"])')
if [ "$got" = "('int8', '11')" ]; then ok "int8 serves version 11 after failed reload"; else fail "int8 serves version 11 after failed reload" "$got"; fi
if grep -q "reload of model yolov8n variant int8 .* failed" "$LOG"; then
    ok "log has the failed reload"
else
    fail "log has the failed reload" "$(grep -i reload "$LOG" | tail -3)"
fi
curl -s "$URL/metrics" >"$WORK/metrics.txt"
if grep -q 'yolod_model_reloads_total{model="yolov8n",variant="int8",result="failure"} 1' "$WORK/metrics.txt" &&
   grep -q 'yolod_model_reloads_total{model="yolov8n",variant="int8",result="success"} 10' "$WORK/metrics.txt"; then
    ok "reload metrics count 10 successes and 1 failure"
else
    fail "reload metrics count 10 successes and 1 failure" "$(grep reloads_total "$WORK/metrics.txt")"
fi

# Resident memory: old versions must be freed once replaced.
sleep 1
rss_after=$(rss_kb)
limit=$((rss_before / 10 > 20480 ? rss_before / 10 : 20480))
if [ $((rss_after - rss_before)) -le "$limit" ]; then
    ok "RSS after swaps within limit ($rss_before kB -> $rss_after kB)"
else
    fail "RSS after swaps within limit" "$rss_before kB -> $rss_after kB (limit +$limit kB);" \
        "sessions created $(grep -c 'created a session' "$LOG"), destroyed $(grep -c 'destroyed its session' "$LOG")"
fi

# A model line of the config pointed at another file of the same name and
# variant swaps on SIGHUP, and no request gets 503 in between. A
# replacement that fails to load leaves the old file serving.
mkdir -p "$WORK/v1" "$WORK/v2" "$WORK/v3"
cp "$WORK/int8.good" "$WORK/v1/yolov8n.yolod"
cp "$WORK/int8.good" "$WORK/v2/yolov8n.yolod"
echo "not a model" >"$WORK/v3/yolov8n.yolod"
CONF=$WORK/swap.conf
printf 'model = %s\n' "$WORK/v1/yolov8n.yolod" >"$CONF"
start_serve config-swap --config "$CONF" --workers 1 --threads 1 --log-level debug

# hup_and_wait PATTERN: sends SIGHUP and waits up to 30 s for a log line
# matching PATTERN.
hup_and_wait() {
    local i
    kill -HUP "$PID"
    for i in $(seq 300); do grep -q "$1" "$LOG" && return 0; sleep 0.1; done
    return 1
}

: >"$WORK/swap-codes.txt"
(
    end=$((SECONDS + 60))
    while [ ! -e "$WORK/swap-stop" ] && [ "$SECONDS" -lt "$end" ]; do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 --data-binary @"$IMAGES/odd/bus_1x1.jpg" \
            "$URL/v1/detect" >>"$WORK/swap-codes.txt"
    done
) &
loop_pid=$!
sleep 0.5
printf 'model = %s\n' "$WORK/v2/yolov8n.yolod" >"$CONF"
if hup_and_wait "reloaded model yolov8n variant int8 version 2 from $WORK/v2/yolov8n.yolod"; then
    ok "config pointed at a new file swaps to version 2"
else
    fail "config pointed at a new file swaps to version 2" "$(grep -E 'loaded|unloaded' "$LOG" | tail -3)"
fi
printf 'model = %s\n' "$WORK/v3/yolov8n.yolod" >"$CONF"
if hup_and_wait "model yolov8n variant int8 keeps serving version 2 from $WORK/v2/yolov8n.yolod"; then
    ok "a replacement that fails keeps version 2 serving"
else
    fail "a replacement that fails keeps version 2 serving" "$(grep -E 'loaded|failed|keeps' "$LOG" | tail -3)"
fi
sleep 0.5
touch "$WORK/swap-stop"
wait "$loop_pid"
codes=$(sort "$WORK/swap-codes.txt" | uniq -c | tr -s ' ' | tr '\n' ';')
if [ -s "$WORK/swap-codes.txt" ] && ! grep -qv '^200$' "$WORK/swap-codes.txt"; then
    ok "every request during both config swaps got 200 ($codes)"
else
    fail "every request during both config swaps got 200" "$codes"
fi
if grep -q "unloaded model yolov8n" "$LOG"; then
    fail "no unload during config swaps" "$(grep unloaded "$LOG")"
else
    ok "no unload during config swaps"
fi
curl -s "$URL/metrics" >"$WORK/swap-metrics.txt"
if grep -q 'yolod_model_reloads_total{model="yolov8n",variant="int8",result="success"} 1' "$WORK/swap-metrics.txt" &&
   grep -q 'yolod_model_reloads_total{model="yolov8n",variant="int8",result="failure"} 1' "$WORK/swap-metrics.txt"; then
    ok "config swaps are counted as reloads"
else
    fail "config swaps are counted as reloads" "$(grep reloads_total "$WORK/swap-metrics.txt")"
fi
# The only model line naming a broken file of another model: nothing would be left, so nothing changes.
head -c 100000 "$MODEL" >"$WORK/v3/other.onnx"
printf 'model = %s\n' "$WORK/v3/other.onnx" >"$CONF"
if hup_and_wait "model yolov8n variant int8 keeps serving from $WORK/v2/yolov8n.yolod: without it no model would be left"; then
    ok "a config that would leave no model keeps the old one"
else
    fail "a config that would leave no model keeps the old one" "$(tail -3 "$LOG")"
fi
expect_status "detect after the config that would leave no model" 200 "$WORK/swap-last.json" \
    --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
# A FIFO in place of the config file: SIGHUP must not wait for a writer.
rm "$CONF"
mkfifo "$CONF"
if hup_and_wait "cannot read config file '$CONF': not a regular file"; then
    ok "SIGHUP with a FIFO as config is rejected"
else
    fail "SIGHUP with a FIFO as config is rejected" "$(tail -3 "$LOG")"
fi
expect_status "daemon answers after the FIFO config" 200 "$WORK/healthz.json" "$URL/healthz"

# A model line dropped whose file is also in the model directory (a hard
# link): the directory file takes over the variant without an unload.
mkdir -p "$WORK/v6" "$WORK/d5"
cp "$MODEL" "$WORK/v6/yolov8n.onnx"
ln "$WORK/v6/yolov8n.onnx" "$WORK/d5/yolov8n.onnx"
printf 'model = %s\nmodel_dir = %s\nwatch_model_dir = no\n' "$WORK/v6/yolov8n.onnx" "$WORK/d5" >"$CONF.d5"
start_serve linked-config --config "$CONF.d5" --workers 1 --threads 1
printf 'model_dir = %s\nwatch_model_dir = no\n' "$WORK/d5" >"$CONF.d5"
if hup_and_wait "reloaded model yolov8n variant fp32 version 2 from $WORK/d5/yolov8n.onnx"; then
    ok "directory copy of a dropped model line takes over"
else
    fail "directory copy of a dropped model line takes over" "$(grep -E 'loaded|skipping|already' "$LOG" | tail -3)"
fi
grep -q "unloaded model yolov8n" "$LOG" && fail "no unload when the directory copy takes over" "$(grep unloaded "$LOG")" || ok "no unload when the directory copy takes over"

# A broken file of another variant does not keep a removed variant serving.
mkdir -p "$WORK/d6"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$WORK/d6/yolov8n.onnx"
cp "$WORK/int8.good" "$WORK/d6/yolov8n.int8.yolod"
head -c 5000 "$WORK/int8.good" >"$WORK/d6/yolov8n.fp16.yolod"
start_serve sibling --model-dir "$WORK/d6" --workers 1 --threads 1
rm "$WORK/d6/yolov8n.onnx"
for i in $(seq 100); do grep -q "unloaded model yolov8n variant fp32" "$LOG" && break; sleep 0.1; done
grep -q "unloaded model yolov8n variant fp32 .*removed from the model directory" "$LOG" && ok "removed variant unloaded beside a broken sibling" || fail "removed variant unloaded beside a broken sibling" "$(grep -E 'keeps|unloaded' "$LOG" | tail -3)"

# Two names in the model directory that link to one file are both served.
mkdir -p "$WORK/links"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$WORK/links/current.onnx"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$WORK/links/yolov8n.onnx"
start_serve links --model-dir "$WORK/links" --watch-model-dir no --workers 1 --threads 6
expect_status "models list with two linked files" 200 "$WORK/links.json" "$URL/v1/models"
got=$(json_get "$WORK/links.json" 'sorted(m["name"] for m in j["models"])')
[ "$got" = "['current', 'yolov8n']" ] && ok "both linked names are served" || fail "both linked names are served" "$got"

# Loads leave no OpenMP threads behind. After startup and three reloads, a
# daemon of one worker with 6 threads runs 5 threads more than one with 1
# thread: the worker's team. A warm-up team kept by the main thread adds 5.
# thread_count: threads of $PID after three reloads of the model "current".
thread_count() {
    local i
    for i in 1 2 3; do
        http_request "$WORK/reload-links.json" -X POST "$URL/v1/models/current/reload" >/dev/null
    done
    # Each connection's thread ends shortly after its reply.
    sleep 1
    ls "/proc/$PID/task" | wc -l
}
six=$(thread_count)
start_serve links1 --model-dir "$WORK/links" --watch-model-dir no --workers 1 --threads 1
one=$(thread_count)
[ $((six - one)) -eq 5 ] && ok "reloads keep no idle threads" \
    || fail "reloads keep no idle threads" "$six threads with --threads 6, $one with --threads 1; expected 5 more"

# A model directory that is a symbolic link: pointing the link at another
# folder, by rename (atomic) or by ln -sfn, moves the watch there.
mkdir -p "$WORK/release-a" "$WORK/release-b"
model_path=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
ln -s "$model_path" "$WORK/release-a/first.onnx"
ln -s "$model_path" "$WORK/release-b/second.onnx"
ln -s release-a "$WORK/current"
start_serve link-dir --model-dir "$WORK/current" --workers 1 --threads 1
# served_names: the sorted model names GET /v1/models lists.
served_names() {
    curl -s --max-time 10 "$URL/v1/models" >"$WORK/link-models.json"
    json_get "$WORK/link-models.json" 'sorted(m["name"] for m in j["models"])'
}
ln -s release-b "$WORK/current.new"
mv -T "$WORK/current.new" "$WORK/current"
for i in $(seq 100); do [ "$(served_names)" = "['second']" ] && break; sleep 0.1; done
[ "$(served_names)" = "['second']" ] && ok "renamed link moves the watch" || fail "renamed link moves the watch" "$(served_names)"
check "link change logged" grep -q "model directory link $WORK/current changed; watching its new target" "$LOG"
ln -sfn release-a "$WORK/current"
for i in $(seq 100); do [ "$(served_names)" = "['first']" ] && break; sleep 0.1; done
[ "$(served_names)" = "['first']" ] && ok "link replaced by ln -sfn moves the watch" || fail "link replaced by ln -sfn moves the watch" "$(served_names)"
ln -s "$model_path" "$WORK/release-a/third.onnx"
for i in $(seq 100); do [ "$(served_names)" = "['first', 'third']" ] && break; sleep 0.1; done
[ "$(served_names)" = "['first', 'third']" ] && ok "new target's changes are watched" || fail "new target's changes are watched" "$(served_names)"

# Files added while the models load at startup, before the watch begins,
# are loaded once it does. Each of the 12 links takes about 0.1 s to load.
mkdir -p "$WORK/slow"
for i in $(seq -w 1 12); do ln -s "$model_path" "$WORK/slow/m$i.onnx"; done
echo "not a model" >"$WORK/slow/broken.onnx"
port=$(free_port)
LOG=$WORK/slow.log
"$YOLOD" serve --listen "127.0.0.1:$port" --model-dir "$WORK/slow" --workers 1 --threads 1 2>"$LOG" &
PID=$!
DAEMON_PIDS+=("$PID")
URL=http://127.0.0.1:$port
for i in $(seq 600); do grep -qs "loaded model m01" "$LOG" && break; sleep 0.05; done
ln -s "$model_path" "$WORK/slow/late.onnx"
for i in $(seq 1200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] && break; sleep 0.1; done
for i in $(seq 100); do grep -q "loaded model late" "$LOG" && break; sleep 0.1; done
expect_status "file added during startup is served" 200 "$WORK/late.json" "$URL/v1/models/late"
[ "$(grep -c "broken.onnx" "$LOG")" = 1 ] && ok "broken file logged once at startup" || fail "broken file logged once at startup" "$(grep "broken.onnx" "$LOG")"

# SIGTERM while the watch loads new files: the daemon refuses new requests
# at once and stops without loading the rest.
mkdir -p "$WORK/busy"
ln -s "$model_path" "$WORK/busy/a.onnx"
start_serve busy --model-dir "$WORK/busy" --workers 1 --threads 1
for i in $(seq -w 1 12); do ln -s "$model_path" "$WORK/busy/b$i.onnx"; done
for i in $(seq 100); do grep -q "loaded model b01" "$LOG" && break; sleep 0.05; done
kill -TERM "$PID"
sleep 0.2
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect")
[ "$code" = 000 ] || [ "$code" = 503 ] && ok "no detection served after SIGTERM during a rescan" || fail "no detection served after SIGTERM during a rescan" "status $code"
wait "$PID"
loaded=$(grep -c "loaded model b" "$LOG")
[ "$loaded" -lt 12 ] && ok "rescan cut short by SIGTERM ($loaded of 12 loaded)" || fail "rescan cut short by SIGTERM" "$loaded of 12 loaded"

# SIGTERM while a SIGHUP loads new files: the same, though the main thread
# that handles signals is the one loading.
mkdir -p "$WORK/hup"
ln -s "$model_path" "$WORK/hup/a.onnx"
start_serve hup --model-dir "$WORK/hup" --watch-model-dir no --workers 1 --threads 1
for i in $(seq -w 1 12); do ln -s "$model_path" "$WORK/hup/b$i.onnx"; done
kill -HUP "$PID"
for i in $(seq 200); do grep -q "loaded model b01" "$LOG" && break; sleep 0.05; done
kill -TERM "$PID"
wait "$PID"
rc=$?
loaded=$(grep -c "loaded model b" "$LOG")
[ "$rc" -eq 0 ] && [ "$loaded" -lt 12 ] && ok "SIGHUP's loads cut short by SIGTERM ($loaded of 12 loaded)" \
    || fail "SIGHUP's loads cut short by SIGTERM" "exit $rc, $loaded of 12 loaded"
check "SIGTERM during the reload logged" grep -q "received Terminated during the reload; loading no more model files" "$LOG"

# A reload of more variants than a reply lists: a failure past them still fails the reply.
mkdir -p "$WORK/many"
for i in $(seq -w 1 18); do cp "$WORK/int8.good" "$WORK/many/yolov8n.v$i.yolod"; done
start_serve many --model-dir "$WORK/many" --watch-model-dir no --workers 1 --threads 1
echo "not a model" >"$WORK/many/yolov8n.v17.yolod"
expect_error "reload with a failure past the listed results" 500 load_failed "not shown" \
    -X POST "$URL/v1/models/yolov8n/reload"
got=$(json_get "$WORK/error.json" 'len(j["variants"])')
[ "$got" = 16 ] && ok "reply lists 16 of 18 results" || fail "reply lists 16 of 18 results" "$got"
# A FIFO in place of a variant's file fails its reload at once.
rm "$WORK/many/yolov8n.v01.yolod"
mkfifo "$WORK/many/yolov8n.v01.yolod"
expect_error "reload of a variant whose file is a FIFO" 500 load_failed "failed to load" --max-time 10 \
    -X POST "$URL/v1/models/yolov8n/reload?variant=v01"
check "FIFO reload message" grep -q "not a regular file" "$WORK/error.json"

finish
