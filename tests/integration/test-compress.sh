#!/usr/bin/env bash
# `yolod compress` and `yolod inspect`: fp32 and fp16 .yolod variants of
# yolov8n, their summaries and layer tables, the golden detections from
# `detect` and `serve` on them, and the messages for bad files and usage.
source "$(dirname "$0")/lib.sh"

FP32=$WORK/yolov8n-fp32.yolod
FP16=$WORK/yolov8n-fp16.yolod
OUT=$WORK/out.txt
ERR=$WORK/err.txt

# expect_exit NAME WANT COMMAND...: runs COMMAND with stdout in $OUT and
# stderr in $ERR; ok when it exits WANT.
expect_exit() {
    local name=$1 want=$2 rc
    shift 2
    "$@" >"$OUT" 2>"$ERR"
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        ok "$name"
        return 0
    fi
    fail "$name" "exit $rc, expected $want; stderr: $(head -c 400 "$ERR")"
    return 1
}

# expect_text NAME FILE REGEX: ok when a line of FILE matches the extended REGEX.
expect_text() {
    local name=$1 file=$2 regex=$3
    if grep -Eq -- "$regex" "$file"; then
        ok "$name"
    else
        fail "$name" "no line matches /$regex/ in: $(head -c 600 "$file")"
    fi
}

# --- compress
expect_exit "compress fp32 exits 0" 0 "$YOLOD" compress "$MODEL" --variant fp32 -o "$FP32"
expect_text "compress fp32 names the variant" "$OUT" '^variant +fp32$'
expect_text "compress fp32 GFLOPs" "$OUT" '^GFLOPs +8\.74$'
expect_text "compress fp32 all convs fp32" "$OUT" '^total +63 +63 +0 +0 '
expect_text "compress fp32 reconstruction n/a" "$OUT" '^reconstruction +n/a'
size32=$(stat -c %s "$FP32" 2>/dev/null || echo 0)
expect_text "compress fp32 reports the file size" "$OUT" "^size +$size32 bytes"

expect_exit "compress fp16 exits 0" 0 "$YOLOD" compress "$MODEL" --variant=fp16 --output "$FP16"
expect_text "compress fp16 all convs fp16" "$OUT" '^total +63 +0 +63 +0 '
size16=$(stat -c %s "$FP16" 2>/dev/null || echo 0)
if [ "$size16" -gt 0 ] && [ $((size16 * 100 / size32)) -ge 45 ] && [ $((size16 * 100 / size32)) -le 55 ]; then
    ok "fp16 file is half the fp32 file"
else
    fail "fp16 file is half the fp32 file" "fp32 $size32 bytes, fp16 $size16 bytes"
fi
if ls "$WORK" | grep -q '\.tmp\.'; then
    fail "compress leaves no temporary file" "$(ls "$WORK")"
else
    ok "compress leaves no temporary file"
fi

# --- inspect
sha=$(sha256sum "$MODEL" | cut -d' ' -f1)
expect_exit "inspect fp32 exits 0" 0 "$YOLOD" inspect "$FP32"
expect_text "inspect fp32 format" "$OUT" '^format +\.yolod version 1\.0$'
expect_text "inspect fp32 precision count" "$OUT" '63 convolutions: 63 fp32, 0 fp16, 0 int8'
expect_text "inspect fp32 source hash matches sha256sum" "$OUT" "^source sha256 +$sha$"
expect_text "inspect fp32 variant" "$OUT" '^variant +fp32$'
expect_text "inspect fp32 class count" "$OUT" '^classes +80 \(person, '
expect_text "inspect fp32 input size" "$OUT" '^input +3x640x640$'
expect_text "inspect fp32 first layer row" "$OUT" '^ +1 +Conv\+SiLU +/model\.0/conv/Conv +3x640x640 +16x320x320 +3x3/2 +fp32 '

expect_exit "inspect fp16 exits 0" 0 "$YOLOD" inspect "$FP16"
expect_text "inspect fp16 precision count" "$OUT" '63 convolutions: 0 fp32, 63 fp16, 0 int8'
expect_text "inspect fp16 compute" "$OUT" '^compute +8\.74 GFLOPs$'
expect_text "inspect fp16 settings" "$OUT" '^settings +weights=fp16'

expect_exit "inspect onnx exits 0" 0 "$YOLOD" inspect "$MODEL"
expect_text "inspect onnx format" "$OUT" '^format +ONNX$'
expect_text "inspect onnx precision count" "$OUT" '63 convolutions: 63 fp32, 0 fp16, 0 int8'
expect_text "inspect onnx hash" "$OUT" "^sha256 +$sha$"
# Rows are numbered 1 to the layer count, without the nodes fused away.
expect_text "inspect onnx layer count" "$OUT" '^layers +97 '
expect_text "inspect onnx last row number" "$OUT" '^ +97 +Conv +/model\.22/cv3\.2/cv3\.2\.2/Conv '
expect_exit "inspect a photo exits 1" 1 "$YOLOD" inspect "$IMAGES/bus.jpg"
expect_text "inspect a photo says it is no model" "$ERR" 'not a model file \(neither a \.yolod file nor ONNX\)'

# --- detections from the .yolod files
for variant in fp32 fp16; do
    file=$WORK/yolov8n-$variant.yolod
    if expect_exit "detect $variant exits 0" 0 "$YOLOD" detect --model "$file" "$IMAGES/bus.jpg"; then
        cp "$OUT" "$WORK/detect-$variant.json"
        check "detect $variant bus golden detections" $CHECK golden "$WORK/detect-$variant.json" \
            "$GOLDEN/bus.detections.json" --size 810x1080
        check "detect $variant names the model" $CHECK shape "$WORK/detect-$variant.json" \
            --model "yolov8n-$variant"
    fi
done
if expect_exit "detect onnx exits 0" 0 "$YOLOD" detect --model "$MODEL" "$IMAGES/bus.jpg"; then
    check "detect fp32 .yolod same as onnx" $CHECK same "$WORK/detect-fp32.json" "$OUT" \
        --iou 0.9999 --conf-tol 0.00001 --margin 0
fi

# detect names a file's variant as serve does: the label in NAME.LABEL.yolod.
cp "$FP16" "$WORK/yolov8n.live.yolod"
if expect_exit "detect labelled file exits 0" 0 "$YOLOD" detect --model "$WORK/yolov8n.live.yolod" "$IMAGES/bus.jpg"; then
    expect_text "detect labelled file variant" "$OUT" '"variant":"live","compression":"fp16"'
fi
cp "$FP16" "$WORK/yolov8n.int8.yolod"
if expect_exit "detect misnamed file exits 0" 0 "$YOLOD" detect --model "$WORK/yolov8n.int8.yolod" "$IMAGES/bus.jpg"; then
    expect_text "detect misnamed file variant" "$OUT" '"variant":"int8","compression":"fp16"'
    expect_text "detect misnamed file warns" "$ERR" "contains variant 'fp16' but its name gives variant 'int8'"
fi

MODEL=$FP16 start_daemon compress-fp16
if expect_status "serve fp16 detect" 200 "$WORK/http.json" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect"; then
    check "serve fp16 bus golden detections" $CHECK golden "$WORK/http.json" \
        "$GOLDEN/bus.detections.json" --size 810x1080
    check "serve fp16 names the model" $CHECK shape "$WORK/http.json" --model yolov8n-fp16
fi

# --- bad model files: rejected with the reason, exit 1
BAD=$WORK/bad.yolod
head -c 100000 "$FP16" >"$BAD"
expect_exit "inspect truncated exits 1" 1 "$YOLOD" inspect "$BAD"
expect_text "inspect truncated message" "$ERR" 'truncated \.yolod file: 100000 bytes'

cp "$FP16" "$BAD"
printf '\x55' | dd of="$BAD" bs=1 seek=3000000 conv=notrunc status=none
expect_exit "detect corrupted exits 1" 1 "$YOLOD" detect --model "$BAD" "$IMAGES/bus.jpg"
expect_text "detect corrupted message" "$ERR" 'bad\.yolod: corrupted \.yolod file: checksum mismatch'
expect_exit "serve corrupted exits 1" 1 timeout 60 "$YOLOD" serve --model "$BAD" --listen "127.0.0.1:$(free_port)"
expect_text "serve corrupted message" "$ERR" 'corrupted \.yolod file'

cp "$FP16" "$BAD"
printf '\x02' | dd of="$BAD" bs=1 seek=8 conv=notrunc status=none
expect_exit "inspect edited header exits 1" 1 "$YOLOD" inspect "$BAD"
expect_text "inspect edited header message" "$ERR" 'corrupted \.yolod file: header checksum mismatch'

# --- compress usage and input errors
expect_exit "compress unknown variant exits 2" 2 "$YOLOD" compress "$MODEL" --variant int3 -o "$BAD"
expect_text "compress unknown variant lists variants" "$ERR" "unknown variant 'int3' \(supported: fp32, fp16"
expect_exit "compress without variant exits 2" 2 "$YOLOD" compress "$MODEL" -o "$BAD"
expect_text "compress without variant message" "$ERR" 'missing --variant'
expect_exit "compress without output exits 2" 2 "$YOLOD" compress "$MODEL" --variant fp16
expect_text "compress without output message" "$ERR" 'missing -o'
expect_exit "compress without model exits 2" 2 "$YOLOD" compress --variant fp16 -o "$BAD"
expect_exit "compress from .yolod exits 1" 1 "$YOLOD" compress "$FP16" --variant fp16 -o "$BAD"
expect_text "compress from .yolod message" "$ERR" 'already a \.yolod file'
expect_exit "compress missing model exits 1" 1 "$YOLOD" compress "$WORK/none.onnx" --variant fp16 -o "$BAD"
expect_text "compress missing model message" "$ERR" 'none\.onnx'
expect_exit "compress unwritable output exits 1" 1 "$YOLOD" compress "$MODEL" --variant fp16 -o "$WORK/no/dir/x.yolod"
expect_text "compress unwritable output message" "$ERR" "cannot write '.*/no/dir/x\.yolod'"
# The folder is checked before the work: a prune run fails before calibrating.
expect_exit "compress prune into a missing folder exits 1" 1 "$YOLOD" compress "$MODEL" --variant prune20 \
    --calib "$SHARED/datasets/coco128/images/train2017" --calib-limit 4 -o "$WORK/no/dir/x.yolod"
expect_text "missing folder named before calibrating" "$ERR" "folder '.*/no/dir': No such file or directory"
grep -q "calibrat\|pruning" "$ERR" && fail "missing folder fails before any work" "$(head -c 300 "$ERR")" || ok "missing folder fails before any work"
expect_exit "compress with an empty -o exits 2" 2 "$YOLOD" compress "$MODEL" --variant fp16 -o ""

# --- -o paths that renaming over would damage: rejected before any work
FIFO=$WORK/out.fifo
mkfifo "$FIFO"
expect_exit "compress -o FIFO exits 1" 1 "$YOLOD" compress "$MODEL" --variant fp16 -o "$FIFO"
expect_text "compress -o FIFO message" "$ERR" "cannot write '.*/out\.fifo': it is a FIFO, not a regular file"
if [ -p "$FIFO" ]; then ok "compress -o FIFO keeps the FIFO"; else fail "compress -o FIFO keeps the FIFO" "$(ls -l "$FIFO")"; fi
mkdir "$WORK/out-dir"
expect_exit "compress -o directory exits 1" 1 "$YOLOD" compress "$MODEL" --variant fp16 -o "$WORK/out-dir"
expect_text "compress -o directory message" "$ERR" "cannot write '.*/out-dir': it is a directory"
INPUT=$WORK/input.onnx
cp "$MODEL" "$INPUT"
expect_exit "compress -o the input exits 1" 1 "$YOLOD" compress "$INPUT" --variant fp16 -o "$INPUT"
expect_text "compress -o the input message" "$ERR" "cannot write '.*/input\.onnx': it is the input model"
expect_exit "compress -o the input by another path exits 1" 1 "$YOLOD" compress "$INPUT" --variant fp16 \
    -o "$WORK/./input.onnx"
expect_text "compress -o the input by another path message" "$ERR" "it is the input model"
if cmp -s "$MODEL" "$INPUT"; then ok "compress -o the input keeps the input"; else fail "compress -o the input keeps the input"; fi
# A symbolic link to a regular file is replaced by the new file; its target stays.
cp "$FP32" "$WORK/target.yolod"
ln -s target.yolod "$WORK/link.yolod"
expect_exit "compress -o symlink exits 0" 0 "$YOLOD" compress "$MODEL" --variant fp16 -o "$WORK/link.yolod"
if [ -f "$WORK/link.yolod" ] && [ ! -L "$WORK/link.yolod" ]; then
    ok "compress -o symlink replaces the link"
else
    fail "compress -o symlink replaces the link" "$(ls -l "$WORK/link.yolod")"
fi
if cmp -s "$FP32" "$WORK/target.yolod"; then ok "compress -o symlink keeps its target"; else fail "compress -o symlink keeps its target"; fi

expect_exit "compress ignores --calib for fp16" 0 "$YOLOD" compress "$MODEL" --variant fp16 --calib "$WORK" \
    --calib-method minmax --keep-float 3 -o "$BAD"
expect_text "compress --calib warning" "$ERR" 'does not calibrate'
expect_text "compress --calib-method warning" "$ERR" "does not quantize; ignoring --calib-method minmax"
expect_text "compress --keep-float warning" "$ERR" "does not quantize; ignoring --keep-float 3"
CALIB=$SHARED/datasets/coco128/images/train2017
for variant in int8 fp16; do
    expect_exit "compress $variant bad --calib-method exits 2" 2 "$YOLOD" compress "$MODEL" --variant "$variant" \
        --calib "$CALIB" --calib-method foo -o "$BAD"
    expect_text "compress $variant bad --calib-method message" "$ERR" \
        "invalid --calib-method 'foo' \\(expected minmax, percentile or entropy\\)"
done
# yolov8n has 63 convolutions: keeping them all fp32 would leave no int8 layer.
expect_exit "compress --keep-float 63 exits 2" 2 "$YOLOD" compress "$MODEL" --variant int8 --calib "$CALIB" \
    --calib-limit 2 --keep-float 63 -o "$BAD"
expect_text "compress --keep-float 63 message" "$ERR" "invalid --keep-float '63' \\(expected fewer than 63"

# --- pruning with the measured allocation, on 4 calibration images
PRUNED=$WORK/prune20.yolod
expect_exit "compress prune20 exits 0" 0 "$YOLOD" compress "$MODEL" --variant prune20 --calib "$CALIB" \
    --calib-limit 4 --sensitivity-images 2 --reconstruct no -o "$PRUNED"
expect_text "compress prune20 removes 20% of the FLOPs" "$OUT" '^pruned +8\.74 -> [0-9.]+ GFLOPs, (19|20|21)\.[0-9]% removed'
expect_text "compress prune20 settings name the ranking" "$OUT" \
    '^settings +prune=channels ranking=measured-head-change bias-compensation=yes '
expect_exit "detect prune20 exits 0" 0 "$YOLOD" detect --model "$PRUNED" "$IMAGES/bus.jpg"
expect_text "detect prune20 finds a person" "$OUT" '"label":"person"'
HELD=$WORK/prune20-held.yolod
expect_exit "compress prune20 with a held-out image exits 0" 0 "$YOLOD" compress "$MODEL" \
    --variant prune20 --calib "$CALIB" --calib-limit 4 --sensitivity-images 2 --reconstruct no \
    --distill-epochs 2 --distill-holdout 1 -o "$HELD"
expect_text "distillation scores the held-out image before training" "$ERR" \
    '^distilling: before training, held out: loss [0-9.]+, agreement [0-9.]+$'
expect_text "distillation scores the held-out image after each epoch" "$ERR" \
    '^distilling: epoch 2 of 2, .*held out: loss [0-9.]+, agreement [0-9.]+'
expect_text "distillation says which weights it kept" "$ERR" \
    '^distilling: (kept epoch [12], held-out agreement|no epoch agreed with the teacher)'
expect_text "compress settings record the held-out count and kept epoch" "$OUT" \
    'distill-holdout=1 distill-kept-epoch=[0-2]'
expect_text "distillation reports its feature term" "$ERR" \
    '^distilling: epoch 1 of 2, loss [0-9.]+ \(classes [0-9.]+, boxes [0-9.]+, features [0-9.]+\)'
expect_text "compress settings record the feature weight and zoom" "$OUT" \
    'distill-features=10 distill-zoom=0\.25 '
for bad in "--distill-features -1" "--distill-features x" "--distill-features 0x10" \
    "--distill-features 1001" "--distill-zoom 0.95" "--distill-zoom -0.1"; do
    # shellcheck disable=SC2086
    expect_exit "compress $bad exits 2" 2 "$YOLOD" compress "$MODEL" --variant prune20 \
        --calib "$CALIB" $bad -o "$BAD"
    expect_text "compress $bad message" "$ERR" "invalid ${bad% *} '${bad#* }' \(expected a number from 0 to "
done
# Numbers are plain decimals: no spaces, signs or hexadecimal, which strtod and strtol take.
for bad in "--threads ' 5'" "--threads +5" "--calib-limit 0x10" "--distill-lr 0x1p-8" "--ridge ' 0.1'"; do
    eval "set -- $bad"
    expect_exit "compress $bad exits 2" 2 "$YOLOD" compress "$MODEL" --variant prune20 --calib "$CALIB" \
        "$1" "$2" -o "$BAD"
    expect_text "compress $bad message" "$ERR" "invalid $1 '${2//+/\\+}'"
done
expect_exit "compress fp16 with --distill-zoom exits 0" 0 "$YOLOD" compress "$MODEL" --variant fp16 \
    --distill-zoom 0.5 -o "$WORK/zoom-fp16.yolod"
expect_text "compress fp16 with --distill-zoom warns" "$ERR" \
    'distill-zoom applies to the distillation of prune variants only; ignoring it'
expect_exit "compress holding out every image exits 1" 1 "$YOLOD" compress "$MODEL" \
    --variant prune20 --calib "$CALIB" --calib-limit 4 --sensitivity-images 2 --reconstruct no \
    --distill-holdout 4 -o "$BAD"
expect_text "compress holding out every image message" "$ERR" '4 held out of 4 calibration images'
expect_exit "compress negative --sensitivity-images exits 2" 2 "$YOLOD" compress "$MODEL" \
    --variant prune20 --calib "$CALIB" --sensitivity-images -1 -o "$BAD"
expect_text "compress negative --sensitivity-images message" "$ERR" "invalid --sensitivity-images '-1'"
expect_exit "compress prune20 per-layer exits 0" 0 "$YOLOD" compress "$MODEL" --variant prune20 \
    --calib "$CALIB" --calib-limit 4 --reconstruct no --distill-epochs 0 --prune-ratio per-layer \
    --sensitivity-images 2 -o "$WORK/prune20-per-layer.yolod"
expect_text "per-layer says it ignores --sensitivity-images" "$ERR" 'sensitivity-images has no effect with --prune-ratio per-layer'
expect_text "compress prune20 per-layer removes 20% of the FLOPs" "$OUT" '^pruned +8\.74 -> [0-9.]+ GFLOPs, (19|20|21)\.[0-9]% removed'
expect_text "compress prune20 per-layer settings name the ranking" "$OUT" \
    '^settings +prune=channels ranking=per-layer-importance '
expect_exit "inspect prune20 per-layer exits 0" 0 "$YOLOD" inspect "$WORK/prune20-per-layer.yolod"
expect_text "per-layer ratio trims the 256-channel layers" "$OUT" 'model\.8/cv1/conv/Conv +2[0-3][0-9]x20x20 +2[0-3][0-9]x20x20'
expect_exit "compress fp16 with --prune-ratio exits 0" 0 "$YOLOD" compress "$MODEL" --variant fp16 \
    --prune-ratio per-layer -o "$WORK/fp16-ratio.yolod"
expect_text "compress fp16 says it ignores --prune-ratio" "$ERR" 'prune-ratio applies to prune variants only; ignoring it'
expect_exit "compress bad --prune-ratio exits 2" 2 "$YOLOD" compress "$MODEL" --variant prune20 \
    --calib "$CALIB" --prune-ratio layer -o "$BAD"
expect_text "compress bad --prune-ratio message" "$ERR" "invalid --prune-ratio 'layer' \\(expected global or per-layer\\)"

# Without distillation, prune<P>-int8 refits once, after quantizing, and its
# settings contain one reconstruction word for both steps.
PRUNED_INT8=$WORK/prune5-int8.yolod
expect_exit "compress prune5-int8 exits 0" 0 "$YOLOD" compress "$MODEL" --variant prune5-int8 \
    --calib "$CALIB" --calib-limit 2 --sensitivity-images 0 --distill-epochs 0 --reconstruct-images 1 \
    --calib-method minmax -o "$PRUNED_INT8"
expect_text "compress prune5-int8 refits" "$OUT" '^reconstruction +mean relative layer output error'
expect_exit "inspect prune5-int8 exits 0" 0 "$YOLOD" inspect "$PRUNED_INT8"
words=$(grep '^settings ' "$OUT" | grep -o 'reconstruction=[a-z]*' | tr '\n' ' ')
if [ "$words" = "reconstruction=yes " ]; then
    ok "prune5-int8 settings one reconstruction word"
else
    fail "prune5-int8 settings one reconstruction word" "found: $words"
fi
# With distillation the settings run past 250 characters; none of the pruning words are cut.
expect_exit "compress distilled prune5-int8 exits 0" 0 "$YOLOD" compress "$MODEL" --variant prune5-int8 \
    --calib "$CALIB" --calib-limit 4 --sensitivity-images 0 --distill-epochs 1 --distill-holdout 1 \
    --distill-lr 0.00123456 --distill-features 12.345 --reconstruct-images 1 --calib-method minmax \
    -o "$WORK/prune5-int8-distilled.yolod"
expect_text "distilled prune5-int8 settings keep every word" "$OUT" \
    '^settings +prune=channels .* distill-holdout=1 distill-kept-epoch=[01] weights=int8-per-channel .* keep-float=0 reconstruction=yes$'

# --- calibration folder: the digest covers the images used, and a parent folder is explained
expect_exit "compress int8 on 2 images exits 0" 0 "$YOLOD" compress "$MODEL" --variant int8 \
    --calib "$CALIB" --calib-limit 2 -o "$WORK/int8-two.yolod"
want=$(python3 - "$CALIB" <<'PY'
import hashlib, os, sys
folder = sys.argv[1]
names = sorted((n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png"))
                and not n.startswith(".")), key=lambda n: n.encode())[:2]
sha = hashlib.sha256()
for n in names:
    sha.update(n.encode() + b"\0")
    sha.update(open(os.path.join(folder, n), "rb").read())
print(sha.hexdigest())
PY
)
expect_text "calibration digest covers the 2 images used" "$OUT" "^calibration +$want "
# An image that does not decode is skipped by both the calibration and the digest.
mkdir -p "$WORK/calA" "$WORK/calB"
calib_abs=$(cd "$CALIB" && pwd)
set -- $(ls "$calib_abs" | head -3)
echo "not an image" >"$WORK/calA/a.jpg"
cp "$WORK/calA/a.jpg" "$WORK/calB/a.jpg"
ln -s "$calib_abs/$1" "$WORK/calA/b.jpg"
ln -s "$calib_abs/$1" "$WORK/calB/b.jpg"
ln -s "$calib_abs/$2" "$WORK/calA/c.jpg"
ln -s "$calib_abs/$3" "$WORK/calB/c.jpg"
for d in calA calB; do
    "$YOLOD" compress "$MODEL" --variant int8 --calib "$WORK/$d" --calib-limit 2 -o "$WORK/$d.yolod" >"$WORK/$d.txt" 2>&1
done
a=$(grep '^calibration ' "$WORK/calA.txt"); b=$(grep '^calibration ' "$WORK/calB.txt")
[ -n "$a" ] && [ "$a" != "$b" ] && ok "digests differ when the decoded images differ" || fail "digests differ when the decoded images differ" "$a / $b"
expect_exit "compress with the dataset folder as --calib exits 1" 1 "$YOLOD" compress "$MODEL" \
    --variant int8 --calib "$SHARED/datasets/coco128" -o "$BAD"
expect_text "dataset folder message says subfolders are not searched" "$ERR" \
    "no JPEG or PNG file in calibration folder '.*coco128'; subfolders are not searched"
# Entries with image names that cannot be read: the message gives the reason.
mkdir -p "$WORK/unusable/d.jpg"
ln -s missing.jpg "$WORK/unusable/a.jpg"
expect_exit "compress with only unusable image entries exits 1" 1 "$YOLOD" compress "$MODEL" \
    --variant int8 --calib "$WORK/unusable" -o "$BAD"
expect_text "unusable image entries message" "$ERR" \
    "none of its 2 entries named \*\.jpg, \*\.jpeg or \*\.png is a regular file that opens \((a\.jpg: No such file or directory|d\.jpg: it is a directory, not a regular file)\)"

# --- help
for command in compress inspect; do
    out=$("$YOLOD" help "$command")
    if [ $? -eq 0 ] && grep -q "Usage: yolod $command" <<<"$out"; then
        ok "help $command"
    else
        fail "help $command" "$out"
    fi
done
out=$("$YOLOD" help compress)
if grep -Eq '^  fp16 ' <<<"$out"; then ok "help compress lists variants"; else fail "help compress lists variants" "$out"; fi

finish
