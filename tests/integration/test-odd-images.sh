#!/usr/bin/env bash
# Every file in images/odd/ through POST /v1/detect: each gets the behaviour
# its README lists (same detections as bus.jpg or zidane.jpg after scaling,
# EXIF orientation applied, or the exact 4xx with a message that states the cause).
source "$(dirname "$0")/lib.sh"

ODD=$IMAGES/odd
start_daemon odd
R=$WORK/reply.json

# post NAME FILE: POST FILE as the raw body, expecting 200 and a well-formed reply.
post() {
    local name=$1 file=$2
    expect_status "$name status" 200 "$R" --data-binary @"$file" "$URL/v1/detect" &&
        check "$name reply shape" $CHECK shape "$R"
}

# same_as_bus NAME FILE WxH: the bus golden boxes scaled to WxH, with the
# looser tolerances that fit a re-encoded copy (IoU 0.95, confidence 0.03).
same_as_bus() {
    if post "$1" "$2"; then
        check "$1 same as bus" $CHECK golden "$R" "$GOLDEN/bus.detections.json" \
            --size "$3" --scale-from 810x1080 --iou 0.95 --conf-tol 0.03
    fi
}

same_as_zidane() {
    if post "$1" "$2"; then
        check "$1 same as zidane" $CHECK golden "$R" "$GOLDEN/zidane.detections.json" \
            --size 1280x720 --iou 0.95 --conf-tol 0.03
    fi
}

same_as_bus "progressive jpeg" "$ODD/bus_progressive.jpg" 810x1080
same_as_bus "large jpeg" "$ODD/bus_3024x4032_large.jpg" 3024x4032
same_as_bus "rgb png" "$ODD/bus_rgb.png" 810x1080

for file in bus_gray.png bus_cmyk.jpg; do
    if post "$file" "$ODD/$file"; then
        check "$file size" $CHECK size "$R" 810x1080
        check "$file persons found" $CHECK count "$R" --label person --min 3
        check "$file bus found" $CHECK count "$R" --label bus --min 1 --max 1
    fi
done

if post "tiny 16x16" "$ODD/bus_16x16_tiny.jpg"; then
    check "tiny 16x16 size" $CHECK size "$R" 16x16
fi
if post "1x1 pixel" "$ODD/bus_1x1.jpg"; then
    check "1x1 pixel no detections" $CHECK total "$R" --min 0 --max 0
fi

if post "native gray jpeg" "$ODD/coco_val_000000007888_gray_native.jpg"; then
    check "native gray jpeg detections" $CHECK total "$R" --min 1
fi
if post "zidane grayscale" "$ODD/zidane_grayscale.jpg"; then
    check "zidane grayscale persons" $CHECK count "$R" --label person --min 2
fi
same_as_zidane "zidane 444" "$ODD/zidane_444.jpg"
same_as_zidane "zidane rgba png" "$ODD/zidane_rgba.png"
same_as_zidane "zidane exif 6" "$ODD/zidane_exif_orient6.jpg"
same_as_zidane "zidane exif 8" "$ODD/zidane_exif_orient8.jpg"

if post "landscape exif 1" "$ODD/exif_examples_Landscape_1.jpg"; then
    cp "$R" "$WORK/landscape1.json"
    check "landscape exif 1 size" $CHECK size "$R" 1800x1200
    # The rotated files are lossy re-encodings (mean abs pixel difference about
    # 3.5 after rotation), which moves the single 0.35 kite by up to 0.05; a
    # wrong rotation would instead move the box.
    for n in 6 8; do
        if post "landscape exif $n" "$ODD/exif_examples_Landscape_$n.jpg"; then
            check "landscape exif $n same as 1" $CHECK same "$R" "$WORK/landscape1.json" --conf-tol 0.06
        fi
    done
fi

if post "panorama 4000x400" "$ODD/zidane_panorama_4000x400.jpg"; then
    check "panorama size" $CHECK size "$R" 4000x400
fi

expect_error "truncated jpeg" 422 undecodable_image "truncated" --data-binary @"$ODD/bus_truncated.jpg" "$URL/v1/detect"
expect_error "webp" 415 unsupported_media_type "JPEG" --data-binary @"$ODD/bus.webp" "$URL/v1/detect"
check "webp names PNG" $CHECK error "$WORK/error.json" --code unsupported_media_type --contains PNG
check "webp names its format" $CHECK error "$WORK/error.json" --code unsupported_media_type --contains WebP
printf '\xff\xd8\x00abc' >"$WORK/soi-then-data.jpg"
expect_error "JPEG start without a marker" 422 undecodable_image "marker" --data-binary @"$WORK/soi-then-data.jpg" "$URL/v1/detect"
expect_error "bmp" 415 unsupported_media_type "JPEG" --data-binary @"$ODD/bus.bmp" "$URL/v1/detect"
check "bmp names PNG" $CHECK error "$WORK/error.json" --code unsupported_media_type --contains PNG
expect_error "empty file" 400 empty_body "empty" --data-binary @"$ODD/empty.jpg" "$URL/v1/detect"
expect_error "empty multipart image" 400 empty_body "empty" -F image=@"$ODD/empty.jpg" "$URL/v1/detect"
expect_error "text named jpg" 415 unsupported_media_type "PNG" --data-binary @"$ODD/not_an_image.jpg" "$URL/v1/detect"
expect_error "truncated multipart" 422 undecodable_image "truncated" -F image=@"$ODD/bus_truncated.jpg" "$URL/v1/detect"

# A scan cut short and closed by an EOI marker is truncated, even when the
# header declares 7000x7000 for 10 bytes of scan data.
python3 - "$IMAGES/bus.jpg" "$WORK/early-eoi.jpg" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
sof = data.find(b"\xff\xc0")
struct.pack_into(">HH", data, sof + 5, 7000, 7000)
sos = data.find(b"\xff\xda")
length = struct.unpack(">H", data[sos + 2:sos + 4])[0]
open(sys.argv[2], "wb").write(bytes(data[:sos + 2 + length + 10]) + b"\xff\xd9")
PY
expect_error "scan ended by EOI" 422 undecodable_image "truncated" --data-binary @"$WORK/early-eoi.jpg" "$URL/v1/detect"

# A body cut inside a JPEG or PNG signature is a truncated image, not
# another format.
printf '\xff\xd8' >"$WORK/soi.jpg"
expect_error "bare jpeg signature" 422 undecodable_image "JPEG image is truncated" --data-binary @"$WORK/soi.jpg" "$URL/v1/detect"
printf '\x89PNG\r\n\x1a\n' >"$WORK/signature.png"
expect_error "bare png signature" 422 undecodable_image "PNG image is truncated" --data-binary @"$WORK/signature.png" "$URL/v1/detect"
printf '\x89PNG' >"$WORK/signature-start.png"
expect_error "png signature start" 422 undecodable_image "PNG image is truncated" --data-binary @"$WORK/signature-start.png" "$URL/v1/detect"
expect_error "bare jpeg signature multipart" 422 undecodable_image "JPEG image is truncated" -F image=@"$WORK/soi.jpg" "$URL/v1/detect"

# Every odd file once more as multipart: the daemon must still be alive.
for file in "$ODD"/*; do
    [ "$(basename "$file")" = README.md ] && continue
    http_request "$R" -F image=@"$file" "$URL/v1/detect" >/dev/null
done
expect_status "alive after odd files" 200 "$R" "$URL/healthz"

finish
