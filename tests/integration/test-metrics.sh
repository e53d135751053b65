#!/usr/bin/env bash
# GET /metrics against the real daemon: a known mix of requests is sent,
# then the scrape must count them by route and status code, its histograms
# must agree with the counters, and `promtool check metrics` must accept it.
# Label values with a double quote, a backslash and a newline (from an odd
# model file name) must come out escaped.
source "$(dirname "$0")/lib.sh"

PARSE="python3 $WORK/parse_metrics.py"
cat >"$WORK/parse_metrics.py" <<'EOF'
"""Reads Prometheus text format 0.0.4 and runs one named check on it.

usage: parse_metrics.py CHECK ARGS...; exits 1 with a message on failure.
"""
import json
import math
import sys


def parse_labels(text, pos):
    """Parses `name="value",...}` from text[pos:]; returns (labels, end)."""
    labels = {}
    while True:
        while text[pos] in " ,":
            pos += 1
        if text[pos] == "}":
            return labels, pos + 1
        eq = text.index("=", pos)
        name = text[pos:eq].strip()
        if text[eq + 1] != '"':
            raise ValueError("label %s has no opening quote" % name)
        pos = eq + 2
        value = []
        while text[pos] != '"':
            if text[pos] == "\\":
                escaped = text[pos + 1]
                if escaped not in 'n"\\':
                    raise ValueError("invalid escape \\%s in label %s" % (escaped, name))
                value.append("\n" if escaped == "n" else escaped)
                pos += 2
            else:
                value.append(text[pos])
                pos += 1
        labels[name] = "".join(value)
        pos += 1


def parse(path):
    """Returns (samples, help, types): samples are (name, labels, value)."""
    samples, helps, types = [], {}, {}
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if not line:
                continue
            if line.startswith("# HELP "):
                name, _, text = line[7:].partition(" ")
                helps[name] = text
                continue
            if line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                types[name] = kind
                continue
            if line.startswith("#"):
                continue
            brace = line.find("{")
            space = line.find(" ")
            if brace != -1 and (space == -1 or brace < space):
                name = line[:brace]
                labels, end = parse_labels(line, brace + 1)
                rest = line[end:]
            else:
                name, rest, labels = line[:space], line[space:], {}
            samples.append((name, labels, float(rest.split()[0])))
    return samples, helps, types


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return name


def value(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and l == labels]
    return found[0] if found else 0.0


def requests_by_route_code(samples):
    return {(l["route"], l["code"]): v for n, l, v in samples
            if n == "yolod_http_requests_total"}


def fail(message):
    print(message)
    sys.exit(1)


def check_families(path):
    samples, helps, types = parse(path)
    for name, _, _ in samples:
        family = family_of(name, types)
        if family not in helps:
            fail("%s has no HELP line" % family)
        if family not in types:
            fail("%s has no TYPE line" % family)
    wanted = ["yolod_http_requests_total", "yolod_request_duration_seconds",
              "yolod_queue_wait_seconds", "yolod_inference_duration_seconds",
              "yolod_queue_depth", "yolod_requests_in_flight", "yolod_detections_total",
              "yolod_model_info", "yolod_model_load_timestamp_seconds",
              "process_resident_memory_bytes", "process_cpu_seconds_total",
              "process_open_fds", "process_start_time_seconds"]
    missing = [name for name in wanted if name not in types]
    if missing:
        fail("families missing: %s" % ", ".join(missing))


def check_counts(before_path, after_path, expected_json, exempt):
    """Every (route, code) delta equals the expected one; exempt routes are skipped."""
    expected = {tuple(k.split(" ")): v for k, v in json.loads(expected_json).items()}
    before = requests_by_route_code(parse(before_path)[0])
    after = requests_by_route_code(parse(after_path)[0])
    wrong = []
    for key in sorted(set(before) | set(after) | set(expected)):
        if key[0] in exempt.split(","):
            continue
        delta = after.get(key, 0) - before.get(key, 0)
        if delta != expected.get(key, 0):
            wrong.append("route=%s code=%s: counted %g, sent %g"
                         % (key[0], key[1], delta, expected.get(key, 0)))
    if wrong:
        fail("; ".join(wrong))


def check_settled(before_path, after_path, total):
    """Exits 0 once the non-/metrics requests counted since before reach total."""
    before = requests_by_route_code(parse(before_path)[0])
    after = requests_by_route_code(parse(after_path)[0])
    counted = sum(v - before.get(k, 0) for k, v in after.items()
                  if k[0] not in ("/metrics", "/readyz"))
    if counted != int(total):
        fail("counted %g of %s requests" % (counted, total))


def check_histograms(path):
    """Buckets cumulative, +Inf equal to _count, request _count equal to the counter."""
    samples, _, types = parse(path)
    series = {}
    for name, labels, v in samples:
        family = family_of(name, types)
        if types.get(family) != "histogram":
            continue
        key = (family, tuple(sorted((k, x) for k, x in labels.items() if k != "le")))
        entry = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            entry["buckets"].append((float(labels["le"]), v))
        elif name.endswith("_sum"):
            entry["sum"] = v
        else:
            entry["count"] = v
    if not series:
        fail("no histogram series")
    counters = requests_by_route_code(samples)
    for (family, labels), entry in series.items():
        where = "%s%s" % (family, dict(labels))
        buckets = entry["buckets"]
        if not buckets or buckets[-1][0] != math.inf:
            fail("%s: last bucket is not +Inf" % where)
        if [b for b, _ in buckets] != sorted(b for b, _ in buckets):
            fail("%s: le bounds out of order" % where)
        for (_, low), (le, high) in zip(buckets, buckets[1:]):
            if high < low:
                fail("%s: bucket le=%g holds %g, fewer than the bucket before (%g)"
                     % (where, le, high, low))
        if buckets[-1][1] != entry["count"]:
            fail("%s: +Inf bucket %g, _count %g" % (where, buckets[-1][1], entry["count"]))
        if entry["sum"] is None or entry["sum"] < 0:
            fail("%s: _sum missing or negative" % where)
        if family == "yolod_request_duration_seconds":
            route = dict(labels)["route"]
            total = sum(v for (r, _), v in counters.items() if r == route)
            if total != entry["count"]:
                fail("%s: _count %g, yolod_http_requests_total %g" % (where, entry["count"], total))
    print("%d histogram series" % len(series))


def check_delta(before_path, after_path, name, want, labels_json):
    labels = json.loads(labels_json)
    delta = value(parse(after_path)[0], name, **labels) - value(parse(before_path)[0], name, **labels)
    if delta != float(want):
        fail("%s%s increased by %g, expected %s" % (name, labels, delta, want))


def check_value(path, name, low, high, labels_json):
    v = value(parse(path)[0], name, **json.loads(labels_json))
    if not float(low) <= v <= float(high):
        fail("%s = %r, expected %s .. %s" % (name, v, low, high))


def check_label(path, name, label, want):
    """Some sample of name has label == want (after unescaping)."""
    got = [l.get(label) for n, l, _ in parse(path)[0] if n == name]
    if want not in got:
        fail("%s: %s values %r, expected %r" % (name, label, got, want))


def check_no_label_containing(path, text):
    for name, labels, _ in parse(path)[0]:
        for k, v in labels.items():
            if text in v:
                fail("%s has label %s=%r" % (name, k, v))


checks = {"families": check_families, "counts": check_counts, "settled": check_settled,
          "histograms": check_histograms, "delta": check_delta, "value": check_value,
          "label": check_label, "no-label-containing": check_no_label_containing}
try:
    checks[sys.argv[1]](*sys.argv[2:])
except (ValueError, IndexError, KeyError) as e:
    fail("cannot parse the scrape: %r" % e)
EOF

# scrape OUTFILE [URL]: GET /metrics into OUTFILE; headers in OUTFILE.headers.
scrape() {
    curl -s --max-time 30 -D "$1.headers" -o "$1" "${2:-$URL}/metrics"
}

# scrape_settled OUTFILE BEFORE TOTAL: scrapes until TOTAL requests (other
# than /metrics and /readyz) are counted since BEFORE, for up to 5 s. A
# request is counted once its response is sent, which may be just after
# curl has read it.
scrape_settled() {
    local out=$1 before=$2 total=$3 tries=0
    while :; do
        scrape "$out"
        if $PARSE settled "$before" "$out" "$total" >/dev/null || [ "$tries" -ge 50 ]; then
            return
        fi
        sleep 0.1
        tries=$((tries + 1))
    done
}

if ! command -v promtool >/dev/null 2>&1; then
    fail "promtool installed" "promtool not found: install the Debian package 'prometheus'" \
        "(scripts/install-deps.sh prometheus, which make test runs)"
fi

start_daemon main
R=$WORK/reply.json
BEFORE=$WORK/before.txt
AFTER=$WORK/after.txt
START_TIME=$(date +%s)

# --- format of the scrape
if [ "$(http_request "$BEFORE" -D "$BEFORE.headers" "$URL/metrics")" = 200 ]; then
    ok "metrics returns 200"
else
    fail "metrics returns 200" "$(head -c 400 "$BEFORE")"
fi
content_type=$(grep -i '^content-type:' "$BEFORE.headers" | tr -d '\r')
if [ "$content_type" = "Content-Type: text/plain; version=0.0.4; charset=utf-8" ]; then
    ok "metrics content type"
else
    fail "metrics content type" "got '$content_type'"
fi
check "every family has HELP and TYPE" $PARSE families "$BEFORE"
expect_status "metrics HEAD" 200 "$R" -I "$URL/metrics"
expect_error "metrics POST" 405 method_not_allowed "GET" -X POST --data x "$URL/metrics"

# --- a known mix of requests: 3 detections, 3 client errors, 3 unknown paths
detections=0
for image in bus.jpg zidane.jpg bus.jpg; do
    if expect_status "detect $image" 200 "$R" --data-binary @"$IMAGES/$image" "$URL/v1/detect"; then
        found=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["detections"]))' "$R")
        detections=$((detections + found))
    fi
done
expect_status "detect conf above 1" 400 "$R" --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect?conf=1.5"
expect_status "detect text body" 415 "$R" --data-binary 'hello, not an image' "$URL/v1/detect"
expect_status "detect GET" 405 "$R" "$URL/v1/detect"
expect_status "healthz" 200 "$R" "$URL/healthz"
expect_status "healthz again" 200 "$R" "$URL/healthz"
expect_status "unknown path" 404 "$R" "$URL/nope"
expect_status "unknown path under v1" 404 "$R" "$URL/v1/detect/extra"
expect_status "metrics with trailing slash" 404 "$R" "$URL/metrics/"
# The KServe route has the model name in its path; its status is the
# KServe handler's business, so only the route label is checked.
http_request "$R" "$URL/v2/models/no-such-model-7f3a/ready" >/dev/null

scrape_settled "$AFTER" "$BEFORE" 12

expected='{"/v1/detect 200": 3, "/v1/detect 400": 1, "/v1/detect 415": 1, "/v1/detect 405": 1,
           "/healthz 200": 2, "other 404": 3}'
check "requests counted by route and code" \
    $PARSE counts "$BEFORE" "$AFTER" "$expected" "/metrics,/readyz,/v2/models/{name}/ready"
check "model route labelled by pattern" $PARSE delta "$BEFORE" "$AFTER" \
    yolod_request_duration_seconds_count 1 '{"route": "/v2/models/{name}/ready"}'
check "no model name from a path in labels" $PARSE no-label-containing "$AFTER" no-such-model-7f3a
check "metrics route counted" $PARSE value "$AFTER" yolod_http_requests_total 1 1000 \
    '{"route": "/metrics", "code": "200"}'
check "histograms consistent" $PARSE histograms "$AFTER"
check "request duration count for detect" $PARSE delta "$BEFORE" "$AFTER" \
    yolod_request_duration_seconds_count 6 '{"route": "/v1/detect"}'
check "request duration count for other" $PARSE delta "$BEFORE" "$AFTER" \
    yolod_request_duration_seconds_count 3 '{"route": "other"}'
check "queue wait count equals jobs run" $PARSE delta "$BEFORE" "$AFTER" \
    yolod_queue_wait_seconds_count 3 '{"model": "yolov8n", "variant": "fp32"}'
check "inference count equals jobs run" $PARSE delta "$BEFORE" "$AFTER" \
    yolod_inference_duration_seconds_count 3 '{"model": "yolov8n", "variant": "fp32"}'
check "inference sum grew" $PARSE value "$AFTER" yolod_inference_duration_seconds_sum 0.001 600 \
    '{"model": "yolov8n", "variant": "fp32"}'
check "detections equal the replies" $PARSE delta "$BEFORE" "$AFTER" \
    yolod_detections_total "$detections" '{"model": "yolov8n", "variant": "fp32"}'
check "queue depth idle" $PARSE value "$AFTER" yolod_queue_depth 0 0 '{}'
check "in flight is the scrape" $PARSE value "$AFTER" yolod_requests_in_flight 1 1 '{}'
check "model info" $PARSE value "$AFTER" yolod_model_info 1 1 \
    "$(python3 -c 'import json,sys; print(json.dumps({"model": "yolov8n", "variant": "fp32", "path": sys.argv[1]}))' "$MODEL")"
now=$(date +%s)
check "model load time" $PARSE value "$AFTER" yolod_model_load_timestamp_seconds \
    $((START_TIME - 300)) $((now + 1)) '{"model": "yolov8n", "variant": "fp32"}'
check "process start time" $PARSE value "$AFTER" process_start_time_seconds \
    $((START_TIME - 300)) $((now + 1)) '{}'
check "process resident memory" $PARSE value "$AFTER" process_resident_memory_bytes 1000000 1e12 '{}'
check "process cpu seconds" $PARSE value "$AFTER" process_cpu_seconds_total 0.01 1e6 '{}'
check "process open fds" $PARSE value "$AFTER" process_open_fds 4 100000 '{}'

if command -v promtool >/dev/null 2>&1; then
    check "promtool accepts the scrape" promtool check metrics <"$AFTER"
fi

# --- label escaping: a model file whose name has a double quote, a
# backslash and a newline
ODD_DIR=$WORK/$'odd"dir\\with\nnewline'
ODD_NAME=$'y"8\\n'
mkdir -p "$ODD_DIR"
ln -s "$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")" "$ODD_DIR/$ODD_NAME.onnx"
MODEL=$ODD_DIR/$ODD_NAME.onnx
start_daemon odd
ODD=$WORK/odd.txt
scrape "$ODD"
check "odd model name escaped" $PARSE label "$ODD" yolod_model_info model "$ODD_NAME"
check "odd model path escaped" $PARSE label "$ODD" yolod_model_info path "$MODEL"
if grep -qF 'model="y\"8\\n"' "$ODD"; then
    ok "odd model name escape sequence"
else
    fail "odd model name escape sequence" "$(grep yolod_model_info "$ODD")"
fi
check "odd scrape families" $PARSE families "$ODD"
if command -v promtool >/dev/null 2>&1; then
    check "promtool accepts the odd scrape" promtool check metrics <"$ODD"
fi

finish
