#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/*_fuzz.cc) with clang in build-fuzz and runs each one for N seconds
# on its corpus. Exits non-zero if a fuzzer fails to build or finds a crash, leak, hang or sanitizer report.
#
# Usage: tests/fuzz/run_fuzzers.sh [SECONDS=30] [FUZZER_NAME...]
# Environment: RINGMOE_FUZZ_BUILD_DIR (default <repo>/build-fuzz), RINGMOE_FUZZ_JOBS (ninja -j, default 2).
#
# Seeds come from tests/fuzz/corpus/<name without _fuzz>/, or failing that corpus/<first word of the name>/
# (safetensors_header_fuzz -> corpus/safetensors/). New inputs go to <build>/fuzz-corpus/<name>/, so the
# committed seeds only change on purpose; crashes go to <build>/fuzz-artifacts/. A <name>.dict beside the
# source is passed as -dict, and the lines of a <name>.flags as more libFuzzer flags.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-30}"
if [[ $# -gt 0 ]]; then shift; fi
build="${RINGMOE_FUZZ_BUILD_DIR:-${root}/build-fuzz}"
jobs="${RINGMOE_FUZZ_JOBS:-2}"

cmake -S "${root}" -B "${build}" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DRINGMOE_FUZZ=ON -DRINGMOE_TESTS=ON -DRINGMOE_BENCH=OFF -DRINGMOE_CUDA=OFF >/dev/null

if [[ $# -gt 0 ]]; then
  fuzzers=("$@")
else
  fuzzers=()
  for source in "${root}"/tests/fuzz/*_fuzz.cc; do
    fuzzers+=("$(basename "${source}" .cc)")
  done
fi
ninja -C "${build}" -j"${jobs}" "${fuzzers[@]}"

mkdir -p "${build}/fuzz-artifacts"
failed=()
for name in "${fuzzers[@]}"; do
  seeds="${root}/tests/fuzz/corpus/${name%_fuzz}"
  [[ -d "${seeds}" ]] || seeds="${root}/tests/fuzz/corpus/${name%%_*}"
  work="${build}/fuzz-corpus/${name}"
  mkdir -p "${work}"
  args=(-max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="${build}/fuzz-artifacts/${name}-")
  dict="${root}/tests/fuzz/${name}.dict"
  [[ -f "${dict}" ]] && args+=(-dict="${dict}")
  # <name>.flags: more libFuzzer flags, one a line (e.g. a -max_len that reaches deep nesting).
  flags="${root}/tests/fuzz/${name}.flags"
  if [[ -f "${flags}" ]]; then
    while IFS= read -r flag; do [[ -n "${flag}" ]] && args+=("${flag}"); done <"${flags}"
  fi
  corpora=("${work}")
  if [[ -d "${seeds}" ]]; then
    corpora+=("${seeds}")
  else
    echo "run_fuzzers: no seed corpus for ${name} (looked for tests/fuzz/corpus/${name%_fuzz})" >&2
  fi
  echo "=== ${name}: ${seconds} s"
  if ! "${build}/fuzz/${name}" "${args[@]}" "${corpora[@]}"; then
    failed+=("${name}")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run_fuzzers: FAILED: ${failed[*]} (reproducers in ${build}/fuzz-artifacts/)" >&2
  exit 1
fi
echo "run_fuzzers: all ${#fuzzers[@]} fuzzers ran ${seconds} s without findings"
