#!/usr/bin/env bash
# `yolod detect` and the command line: one JSON line per image with the same
# detections as the daemon, per-image errors, usage errors, help and version.
source "$(dirname "$0")/lib.sh"

OUT=$WORK/out.jsonl
ERR=$WORK/err.txt

# line N FILE: writes line N of the detect output to FILE.
line() {
    sed -n "$1p" "$OUT" >"$2"
}

# --- detections
"$YOLOD" detect --model "$MODEL" "$IMAGES/bus.jpg" "$IMAGES/zidane.jpg" >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" -eq 0 ]; then ok "detect two images exits 0"; else fail "detect two images exits 0" "exit $rc: $(cat "$ERR")"; fi
lines=$(wc -l <"$OUT")
if [ "$lines" -eq 2 ]; then ok "detect prints one line per image"; else fail "detect prints one line per image" "$lines lines"; fi
line 1 "$WORK/bus.json"
line 2 "$WORK/zidane.json"
check "detect bus reply shape" $CHECK shape "$WORK/bus.json" --model yolov8n
check "detect bus golden detections" $CHECK golden "$WORK/bus.json" "$GOLDEN/bus.detections.json" --size 810x1080
check "detect zidane golden detections" $CHECK golden "$WORK/zidane.json" "$GOLDEN/zidane.detections.json" --size 1280x720

"$YOLOD" detect --model "$MODEL" --conf 0.5 --classes person --max-det 2 "$IMAGES/bus.jpg" >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" -eq 0 ]; then ok "detect with parameters exits 0"; else fail "detect with parameters exits 0" "exit $rc: $(cat "$ERR")"; fi
line 1 "$WORK/params.json"
check "detect parameters classes and conf" $CHECK shape "$WORK/params.json" --classes 0 --min-conf 0.5
check "detect parameters max_det" $CHECK total "$WORK/params.json" --min 2 --max 2

# --- same detections as the daemon
start_daemon cli
for name in bus zidane; do
    if expect_status "daemon $name" 200 "$WORK/http-$name.json" --data-binary @"$IMAGES/$name.jpg" "$URL/v1/detect"; then
        check "detect $name same as daemon" $CHECK same "$WORK/$name.json" "$WORK/http-$name.json" \
            --iou 0.999 --conf-tol 0.0001 --margin 0
    fi
done

# --- per-image errors: the other images are still processed, exit 1 at the end
"$YOLOD" detect --model "$MODEL" "$IMAGES/odd/bus_truncated.jpg" "$IMAGES/bus.jpg" \
    "$IMAGES/odd/not_an_image.jpg" "$WORK/no-such-file.jpg" >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" -eq 1 ]; then ok "detect with bad images exits 1"; else fail "detect with bad images exits 1" "exit $rc"; fi
lines=$(wc -l <"$OUT")
if [ "$lines" -eq 4 ]; then ok "detect bad images one line each"; else fail "detect bad images one line each" "$lines lines"; fi
line 1 "$WORK/e1.json"
line 2 "$WORK/ok.json"
line 3 "$WORK/e3.json"
line 4 "$WORK/e4.json"
check "detect truncated error" $CHECK error "$WORK/e1.json" --code undecodable_image --contains truncated
check "detect continues after error" $CHECK golden "$WORK/ok.json" "$GOLDEN/bus.detections.json" --size 810x1080
check "detect text file error" $CHECK error "$WORK/e3.json" --code unsupported_media_type
check "detect missing file error" $CHECK error "$WORK/e4.json" --code io_error --contains no-such-file.jpg

# --- usage errors: exit 2 with a message on stderr
# usage_error NAME WORD ARGS...: yolod ARGS exits 2 and stderr contains WORD.
usage_error() {
    local name=$1 word=$2 out rc
    shift 2
    out=$("$YOLOD" "$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -eq 2 ] && grep -qi -- "$word" <<<"$out"; then
        ok "$name"
    else
        fail "$name" "exit $rc, stderr: $out"
    fi
}
usage_error "no command" "usage"
usage_error "unknown command" "unknown command" frobnicate
usage_error "detect without model" "--model" detect "$IMAGES/bus.jpg"
usage_error "detect without images" "no image" detect --model "$MODEL"
usage_error "detect unknown option" "--frob" detect --model "$MODEL" --frob 1 "$IMAGES/bus.jpg"
# An option given twice is an error, not "the last one wins".
usage_error "detect model given twice" "option '--model' given twice" \
    detect --model "$MODEL" --model=/nonexistent.onnx "$IMAGES/bus.jpg"
usage_error "bench option given twice" "option '--runs' given twice" \
    bench --model "$MODEL" --runs 1 --runs 2
usage_error "compress -o given twice" "output given twice" \
    compress "$MODEL" --variant fp16 -o "$WORK/a.yolod" -o "$WORK/b.yolod"
usage_error "compress -o and --output" "output given twice" \
    compress "$MODEL" --variant fp16 -o "$WORK/a.yolod" --output "$WORK/b.yolod"
usage_error "serve option given twice" "option '--threads' given twice" \
    serve --model "$MODEL" --listen "127.0.0.1:$(free_port)" --threads 1 --threads 2
usage_error "detect option without value" "option '--model' needs a value" detect "$IMAGES/bus.jpg" --model
usage_error "serve option without value" "option '--listen' needs a value" serve --listen
usage_error "misspelt last option" "unknown option '--lisen'" serve --lisen
usage_error "detect conf out of range" "conf" detect --model "$MODEL" --conf 1.5 "$IMAGES/bus.jpg"
usage_error "detect unknown class" "zebra2" detect --model "$MODEL" --classes zebra2 "$IMAGES/bus.jpg"
usage_error "detect max-det zero" "max_det" detect --model "$MODEL" --max-det 0 "$IMAGES/bus.jpg"
usage_error "serve without model" "no model" serve --listen 127.0.0.1:1
usage_error "serve unknown option" "--frob" serve --model "$MODEL" --frob 1
usage_error "serve listen without host" "listen" serve --model "$MODEL" --listen :8080
usage_error "serve bad workers" "workers" serve --model "$MODEL" --workers 0
usage_error "inspect bad log level" "invalid --log-level 'x' (expected debug, info, warn or error)" \
    inspect --log-level x "$MODEL"
# After "--" a name that starts with "--" is a file, as in detect.
if "$YOLOD" inspect -- "$MODEL" >"$OUT" 2>"$ERR" && grep -Eq '^format +ONNX' "$OUT"; then
    ok "inspect -- FILE"
else
    fail "inspect -- FILE" "$(cat "$ERR")"
fi

# --- config file errors name file and line
conf=$WORK/bad.conf
printf '# comment\nlisten = 127.0.0.1:9\nworkers = 2\nfrobnicate = 1\n' >"$conf"
usage_error "config unknown key" "bad.conf:4: unknown key 'frobnicate'" serve --config "$conf"
printf 'model = %s\nmax_det = 1000\n' "$MODEL" >"$conf"
usage_error "config bad value" "bad.conf:2: max_det" serve --config "$conf"
usage_error "config missing file" "cannot open config file" serve --config "$WORK/none.conf"
printf 'listen = 127.0.0.1:9\nworkers = 2\nlisten = 127.0.0.1:10\n' >"$conf"
usage_error "config key set twice" "bad.conf:3: listen is set again (first on line 1)" serve --config "$conf"
printf 'workers = +1\n' >"$conf"
usage_error "config signed integer" "bad.conf:1: workers: invalid value" serve --config "$conf"
printf 'conf = 0x0.8p0\n' >"$conf"
usage_error "config hex float" "bad.conf:1: conf: invalid value" serve --config "$conf"
printf 'workers = 1\0\n' >"$conf"
usage_error "config NUL byte" "bad.conf:1: contains a NUL byte" serve --config "$conf"
usage_error "config from /dev/zero" "zero:1: contains a NUL byte" serve --config /dev/zero
{ printf '# '; head -c 9000 /dev/zero | tr '\0' 'x'; printf '\nfrobnicate = 1\n'; } >"$conf"
usage_error "config long comment skipped" "bad.conf:2: unknown key 'frobnicate'" serve --config "$conf"
{ printf '\xef\xbb\xbf'; printf 'frobnicate = 1\n'; } >"$conf"
usage_error "config with a byte order mark" "bad.conf:1: unknown key 'frobnicate'" serve --config "$conf"
printf 'workers = 1\n' >"$WORK/good.conf"
usage_error "config given twice" "--config given twice" serve --config "$WORK/good.conf" --config="$WORK/good.conf"
# CRLF line ends (a file from a Windows editor) parse as LF ones.
printf 'listen = 127.0.0.1:%s\r\nmodel = %s\r\n' "$(free_port)" "$WORK/missing.onnx" >"$WORK/crlf.conf"
out=$("$YOLOD" serve --config "$WORK/crlf.conf" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "cannot load model $WORK/missing.onnx" <<<"$out"; then
    ok "config with CRLF line ends parses"
else
    fail "config with CRLF line ends parses" "exit $rc: $out"
fi

# --- a missing model file is a runtime error naming the file
out=$("$YOLOD" detect --model "$WORK/missing.onnx" "$IMAGES/bus.jpg" 2>&1 >/dev/null)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "missing.onnx" <<<"$out"; then
    ok "detect missing model"
else
    fail "detect missing model" "exit $rc: $out"
fi

# --- a QDQ-quantized ONNX export is named as one, with the supported way to int8
out=$("$YOLOD" detect --model "$SHARED/models/yolov8n-ort-int8.onnx" "$IMAGES/bus.jpg" 2>&1 >/dev/null)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "QDQ-quantized ONNX models are not supported" <<<"$out" &&
    grep -q "yolod compress MODEL.onnx --variant int8" <<<"$out"; then
    ok "detect QDQ model message"
else
    fail "detect QDQ model message" "exit $rc: $out"
fi

# --- a directory given as a model or an image is named as one
mkdir "$WORK/folder"
out=$("$YOLOD" detect --model "$WORK/folder" "$IMAGES/bus.jpg" 2>&1 >/dev/null)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "cannot read '$WORK/folder': Is a directory" <<<"$out"; then
    ok "detect model directory"
else
    fail "detect model directory" "exit $rc: $out"
fi
out=$("$YOLOD" serve --model "$WORK/folder" --listen "127.0.0.1:$(free_port)" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "Is a directory; to serve every model in a folder, use --model-dir" <<<"$out"; then
    ok "serve model directory"
else
    fail "serve model directory" "exit $rc: $out"
# A model directory with no model file ends the daemon before it listens.
touch "$WORK/folder/notes.txt" "$WORK/folder/.hidden.onnx"
out=$("$YOLOD" serve --model-dir "$WORK/folder" --listen "127.0.0.1:$(free_port)" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "the model directory $WORK/folder has no file named NAME.onnx" <<<"$out" &&
    ! grep -q "listening on" <<<"$out"; then
    ok "serve empty model directory"
else
    fail "serve empty model directory" "exit $rc: $out"
fi
fi
# serve_listen NAME ADDRESS: serves the model on --listen ADDRESS (a loopback
# one), logging to $WORK/NAME.log, and waits up to 30 s for the ready line.
# Sets PID; the caller stops the daemon.
serve_listen() {
    "$YOLOD" serve --model "$MODEL" --threads 1 --listen "$2" 2>"$WORK/$1.log" &
    PID=$!
    DAEMON_PIDS+=("$PID")
    for _ in $(seq 300); do
        grep -qF " yolod ready on http://$2, " "$WORK/$1.log" && return
        kill -0 "$PID" 2>/dev/null || return
        sleep 0.1
    done
}
# A host name binds only its first address, so the listening line names that address.
port=$(free_port)
serve_listen localhost "localhost:$port"
kill "$PID" 2>/dev/null
if grep -qF "listening on http://localhost:$port (127.0.0.1:$port), loading the models" "$WORK/localhost.log"; then
    ok "serve localhost logs the bound address"
else
    fail "serve localhost logs the bound address" "$(cat "$WORK/localhost.log")"
fi
# An IPv4-mapped IPv6 address listens on the IPv4 address it maps.
port=$(free_port)
serve_listen mapped "[::ffff:127.0.0.1]:$port"
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/healthz")
kill "$PID" 2>/dev/null
if [ "$status" = 200 ] &&
    grep -qF "listening on http://[::ffff:127.0.0.1]:$port (127.0.0.1:$port)" "$WORK/mapped.log"; then
    ok "serve on an IPv4-mapped address"
else
    fail "serve on an IPv4-mapped address" "GET /healthz on 127.0.0.1:$port: $status; $(cat "$WORK/mapped.log")"
fi
# A relative model_dir in a config file starts from the working directory,
# which the error names.
printf 'model_dir = no-such-models\n' >"$WORK/relative.conf"
yolod_abs=$(cd "$(dirname "$YOLOD")" && pwd)/$(basename "$YOLOD")
out=$(cd "$WORK" && "$yolod_abs" serve --config relative.conf --listen "127.0.0.1:$(free_port)" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -qF "model directory no-such-models (relative to the working directory $WORK)" <<<"$out"; then
    ok "relative model_dir names the working directory"
else
    fail "relative model_dir names the working directory" "exit $rc: $out"
fi
"$YOLOD" detect --model "$MODEL" "$WORK/folder" >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" -eq 1 ]; then ok "detect image directory exits 1"; else fail "detect image directory exits 1" "exit $rc"; fi
check "detect image directory error" $CHECK error "$OUT" --code io_error --contains "Is a directory"

# A huge file that is not an image is rejected from its first bytes: under a
# 4 GB address-space limit, reading the whole 16 GB sparse file would fail.
truncate -s 16G "$WORK/huge.jpg"
(ulimit -v 4000000 && "$YOLOD" detect --threads 1 --model "$MODEL" "$WORK/huge.jpg") >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" -eq 1 ]; then ok "detect huge non-image exits 1"; else fail "detect huge non-image exits 1" "exit $rc"; fi
check "detect huge non-image error" $CHECK error "$OUT" --code unsupported_media_type --contains "first bytes 00 00 00 00"
rm -f "$WORK/huge.jpg"

# --- FIFOs, pipes and standard input. Every command that could block runs
# under timeout, which exits 124.
FIFO=$WORK/model.fifo
mkfifo "$FIFO"

# runs NAME WANT_EXIT WORD COMMAND...: COMMAND exits WANT_EXIT within 60 s
# and its stderr contains WORD.
runs() {
    local name=$1 want=$2 word=$3 rc
    shift 3
    timeout 60 "$@" >"$OUT" 2>"$ERR"
    rc=$?
    if [ "$rc" -eq "$want" ] && grep -qi -- "$word" "$ERR"; then
        ok "$name"
    else
        fail "$name" "exit $rc (expected $want), stderr: $(head -c 400 "$ERR")"
    fi
}

# A FIFO as a model is rejected at once, whatever command loads it.
printf '{"images": [{"id": 1, "file_name": "bus.jpg", "width": 810, "height": 1080}],
  "categories": [{"id": 1, "name": "person"}], "annotations": []}\n' >"$WORK/bus-coco.json"
not_regular="cannot read '$FIFO': it is a FIFO, not a regular file"
runs "inspect FIFO model" 1 "$not_regular" "$YOLOD" inspect "$FIFO"
runs "detect FIFO model" 1 "$not_regular" "$YOLOD" detect --model "$FIFO" "$IMAGES/bus.jpg"
runs "eval FIFO model" 1 "$not_regular" \
    "$YOLOD" eval --coco "$WORK/bus-coco.json" --images "$IMAGES" --model "$FIFO"
runs "bench FIFO model" 1 "$not_regular" "$YOLOD" bench --model "$FIFO" --runs 1
runs "compress FIFO model" 1 "$not_regular" \
    "$YOLOD" compress "$FIFO" --variant fp16 -o "$WORK/fifo.yolod"

# With a writer the same message, not "Illegal seek". The writer may block
# after inspect has closed the FIFO, so it runs under its own timeout.
timeout 10 cat "$MODEL" >"$FIFO" 2>/dev/null &
writer=$!
runs "inspect FIFO model with a writer" 1 "$not_regular" "$YOLOD" inspect "$FIFO"
kill "$writer" 2>/dev/null
wait "$writer" 2>/dev/null

# Calibration skips a FIFO named like an image, with one warning.
mkdir "$WORK/calib"
ln -s "$IMAGES/bus.jpg" "$WORK/calib/a.jpg"
mkfifo "$WORK/calib/zz.jpg"
runs "compress calibration skips a FIFO" 0 "skipping calibration image $WORK/calib/zz.jpg: it is a FIFO, not a regular file" \
    "$YOLOD" compress "$MODEL" --variant int8 --calib "$WORK/calib" -o "$WORK/calib.yolod"
warnings=$(grep -c "zz.jpg" "$ERR")
if [ "$warnings" -eq 1 ]; then ok "compress calibration FIFO warned once"; else fail "compress calibration FIFO warned once" "$warnings warnings"; fi

# eval stops before the model runs when an annotated image is a FIFO.
mkdir "$WORK/eval-images"
mkfifo "$WORK/eval-images/bus.jpg"
runs "eval FIFO image" 1 "invalid image $WORK/eval-images/bus.jpg (image id 1): it is a FIFO, not a regular file" \
    "$YOLOD" eval --coco "$WORK/bus-coco.json" --images "$WORK/eval-images" --model "$MODEL"

# bench reads --image whole before timing, so a FIFO is rejected too.
runs "bench FIFO image" 1 "it is a FIFO, not a regular file" \
    "$YOLOD" bench --model "$MODEL" --image "$WORK/eval-images/bus.jpg" --runs 1

# detect reads an image from a process substitution, a FIFO or "-".
timeout 60 "$YOLOD" detect --model "$MODEL" <(cat "$IMAGES/bus.jpg") >"$OUT" 2>"$ERR"
check "detect process substitution" $CHECK golden "$OUT" "$GOLDEN/bus.detections.json" --size 810x1080
timeout 10 cat "$IMAGES/zidane.jpg" >"$WORK/eval-images/bus.jpg" &
writer=$!
timeout 60 "$YOLOD" detect --model "$MODEL" "$WORK/eval-images/bus.jpg" >"$OUT" 2>"$ERR"
check "detect FIFO image" $CHECK golden "$OUT" "$GOLDEN/zidane.detections.json" --size 1280x720
wait "$writer" 2>/dev/null
timeout 60 "$YOLOD" detect --model "$MODEL" "$IMAGES/zidane.jpg" - <"$IMAGES/bus.jpg" >"$OUT" 2>"$ERR"
rc=$?
if [ "$rc" -eq 0 ]; then ok "detect standard input exits 0"; else fail "detect standard input exits 0" "exit $rc: $(cat "$ERR")"; fi
line 2 "$WORK/stdin.json"
check "detect standard input" $CHECK golden "$WORK/stdin.json" "$GOLDEN/bus.detections.json" --size 810x1080
if [ "$(json_get "$WORK/stdin.json" 'j["file"]')" = "-" ]; then ok "detect standard input file field"; else fail "detect standard input file field" "$(head -c 200 "$WORK/stdin.json")"; fi
# A file name that is not UTF-8 still gives valid JSON: each bad byte becomes U+FFFD.
odd_name=$(printf '%s/a\377\376b.jpg' "$WORK")
cp "$IMAGES/bus.jpg" "$odd_name"
"$YOLOD" detect --model "$MODEL" "$odd_name" >"$OUT" 2>"$ERR"
got=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1], "rb").read())["file"].encode("unicode_escape").decode())' "$OUT" 2>&1)
if [ "$got" = "$WORK/a\\ufffd\\ufffdb.jpg" ]; then
    ok "detect non-UTF-8 file name gives valid JSON"
else
    fail "detect non-UTF-8 file name gives valid JSON" "$got"
fi
rm -f "$odd_name"
usage_error "detect standard input twice" "'-' (standard input) given more than once" \
    detect --model "$MODEL" - "$IMAGES/bus.jpg" -
{ printf '\xff\xd8\xff'; head -c 34000000 /dev/zero; } |
    timeout 60 "$YOLOD" detect --model "$MODEL" - >"$OUT" 2>"$ERR"
check "detect standard input above the byte limit" $CHECK error "$OUT" --code image_too_large \
    --contains "standard input holds more than 33554432 bytes"

# bench --image has detect's default pixel limit: 8000x8000 is above 50M.
python3 - "$WORK/huge.png" <<'EOF'
import struct, sys, zlib

def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

side = 8000
rows = zlib.compressobj(1)
pixels = b"".join(rows.compress(b"\0" * (side + 1)) for _ in range(side)) + rows.flush()
header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
with open(sys.argv[1], "wb") as out:
    out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
EOF
too_large="image is 8000x8000 (64000000 pixels), above the limit of 50000000 pixels"
runs "bench image above the pixel limit" 1 "$too_large" \
    "$YOLOD" bench --model "$MODEL" --image "$WORK/huge.png" --runs 1 --warmup 0
timeout 60 "$YOLOD" detect --model "$MODEL" "$WORK/huge.png" >"$OUT" 2>"$ERR"
check "detect image above the pixel limit" $CHECK error "$OUT" --code image_too_large --contains "$too_large"
rm -f "$WORK/huge.png"

# --- the shipped example config is valid
out=$("$YOLOD" serve --config "$HERE/../../conf/yolod.conf" --model "$WORK/missing.onnx" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "missing.onnx" <<<"$out"; then
    ok "example config parses"
else
    fail "example config parses" "exit $rc: $out"
fi

# --- help and version
out=$("$YOLOD" --version)
if [[ "$out" =~ ^yolod\ [0-9]+\.[0-9]+\.[0-9]+$ ]]; then ok "version"; else fail "version" "$out"; fi
for command in serve detect; do
    out=$("$YOLOD" help "$command")
    if [ $? -eq 0 ] && grep -q "Usage: yolod $command" <<<"$out"; then
        ok "help $command"
    else
        fail "help $command" "$out"
    fi
done
out=$("$YOLOD" --help)
if grep -q "serve" <<<"$out" && grep -q "detect" <<<"$out"; then ok "help lists commands"; else fail "help lists commands" "$out"; fi

# bench: the input file must hold exactly the model's [3][H][W] floats, and
# --threads is bounded as in serve.
head -c 4915204 /dev/zero >"$WORK/long.f32"
out=$("$YOLOD" bench --model "$MODEL" --input "$WORK/long.f32" --runs 1 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && grep -q "is the wrong size, expected 4915200 bytes" <<<"$out"; then
    ok "bench rejects an input of the wrong size"
else
    fail "bench rejects an input of the wrong size" "exit $rc: $out"
fi
out=$("$YOLOD" bench --model "$MODEL" --input "$WORK/missing.f32" --runs 1 2>&1)
if grep -q "cannot open .*No such file or directory" <<<"$out"; then
    ok "bench names why an input cannot be read"
else
    fail "bench names why an input cannot be read" "$out"
fi
out=$("$YOLOD" bench --model "$MODEL" --threads 100000 --runs 1 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && grep -q "from 0 to 1024" <<<"$out"; then
    ok "bench bounds --threads"
else
    fail "bench bounds --threads" "exit $rc: $out"
fi

# make install under a trial PREFIX keeps the config and the unit under it,
# and the unit names the binary and config it installed.
prefix=$WORK/prefix
if make -s install BUILD="$BUILD" PREFIX="$prefix" >"$WORK/install.txt" 2>&1; then
    ok "make install with a PREFIX"
else
    fail "make install with a PREFIX" "$(head -c 300 "$WORK/install.txt")"
fi
for file in bin/yolod etc/yolod/yolod.conf.example lib/systemd/system/yolod.service \
    share/doc/yolod/README.md share/doc/yolod/api-docs/openapi.yaml; do
    if [ -f "$prefix/$file" ]; then ok "installed $file"; else fail "installed $file" "missing"; fi
done
unit=$prefix/lib/systemd/system/yolod.service
if grep -q "^ExecStart=$prefix/bin/yolod serve --config $prefix/etc/yolod/yolod.conf\$" "$unit" 2>/dev/null; then
    ok "installed unit names PREFIX paths"
else
    fail "installed unit names PREFIX paths" "$(grep ExecStart "$unit" 2>&1)"
fi
example=$prefix/etc/yolod/yolod.conf.example
if grep -q "copy that to $prefix/etc/yolod/yolod.conf" "$example" && ! grep -q "/etc/yolod/yolod.conf\b" <(grep -v "$prefix" "$example"); then
    ok "installed config example names PREFIX paths"
else
    fail "installed config example names PREFIX paths" "$(head -3 "$example" 2>&1)"
fi
if [ "$(stat -c %a "$example")" = 644 ]; then ok "installed config example mode 644"; else fail "installed config example mode 644" "$(stat -c %a "$example")"; fi

finish
