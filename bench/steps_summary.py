#!/usr/bin/env python3
"""Summarises engine step logs (EngineOptions::step_log_path, offload_bench --step-log): the mean of each
column over mixed steps (some prefill tokens) and decode steps, the first step left out (it fills the ring).

  bench/steps_summary.py steps_*.txt

Columns (runtime/include/ringmoe/engine.h): chunks, prefill tokens, seconds, then the step's share of the
pass's counters: CPU attention, the driving thread's waits on the GPU, the GPU feeder's busy time, its waits
on expert counts, its MoE and projection queueing (seconds), ring copy seconds and streamed MB (these two lag a
step); with offload_bench --gpu-stage-times, the GPU's own seconds by stage and its idle seconds (the stream
empty, waiting for the host). Older logs have the first three only.
"""
import sys

NAMES = ["chunks", "prefill", "seconds", "attention", "cpu_wait", "feeder_busy", "feeder_wait", "moe_queue",
         "proj_queue", "copy_s", "streamed_mb",
         # With --gpu-stage-times: the compute stream's seconds by stage (GpuStage), then its idle.
         "gpu_upload", "gpu_proj", "gpu_attn", "gpu_router", "gpu_sort", "gpu_experts", "gpu_mlp", "gpu_ring_wait",
         "gpu_logits", "gpu_idle"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        rows = [list(map(float, line.split()[1:])) for line in open(path) if line.strip()]
        print(f"{path}: {len(rows)} steps")
        for kind, wanted in (("mixed", lambda r: r[1] > 0), ("decode", lambda r: r[1] == 0)):
            group = [r for r in rows[1:] if wanted(r)]
            if not group:
                continue
            width = min(len(r) for r in group)
            means = [sum(r[i] for r in group) / len(group) for i in range(width)]
            print(f"  {kind:6s} {len(group):5d} steps  " +
                  "  ".join(f"{name} {mean:.3f}" for name, mean in zip(NAMES, means)))


if __name__ == "__main__":
    main()
