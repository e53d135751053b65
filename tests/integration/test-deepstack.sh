#!/usr/bin/env bash
# POST /v1/vision/detection (DeepStack and CodeProject.AI compatible) with the
# requests Frigate and Home Assistant send, its errors in DeepStack's shape,
# and the KServe v2 health endpoints.
source "$(dirname "$0")/lib.sh"

DS="python3 $HERE/check_deepstack.py"
R=$WORK/reply.json

# Frigate's deepstack detector posts a 320x320 JPEG crop of the frame. It is
# made from bus.jpg with libjpeg-turbo's djpeg and cjpeg (scripts/install-deps.sh).
for tool in djpeg cjpeg; do
    if ! command -v "$tool" >/dev/null; then
        echo "FATAL: '$tool' not found: install libjpeg-turbo-progs (make deps)" >&2
        exit 2
    fi
done
SQUARE=$WORK/bus-320.jpg
if ! djpeg -pnm "$IMAGES/bus.jpg" >"$WORK/bus.ppm" ||
        ! $DS square-ppm "$WORK/bus.ppm" "$WORK/bus-320.ppm" --size 320 ||
        ! cjpeg -quality 90 "$WORK/bus-320.ppm" >"$SQUARE"; then
    echo "FATAL: cannot make the 320x320 test JPEG from bus.jpg" >&2
    exit 2
fi

start_daemon main

# ds_error NAME STATUS WORD CURL_ARGS...: a DeepStack error reply with the
# HTTP status, the same code in the body and a word of the message.
ds_error() {
    local name=$1 status=$2 word=$3
    shift 3
    if expect_status "$name status" "$status" "$R" "$@"; then
        check "$name body" $DS error "$R" --status "$status" --contains "$word"
    fi
}

# --- Frigate: multipart field image (320x320 JPEG) plus an empty api_key field
if expect_status "frigate request" 200 "$R" -F image=@"$SQUARE" -F api_key= \
        "$URL/v1/vision/detection"; then
    check "frigate reply shape" $DS success "$R" --width 320 --height 320 --min-confidence 0.4
    check "frigate finds 3 persons" $DS count "$R" --label person --min 3
    check "frigate finds the bus" $DS count "$R" --label bus --min 1 --max 1
fi

# --- Home Assistant: multipart image plus min_confidence
if expect_status "home assistant request" 200 "$R" -F image=@"$IMAGES/bus.jpg" \
        -F min_confidence=0.5 "$URL/v1/vision/detection"; then
    check "home assistant reply shape" $DS success "$R" --width 810 --height 1080 --min-confidence 0.5
    check "home assistant 3 persons" $DS count "$R" --label person --min 3 --max 3
    check "home assistant 1 bus" $DS count "$R" --label bus --min 1 --max 1
    check "home assistant box pixels" python3 -c '
import json, sys
first = json.load(open(sys.argv[1]))["predictions"][0]
# The 0.90 person at (670.66, 377.89)-(810, 879.7) in POST /v1/detect, rounded.
want = {"label": "person", "x_min": 671, "y_min": 378, "x_max": 810, "y_max": 880}
got = {k: first[k] for k in want}
assert got == want, got
' "$R"
fi

# --- min_confidence: the default 0.4 keeps the 0.44 person that 0.5 drops; 0.85 keeps 3
# persons and drops the 0.85 bus
if expect_status "default min_confidence" 200 "$R" -F image=@"$IMAGES/bus.jpg" \
        "$URL/v1/vision/detection"; then
    check "default min_confidence shape" $DS success "$R" --width 810 --height 1080 --min-confidence 0.4
    check "default min_confidence 4 persons" $DS count "$R" --label person --min 4 --max 4
fi
if expect_status "min_confidence in query, raw body" 200 "$R" --data-binary @"$IMAGES/bus.jpg" \
        -H 'Content-Type: image/jpeg' "$URL/v1/vision/detection?min_confidence=0.85"; then
    check "min_confidence 0.85 shape" $DS success "$R" --width 810 --height 1080 --min-confidence 0.85
    check "min_confidence 0.85 3 persons" $DS count "$R" --label person --min 3 --max 3
    check "min_confidence 0.85 no bus" $DS count "$R" --label bus --min 0 --max 0
fi
if expect_status "min_confidence 1" 200 "$R" -F image=@"$IMAGES/bus.jpg" -F min_confidence=1 \
        "$URL/v1/vision/detection"; then
    check "min_confidence 1 empty list" python3 -c '
import json, sys
reply = json.load(open(sys.argv[1]))
assert reply["success"] is True and reply["predictions"] == [] and reply["count"] == 0, reply
' "$R"
fi
if expect_status "model field" 200 "$R" -F image=@"$SQUARE" -F model=yolov8n \
        "$URL/v1/vision/detection"; then
    check "model field shape" $DS success "$R" --width 320 --height 320 --min-confidence 0.4
fi

# --- errors, in DeepStack's shape
ds_error "missing image field" 400 "image" -F min_confidence=0.5 "$URL/v1/vision/detection"
ds_error "empty body" 400 "empty" -X POST "$URL/v1/vision/detection"
ds_error "min_confidence above 1" 400 "min_confidence" -F image=@"$SQUARE" \
    -F min_confidence=1.5 "$URL/v1/vision/detection"
ds_error "min_confidence not a number" 400 "min_confidence" -F image=@"$SQUARE" \
    -F min_confidence=high "$URL/v1/vision/detection"
ds_error "min_confidence negative in query" 400 "min_confidence" --data-binary @"$SQUARE" \
    "$URL/v1/vision/detection?min_confidence=-0.1"
ds_error "min_confidence repeated in query" 400 "min_confidence" --data-binary @"$SQUARE" \
    "$URL/v1/vision/detection?min_confidence=0.5&min_confidence=0.6"
ds_error "non-image body" 415 "JPEG" --data-binary 'hello, not an image' "$URL/v1/vision/detection"
ds_error "non-image multipart field" 415 "JPEG" -F 'image=hello, not an image' \
    "$URL/v1/vision/detection"
head -c 3000 "$SQUARE" >"$WORK/truncated.jpg"
ds_error "truncated JPEG" 422 "" -F image=@"$WORK/truncated.jpg" "$URL/v1/vision/detection"
ds_error "unknown model" 404 "nope" -F image=@"$SQUARE" -F model=nope "$URL/v1/vision/detection"
ds_error "GET on detection is 405" 405 "POST" "$URL/v1/vision/detection"
check "405 names the allowed method" bash -c "curl -s -D - -o /dev/null '$URL/v1/vision/detection' | grep -qi '^Allow: POST'"

# --- CodeProject.AI's custom-model route: the same endpoint with the model
# from the path, and DeepStack's error shape.
expect_status "custom model route" 200 "$R" -F image=@"$IMAGES/bus.jpg" "$URL/v1/vision/custom/yolov8n"
check "custom model route reply shape" $DS success "$R" --width 810 --height 1080 --min-confidence 0.4
check "custom model route finds the bus" $DS count "$R" --label bus --min 1 --max 1
ds_error "custom route unknown model" 404 "nope" -F image=@"$SQUARE" "$URL/v1/vision/custom/nope"
ds_error "custom route path wins over the model field" 404 "nope" -F image=@"$SQUARE" -F model=yolov8n \
    "$URL/v1/vision/custom/nope"
ds_error "GET on the custom route is 405" 405 "POST" "$URL/v1/vision/custom/yolov8n"
ds_error "custom route without a name" 404 "unknown model ''" -F image=@"$SQUARE" "$URL/v1/vision/custom/"
ds_error "custom route name with a slash" 404 "unknown model 'a/b'" -F image=@"$SQUARE" "$URL/v1/vision/custom/a/b"

# --- Expect: 100-continue. An invalid query parameter gets its error in
# DeepStack's shape instead of 100 Continue, so the body is never uploaded.
if expect_continue "100-continue bad min_confidence gets 400 first" no 400 "$R" \
        --data-binary @"$SQUARE" "$URL/v1/vision/detection?min_confidence=5"; then
    check "100-continue bad min_confidence body" $DS error "$R" --status 400 --contains "min_confidence '5'"
fi
if expect_continue "100-continue unknown model gets 404 first" no 404 "$R" \
        --data-binary @"$SQUARE" "$URL/v1/vision/detection?model=nope"; then
    check "100-continue unknown model body" $DS error "$R" --status 404 --contains "nope"
fi
if expect_continue "100-continue valid request gets 100 and 200" yes 200 "$R" \
        -F image=@"$SQUARE" "$URL/v1/vision/detection?min_confidence=0.5"; then
    check "100-continue valid request shape" $DS success "$R" --width 320 --height 320 --min-confidence 0.5
fi
ds_error "Expect 200-ok gets 417" 417 "200-ok" -H 'Expect: 200-ok' -F image=@"$SQUARE" \
    "$URL/v1/vision/detection"

# --- multipart headers that libmicrohttpd's post processor misread: a
# parameter after the boundary, a capitalised parameter name, an unquoted
# part name.
multipart_body "$WORK/quoted.body" "$IMAGES/bus.jpg" 'name="image"; filename="bus.jpg"'
multipart_body "$WORK/unquoted.body" "$IMAGES/bus.jpg" 'name=image; filename=bus.jpg'
for request in 'boundary=XyZ; charset=utf-8|quoted' 'boundary="XyZ"; charset=utf-8|quoted' \
        'Boundary=XyZ|quoted' 'boundary=XyZ|unquoted' 'BOUNDARY=XyZ; charset="utf-8"|unquoted'; do
    parameters=${request%|*}
    body=${request#*|}
    name="multipart '$parameters' with $body name"
    if expect_status "$name" 200 "$R" -H "Content-Type: multipart/form-data; $parameters" \
            --data-binary @"$WORK/$body.body" "$URL/v1/vision/detection"; then
        check "$name reply shape" $DS success "$R" --width 810 --height 1080 --min-confidence 0.4
        check "$name 1 bus" $DS count "$R" --label bus --min 1 --max 1
        check "$name persons" $DS count "$R" --label person --min 3
    fi
done

# --- KServe v2 health
expect_status "kserve live" 200 "$R" "$URL/v2/health/live"
check "kserve live body" python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"live": True}' "$R"
expect_status "kserve ready" 200 "$R" "$URL/v2/health/ready"
check "kserve ready body" python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"ready": True}' "$R"
expect_status "kserve model ready" 200 "$R" "$URL/v2/models/yolov8n/ready"
check "kserve model ready body" python3 -c '
import json, sys
assert json.load(open(sys.argv[1])) == {"name": "yolov8n", "ready": True}' "$R"
expect_error "kserve unknown model" 404 model_not_found "nope" "$URL/v2/models/nope/ready"
check "kserve unknown model lists the loaded ones" $CHECK error "$WORK/error.json" --code model_not_found \
    --contains "(loaded: yolov8n)"
expect_error "kserve model name prefix" 404 model_not_found "yolov8" "$URL/v2/models/yolov8/ready"
expect_status "kserve empty model name" 404 "$R" "$URL/v2/models//ready"
expect_error "kserve versioned route" 404 model_not_found "/v2/models/NAME/ready" "$URL/v2/models/yolov8n/versions/1/ready"
expect_status "kserve live rejects POST" 405 "$R" -X POST "$URL/v2/health/live"

# --- limits, in DeepStack's shape: a 487 KB body over 300 KB, 921,600 pixels over 300,000
start_daemon limits --max-body-bytes 300K --max-pixels 300000
ds_error "chunked multipart over limit" 413 "max_body_bytes" -F image=@"$IMAGES/bus.jpg" \
    -H 'Transfer-Encoding: chunked' "$URL/v1/vision/detection"
# A Content-Length over the limit is rejected before the body arrives, still in DeepStack's shape.
ds_error "declared length over limit" 413 "max_body_bytes" \
    -F image=@"$IMAGES/bus.jpg" "$URL/v1/vision/detection"
expect_error "declared length over limit on the native route" 413 body_too_large "max_body_bytes" \
    -F image=@"$IMAGES/bus.jpg" "$URL/v1/detect"
ds_error "pixels over limit" 413 "300000" -F image=@"$IMAGES/zidane.jpg" "$URL/v1/vision/detection"
if expect_status "320x320 within limits" 200 "$R" -F image=@"$SQUARE" "$URL/v1/vision/detection"; then
    check "320x320 within limits shape" $DS success "$R" --width 320 --height 320 --min-confidence 0.4
fi

finish
