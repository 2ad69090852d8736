#!/usr/bin/env python3
"""Hugging Face transformers + accelerate offloading on the same checkpoint and GPU budget as ringmoe's bench.

device_map="auto" with max_memory={0: GPU budget, "cpu": ...} places what fits on the GPU and offloads the rest to
CPU memory (accelerate moves those weights to the GPU layer by layer at every forward). Greedy generation of a
batch of random prompts; prints and writes generated tokens/s.

  python3 bench/hf_offload_baseline.py --model /tmp/qwen3 --gpu-mem 6GiB --requests 8 --prompt-len 128 \
      --gen-len 4 --json hf.json
"""
import argparse
import json
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--gpu-mem", default="6GiB")
    parser.add_argument("--cpu-mem", default="100GiB")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--gen-len", type=int, default=4)
    parser.add_argument("--json")
    args = parser.parse_args()

    config = AutoConfig.from_pretrained(args.model)
    start = time.time()
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16, device_map="auto",
        max_memory={0: args.gpu_mem, "cpu": args.cpu_mem})
    model.eval()
    load_seconds = time.time() - start
    placement = {}
    for device in getattr(model, "hf_device_map", {}).values():
        placement[str(device)] = placement.get(str(device), 0) + 1

    generator = torch.Generator().manual_seed(1)
    margin = 500 if config.vocab_size > 2000 else 3
    ids = torch.randint(margin, config.vocab_size - margin, (args.requests, args.prompt_len), generator=generator)
    first_device = next(model.parameters()).device
    ids = ids.to("cuda:0" if torch.cuda.is_available() else first_device)
    with torch.no_grad():
        torch.cuda.synchronize()
        start = time.time()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.gen_len,
                             min_new_tokens=args.gen_len, do_sample=False)
        torch.cuda.synchronize()
        seconds = time.time() - start
    generated = (out.shape[1] - args.prompt_len) * args.requests
    result = {
        "system": "transformers+accelerate offload", "model": args.model, "gpu_mem": args.gpu_mem,
        "requests": args.requests, "prompt_len": args.prompt_len, "gen_len": args.gen_len,
        "load_seconds": load_seconds, "generate_seconds": seconds, "generated_tokens": generated,
        "generated_tokens_per_s": generated / seconds,
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(), "device_map_modules": placement,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
