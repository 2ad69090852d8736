#!/usr/bin/env bash
# The whole test suite: builds (Release, into build/ unless RINGMOE_BUILD_DIR says otherwise), runs every
# GoogleTest through ctest (then every CPU test again on the AVX2 paths), then each libFuzzer target briefly (RINGMOE_FUZZ_SECONDS, default 20) when clang
# with libFuzzer is installed. GPU tests skip themselves without a GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RINGMOE_BUILD_DIR:-${root}/build}"
jobs="${RINGMOE_JOBS:-$(nproc)}"
cmake -S "${root}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "${build}" -j "${jobs}"
ctest --test-dir "${build}" --output-on-failure -j "${jobs}"
# The whole suite again as an AVX2-only CPU runs it (oneDNN capped at AVX2, ringmoe's own kernels too:
# cpu/cpu_features.h), so that machines without AVX-512 are covered wherever this runs. RINGMOE_AVX2_PASS=0
# skips it.
if [[ "${RINGMOE_AVX2_PASS:-1}" != 0 ]]; then
  ONEDNN_MAX_CPU_ISA=AVX2 RINGMOE_CPU_ISA=avx2 ctest --test-dir "${build}" --output-on-failure -j "${jobs}" -L cpu
fi

fuzz_seconds="${RINGMOE_FUZZ_SECONDS:-20}"
if [[ "${fuzz_seconds}" != 0 ]] && command -v clang++ >/dev/null &&
   echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
     clang++ -x c++ -fsanitize=fuzzer - -o /tmp/ringmoe_fuzz_probe 2>/dev/null; then
  RINGMOE_FUZZ_JOBS="${jobs}" "${root}/tests/fuzz/run_fuzzers.sh" "${fuzz_seconds}"
else
  echo "run_all: libFuzzer (clang -fsanitize=fuzzer) not available; fuzz targets skipped"
fi
