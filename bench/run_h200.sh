#!/usr/bin/env bash
# One call on the GPU machine (see README): builds with CUDA for Hopper, runs the GPU and golden tests, probes
# the machine, writes the benchmark checkpoints and runs ringmoe's offload benchmark (planned on the fresh
# probe, measured beside predicted and the hardware bound) and the transformers+accelerate baseline on them.
#   source .device/env.sh && bench/run_h200.sh
# STEPS picks the parts (default "build tests probe bench hf"; "golden" rebuilds the golden data too;
# "refdata" remakes the chat goldens with token ids, cross-checks them with transformers and adds the
# DeepSeek-V3 router gaps, before the tests read them, into $OUT/refdata.tgz to be committed; "gputests" runs
# only the GPU-labelled tests, for a short call). CASES
# lists the benchmark runs, each
# "shape:layers:gpu_mem:requests:prompt:gen[:extra offload_bench flags, commas for spaces]" (shape+fp8: a block-FP8
# checkpoint of that shape), e.g.
#   CASES="qwen3-30b-a3b:16:6GiB:1024:512:256 mixtral-8x7b:4:6GiB:512:512:256"
# STAGE_TIMES=1 adds the GPU's seconds by stage to the step logs (offload_bench --gpu-stage-times; summarised
# per step kind by bench/steps_summary.py). NSYS="delay:duration" profiles each benchmark run's window with Nsight Systems (bench/nsys_timeline.py).
# CASES=accuracy runs the planner issue's eight configurations (both shapes, 6 and 12 GiB, 512/256 and 128/1024;
# about 20 minutes of benchmark, so over three calls: ACCURACY_PART=1, 2 or 3 picks a third).
# Logs and JSON land in $WORK (default /tmp/ringmoe-out); everything is packed into $OUT/results.tgz with a
# summary in $OUT/summary.txt.
set -uo pipefail
work="${WORK:-/tmp/ringmoe-out}"
mkdir -p "${work}"
build="${BUILD:-build-h200}"
steps=" ${STEPS:-build tests probe bench hf} "
wants() { [[ "${steps}" == *" $1 "* ]]; }
step() { echo "=== $(date +%T) $*" | tee -a "${work}/summary.txt"; }
say() { echo "$*" | tee -a "${work}/summary.txt"; }
pack() {
  [[ -n "${OUT:-}" ]] || return 0
  cp "${work}/summary.txt" "${OUT}/summary.txt" 2>/dev/null
  tar -czf "${OUT}/results.tgz" -C "${work}" . 2>/dev/null
}
trap pack EXIT

refdata_pid=""
if wants refdata; then
  # Beside the build (both take about two minutes); the tests wait for it.
  step "reference data: chat goldens with ids, transformers cross-check, DeepSeek-V3 router gaps"
  (
    python3 tests/golden/make_chat_goldens.py --with-ids &&
      python3 tests/golden/check_chat_goldens_with_transformers.py
    python3 tests/golden/add_deepseek_router_gaps.py tests/data/golden_deepseek/deepseek_v3
    [[ -n "${OUT:-}" ]] && tar -czf "${OUT}/refdata.tgz" tests/data/chat_goldens tests/data/golden_deepseek/deepseek_v3/golden.json
  ) >"${work}/refdata.log" 2>&1 &
  refdata_pid=$!
fi

if wants build; then
  step build
  cmake -S . -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DRINGMOE_NATIVE=ON \
    >"${work}/cmake.log" 2>&1 || { tail -30 "${work}/cmake.log"; exit 1; }
  ninja -C "${build}" -j16 >"${work}/build.log" 2>&1 || { grep -E "error|FAILED" "${work}/build.log" | head -30; exit 1; }
fi

if wants golden; then
  # Rebuilds the golden checkpoints and their transformers references (tests/golden/make_models.py, its defaults
  # plus GOLDEN_ARGS) in this copy of the checkout, so that the tests below read them; packed into
  # $OUT/golden.tgz to be committed.
  step "golden data ${GOLDEN_ARGS:-}"
  # shellcheck disable=SC2086
  python3 tests/golden/make_models.py --out tests/data ${GOLDEN_ARGS:-} >"${work}/golden.log" 2>&1 ||
    tail -20 "${work}/golden.log" | tee -a "${work}/summary.txt"
  grep -E "OK .*min margin|FAILED" "${work}/golden.log" | sed 's/, files.*//' | tee -a "${work}/summary.txt"
  [[ -n "${OUT:-}" ]] && tar -czf "${OUT}/golden.tgz" tests/data/golden tests/data/models/tiny-qwen3-moe
fi

if [[ -n "${refdata_pid}" ]]; then
  wait "${refdata_pid}"
  grep -E "identical to transformers|router gaps added|rendered|Error|error" "${work}/refdata.log" | head -30 |
    tee -a "${work}/summary.txt"
fi

if wants gputests; then
  step "GPU tests"
  ctest --test-dir "${build}" -L gpu -j8 --timeout 200 --output-on-failure >"${work}/gpu_tests.log" 2>&1
  grep -E "tests passed|tests failed|\(Failed\)|\(SEGFAULT\)|\(Timeout\)" "${work}/gpu_tests.log" | head -40 |
    tee -a "${work}/summary.txt"
  grep -hE "tokens compared|tokens scored|routed copies:" "${build}"/Testing/Temporary/LastTest.log | head -120 \
    >>"${work}/summary.txt"
fi

if wants tests; then
  # Every test: the GPU ones are spread over several suites (GpuGoldenTest, DeviceArenaTest, SectionRingTest,
  # HostMemoryTest, StreamTest, ...), and a name filter has missed some before.
  step "all tests"
  ctest --test-dir "${build}" -j8 --timeout 300 --output-on-failure >"${work}/gpu_tests.log" 2>&1
  grep -E "tests passed|tests failed|\(Failed\)|\(SEGFAULT\)|\(Timeout\)|Skipped" "${work}/gpu_tests.log" | head -30 |
    tee -a "${work}/summary.txt"
  grep -hE "device memory grew|routed copies:|tokens compared|TFLOP/s|GB/s" "${build}"/Testing/Temporary/LastTest.log |
    head -80 >>"${work}/summary.txt"
fi

# PROFILE: a probe written by an earlier call on the same warm machine (else this call's probe, else the
# committed H200 profile, which the summary then names).
profile="${PROFILE:-${work}/h200_probe.json}"
if wants probe; then
  step probe
  timeout 120 "${build}/ringmoe" probe --out "${profile}" --dir /tmp --no-cache >"${work}/probe.log" 2>&1
  tail -8 "${work}/probe.log" | tee -a "${work}/summary.txt"
fi
[[ -f "${profile}" ]] || { profile=bench/h200_profile.json; say "planning on the committed ${profile} (no probe of this machine)"; }

if [[ "${CASES:-}" == accuracy ]]; then
  case "${ACCURACY_PART:-all}" in
    1) CASES="mixtral-8x7b:4:12GiB:512:512:256 mixtral-8x7b:4:12GiB:512:128:1024 mixtral-8x7b:4:6GiB:512:512:256 mixtral-8x7b:4:6GiB:512:128:1024" ;;
    2) CASES="qwen3-30b-a3b:16:6GiB:1024:512:256 qwen3-30b-a3b:16:12GiB:512:128:1024" ;;
    3) CASES="qwen3-30b-a3b:16:12GiB:1024:512:256 qwen3-30b-a3b:16:6GiB:512:128:1024" ;;
    *) CASES="mixtral-8x7b:4:12GiB:512:512:256 mixtral-8x7b:4:12GiB:512:128:1024 mixtral-8x7b:4:6GiB:512:512:256 mixtral-8x7b:4:6GiB:512:128:1024 qwen3-30b-a3b:16:6GiB:1024:512:256 qwen3-30b-a3b:16:12GiB:1024:512:256 qwen3-30b-a3b:16:12GiB:512:128:1024 qwen3-30b-a3b:16:6GiB:512:128:1024" ;;
  esac
fi

if wants bench; then
  for case in ${CASES:-qwen3-30b-a3b:16:6GiB:1024:512:256 mixtral-8x7b:4:6GiB:512:512:256}; do
    IFS=: read -r name layers gpu_mem requests prompt gen extra <<<"${case}"
    extra="${extra//,/ }"
    # "shape+fp8": the bench tool writes the routed experts in block FP8 (ringmoe_make_checkpoint --fp8).
    shape="${name%+fp8}"
    checkpoint_flags=""
    [[ "${name}" == *+fp8 ]] && checkpoint_flags="--fp8" && name="${shape}-fp8"
    dir="/tmp/${name}-${layers}"
    # One checkpoint on disk at a time (64 GiB); a complete one left by an earlier call on a warm machine is reused.
    if [[ ! -f "${dir}/.complete" ]]; then
      step "checkpoint ${name} (${layers} layers)"
      for other in /tmp/*-[0-9]*; do [[ -f "${other}/config.json" && "${other}" != "${dir}" ]] && rm -rf "${other}"; done
      rm -rf "${dir}"
      # shellcheck disable=SC2086
      "${build}/bench/ringmoe_make_checkpoint" --model "${shape}" --layers "${layers}" --out "${dir}" \
        ${checkpoint_flags} >/dev/null ||
        exit 1
      # Write the checkpoint's dirty pages out now: flushed in the background, they may slow the first
      # benchmark (suspected in mixtral 12 GiB 512/256 of 2026-12-03: 4376 tok/s, CPU attention 69.5 GB/s).
      sync
      touch "${dir}/.complete"
    fi
    tag="${name}_${layers}l_${gpu_mem}_${requests}x${prompt}x${gen}${extra:+_$(echo "${extra}" | tr -dc 'a-z0-9')}"
    step "ringmoe ${tag}"
    # shellcheck disable=SC2086
    "${build}/ringmoe" plan --model "${dir}" --hardware "${profile}" --gpu-mem "${gpu_mem}" \
      --prompt-len "${prompt}" --gen-len "${gen}" --num-requests "${requests}" ${extra} >"${work}/plan_${tag}.txt" 2>&1
    # NSYS="delay:duration" (seconds): the run under Nsight Systems, capturing that window of it; the GPU trace is
    # summarised by bench/nsys_timeline.py (busy, overlap, idle gaps, kernels) beside the CUDA API summary.
    profiler=()
    if [[ -n "${NSYS:-}" ]]; then
      nsys_bin="$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)"
      if [[ -x "${nsys_bin}" ]]; then
        profiler=("${nsys_bin}" profile --trace=cuda,osrt --sample=none --cpuctxsw=none --delay "${NSYS%%:*}"
                  --duration "${NSYS##*:}" --kill none --force-overwrite true -o "/tmp/nsys_${tag}")
      else
        say "NSYS asked for, but no nsys on this machine"
      fi
    fi
    # shellcheck disable=SC2086
    timeout "${BENCH_TIMEOUT:-280}" "${profiler[@]}" "${build}/bench/offload_bench" --model "${dir}" --gpu-mem "${gpu_mem}" \
      --hardware "${profile}" --requests "${requests}" --prompt-len "${prompt}" --gen-len "${gen}" ${extra} \
      --step-log "${work}/steps_${tag}.txt" ${STAGE_TIMES:+--gpu-stage-times} \
      --json "${work}/ringmoe_${tag}.json" >"${work}/ringmoe_${tag}.txt" 2>"${work}/ringmoe_${tag}.log"
    rc=$?
    cat "${work}/ringmoe_${tag}.txt" | tee -a "${work}/summary.txt"
    [[ -n "${STAGE_TIMES:-}" ]] && python3 bench/steps_summary.py "${work}/steps_${tag}.txt" | tee -a "${work}/summary.txt"
    if [[ ${#profiler[@]} -gt 0 && -f "/tmp/nsys_${tag}.nsys-rep" ]]; then
      "${nsys_bin}" stats -r cuda_gpu_trace -f csv -o "/tmp/nsys_${tag}" "/tmp/nsys_${tag}.nsys-rep" >/dev/null 2>&1
      "${nsys_bin}" stats -r cuda_api_sum,cuda_gpu_kern_sum,cuda_gpu_mem_time_sum "/tmp/nsys_${tag}.nsys-rep" \
        >"${work}/nsys_${tag}_stats.txt" 2>&1
      python3 bench/nsys_timeline.py "/tmp/nsys_${tag}_cuda_gpu_trace.csv" >"${work}/nsys_${tag}_timeline.txt" 2>&1
      head -12 "${work}/nsys_${tag}_timeline.txt" | tee -a "${work}/summary.txt"
      gzip -c "/tmp/nsys_${tag}_cuda_gpu_trace.csv" >"${work}/nsys_${tag}_gpu_trace.csv.gz" 2>/dev/null
    fi
    if [[ ${rc} -ne 0 ]]; then
      say "  offload_bench failed (${rc}):"; tail -5 "${work}/ringmoe_${tag}.log" | tee -a "${work}/summary.txt"
    fi
    if wants hf && [[ "${HF_DONE:-}" != *" ${name} "* ]]; then
      step "transformers+accelerate ${name} at ${gpu_mem}"
      timeout "${HF_TIMEOUT:-200}" python3 bench/hf_offload_baseline.py --model "${dir}" --gpu-mem "${gpu_mem}" \
        --requests "${HF_REQUESTS:-32}" --prompt-len "${prompt}" --gen-len "${HF_GEN:-4}" \
        --json "${work}/hf_${name}_${gpu_mem}.json" 2>"${work}/hf_${name}.log" | tail -1 | tee -a "${work}/summary.txt" ||
        tail -3 "${work}/hf_${name}.log" | tee -a "${work}/summary.txt"
      HF_DONE="${HF_DONE:-} ${name} "
    fi
    pack  # what is done so far survives a command cut off at its time limit
  done
fi
step done
