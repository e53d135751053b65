#!/bin/sh
# Installs the Debian 12 packages yolod needs to build and test, skipping
# the ones already present. Needs root (or sudo) only when something is
# missing. Extra package names given as arguments are installed too.
set -eu

# prometheus provides promtool, which tests/integration/test-metrics.sh runs
# on a /metrics scrape. systemd provides systemd-analyze, which
# tests/integration/test-systemd-notify.sh runs on systemd/yolod.service.
packages="gcc make libc6-dev libmicrohttpd-dev libjpeg62-turbo-dev libpng-dev libcjson-dev curl python3 libjpeg-turbo-progs prometheus systemd $*"

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "error: missing packages:$missing; run this script as root" >&2
    exit 1
fi
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
