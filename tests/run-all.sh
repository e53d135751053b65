#!/usr/bin/env bash
# Runs every unit test binary and integration script, adds up their
# "N passed, N failed" lines and prints the total. Exits non-zero on any
# failure, or when the shared data folder is missing.
set -u
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
export SHARED BUILD

if [ ! -d "$SHARED/models" ]; then
    echo "FATAL: shared data folder '$SHARED' not found (set SHARED=DIR)" >&2
    exit 2
fi

passed=0 failed=0 broken=0
run() {
    local name=$1; shift
    echo "== $name"
    # The suite's lines are printed as they come (some suites run for
    # minutes) and kept to find its totals.
    local out rc
    out=$(mktemp)
    "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    rm -f "$out"
    if [ -z "$line" ]; then
        echo "!! $name printed no totals (exit $rc)"
        broken=$((broken + 1))
        return
    fi
    local p f
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!! $name exited $rc"
        broken=$((broken + 1))
    fi
}

for t in "$BUILD"/tests/test-*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
for t in tests/integration/test-*.sh; do
    [ -f "$t" ] || continue
    run "$(basename "$t")" bash "$t"
done

failed=$((failed + broken))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
