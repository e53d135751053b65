#!/usr/bin/env bash
# `yolod eval`: COCO mAP of the reference detections (exact), of the model on
# the 150 validation images (close to the reference), and its errors.
source "$(dirname "$0")/lib.sh"

COCO=$SHARED/datasets/coco-val
ANNOTATIONS=$COCO/instances.json
GOLDEN_DETECTIONS=$GOLDEN/yolov8n-val-detections.json
GOLDEN_MAP=$GOLDEN/yolov8n-val-map.json
OUT=$WORK/out.txt
ERR=$WORK/err.txt

# run NAME WANT_EXIT ARGS...: runs yolod eval ARGS, stdout in $OUT and stderr
# in $ERR, and checks the exit status.
run() {
    local name=$1 want=$2 rc
    shift 2
    "$YOLOD" eval "$@" >"$OUT" 2>"$ERR"
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        ok "$name exits $want"
        return 0
    fi
    fail "$name exits $want" "exit $rc; stderr: $(head -c 600 "$ERR")"
    return 1
}

# stderr_has NAME TEXT: the last run's stderr contains TEXT.
stderr_has() {
    if grep -qF -- "$2" "$ERR"; then
        ok "$1"
    else
        fail "$1" "stderr lacks '$2': $(head -c 600 "$ERR")"
    fi
}

# compare_json NAME FILE PYTHON_EXPRESSION: evaluates the expression with
# `got` bound to the JSON in FILE and `ref` to the reference mAP JSON. An
# empty result passes, and any other string is the failure detail.
compare_json() {
    local name=$1 file=$2 expr=$3 detail
    detail=$(python3 - "$file" "$GOLDEN_MAP" "$expr" <<'EOF'
import json, sys
try:
    got = json.load(open(sys.argv[1]))
except Exception as e:
    print("output is not JSON: %s" % e)
    sys.exit(0)
ref = json.load(open(sys.argv[2]))
keys = dict(map50_95="AP", map50="AP50", map75="AP75", map50_95_small="APs",
            map50_95_medium="APm", map50_95_large="APl", mar1="AR1", mar10="AR10",
            mar100="AR100", mar100_small="ARs", mar100_medium="ARm", mar100_large="ARl")
print(eval(sys.argv[3]))
EOF
)
    if [ -z "$detail" ]; then ok "$name"; else fail "$name" "$detail"; fi
}

EXACT='"; ".join("%s %r != %r" % (k, got.get(k), ref[r]) for k, r in keys.items()
                 if not isinstance(got.get(k), float) or abs(got[k] - ref[r]) > 1e-9)'

# --- the reference detections give the reference numbers
if run "golden detections json" 0 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --json; then
    cp "$OUT" "$WORK/golden-map.json"
    compare_json "golden detections all 12 numbers" "$WORK/golden-map.json" "$EXACT"
    compare_json "golden detections counts" "$WORK/golden-map.json" \
        '"" if (got["images"], got["detections"]) == (150, 29729) and got["seconds"] >= 0 else got'
fi

if run "golden detections summary" 0 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS"; then
    cat >"$WORK/summary.txt" <<'EOF'
 Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.426
 Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.584
 Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.461
 Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.216
 Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.485
 Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.601
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.354
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 0.575
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.620
 Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.358
 Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.684
 Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.802
EOF
    if diff_out=$(diff "$WORK/summary.txt" "$OUT"); then
        ok "golden detections summary text"
    else
        fail "golden detections summary text" "$diff_out"
    fi
fi

if run "golden detections limit" 0 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --json --limit 10; then
    compare_json "limit keeps 10 images" "$OUT" \
        '"" if got["images"] == 10 and 0 < got["detections"] < 29729 and got["map50_95"] > 0 else got'
fi
check "full results file gives no coverage warning" bash -c "! grep -q 'detections cover' '$ERR'"

# A results file covering fewer images than the annotations (saved with
# --limit) is scored as given, with a warning that names the gap.
python3 - "$GOLDEN_DETECTIONS" "$WORK/ten-images.json" <<'PY'
import json, sys
detections = json.load(open(sys.argv[1]))
ids = sorted({d["image_id"] for d in detections})[:10]
json.dump([d for d in detections if d["image_id"] in ids], open(sys.argv[2], "w"))
PY
run "results file of 10 images" 0 --coco "$ANNOTATIONS" --detections "$WORK/ten-images.json" --json &&
    stderr_has "coverage warning" "the detections cover 10 of the 150 images"

# Annotations with a repeated image, an unknown category and no categories are scored with warnings.
python3 - "$ANNOTATIONS" "$WORK/odd-annotations.json" "$WORK/no-categories.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
data["images"].append(dict(data["images"][0]))
data["annotations"].append(dict(data["annotations"][0], id=10**9, category_id=999))
json.dump(data, open(sys.argv[2], "w"))
data["categories"] = []
json.dump(data, open(sys.argv[3], "w"))
PY
run "annotations with odd entries" 0 --coco "$WORK/odd-annotations.json" --detections "$GOLDEN_DETECTIONS" --json &&
    stderr_has "repeated image warning" "1 of the 151 image entries repeat an id" &&
    stderr_has "unknown category warning" "1 annotations name an image_id or category_id"
run "annotations without categories" 0 --coco "$WORK/no-categories.json" --detections "$GOLDEN_DETECTIONS" --json &&
    stderr_has "no categories warning" "define no categories"

# Results with a category the annotations lack are scored with a warning;
# a bbox value that is not finite (1e999 parses as infinity) is refused.
python3 - "$GOLDEN_DETECTIONS" "$WORK/odd-category.json" "$WORK/infinite-box.json" <<'PY'
import json, sys
detections = json.load(open(sys.argv[1]))
json.dump(detections + [dict(detections[0], category_id=999)], open(sys.argv[2], "w"))
detections[0]["bbox"][2] = "WIDTH"
open(sys.argv[3], "w").write(json.dumps(detections[:5]).replace('"WIDTH"', "1e999"))
PY
run "results with an unknown category" 0 --coco "$ANNOTATIONS" --detections "$WORK/odd-category.json" --json &&
    stderr_has "unknown result category warning" "1 detections name a category_id that the annotations do not define"
run "results with an infinite bbox value" 1 --coco "$ANNOTATIONS" --detections "$WORK/infinite-box.json" &&
    stderr_has "infinite bbox message" "detection 0 has a bbox value that is not a finite number"

# --- the model on the 150 validation images
if run "model eval" 0 --model "$MODEL" --coco "$ANNOTATIONS" --images "$COCO/images" --json \
    --save-detections "$WORK/ours.json"; then
    cp "$OUT" "$WORK/model-map.json"
    echo "   model: $(head -c 200 "$WORK/model-map.json")"
    compare_json "model map50_95 near reference" "$WORK/model-map.json" \
        '"" if abs(got["map50_95"] - 0.4265) <= 0.003 else "map50_95 %.4f, reference 0.4265" % got["map50_95"]'
    compare_json "model map50 near reference" "$WORK/model-map.json" \
        '"" if abs(got["map50"] - 0.5841) <= 0.003 else "map50 %.4f, reference 0.5841" % got["map50"]'
    compare_json "model evaluates every image" "$WORK/model-map.json" \
        '"" if got["images"] == 150 and got["detections"] > 1000 else got'
    stderr_has "model eval progress" "140/150 images"

    # The saved detections evaluate to exactly the numbers printed.
    if run "saved detections" 0 --coco "$ANNOTATIONS" --detections "$WORK/ours.json" --json; then
        detail=$(python3 - "$OUT" "$WORK/model-map.json" <<'EOF'
import json, sys
saved, model = (json.load(open(f)) for f in sys.argv[1:3])
print("; ".join("%s %r != %r" % (k, saved[k], model[k]) for k in model
                if k != "seconds" and saved.get(k) != model[k]))
EOF
)
        if [ -z "$detail" ]; then ok "saved detections same numbers"; else fail "saved detections same numbers" "$detail"; fi
    fi
fi

# --- usage errors: exit 2
run "no annotations" 2 --detections "$GOLDEN_DETECTIONS" && stderr_has "no annotations message" "missing --coco"
run "unknown option" 2 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --bogus 1 &&
    stderr_has "unknown option message" "unknown option '--bogus'"
run "model and detections" 2 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --model "$MODEL" &&
    stderr_has "model and detections message" "either --model FILE or --detections FILE"
run "model without images" 2 --coco "$ANNOTATIONS" --model "$MODEL" && stderr_has "model without images message" "--images DIR"
run "detections with images" 2 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --images "$WORK" &&
    stderr_has "detections with images message" "--images is for --model"
run "json twice" 2 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --json --json &&
    stderr_has "json twice message" "option '--json' given twice"
run "invalid limit" 2 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --limit 0 &&
    stderr_has "invalid limit message" "invalid --limit '0'"
run "save without model" 2 --coco "$ANNOTATIONS" --detections "$GOLDEN_DETECTIONS" --save-detections "$WORK/x.json"

# --- runtime errors: exit 1 with the file named
run "missing annotations" 1 --coco "$WORK/no-such.json" --detections "$GOLDEN_DETECTIONS" &&
    stderr_has "missing annotations message" "no-such.json"
printf '{"images": [\n{"id": 1,\n' >"$WORK/broken.json"
run "malformed annotations" 1 --coco "$WORK/broken.json" --detections "$GOLDEN_DETECTIONS" &&
    stderr_has "malformed annotations message" "broken.json: invalid JSON at line"
python3 -c 'print("[" * 5000 + "]" * 5000)' >"$WORK/deep.json"
run "deeply nested detections" 1 --coco "$ANNOTATIONS" --detections "$WORK/deep.json" &&
    stderr_has "deeply nested message" "deep.json: JSON nested deeper than 1000 arrays and objects at line 1, column 1001"
run "missing detections" 1 --coco "$ANNOTATIONS" --detections "$WORK/none.json" &&
    stderr_has "missing detections message" "none.json"
printf '[{"image_id": 999999999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]' >"$WORK/stranger.json"
run "unknown image id" 1 --coco "$ANNOTATIONS" --detections "$WORK/stranger.json" &&
    stderr_has "unknown image id message" "image_id 999999999"
printf '[{"image_id": 802, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]' >"$WORK/short-box.json"
run "malformed detections" 1 --coco "$ANNOTATIONS" --detections "$WORK/short-box.json" &&
    stderr_has "malformed detections message" "results[0]: \"bbox\" must be an array of 4 numbers"
# One JSON value per file: data after it is an error, not ignored.
DETECTION='{"image_id": 802, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}'
printf '[%s]\n[%s]\n' "$DETECTION" "$DETECTION" >"$WORK/two-arrays.json"
run "detections with two arrays" 1 --coco "$ANNOTATIONS" --detections "$WORK/two-arrays.json" &&
    stderr_has "detections with two arrays message" \
        "two-arrays.json: unexpected data after the JSON value at byte offset 74 (line 2, column 1)"
printf '[%s] garbage' "$DETECTION" >"$WORK/garbage.json"
run "detections with trailing garbage" 1 --coco "$ANNOTATIONS" --detections "$WORK/garbage.json" &&
    stderr_has "detections with trailing garbage message" "garbage.json: unexpected data after the JSON value at byte offset 74"
printf '{"images": [], "categories": [], "annotations": []}\n\n{}\n' >"$WORK/two-objects.json"
run "annotations with two objects" 1 --coco "$WORK/two-objects.json" --detections "$GOLDEN_DETECTIONS" &&
    stderr_has "annotations with two objects message" \
        "two-objects.json: unexpected data after the JSON value at byte offset 53 (line 3, column 1)"
# Doubles represent integer ids only below 2^53, so larger ones are out of range, not "non-integer".
printf '[{"image_id": 9007199254740993, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]' >"$WORK/huge-id.json"
run "detections with a huge id" 1 --coco "$ANNOTATIONS" --detections "$WORK/huge-id.json" &&
    stderr_has "detections with a huge id message" 'results[0]: "image_id" is out of range'
printf '{"images": [{"id": 9007199254740992, "file_name": "a.jpg"}], "categories": [], "annotations": []}' \
    >"$WORK/huge-image-id.json"
run "annotations with a huge id" 1 --coco "$WORK/huge-image-id.json" --detections "$GOLDEN_DETECTIONS" &&
    stderr_has "annotations with a huge id message" 'images[0]: "id" is out of range'
mkdir -p "$WORK/empty-dir"
# --save-detections is checked before the model runs (here the images are
# missing, so a late check would report them first), and a failed run leaves
# the path as it was.
run "unwritable --save-detections" 1 --model "$MODEL" --coco "$ANNOTATIONS" --images "$WORK/empty-dir" \
    --save-detections "$WORK/no-dir/ours.json" &&
    stderr_has "unwritable --save-detections message" \
        "cannot write --save-detections '$WORK/no-dir/ours.json': No such file or directory"
if grep -q "image not found" "$ERR"; then
    fail "unwritable --save-detections checked first" "$(head -c 300 "$ERR")"
else
    ok "unwritable --save-detections checked first"
fi
run "--save-detections a directory" 1 --model "$MODEL" --coco "$ANNOTATIONS" --images "$WORK/empty-dir" \
    --save-detections "$WORK/empty-dir" && stderr_has "--save-detections a directory message" "Is a directory"
cp "$ANNOTATIONS" "$WORK/my-annotations.json"
run "--save-detections over the annotations" 1 --model "$MODEL" --coco "$WORK/my-annotations.json" \
    --images "$COCO/images" --limit 1 --save-detections "$WORK/my-annotations.json" &&
    stderr_has "--save-detections over the annotations message" "is the --coco file; choose another path"
cmp -s "$ANNOTATIONS" "$WORK/my-annotations.json" && ok "annotations file left unchanged" || fail "annotations file left unchanged" "it changed"
cp "$MODEL" "$WORK/my-model.onnx"
run "--save-detections over the model" 1 --model "$WORK/my-model.onnx" --coco "$ANNOTATIONS" \
    --images "$COCO/images" --limit 1 --save-detections "$WORK/my-model.onnx" &&
    stderr_has "--save-detections over the model message" "is the --model file"
echo previous >"$WORK/previous.json"
run "failed run with --save-detections" 1 --model "$MODEL" --coco "$ANNOTATIONS" --images "$WORK/empty-dir" \
    --save-detections "$WORK/previous.json"
if [ "$(cat "$WORK/previous.json")" = previous ]; then
    ok "failed run keeps the existing file"
else
    fail "failed run keeps the existing file" "$(head -c 100 "$WORK/previous.json")"
fi
run "failed run with a new --save-detections" 1 --model "$MODEL" --coco "$ANNOTATIONS" \
    --images "$WORK/empty-dir" --save-detections "$WORK/new.json"
if [ -e "$WORK/new.json" ]; then fail "failed run leaves no new file"; else ok "failed run leaves no new file"; fi
run "images not found" 1 --model "$MODEL" --coco "$ANNOTATIONS" --images "$WORK/empty-dir" &&
    stderr_has "images not found message" "image not found: $WORK/empty-dir/000000000802.jpg" &&
    stderr_has "images not found count" "150 of 150 images not found"
run "bad model" 1 --model "$WORK/broken.json" --coco "$ANNOTATIONS" --images "$COCO/images" --limit 1 &&
    stderr_has "bad model message" "cannot load model"

# --- help
if "$YOLOD" help eval >"$OUT" 2>&1 && grep -q -- "--detections FILE" "$OUT"; then
    ok "help eval"
else
    fail "help eval" "$(head -c 300 "$OUT")"
fi
if "$YOLOD" --help | grep -q "^  eval "; then ok "usage lists eval"; else fail "usage lists eval"; fi

finish
