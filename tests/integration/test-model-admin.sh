#!/usr/bin/env bash
# Model administration and hot swap by every trigger. One served file is
# swapped 20 times between its fp32 and int8 compressions: 7 times by
# replacing the file in the watched model directory, 7 through POST
# .../reload and 6 by SIGHUP. A steady stream of detection requests runs
# meanwhile. Every request must succeed, replies must come from both
# compressions, and resident memory must come back within 10% afterwards.
# Then: a corrupted replacement, unload, load, the default variant (API and
# config), and files added to and removed from the directory.
source "$(dirname "$0")/lib.sh"

CALIB=$SHARED/datasets/coco128/images/train2017
DIR=$WORK/models
mkdir -p "$DIR"
check "compress fp32 file" "$YOLOD" compress "$MODEL" --variant fp32 -o "$WORK/fp32.good"
check "compress int8 file" "$YOLOD" compress "$MODEL" --variant int8 --calib "$CALIB" \
    --calib-limit 8 -o "$WORK/int8.good"
cp "$WORK/fp32.good" "$DIR/yolov8n.live.yolod"

CONF=$WORK/yolod.conf
write_config() {
    printf 'model_dir = %s\nwatch_model_dir = %s\n%s' "$DIR" "$1" "${2:-}" >"$CONF"
}
write_config yes
start_serve admin --config "$CONF" --workers 2 --threads 1 --log-level debug
ok "daemon starts from a config with a watched model_dir"

# version_of VARIANT: the version of yolov8n/VARIANT that GET /v1/models/yolov8n reports, or "none".
version_of() {
    curl -s --max-time 10 "$URL/v1/models/yolov8n" >"$WORK/describe.json"
    python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(next((v["version"] for v in j.get("variants", []) if v["variant"] == sys.argv[2]), "none"))' \
        "$WORK/describe.json" "$1" 2>/dev/null || echo none
}

# wait_version VARIANT WANT: waits up to 30 s for VARIANT to reach version WANT.
wait_version() {
    local i
    for i in $(seq 300); do
        [ "$(version_of "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# loads_before_exit NAME MODEL PID: waits up to 10 s for MODEL to serve
# variant fp16, and passes if it does while process PID still runs. Then
# waits for PID.
loads_before_exit() {
    local name=$1 model=$2 pid=$3
    for _ in $(seq 100); do [ "$(variants_of "$model")" = "['fp16']" ] && break; sleep 0.1; done
    if [ "$(variants_of "$model")" = "['fp16']" ] && kill -0 "$pid" 2>/dev/null; then
        ok "$name"
    else
        fail "$name" "variants: $(variants_of "$model"); process $pid running: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no)"
    fi
    wait "$pid"
}

# detect_pairs N: N rounds of two requests at once, so both workers run one.
detect_pairs() {
    local i first
    for i in $(seq "$1"); do
        curl -s -o /dev/null --max-time 60 --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=live" &
        first=$!
        curl -s -o /dev/null --max-time 60 --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=live" &
        wait "$first" $!
    done
}

# Warm both workers on the first version, then take the baseline.
detect_pairs 3
sleep 0.5
rss_before=$(rss_kb)

# Two clients, each at most 600 requests, until $WORK/stop exists.
client() {
    local out=$WORK/stream$1.txt i
    : >"$out"
    for i in $(seq 600); do
        [ -e "$WORK/stop" ] && break
        curl -s --max-time 60 -o "$WORK/stream$1.json" -w '%{http_code} ' \
            --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=live" >>"$out"
        python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j.get("compression"), j.get("version"), len(j.get("detections", [])))' \
            "$WORK/stream$1.json" >>"$out" 2>/dev/null || echo "unparsable" >>"$out"
    done
}
client 1 &
c1=$!
client 2 &
c2=$!

# swap N: the file content for swap N (odd: int8, even: fp32 again).
content_for() { if [ $(($1 % 2)) -eq 1 ]; then echo "$WORK/int8.good"; else echo "$WORK/fp32.good"; fi; }
# Replacing by rename, as operators should: the old file stays whole until the new one is in place.
replace_file() { cp "$1" "$DIR/.incoming" && mv "$DIR/.incoming" "$DIR/yolov8n.live.yolod"; }

swap_fail=0
for n in $(seq 1 7); do
    replace_file "$(content_for "$n")"
    wait_version live $((n + 1)) || { swap_fail=$((swap_fail + 1)); echo "file swap $n: version $(version_of live)"; }
done
if [ "$swap_fail" -eq 0 ]; then ok "7 swaps by replacing the watched file"; else fail "7 swaps by replacing the watched file" "$swap_fail missed"; fi

# A corrupted replacement (one flipped byte in the middle): the old version keeps serving.
cp "$WORK/fp32.good" "$WORK/corrupt"
size=$(stat -c %s "$WORK/corrupt")
printf '\x5a' | dd of="$WORK/corrupt" bs=1 seek=$((size / 2)) conv=notrunc status=none
replace_file "$WORK/corrupt"
for i in $(seq 100); do grep -q "reload of model yolov8n variant live .* failed" "$LOG" && break; sleep 0.1; done
if grep -q "reload of model yolov8n variant live .* failed, version 8 keeps serving" "$LOG"; then
    ok "corrupted replacement: failed reload logged, version 8 keeps serving"
else
    fail "corrupted replacement: failed reload logged" "$(grep -i 'live' "$LOG" | tail -3)"
fi
curl -s "$URL/metrics" >"$WORK/metrics.txt"
if grep -q 'yolod_model_reloads_total{model="yolov8n",variant="live",result="failure"} 1' "$WORK/metrics.txt"; then
    ok "corrupted replacement counted as a failed reload"
else
    fail "corrupted replacement counted as a failed reload" "$(grep reloads_total "$WORK/metrics.txt")"
fi
[ "$(version_of live)" = 8 ] && ok "version 8 still listed" || fail "version 8 still listed" "$(version_of live)"

# Watch off (through SIGHUP, which changes no file), then 7 swaps by the API.
write_config no
hups=$(grep -c "SIGHUP: configuration reread" "$LOG")
kill -HUP "$PID"
for i in $(seq 100); do [ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && break; sleep 0.1; done
swap_fail=0
for n in $(seq 8 14); do
    replace_file "$(content_for "$n")"
    code=$(http_request "$WORK/reload$n.json" -X POST "$URL/v1/models/yolov8n/reload?variant=live")
    got=$(json_get "$WORK/reload$n.json" '[(v["variant"], v["result"], v["version"]) for v in j["variants"]]')
    if [ "$code" != 200 ] || [ "$got" != "[('live', 'reloaded', $((n + 1)))]" ]; then
        swap_fail=$((swap_fail + 1))
        echo "API swap $n: $code $got"
    fi
done
if [ "$swap_fail" -eq 0 ]; then ok "7 swaps by POST .../reload (watch off)"; else fail "7 swaps by POST .../reload (watch off)" "$swap_fail failed"; fi

swap_fail=0
for n in $(seq 15 20); do
    replace_file "$(content_for "$n")"
    kill -HUP "$PID"
    wait_version live $((n + 1)) || { swap_fail=$((swap_fail + 1)); echo "SIGHUP swap $n: version $(version_of live)"; }
done
if [ "$swap_fail" -eq 0 ]; then ok "6 swaps by SIGHUP"; else fail "6 swaps by SIGHUP" "$swap_fail missed"; fi

touch "$WORK/stop"
wait "$c1" "$c2"
total=$(cat "$WORK"/stream*.txt | wc -l)
bad=$(cat "$WORK"/stream*.txt | grep -vc '^2[0-9][0-9] ')
if [ "$total" -ge 20 ] && [ "$bad" -eq 0 ]; then
    ok "$total requests during 20 swaps, none failed"
else
    fail "requests during 20 swaps, none failed" "$total replies, $bad not 2xx: $(grep -v '^2' "$WORK"/stream*.txt | head -3)"
fi
compressions=$(cat "$WORK"/stream*.txt | awk '{print $2}' | sort -u | tr '\n' ' ')
if [ "$compressions" = "fp32 int8 " ]; then
    ok "replies came from both fp32 and int8 versions"
else
    fail "replies came from both fp32 and int8 versions" "saw: $compressions"
fi
versions=$(cat "$WORK"/stream*.txt | awk '{print $3}' | sort -un | wc -l)
if [ "$versions" -ge 5 ]; then ok "replies name $versions different versions"; else fail "replies name several versions" "$versions"; fi
if cat "$WORK"/stream*.txt | awk '$4 < 4 {exit 1}'; then
    ok "every version found the objects in bus.jpg"
else
    fail "every version found the objects in bus.jpg" "$(awk '$4 < 4' "$WORK"/stream*.txt | head -3)"
fi

# Both workers drop the replaced versions on their next job or prune. Two
# requests sent together can land on one worker, so try a few rounds.
for round in 1 2 3 4 5; do
    detect_pairs 2
    sleep 1
    rss_after=$(rss_kb)
    [ $((rss_after * 10)) -le $((rss_before * 11)) ] && break
done
if [ $((rss_after * 10)) -le $((rss_before * 11)) ]; then
    ok "RSS after 20 swaps within 10% ($rss_before kB -> $rss_after kB)"
else
    fail "RSS after 20 swaps within 10%" "$rss_before kB -> $rss_after kB"
fi

# Admin API: unload, load, default variant.
cp "$WORK/int8.good" "$DIR/.incoming" && mv "$DIR/.incoming" "$DIR/yolov8n.int8.yolod"
# The watch is off: the new file is loaded by an explicit load.
[ "$(version_of int8)" = none ] && ok "new file not loaded while the watch is off" || fail "new file not loaded while the watch is off" "$(version_of int8)"
expect_status "load picks up the new file" 200 "$WORK/load.json" -X POST "$URL/v1/models/yolov8n/load"
got=$(json_get "$WORK/load.json" 'sorted((v["variant"], v["result"], v["version"]) for v in j["variants"])')
if [ "$got" = "[('int8', 'loaded', 1), ('live', 'unchanged', 21)]" ]; then ok "load reports loaded and unchanged variants"; else fail "load reports loaded and unchanged variants" "$got"; fi

expect_status "default of yolov8n is live" 200 "$WORK/d1.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
[ "$(json_get "$WORK/d1.json" 'j["variant"]')" = live ] && ok "request without variant gets live" || fail "request without variant gets live" "$(head -c 300 "$WORK/d1.json")"
expect_status "set default variant" 200 "$WORK/def.json" -X POST "$URL/v1/models/yolov8n/default?variant=int8"
[ "$(json_get "$WORK/def.json" 'j["default_variant"]')" = int8 ] && ok "default_variant is int8" || fail "default_variant is int8" "$(head -c 300 "$WORK/def.json")"
expect_status "detect after default change" 200 "$WORK/d2.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
[ "$(json_get "$WORK/d2.json" '(j["variant"], j["compression"])')" = "('int8', 'int8')" ] && ok "request without variant gets int8" || fail "request without variant gets int8" "$(head -c 300 "$WORK/d2.json")"
expect_error "default to unknown variant" 404 variant_not_found "fp16" -X POST "$URL/v1/models/yolov8n/default?variant=fp16"
expect_error "default without variant" 400 bad_parameter "variant" -X POST "$URL/v1/models/yolov8n/default"
expect_error "default of unknown model" 404 model_not_found "nope" -X POST "$URL/v1/models/nope/default?variant=int8"
expect_error "unload with GET" 405 method_not_allowed "POST" "$URL/v1/models/yolov8n/unload"
expect_error "repeated variant parameter" 400 bad_parameter "variant" -X POST "$URL/v1/models/yolov8n/reload?variant=live&variant=int8"
# An empty variant is an error, not "every variant".
expect_error "unload with an empty variant" 400 bad_parameter "empty" -X POST "$URL/v1/models/yolov8n/unload?variant="
expect_error "reload with an empty variant" 400 bad_parameter "empty" -X POST "$URL/v1/models/yolov8n/reload?variant="
expect_error "load with an empty variant" 400 bad_parameter "empty" -X POST "$URL/v1/models/yolov8n/load?variant="
# default needs a variant, so its message offers no way to act on every variant.
expect_error "default with an empty variant" 400 bad_parameter "is empty; name a variant" -X POST "$URL/v1/models/yolov8n/default?variant="
got=$(json_get "$WORK/error.json" 'j["error"]["message"]')
[ "$got" = "query parameter 'variant' is empty; name a variant" ] && ok "default with an empty variant message" || fail "default with an empty variant message" "$got"
expect_error "unload with a bare variant" 400 bad_parameter "empty" -X POST "$URL/v1/models/yolov8n/unload?variant"
expect_error "reload of unknown model with a variant" 404 model_not_found "nope" -X POST "$URL/v1/models/nope/reload?variant=int8"
expect_error "load of a variant with no file" 404 variant_not_found "fp16" -X POST "$URL/v1/models/yolov8n/load?variant=fp16"

expect_status "unload int8" 200 "$WORK/unload.json" -X POST "$URL/v1/models/yolov8n/unload?variant=int8"
got=$(json_get "$WORK/unload.json" '[(v["variant"], v["result"]) for v in j["variants"]]')
[ "$got" = "[('int8', 'unloaded')]" ] && ok "unload reports the variant" || fail "unload reports the variant" "$got"
expect_error "unloaded variant is gone" 404 variant_not_found "int8" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=int8"
expect_status "default falls back to live" 200 "$WORK/d3.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
[ "$(json_get "$WORK/d3.json" 'j["variant"]')" = live ] && ok "default moved to the remaining variant" || fail "default moved to the remaining variant" "$(head -c 300 "$WORK/d3.json")"
expect_error "unload it twice" 404 variant_not_found "int8" -X POST "$URL/v1/models/yolov8n/unload?variant=int8"
expect_status "load int8 again" 200 "$WORK/load2.json" -X POST "$URL/v1/models/yolov8n/load?variant=int8"
got=$(json_get "$WORK/load2.json" '[(v["variant"], v["result"], v["version"]) for v in j["variants"]]')
[ "$got" = "[('int8', 'loaded', 2)]" ] && ok "reloaded variant gets the next version" || fail "reloaded variant gets the next version" "$got"
expect_error "load of a model with no file" 404 model_not_found "yolov9" -X POST "$URL/v1/models/yolov9/load"
check "load of a model with no file message" $CHECK error "$WORK/error.json" --code model_not_found --contains "no unloaded variant to load again, and the model directory has no such"

# Two files that give the same name and variant: the second is not loaded.
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$DIR/yolov8n.onnx"
expect_status "load the plain onnx file as fp32" 200 "$WORK/load-fp32.json" -X POST "$URL/v1/models/yolov8n/load?variant=fp32"
cp "$WORK/fp32.good" "$DIR/yolov8n.fp32.yolod"
expect_error "load of a second fp32 file" 409 name_conflict "variant" -X POST "$URL/v1/models/yolov8n/load?variant=fp32"
got=$(json_get "$WORK/error.json" '[(v["variant"], v["result"], "rename one file" in v.get("error", "")) for v in j["variants"]]')
[ "$got" = "[('fp32', 'unchanged', False), ('fp32', 'failed', True)]" ] && ok "name conflict names the variant" || fail "name conflict names the variant" "$got"
[ "$(version_of fp32)" = 1 ] && ok "the first fp32 file keeps serving" || fail "the first fp32 file keeps serving" "$(cat "$WORK/describe.json")"
# A new file that does not load is listed under the variant its name gives.
echo "not a model" >"$DIR/yolov8n.bad.yolod"
expect_error "load of a junk file" 422 model_invalid "variant" -X POST "$URL/v1/models/yolov8n/load?variant=bad"
got=$(json_get "$WORK/error.json" '[(v["variant"], v["result"]) for v in j["variants"]]')
[ "$got" = "[('bad', 'failed')]" ] && ok "junk file failure names its variant" || fail "junk file failure names its variant" "$got"
rm "$DIR/yolov8n.bad.yolod"
# The SIGHUP below finds both files gone and unloads fp32.
rm "$DIR/yolov8n.fp32.yolod" "$DIR/yolov8n.onnx"

# default_variant in the config, applied by SIGHUP; the watch back on. A
# variant name in other letter case matches nothing and is logged.
write_config yes 'default_variant = INT8
'
hups=$(grep -c "SIGHUP: configuration reread" "$LOG")
kill -HUP "$PID"
for i in $(seq 100); do [ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && break; sleep 0.1; done
check "unmatched default_variant logged" grep -q "warn  default_variant 'INT8' matches no loaded variant yet" "$LOG"
write_config yes 'default_variant = int8
'
hups=$(grep -c "SIGHUP: configuration reread" "$LOG")
kill -HUP "$PID"
for i in $(seq 100); do [ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && break; sleep 0.1; done
expect_status "detect after SIGHUP with default_variant" 200 "$WORK/d4.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
[ "$(json_get "$WORK/d4.json" 'j["variant"]')" = int8 ] && ok "default_variant from the config applies" || fail "default_variant from the config applies" "$(head -c 300 "$WORK/d4.json")"
# Removing the key, or naming a variant the model lacks, makes the first
# loaded variant (live) the default again, not the old key's.
for setting in '' 'default_variant = fp16
'; do
    write_config yes "$setting"
    hups=$(grep -c "SIGHUP: configuration reread" "$LOG")
    kill -HUP "$PID"
    for i in $(seq 100); do [ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && break; sleep 0.1; done
    expect_status "detect after SIGHUP with '${setting%?}'" 200 "$WORK/d5.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
    got=$(json_get "$WORK/d5.json" 'j["variant"]')
    [ "$got" = live ] && ok "SIGHUP with '${setting%?}' restores the first variant" || fail "SIGHUP with '${setting%?}' restores the first variant" "variant $got"
done
write_config yes 'default_variant = int8
'
kill -HUP "$PID"

# With the watch on, a new file is served and a removed one is not.
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$DIR/.link"
mv "$DIR/.link" "$DIR/yolov8n.onnx"
wait_version fp32 2 && ok "a file added to the watched directory is loaded" || fail "a file added to the watched directory is loaded" "$(cat "$WORK/describe.json")"
echo "not a model" >"$DIR/yolov8w-int8.yolod"
for i in $(seq 100); do grep -q "skipping .*/yolov8w-int8.yolod" "$LOG" && break; sleep 0.1; done
grep -q "skipping .*/yolov8w-int8.yolod" "$LOG" && ok "misnamed file in the watched directory warned at once" || fail "misnamed file in the watched directory warned at once" "$(tail -3 "$LOG")"
rm "$DIR/yolov8w-int8.yolod"

# A file whose name gives another compression than its content is logged.
# A label such as "live" is not a compression and is not checked.
cp "$WORK/int8.good" "$DIR/other.fp16.yolod"
cp "$WORK/int8.good" "$DIR/onnxname.onnx"
cp "$WORK/int8.good" "$DIR/upper.INT8.yolod"
for i in $(seq 300); do grep -q "onnxname.onnx is a yolod" "$LOG" && grep -q "other.fp16.yolod contains" "$LOG" && grep -q "upper.INT8.yolod contains" "$LOG" && break; sleep 0.1; done
check "variant named against content warned" grep -q "other.fp16.yolod contains variant 'int8' but its name gives variant 'fp16'" "$LOG"
check "yolod file named .onnx warned" grep -q "onnxname.onnx is a yolod model file of variant 'int8', served as that variant; rename it onnxname.int8.yolod" "$LOG"
check "variant in capitals warned" grep -q "upper.INT8.yolod contains variant 'int8' but its name gives variant 'INT8'" "$LOG"
check "label variant live not warned" bash -c "! grep -q 'yolov8n.live.yolod contains' '$LOG'"
rm "$DIR/other.fp16.yolod" "$DIR/onnxname.onnx" "$DIR/upper.INT8.yolod"
for i in $(seq 300); do grep -q "unloaded model onnxname" "$LOG" && grep -q "unloaded model other" "$LOG" && grep -q "unloaded model upper" "$LOG" && break; sleep 0.1; done
# variants_of NAME: the sorted variants GET /v1/models/NAME lists.
variants_of() {
    curl -s --max-time 10 "$URL/v1/models/$1" >"$WORK/variants.json"
    json_get "$WORK/variants.json" 'sorted(v["variant"] for v in j.get("variants", []))'
}

# A NAME.onnx file whose content changes variant is served as its new variant.
cp "$WORK/int8.good" "$DIR/flip.onnx"
for i in $(seq 100); do [ "$(variants_of flip)" = "['int8']" ] && break; sleep 0.1; done
[ "$(variants_of flip)" = "['int8']" ] && ok "onnx name with int8 content serves int8" || fail "onnx name with int8 content serves int8" "$(variants_of flip)"
cp "$MODEL" "$DIR/.flip" && mv "$DIR/.flip" "$DIR/flip.onnx"
for i in $(seq 100); do [ "$(variants_of flip)" = "['fp32']" ] && break; sleep 0.1; done
[ "$(variants_of flip)" = "['fp32']" ] && ok "file turned fp32 serves fp32" || fail "file turned fp32 serves fp32" "$(variants_of flip)"
check "variant change logged" grep -q "unloaded model flip variant int8 version 1 (its file now contains variant fp32)" "$LOG"
expect_status "detect with the new variant" 200 "$WORK/flip.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?model=flip"
cp "$WORK/int8.good" "$DIR/.flip" && mv "$DIR/.flip" "$DIR/flip.onnx"
for i in $(seq 100); do [ "$(variants_of flip)" = "['int8']" ] && break; sleep 0.1; done
[ "$(variants_of flip)" = "['int8']" ] && ok "file turned back serves int8" || fail "file turned back serves int8" "$(variants_of flip)"
expect_status "unload the changed model" 200 "$WORK/flip-unload.json" -X POST "$URL/v1/models/flip/unload"
expect_status "load the changed model again" 200 "$WORK/flip-load.json" -X POST "$URL/v1/models/flip/load"
got=$(json_get "$WORK/flip-load.json" '[(v["variant"], v["result"]) for v in j["variants"]]')
[ "$got" = "[('int8', 'loaded')]" ] && ok "load lists the variant once" || fail "load lists the variant once" "$got"
# The content changes while the model is unloaded: load serves the new variant, listed once.
expect_status "unload before the content changes" 200 "$WORK/flip-unload.json" -X POST "$URL/v1/models/flip/unload"
cp "$MODEL" "$DIR/.flip" && mv "$DIR/.flip" "$DIR/flip.onnx"
sleep 1
expect_status "load after the content changed" 200 "$WORK/flip-load.json" -X POST "$URL/v1/models/flip/load"
got=$(json_get "$WORK/flip-load.json" '[(v["variant"], v["result"]) for v in j["variants"]]')
[ "$got" = "[('fp32', 'loaded')]" ] && ok "load of changed content lists it once" || fail "load of changed content lists it once" "$got"
rm "$DIR/flip.onnx"
for i in $(seq 100); do [ "$(variants_of flip)" = "[]" ] && break; sleep 0.1; done

# A file written in two parts 1.5 s apart loads once it is closed, with
# no failed attempt at the half-written file.
python3 - "$WORK/fp32.good" "$DIR/slow.fp16.yolod" <<'EOF'
import sys, time
data = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as out:
    out.write(data[: len(data) // 2])
    out.flush()
    time.sleep(1.5)
    out.write(data[len(data) // 2 :])
EOF
for i in $(seq 100); do [ "$(variants_of slow)" = "['fp16']" ] && break; sleep 0.1; done
[ "$(variants_of slow)" = "['fp16']" ] && ok "slowly written file loads when closed" || fail "slowly written file loads when closed" "variants: $(variants_of slow)"
if grep -q "slow.fp16.yolod failed" "$LOG"; then
    fail "half-written file not loaded" "$(grep "slow.fp16.yolod" "$LOG")"
else
    ok "half-written file not loaded"
fi
rm "$DIR/slow.fp16.yolod"
for i in $(seq 100); do [ "$(variants_of slow)" = "[]" ] && break; sleep 0.1; done

# A served file rewritten in place while a rescan (set off by another
# file) runs: the rescan leaves it alone, the old version keeps serving,
# and the file reloads once it is closed.
cp "$WORK/fp32.good" "$DIR/inplace.fp16.yolod"
for i in $(seq 100); do [ "$(variants_of inplace)" = "['fp16']" ] && break; sleep 0.1; done
python3 - "$WORK/fp32.good" "$DIR/inplace.fp16.yolod" "$DIR" <<'EOF' &
import os, shutil, sys, time
data = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "r+b") as out:
    out.write(data[: len(data) // 3])
    out.truncate()
    out.flush()
    shutil.copy(sys.argv[1], os.path.join(sys.argv[3], ".other"))
    os.rename(os.path.join(sys.argv[3], ".other"), os.path.join(sys.argv[3], "other.fp16.yolod"))
    time.sleep(2)
    out.write(data[len(data) // 3 :])
EOF
writer=$!
for i in $(seq 100); do [ "$(variants_of other)" = "['fp16']" ] && break; sleep 0.1; done
expect_status "file written in place keeps serving" 200 "$WORK/inplace.json" --data-binary @"$IMAGES/bus.jpg" \
    "$URL/v1/detect?model=inplace"
wait "$writer"
for i in $(seq 100); do grep -q "reloaded model inplace variant fp16" "$LOG" && break; sleep 0.1; done
check "file written in place reloads when closed" grep -q "reloaded model inplace variant fp16" "$LOG"
check "rescan skips a file open for writing" grep -q "not loading .*/inplace.fp16.yolod yet: it is still being written" "$LOG"
if grep -q "inplace.fp16.yolod.*failed\|model inplace .*failed" "$LOG"; then
    fail "file written in place not loaded half written" "$(grep "inplace.*failed" "$LOG")"
else
    ok "file written in place not loaded half written"
fi
rm "$DIR/inplace.fp16.yolod" "$DIR/other.fp16.yolod"
for i in $(seq 100); do [ "$(variants_of inplace)$(variants_of other)" = "[][]" ] && break; sleep 0.1; done

# Steady writes to a file that is not a model (a download in progress, say)
# do not hold back the rescan of a model renamed in meanwhile.
python3 - "$DIR/.download.part" <<'EOF' &
import sys, time
with open(sys.argv[1], "wb") as out:
    for _ in range(100):
        out.write(b"x" * 4096)
        out.flush()
        time.sleep(0.1)
EOF
writer=$!
sleep 0.5
cp "$WORK/fp32.good" "$DIR/.busy" && mv "$DIR/.busy" "$DIR/busy.fp16.yolod"
# The writer runs for 10 s: the model must load while it still writes.
loads_before_exit "writes to other files do not hold back a rescan" busy "$writer"
rm -f "$DIR/.download.part" "$DIR/busy.fp16.yolod"

# Events do not show when every writer is gone (truncate(2) by path sends no
# close, for one), so a file written whole but held open loads once it has
# gone 5 s without a write, before its writer closes it.
python3 - "$WORK/fp32.good" "$DIR/held.fp16.yolod" <<'EOF' &
import sys, time
data = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as out:
    out.write(data)
    out.flush()
    time.sleep(12)
EOF
loads_before_exit "held-open file loads after 5 s" held $!
rm -f "$DIR/held.fp16.yolod"
for i in $(seq 100); do [ "$(variants_of held)$(variants_of busy)" = "[][]" ] && break; sleep 0.1; done

# More events than the kernel queues (fs.inotify.max_queued_events, 16384 on
# this machine) while the daemon is stopped: the watch logs that it lost
# events, rescans, and still finds a model copied in among them.
kill -STOP "$PID"
python3 - "$DIR" <<'EOF'
import os, sys
for i in range(9000):
    open(os.path.join(sys.argv[1], ".flood%d" % i), "w").close()
EOF
cp "$WORK/fp32.good" "$DIR/flood.fp16.yolod"
kill -CONT "$PID"
for i in $(seq 100); do [ "$(variants_of flood)" = "['fp16']" ] && break; sleep 0.1; done
[ "$(variants_of flood)" = "['fp16']" ] && ok "model copied in during lost events loads" ||
    fail "model copied in during lost events loads" "variants: $(variants_of flood)"
check "lost events logged" grep -q "warn  the watch of .* lost events (too many at once); rescanning" "$LOG"
find "$DIR" -maxdepth 1 -name '.flood*' -delete
rm -f "$DIR/flood.fp16.yolod"
for i in $(seq 100); do [ "$(variants_of flood)" = "[]" ] && break; sleep 0.1; done

# A reload that failed is not retried, nor counted again, by rescans that
# find its file unchanged.
cp "$WORK/fp32.good" "$DIR/stale.fp16.yolod"
for i in $(seq 100); do [ "$(variants_of stale)" = "['fp16']" ] && break; sleep 0.1; done
head -c 1000 "$WORK/fp32.good" >"$DIR/.stale" && mv "$DIR/.stale" "$DIR/stale.fp16.yolod"
for i in $(seq 100); do grep -q "reload of model stale variant fp16 .* failed" "$LOG" && break; sleep 0.1; done
echo "not a model" >"$DIR/unrelated1.onnx"
sleep 1
echo "not a model" >"$DIR/unrelated2.onnx"
sleep 1
failures=$(curl -s "$URL/metrics" | grep '^yolod_model_reloads_total{model="stale",variant="fp16",result="failure"}' | awk '{print $2}')
[ "$failures" = 1 ] && ok "unchanged failed file counted once" || fail "unchanged failed file counted once" "failures: ${failures:-none}"
expect_status "failed reload keeps the old version serving" 200 "$WORK/stale.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?model=stale"
rm "$DIR/stale.fp16.yolod" "$DIR/unrelated1.onnx" "$DIR/unrelated2.onnx"
for i in $(seq 100); do [ "$(variants_of stale)" = "[]" ] && break; sleep 0.1; done

# A rescan logs a problem it logged before (same file version) at debug
# only, and counts it in yolod_model_file_failures_total once.
file_failures_before=$(curl -s "$URL/metrics" | awk '$1 == "yolod_model_file_failures_total" {print $2}')
echo "not a model" >"$DIR/broken.onnx"
echo "not a model" >"$DIR/broken-int8.yolod"
for i in $(seq 100); do grep -q "error load of .*/broken.onnx failed" "$LOG" && grep -q "warn  skipping .*/broken-int8.yolod" "$LOG" && break; sleep 0.1; done
echo "not a model" >"$DIR/trigger.onnx"
for i in $(seq 100); do grep -q "debug load of .*/broken.onnx skipped" "$LOG" && break; sleep 0.1; done
check "rescan logs a known failure at debug" grep -q "debug load of .*/broken.onnx skipped" "$LOG"
for i in $(seq 50); do grep -qF "still fail to load" "$LOG" && break; sleep 0.1; done
check "rescan summary counts changed files only" \
    grep -qF "warn  model directory changed: 1 model change(s), 1 failed; 1 unchanged file(s) still fail to load" "$LOG"
[ "$(grep -c "error load of .*/broken.onnx failed" "$LOG")" = 1 ] && ok "known failure logged once as error" || fail "known failure logged once as error" "$(grep "broken.onnx" "$LOG")"
check "rescan logs a misnamed file at debug" grep -q "debug skipping .*/broken-int8.yolod" "$LOG"
file_failures=$(curl -s "$URL/metrics" | awk '$1 == "yolod_model_file_failures_total" {print $2}')
[ "$file_failures" = "$((file_failures_before + 2))" ] && ok "new file failures counted once each" || fail "new file failures counted once each" "$file_failures_before before, $file_failures after broken.onnx and trigger.onnx"
check "rescan skips parsing a known failure" grep -q "debug load of .*/broken.onnx skipped: it failed unchanged before" "$LOG"

[ "$(grep -c "warn  skipping .*/broken-int8.yolod" "$LOG")" = 1 ] && ok "misnamed file warned once" || fail "misnamed file warned once" "$(grep "broken-int8" "$LOG")"
echo "still not a model, longer" >"$DIR/broken.onnx"
for i in $(seq 100); do [ "$(grep -c "error load of .*/broken.onnx failed" "$LOG")" = 2 ] && break; sleep 0.1; done
[ "$(grep -c "error load of .*/broken.onnx failed" "$LOG")" = 2 ] && ok "changed failing file logged again" || fail "changed failing file logged again" "$(grep "broken.onnx" "$LOG")"
hups=$(grep -c "SIGHUP: configuration reread" "$LOG")
kill -HUP "$PID"
for i in $(seq 100); do [ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && break; sleep 0.1; done
curl -s -X POST "$URL/v1/models/broken/load" >/dev/null
after_hup=$(curl -s "$URL/metrics" | awk '$1 == "yolod_model_file_failures_total" {print $2}')
[ "$after_hup" = "$((file_failures + 1))" ] && ok "SIGHUP and load do not count a known failure again" || fail "SIGHUP and load do not count a known failure again" "$file_failures before the change of broken.onnx, $after_hup after"
rm "$DIR/broken.onnx" "$DIR/broken-int8.yolod" "$DIR/trigger.onnx"
rm "$DIR/yolov8n.onnx"
wait_version fp32 none && ok "a removed file's variant is unloaded" || fail "a removed file's variant is unloaded" "$(cat "$WORK/describe.json")"
if grep -q "unloaded model yolov8n variant fp32 .*removed from the model directory" "$LOG"; then ok "log says why fp32 was unloaded"; else fail "log says why fp32 was unloaded" "$(grep unloaded "$LOG" | tail -2)"; fi
expect_status "load after a watched file was removed" 200 "$WORK/load-gone.json" -X POST "$URL/v1/models/yolov8n/load"
got=$(json_get "$WORK/load-gone.json" 'sorted((v["variant"], v["result"]) for v in j["variants"])')
[ "$got" = "[('int8', 'unchanged'), ('live', 'unchanged')]" ] && ok "load skips the removed file's variant" || fail "load skips the removed file's variant" "$got"
expect_error "load of the removed variant" 404 variant_not_found "fp32" -X POST "$URL/v1/models/yolov8n/load?variant=fp32"

# The watched directory removed and put back: the watch follows it.
mv "$DIR" "$WORK/models.away"
sleep 0.5
mv "$WORK/models.away" "$DIR"
for i in $(seq 100); do grep -q "model directory .* is back; watching it again" "$LOG" && break; sleep 0.1; done
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$DIR/yolov8n.onnx"
wait_version fp32 3 && ok "the watch follows a directory that was moved away and back" || fail "the watch follows a directory that was moved away and back" "$(grep -i 'model directory' "$LOG" | tail -3)"

# A FIFO and a bad file in the directory are skipped, and a SIGHUP does not hang on them.
mkfifo "$DIR/fifo.onnx"
echo "not a model" >"$DIR/junk.onnx"
echo "not a model" >"$DIR/yolov8n-int8.yolod"
ln -s "$WORK/missing.onnx" "$DIR/dangling.onnx"
mkdir "$DIR/folder.onnx"
echo "not a model" >"$DIR/UPPER.ONNX"
BAD_NAME="$DIR/$(printf 'bad\377name').onnx"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$BAD_NAME"
hups=$(grep -c "SIGHUP: configuration reread" "$LOG")
kill -HUP "$PID"
for i in $(seq 150); do [ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && break; sleep 0.1; done
[ "$(grep -c "SIGHUP: configuration reread" "$LOG")" -gt "$hups" ] && ok "SIGHUP with a FIFO and a junk file completes" || fail "SIGHUP with a FIFO and a junk file completes" "$(tail -3 "$LOG")"
grep -q "junk.onnx" "$LOG" && ok "junk file logged" || fail "junk file logged" "$(tail -3 "$LOG")"
grep -q "skipping .*/yolov8n-int8.yolod: a model directory serves only files named NAME.onnx or NAME.VARIANT.yolod" "$LOG" && ok "misnamed model file logged" || fail "misnamed model file logged" "$(grep skipping "$LOG" | tail -3)"
check "FIFO in the directory logged" grep -q "warn  skipping .*/fifo.onnx: not a regular file" "$LOG"
check "dangling link logged" grep -q "warn  skipping .*/dangling.onnx: a link to a missing file" "$LOG"
check "directory named .onnx logged" grep -q "warn  skipping .*/folder.onnx: a directory" "$LOG"
check "capital extension logged" grep -q "warn  skipping .*/UPPER.ONNX: a model directory serves only" "$LOG"
grep -q 'bad\\xFFname.onnx.*not valid UTF-8' "$LOG" && ok "file name that is not UTF-8 logged" || fail "file name that is not UTF-8 logged" "$(tail -3 "$LOG")"
curl -s "$URL/v1/models" >"$WORK/models-utf8.json"
python3 -c 'import json, sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$WORK/models-utf8.json" && ok "model list stays valid UTF-8 JSON" || fail "model list stays valid UTF-8 JSON" "$(head -c 300 "$WORK/models-utf8.json")"

# Nothing loaded: detection gets 503, readiness turns 503, a load brings it back.
expect_status "unload every variant" 200 "$WORK/unload-all.json" -X POST "$URL/v1/models/yolov8n/unload"
expect_error "detect with no model loaded" 503 no_model_loaded "load" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"
expect_status "readyz with no model loaded" 503 "$WORK/ready.json" "$URL/readyz"
expect_status "kserve ready with no model loaded" 503 "$WORK/ready.json" "$URL/v2/health/ready"
expect_status "load the model again" 200 "$WORK/load3.json" -X POST "$URL/v1/models/yolov8n/load"
expect_status "readyz after the load" 200 "$WORK/ready.json" "$URL/readyz"
rm -f "$DIR/fifo.onnx" "$DIR/junk.onnx" "$DIR/yolov8n-int8.yolod" "$BAD_NAME" "$DIR/yolov8n.onnx" \
    "$DIR/dangling.onnx" "$DIR/UPPER.ONNX"
rmdir "$DIR/folder.onnx"
wait_version fp32 none || fail "fp32 unloaded again" "$(cat "$WORK/describe.json")"

# A config that does not parse changes nothing.
printf 'model_dir = %s\nworkers = many\n' "$DIR" >"$CONF"
kill -HUP "$PID"
for i in $(seq 100); do grep -q "configuration has errors" "$LOG" && break; sleep 0.1; done
grep -q "configuration has errors" "$LOG" && ok "bad config on SIGHUP is reported" || fail "bad config on SIGHUP is reported" "$(tail -3 "$LOG")"
# Its error is a log line with the level and a timestamp, as the rest.
check "SIGHUP config error is a log line" grep -qE "^[0-9T:.-]+Z error SIGHUP: .*workers" "$LOG"
expect_status "still serving after a bad config" 200 "$WORK/d5.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?variant=live"

curl -s "$URL/metrics" >"$WORK/metrics.txt"
check "metrics pass promtool after model changes" promtool check metrics <"$WORK/metrics.txt"
if grep -q 'yolod_model_info{model="yolov8n",variant="fp32"' "$WORK/metrics.txt"; then
    fail "unloaded variant has no model_info line" "$(grep model_info "$WORK/metrics.txt")"
else
    ok "unloaded variant has no model_info line"
fi
kill -TERM "$PID"
wait "$PID"
rc=$?
[ "$rc" = 0 ] && ok "daemon stops cleanly after all of it" || fail "daemon stops cleanly after all of it" "exit $rc"

# The same file through --model and the directory is served once, as the --model entry.
start_serve duplicate --model "$DIR/yolov8n.live.yolod" --model-dir "$DIR" --watch-model-dir no
grep -q "yolov8n.live.yolod is already loaded through --model" "$LOG" && ok "a --model file in the directory is skipped there" || fail "a --model file in the directory is skipped there" "$(grep live "$LOG" | head -3)"
[ "$(version_of live)" = 1 ] && ok "it is loaded once (version 1)" || fail "it is loaded once (version 1)" "$(cat "$WORK/describe.json")"
finish
