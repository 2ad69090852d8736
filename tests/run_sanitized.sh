#!/usr/bin/env bash
# Builds the CPU test suite with AddressSanitizer and UndefinedBehaviorSanitizer (-DRINGMOE_SANITIZE=ON) in
# build-asan and runs the cpu-labelled tests under them. Exits non-zero on a build failure, a test failure or
# any sanitizer report (each stops its program: -fno-sanitize-recover).
#
# Usage: tests/run_sanitized.sh [CTEST_ARGS...]      e.g. tests/run_sanitized.sh -R 'Batch|Durable'
# Environment: RINGMOE_ASAN_BUILD_DIR (default <repo>/build-asan), RINGMOE_ASAN_JOBS (build and ctest -j,
# default 2), RINGMOE_ASAN_LABEL (default cpu; `cpu -LE slow` style arguments go in CTEST_ARGS).
#
# CUDA is off in this build (nvcc's host pass and the driver do not mix with ASan's shadow memory), and so are
# the benchmarks. Leak checking is on: a leak is a finding too.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RINGMOE_ASAN_BUILD_DIR:-${root}/build-asan}"
jobs="${RINGMOE_ASAN_JOBS:-2}"
label="${RINGMOE_ASAN_LABEL:-cpu}"

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
cmake -S "${root}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGMOE_SANITIZE=ON \
  -DRINGMOE_CUDA=OFF -DRINGMOE_BENCH=OFF -DRINGMOE_TESTS=ON "${launcher[@]}" >/dev/null
cmake --build "${build}" -j"${jobs}"

# halt_on_error: the first report fails the test. detect_leaks: leaks are findings, except the caches that
# oneDNN, TBB, OpenMP and hwloc keep until exit (tests/sanitizer_suppressions.txt names only those libraries).
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0${ASAN_OPTIONS:+:${ASAN_OPTIONS}}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:${UBSAN_OPTIONS}}"
export LSAN_OPTIONS="suppressions=${root}/tests/sanitizer_suppressions.txt${LSAN_OPTIONS:+:${LSAN_OPTIONS}}"
ctest --test-dir "${build}" -L "${label}" -j"${jobs}" --output-on-failure --timeout 1800 "$@"
