#!/usr/bin/env python3
"""Re-predicts measured offload_bench runs with the current planner: for each ringmoe_*.json given, runs
`ringmoe plan` on the same model shape, workload and budget with the plan that ran pinned (batch, micro-
batches, prefill chunk, resident MoE layers, ring shape), and prints measured beside the prediction made
before the run and the current model's prediction, with errors in percent ((predicted - measured) / measured).

  bench/repredict.py --ringmoe build/ringmoe --hardware bench/h200_profile.json bench/results/*/ringmoe_*.json
"""
import argparse, json, os, re, subprocess, sys

CONFIGS = {"qwen3_moe": "qwen3-30b-a3b.json", "mixtral": "mixtral-8x7b.json"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ringmoe", default="build/ringmoe")
    parser.add_argument("--hardware", default="bench/h200_profile.json")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for path in args.runs:
        run = json.load(open(path))
        plan = run["plan_report"]["prediction"]["plan"]
        config = os.path.join(here, "..", "tests", "data", "configs", CONFIGS[run["model_type"]])
        command = [args.ringmoe, "plan", "--model", config, "--layers", str(run["layers"]), "--hardware",
                   args.hardware, "--gpu-mem", str(run["gpu_mem_bytes"]), "--num-requests", str(run["requests"]),
                   "--prompt-len", str(run["prompt_len"]), "--gen-len", str(run["gen_len"]), "--max-batch",
                   str(plan["batch"]), "--micro-batches", str(plan["micro_batches"]), "--prefill-chunk",
                   str(plan["prefill_chunk"]), "--resident-moe-layers", str(run["moe_layers"]["resident"]),
                   "--layer-parts", str(plan["layer_parts"]), "--ring-slots", str(plan["ring_sections"]),
                   "--routed-copies", "on" if plan.get("routed_expert_copies") else "off",
                   "--no-what-if", "--report-json", "/tmp/repredict_report.json"]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{' '.join(command)}\n{out.stderr}")
        report = json.load(open("/tmp/repredict_report.json"))
        now = report["prediction"]["throughput"]["output_tokens_per_s"]
        measured = run["throughput"]["generated_tokens_per_s"]
        before = run["predicted"]["generated_tokens_per_s"]
        name = f'{run["model_type"]} {run["layers"]}l {run["gpu_mem_bytes"] / 2**30:.0f}GiB ' \
               f'{run["requests"]}x({run["prompt_len"]}+{run["gen_len"]})'
        rows.append((name, measured, before, now, report["prediction"]["bottleneck"]))
    if args.markdown:
        print("| run | measured gen tok/s | predicted before the run (error) | current model (error) | bottleneck |")
        print("|---|---|---|---|---|")
    for name, measured, before, now, bottleneck in rows:
        e0, e1 = 100 * (before - measured) / measured, 100 * (now - measured) / measured
        if args.markdown:
            print(f"| {name} | {measured:.0f} | {before:.0f} ({e0:+.1f}%) | {now:.0f} ({e1:+.1f}%) | {bottleneck} |")
        else:
            print(f"{name:40s} measured {measured:7.0f}  before {before:7.0f} ({e0:+6.1f}%)  now {now:7.0f} ({e1:+6.1f}%)  {bottleneck}")
    worst = max(abs(now - m) / m for _, m, _, now, _ in rows)
    print(f"worst error of the current model: {100 * worst:.1f}%")


if __name__ == "__main__":
    main()
