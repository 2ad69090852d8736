#!/usr/bin/env python3
"""Adds "router_gaps" to DeepSeek-V3 goldens (golden.json of make_deepseek_goldens.py) in place, from the
committed checkpoint, so that the GPU golden test can tell a bf16 routing flip from an error.

Usage:  python3 tests/golden/add_deepseek_router_gaps.py tests/data/golden_deepseek/deepseek_v3 [...]

router_gaps[t], as make_models.py records it for the softmax routers: at the position that picks generated
token t, the smallest margin over the MoE layers by which group-limited sigmoid routing chose its experts,
recomputed in f32 from each router's input. DeepSeek-V3 chooses in two stages on the biased scores
b = sigmoid(logit) + e_score_correction_bias: the topk_group best groups (each scored by the sum of its two
best b), then the top-k experts inside them. A logit perturbation d moves a score by at most d / 4 and a
group's score by at most d / 2, so the margins are put on make_models.py's logit scale (where two logits
moving by d move their gap by 2 d): 4 x the experts' gap, 2 x the groups' gap. Only the position's own routing
is measured, as for the other goldens (a flip at a position changes that position's output most).

Needs torch and transformers (the GPU machine's); reads config.json, model.safetensors and golden.json.
"""

import json
import os
import re
import sys

import torch


def router_gaps(model, config, full):
    gates = [m for name, m in model.named_modules() if re.search(r"\.mlp\.gate$", name)
             and getattr(m, "weight", None) is not None and hasattr(m, "e_score_correction_bias")]
    if not gates:
        raise SystemExit("no DeepSeek-V3 router (mlp.gate with e_score_correction_bias) found")
    inputs = []
    hooks = [g.register_forward_hook(lambda mod, args, out: inputs.append((mod, args[0]))) for g in gates]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([full]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    n_group, topk_group, top_k = config["n_group"], config["topk_group"], config["num_experts_per_tok"]
    gaps = None
    for module, x in inputs:
        logits = x.reshape(-1, x.shape[-1]).float() @ module.weight.float().T
        biased = logits.sigmoid() + module.e_score_correction_bias.float()
        experts = biased.shape[-1]
        grouped = biased.view(-1, n_group, experts // n_group)
        group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
        ordered_groups = group_scores.sort(dim=-1, descending=True)
        group_gap = (ordered_groups.values[:, topk_group - 1] - ordered_groups.values[:, topk_group]
                     if topk_group < n_group else torch.full_like(group_scores[:, 0], float("inf")))
        chosen = torch.zeros_like(group_scores, dtype=torch.bool)
        chosen.scatter_(1, ordered_groups.indices[:, :topk_group], True)
        masked = biased.masked_fill(~chosen.repeat_interleave(experts // n_group, dim=1), float("-inf"))
        ordered = masked.sort(dim=-1, descending=True).values
        expert_gap = ordered[:, top_k - 1] - ordered[:, top_k]
        gap = torch.minimum(4 * expert_gap, 2 * group_gap)
        gaps = gap if gaps is None else torch.minimum(gaps, gap)
    return [float(g) for g in gaps]


def main():
    from transformers import AutoModelForCausalLM
    for folder in sys.argv[1:]:
        config = json.load(open(os.path.join(folder, "config.json"), encoding="utf-8"))
        if config.get("model_type") != "deepseek_v3":
            raise SystemExit(f"{folder}: not deepseek_v3")
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").float().eval()
        path = os.path.join(folder, "golden.json")
        golden = json.load(open(path, encoding="utf-8"))
        smallest = float("inf")
        for record in golden["prompts"]:
            prompt, tokens = record["prompt_ids"], record["tokens"]
            full = prompt + tokens
            gaps = router_gaps(model, config, full)[len(prompt) - 1:len(full) - 1]
            assert len(gaps) == len(tokens)
            record["router_gaps"] = gaps
            smallest = min(smallest, min(gaps))
        with open(path, "w", encoding="utf-8") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
        near = sum(g <= 0.05 for r in golden["prompts"] for g in r["router_gaps"])
        print(f"{folder}: router gaps added, smallest {smallest:.4g}, {near} positions at or below 0.05")


if __name__ == "__main__":
    main()
