#!/usr/bin/env bash
# A real Prometheus server (Debian's) scrapes the daemon on loopback every
# second while the test sends a known number of detection requests. Its
# query API must then report exactly that many for /v1/detect with status
# 200, and the scrape target must be up.
source "$(dirname "$0")/lib.sh"

if ! command -v prometheus >/dev/null; then
    fail "prometheus is installed" "not found; run scripts/install-deps.sh (Debian package prometheus)"
    finish
fi

start_daemon prometheus
daemon_port=${URL##*:}
prom_port=$(free_port)
PROM=http://127.0.0.1:$prom_port
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: yolod
    static_configs:
      - targets: ['127.0.0.1:$daemon_port']
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn 2>"$WORK/prometheus.log" &
DAEMON_PIDS+=("$!")

# query EXPR: prints the value of an instant query with one result, or "none".
query() {
    curl -s --max-time 10 -G "$PROM/api/v1/query" --data-urlencode "query=$1" >"$WORK/query.json" || { echo none; return; }
    python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
r = j.get("data", {}).get("result", [])
print(r[0]["value"][1] if len(r) == 1 else "none")' "$WORK/query.json" 2>/dev/null || echo none
}

# wait_query EXPR WANT SECONDS: polls until EXPR equals WANT.
wait_query() {
    local i
    for i in $(seq $(($3 * 5))); do
        [ "$(query "$1")" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}

if wait_query 'up{job="yolod"}' 1 60; then
    ok "prometheus scrapes the daemon (up = 1)"
else
    fail "prometheus scrapes the daemon" "up = $(query 'up{job="yolod"}'); log: $(tail -5 "$WORK/prometheus.log")"
    finish
fi

SENT=25
codes=""
for i in $(seq "$SENT"); do
    codes+=$(curl -s -o /dev/null -w '%{http_code} ' --max-time 60 --data-binary @"$IMAGES/bus.jpg" "$URL/v1/detect")
done
if [ "$(echo "$codes" | tr ' ' '\n' | grep -c '^200$')" = "$SENT" ]; then ok "$SENT detections sent, all 200"; else fail "$SENT detections sent, all 200" "$codes"; fi

expr='sum(yolod_http_requests_total{job="yolod",route="/v1/detect",code="200"})'
if wait_query "$expr" "$SENT" 30; then
    ok "prometheus query counts $SENT /v1/detect requests"
else
    fail "prometheus query counts $SENT /v1/detect requests" "got $(query "$expr"): $(head -c 300 "$WORK/query.json")"
fi
expr='sum(yolod_detections_total{job="yolod"})'
got=$(query "$expr")
scraped=$(curl -s "$URL/metrics" | awk '/^yolod_detections_total/ {s += $2} END {print s + 0}')
if [ "$got" != none ] && [ "$got" -gt 0 ] && [ "$got" -le "$scraped" ]; then
    ok "prometheus has the detections counter ($got)"
else
    fail "prometheus has the detections counter" "query $got, scrape $scraped"
fi
expr='histogram_quantile(0.5, sum by (le) (rate(yolod_inference_duration_seconds_bucket{job="yolod"}[1m])))'
got=$(query "$expr")
if python3 -c 'import sys; v = float(sys.argv[1]); sys.exit(0 if 0 < v < 10 else 1)' "$got" 2>/dev/null; then
    ok "inference histogram gives a median in seconds ($got)"
else
    fail "inference histogram gives a median in seconds" "$got"
fi
finish
