#!/usr/bin/env bash
# One call on the GPU machine (see README): builds with CUDA for Hopper, runs the GPU tests and the golden tests,
# probes the machine, writes the benchmark checkpoints and runs ringmoe's offload benchmark and the
# transformers+accelerate baseline on them. Everything it reports lands in $OUT (default /tmp/ringmoe-out).
#   source .device/env.sh && bench/run_h200.sh
# STEPS picks the parts (default "build tests probe bench"); BENCH_SHAPES, BENCH_REQUESTS, BENCH_PROMPT,
# BENCH_GEN, BENCH_BATCH and BENCH_STEP_TOKENS size the benchmark; HF=0 skips the transformers baseline.
set -uo pipefail
out="${OUT:-/tmp/ringmoe-out}"
mkdir -p "${out}"
build="${BUILD:-build-h200}"
steps=" ${STEPS:-build tests probe bench} "
wants() { [[ "${steps}" == *" $1 "* ]]; }
step() { echo "=== $(date +%T) $*"; }

if wants build; then
step build
cmake -S . -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DRINGMOE_NATIVE=ON \
  >"${out}/cmake.log" 2>&1 || { tail -30 "${out}/cmake.log"; exit 1; }
ninja -C "${build}" -j16 >"${out}/build.log" 2>&1 || { grep -E "error|FAILED" "${out}/build.log" | head -30; exit 1; }
fi

if wants tests; then
step gpu and golden tests
ctest --test-dir "${build}" -R "Gpu|gpu|Golden" -j4 --output-on-failure >"${out}/gpu_tests.log" 2>&1
grep -E "tests passed|tests failed|\(Failed\)|\(SEGFAULT\)|Skipped" "${out}/gpu_tests.log" | head -20
grep -h "tokens compared" "${build}"/Testing/Temporary/LastTest.log | head -20
fi

if wants probe; then
step probe
timeout 120 "${build}/ringmoe" probe --out "${out}/h200_probe.json" --dir /tmp --no-cache >"${out}/probe.log" 2>&1
tail -5 "${out}/probe.log"
fi
wants bench || exit 0

util() { nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"${out}/util_$1.csv" 2>/dev/null & }
for shape in ${BENCH_SHAPES:-qwen3-30b-a3b:16:6GiB mixtral-8x7b:4:12GiB}; do
  IFS=: read -r name layers gpu_mem <<<"${shape}"
  step "checkpoint ${name} (${layers} layers)"
  "${build}/bench/ringmoe_make_checkpoint" --model "${name}" --layers "${layers}" --out "/tmp/${name}" >/dev/null || exit 1
  if [[ -f "${out}/h200_probe.json" ]]; then
    step "plan ${name}"
    batch="${BENCH_BATCH:-1024}"; step_tokens="${BENCH_STEP_TOKENS:-4096}"
    "${build}/ringmoe" plan --model "/tmp/${name}" --hardware "${out}/h200_probe.json" --gpu-mem "${gpu_mem}" \
      --prompt-len "${BENCH_PROMPT:-128}" --gen-len "${BENCH_GEN:-32}" --num-requests "${BENCH_REQUESTS:-1024}" \
      --batch "${batch}" --prefill-chunk $((step_tokens - batch)) --micro-batches 2 --no-what-if \
      >"${out}/plan_${name}.txt" 2>&1
    grep -A3 -E "^predicted throughput" "${out}/plan_${name}.txt"; grep -E "^plan:|GPU   budget|routed experts" "${out}/plan_${name}.txt"
  fi
  step "ringmoe ${name}"
  util "${name}"; pid=$!
  timeout 200 "${build}/bench/offload_bench" --model "/tmp/${name}" --gpu-mem "${gpu_mem}" \
    --requests "${BENCH_REQUESTS:-1024}" --prompt-len "${BENCH_PROMPT:-128}" --gen-len "${BENCH_GEN:-32}" \
    --max-batch "${BENCH_BATCH:-1024}" --max-step-tokens "${BENCH_STEP_TOKENS:-4096}" --json "${out}/ringmoe_${name}.json" ||
    { echo "  failed; again, small and with CUDA_LAUNCH_BLOCKING=1 to name the failing call:";
      CUDA_LAUNCH_BLOCKING=1 timeout 60 "${build}/bench/offload_bench" --model "/tmp/${name}" --gpu-mem "${gpu_mem}" \
        --requests 16 --prompt-len 16 --gen-len 2 --max-batch 16 2>&1 | tail -3; }
  kill "${pid}" 2>/dev/null
  awk '{ s += $1; n++ } END { if (n) printf "  GPU busy (nvidia-smi, 200 ms samples): %.0f%%\n", s / n }' "${out}/util_${name}.csv"
  if [[ "${HF:-1}" != 0 ]]; then
  step "transformers+accelerate ${name}"
  timeout 240 python3 bench/hf_offload_baseline.py --model "/tmp/${name}" --gpu-mem "${gpu_mem}" --requests 8 \
    --prompt-len "${BENCH_PROMPT:-128}" --gen-len 4 --json "${out}/hf_${name}.json" 2>"${out}/hf_${name}.log" |
    tail -1 || tail -5 "${out}/hf_${name}.log"
  fi
  rm -rf "/tmp/${name}"
done
step done
