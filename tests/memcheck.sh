#!/usr/bin/env bash
# Runs `yolod detect` on bus.jpg under valgrind memcheck and fails on any
# leak or invalid access. Valgrind 3.19 does not emulate AVX-512; it hides
# the feature from CPUID, so the AVX2 kernels run under it.
set -u
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
if [ ! -f "$SHARED/models/yolov8n.onnx" ]; then
    echo "FATAL: $SHARED/models/yolov8n.onnx not found (set SHARED=DIR)" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "FATAL: valgrind is not installed" >&2; exit 2; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# One OpenMP thread: libgomp keeps its worker threads alive until exit,
# which valgrind would list as "possibly lost" thread stacks.
OMP_NUM_THREADS=1 GOMP_SPINCOUNT=2000 valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 --log-file="$log" \
    "$BUILD/yolod" detect --threads 1 --model "$SHARED/models/yolov8n.onnx" "$SHARED/images/bus.jpg" >/dev/null
rc=$?
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|Invalid' "$log"
if [ "$rc" -ne 0 ]; then
    cat "$log"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "1 passed, 0 failed"
