#!/usr/bin/env bash
# Starts `yolod serve` on a loopback port with a real model, posts real
# photos to it with curl, prints the JSON replies and stops the daemon.
# MODEL, IMAGES and PORT override the defaults taken from the shared data.
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/yolov8n.onnx}
# A free loopback port unless PORT is given.
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if [ -z "${IMAGES:-}" ]; then
    IMAGES="$SHARED/images/bus.jpg $SHARED/images/zidane.jpg"
fi

if [ ! -f "$MODEL" ]; then
    echo "error: model $MODEL not found; set MODEL=FILE.onnx or SHARED=DIR" >&2
    exit 1
fi

# The daemon's log goes to a file, so the replies print alone; it is shown
# when the daemon fails. Readiness is its own "ready" line: a /readyz
# reply could come from another server already on PORT.
log=$(mktemp)
"$BUILD/yolod" serve --model "$MODEL" --listen "127.0.0.1:$PORT" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 300); do
    if grep -q " yolod ready on http://127.0.0.1:$PORT, " "$log"; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$log" >&2
        if grep -q "Address already in use" "$log"; then
            echo "error: port $PORT is taken; run the demo on another with PORT=N" >&2
        else
            echo "error: yolod exited during startup (its log is above)" >&2
        fi
        exit 1
    fi
    sleep 0.1
done
if ! grep -q " yolod ready on http://127.0.0.1:$PORT, " "$log"; then
    cat "$log" >&2
    echo "error: yolod was not ready within 30 s (its log is above)" >&2
    exit 1
fi

for image in $IMAGES; do
    echo "== POST $image"
    curl -s --data-binary @"$image" -H 'Content-Type: application/octet-stream' \
        "http://127.0.0.1:$PORT/v1/detect"
    echo
done
