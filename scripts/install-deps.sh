#!/bin/sh
# Installs the Debian 12 packages yolod needs to build and run the demo,
# and with --test those the tests need too, skipping the ones already
# present. Needs root (or sudo) only when something is missing. Extra
# package names given as arguments are installed too.
set -eu

packages="gcc make libc6-dev libmicrohttpd-dev libjpeg62-turbo-dev libpng-dev libcjson-dev curl python3"
if [ "${1:-}" = --test ]; then
    shift
    # libjpeg-turbo-progs makes test images. prometheus provides promtool,
    # which tests/integration/test-metrics.sh runs on a /metrics scrape, and
    # the server tests/integration/test-prometheus.sh starts on loopback.
    # systemd provides systemd-analyze, which
    # tests/integration/test-systemd-notify.sh runs on systemd/yolod.service.
    packages="$packages libjpeg-turbo-progs prometheus systemd"
fi
packages="$packages $*"

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

# Debian's prometheus package enables and starts a Prometheus server on
# port 9090 of every interface. The tests run their own server on a
# loopback port, so a service this script installed is stopped and
# disabled again.
case " $missing " in
*" prometheus "*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
        echo "stopped and disabled prometheus.service (the tests start their own on loopback)"
    fi
    ;;
esac
