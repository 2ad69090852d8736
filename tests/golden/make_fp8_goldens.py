#!/usr/bin/env python3
"""Tiny random-weight block-FP8 MoE checkpoints (Hugging Face's fine-grained FP8 format) and their greedy
generations, for tests/golden_test.cc's Fp8Models cases.

Usage:  python3 tests/golden/make_fp8_goldens.py --out tests/data/golden_fp8 [--cases qwen3_moe_fp8,mixtral_fp8]

Needs torch and transformers (written for torch 2.11 + transformers 5.17), no network, no GPU; about half a
minute on a CPU. Reuses the model construction, greedy decoding and published-layout code of make_models.py
(same folder), so the checkpoints follow the published tensor names and per-expert layout.

For each case writes <out>/<case>/ with
  config.json            the model's config plus
                         "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme":
                         "dynamic", "weight_block_size": [128, 128], "modules_to_not_convert": [...]}
  generation_config.json
  model.safetensors      the attention projections, dense MLPs and routed experts as F8_E4M3 with a
                         `<name>_scale_inv` tensor (F32 in qwen3_moe_fp8, BF16 in mixtral_fp8) of shape
                         [ceil(out/128), ceil(in/128)]; hidden 192 and expert width 160 make every edge block
                         partial. One quantisable module (model.layers.0.self_attn.o_proj) is left in bf16 and
                         named in modules_to_not_convert, as are lm_head and the routers. Norms, embeddings,
                         routers and lm_head are bf16.
  golden.json            as make_models.py writes it, plus "fp8": {...} describing the above and the reference.

The quantiser is the format's: per 128x128 block scale_inv = amax / 448 (1 for an all-zero block; rounded to
the stored scale dtype first), weight = e4m3(clamp(value / scale_inv, -448, 448)) (round to nearest even).

THE REFERENCE. Tokens and logprobs come from transformers running the DEQUANTISED model in float32: every FP8
weight becomes fp8.float() * scale_inv (one f32 rounding, exactly what the engine's CPU path computes at load),
written with the other tensors to a plain float32 checkpoint in a temporary folder and loaded with
AutoModelForCausalLM.from_pretrained (eager attention, eager experts, CPU, no KV cache). transformers' own FP8
path is then tried as a cross-check of the format only: from_pretrained on the FP8 folder with
FineGrainedFP8Config(dequantize=True) (CPU; it dequantises to bf16), its logits compared with the reference;
the outcome is logged and recorded in golden.json ("transformers_fp8_load"), and a failure there does not
fail the script (its bf16 dequantisation differs from the f32 reference by bf16 rounding anyway).
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_models as mm  # noqa: E402

BLOCK = 128
FP8_MAX = 448.0
NOT_CONVERTED = "model.layers.0.self_attn.o_proj"

COMMON = dict(vocab_size=384, hidden_size=192, num_attention_heads=4, num_key_value_heads=2, head_dim=48,
              max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts_per_tok=2,
              hidden_act="silu", bos_token_id=1)

CASES = {
    "qwen3_moe_fp8": dict(
        model_type="qwen3_moe", weights_dtype="bfloat16", shards=1, spelling="published", theta=50000.0,
        moe_layers=[0, 2], scale_dtype="float32", published_extra=dict(rope_scaling=None, head_dim=48),
        cfg=dict(COMMON, num_hidden_layers=3, intermediate_size=320, moe_intermediate_size=160, num_experts=8,
                 norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1], use_sliding_window=False)),
    "mixtral_fp8": dict(
        model_type="mixtral", weights_dtype="bfloat16", shards=1, spelling="v5", theta=1e6, moe_layers=[0, 1],
        scale_dtype="bfloat16",
        cfg=dict(COMMON, num_hidden_layers=2, intermediate_size=160, num_local_experts=8, sliding_window=None,
                 router_jitter_noise=0.0)),
}

SCALE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def log(*a):
    print(*a, flush=True)


def quantised_module(name):
    """Published tensor name -> whether the fp8 format converts it here: every linear projection (attention,
    dense MLP, routed experts) but the one left out on purpose. Routers, lm_head, norms, embeddings stay."""
    if not name.endswith(".weight") or name.startswith(NOT_CONVERTED + "."):
        return False
    module = name[: -len(".weight")]
    leaf = module.rsplit(".", 1)[-1]
    return leaf.endswith("_proj") or leaf in ("w1", "w2", "w3")


def router_modules(pub):
    return sorted(k[: -len(".weight")] for k in pub if k.endswith(".mlp.gate.weight") or
                  k.endswith(".block_sparse_moe.gate.weight"))


def block_expand(scale_inv, rows, cols):
    return scale_inv.repeat_interleave(BLOCK, 0)[:rows].repeat_interleave(BLOCK, 1)[:, :cols]


@torch.no_grad()
def quantise(w, scale_dtype):
    """w [rows, cols] (f32) -> (e4m3 weight, scale_inv in scale_dtype, dequantised f32)."""
    rows, cols = w.shape
    r_blocks, c_blocks = math.ceil(rows / BLOCK), math.ceil(cols / BLOCK)
    padded = torch.zeros(r_blocks * BLOCK, c_blocks * BLOCK, dtype=torch.float32)
    padded[:rows, :cols] = w.float()
    amax = padded.view(r_blocks, BLOCK, c_blocks, BLOCK).abs().amax(dim=(1, 3))
    scale_inv = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax)).to(scale_dtype)
    scale32 = scale_inv.float()
    q = (w.float() / block_expand(scale32, rows, cols)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    dequantised = q.float() * block_expand(scale32, rows, cols)
    return q.contiguous(), scale_inv.contiguous(), dequantised


def save(path, tensors):
    from safetensors.torch import save_file
    # clone: published expert slices are views of one fused tensor, and safetensors refuses shared storage
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, path, metadata={"format": "pt"})


def quantization_config(pub):
    return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": [BLOCK, BLOCK],
            "modules_to_not_convert": ["lm_head", NOT_CONVERTED] + router_modules(pub)}


def f32_case(case):
    """The case with a float32 config.json: from_pretrained must not round the f32 copies to bf16 on load."""
    return dict(case, weights_dtype="float32")


def find_layout(model, case, sd, tmp):
    """The published expert layout this transformers reloads into the same model (as make_models.py does)."""
    for layout in mm.LAYOUTS:
        pub, _ = mm.to_published(sd, case, model.config, layout)
        folder = os.path.join(tmp, f"layout-{layout}")
        os.makedirs(folder, exist_ok=True)
        mm.write_config(folder, model, f32_case(case), 2)
        save(os.path.join(folder, "model.safetensors"), {k: v.float() for k, v in pub.items()})
        m2, info, _ = mm.reload(folder)
        bad = {k: v for k, v in (info or {}).items() if v and k in ("missing_keys", "unexpected_keys",
                                                                        "mismatched_keys", "error_msgs")}
        diff = mm.compare_state(model, m2)
        log(f"  layout {layout}: loading info {bad or 'clean'}, state {diff or 'identical'}")
        if not bad and diff is None:
            return layout
    raise mm.CaseError("no published layout reloads into the in-memory model")


def dequantised_reference(model, case, pub, scale_dtype, folder):
    """(quantised tensors for the checkpoint, the reference model loaded from the dequantised f32 copy)."""
    fp8_tensors, dequantised = {}, {}
    for k, v in pub.items():
        if quantised_module(k):
            q, s, d = quantise(v.float(), scale_dtype)
            fp8_tensors[k] = q
            fp8_tensors[k + "_scale_inv"] = s
            dequantised[k] = d
        else:
            fp8_tensors[k] = v.to(torch.bfloat16)
            dequantised[k] = v.to(torch.bfloat16).float()
    os.makedirs(folder, exist_ok=True)
    mm.write_config(folder, model, f32_case(case), 2)
    save(os.path.join(folder, "model.safetensors"), dequantised)
    reference, info, _ = mm.reload(folder)
    bad = {k: v for k, v in (info or {}).items() if v and k in ("missing_keys", "unexpected_keys",
                                                                    "mismatched_keys", "error_msgs")}
    if bad:
        raise mm.CaseError(f"the dequantised copy does not load cleanly: {bad}")
    return fp8_tensors, reference


def transformers_fp8_check(folder, reference, prompt):
    """transformers' own FP8 loader on the written folder (dequantize=True on the CPU), against the reference."""
    try:
        from transformers import AutoModelForCausalLM, FineGrainedFP8Config
        m = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=FineGrainedFP8Config(dequantize=True), attn_implementation="eager")
        m = m.float().eval()
        mm.set_eager(m)
        with torch.no_grad():
            a = m(input_ids=torch.tensor([prompt]), use_cache=False).logits.float()
            b = reference(input_ids=torch.tensor([prompt]), use_cache=False).logits.float()
        diff = float((a - b).abs().max())
        return f"ok: max logit difference {diff:.3g} against the f32 reference (bf16 dequantisation)"
    except Exception as e:  # noqa: BLE001 - a cross-check only
        return f"failed: {type(e).__name__}: {str(e)[:300]}"


def run_case(name, case, out_root, args, case_index):
    from transformers import GenerationConfig
    t_start = time.time()
    folder = os.path.join(out_root, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    log(f"=== {name} -> {folder}")
    scale_dtype = SCALE_DTYPES[case["scale_dtype"]]
    config = mm.make_config(case)
    model, impl = mm.build_model(config)
    log(f"  {type(model).__name__}, implementations {impl}")
    mm.check_structure(model, case, "in-memory")
    V = case["cfg"]["vocab_size"]
    prompts = mm.make_prompts(V, 2000 + case_index, set(mm.RESERVED_IDS))

    with tempfile.TemporaryDirectory() as tmp:
        mm.init_weights(model, args.seed0, case["weights_dtype"], head_scale=args.head_scale)
        layout = find_layout(model, case, {k: v.detach().clone() for k, v in model.state_dict().items()}, tmp)
        chosen = None
        for seed in range(args.seed0, args.seed0 + args.max_seeds):
            mm.init_weights(model, seed, case["weights_dtype"], head_scale=args.head_scale)
            sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
            pub, _ = mm.to_published(sd, case, model.config, layout)
            fp8_tensors, reference = dequantised_reference(model, case, pub, scale_dtype,
                                                           os.path.join(tmp, f"seed-{seed}"))
            gens = [mm.greedy(reference, p, None) for p in prompts]
            minm = min(m for g in gens for m in g["top2_margins"])
            if minm <= mm.MARGIN_MIN:
                log(f"  seed {seed}: min margin {minm:.3g} too small")
                continue
            eos = mm.choose_eos([g["tokens"] for g in gens], prompts, 1)
            if eos is None:
                log(f"  seed {seed}: no usable eos id")
                continue
            chosen = (seed, eos, pub, fp8_tensors, reference)
            break
        if chosen is None:
            raise mm.CaseError("no seed found")
        seed, eos, pub, fp8_tensors, reference = chosen
        log(f"  seed {seed}, eos {eos}")

        # ---- the FP8 checkpoint
        _, cfg_json = mm.write_config(folder, model, case, eos[0])
        cfg_json["quantization_config"] = quantization_config(pub)
        mm.write_json(os.path.join(folder, "config.json"), cfg_json)
        GenerationConfig(bos_token_id=1, eos_token_id=eos[0]).save_pretrained(folder)
        save(os.path.join(folder, "model.safetensors"), fp8_tensors)

        # ---- reference generations (the dequantised f32 model)
        eos_set = set(eos)
        records, check_row = [], None
        for p in prompts:
            g = mm.greedy(reference, p, eos_set)
            full = p + g["tokens"]
            with torch.no_grad(), mm.RouterInputs(reference) as routers:
                reference(input_ids=torch.tensor([full]), use_cache=False)
            if len(p) == 16:
                check_row = [float(x) for x in torch.log_softmax(g["first_logits"].double(), -1)[:8]]
            records.append({"prompt_ids": p, "tokens": g["tokens"], "logprobs": g["logprobs"],
                            "top2_margins": g["top2_margins"],
                            "router_gaps": routers.gaps(reference.config.num_experts_per_tok)[len(p) - 1:len(full) - 1]})
        minm = min(m for r in records for m in r["top2_margins"])
        if minm <= mm.MARGIN_MIN:
            raise mm.CaseError(f"min margin {minm}")
        cross_check = transformers_fp8_check(folder, reference, prompts[4])
        log(f"  transformers' FP8 loader: {cross_check}")

    quantised = sorted(k for k in fp8_tensors if k.endswith("_scale_inv"))
    golden = {"case": name, "model_type": case["model_type"], "weights_dtype": "float8_e4m3fn",
              "max_new_tokens": mm.MAX_NEW, "eos_token_id": eos[0], "min_top2_margin": minm,
              "prompt_logprobs_check": check_row, "prompts": records,
              "fp8": {"weight_block_size": [BLOCK, BLOCK], "scale_dtype": case["scale_dtype"],
                      "quantised_tensors": len(quantised), "not_converted": NOT_CONVERTED,
                      "reference": "transformers on the dequantised weights (fp8.float() * scale_inv) in float32, "
                                   "loaded from a plain f32 checkpoint",
                      "transformers_fp8_load": cross_check}}
    with open(os.path.join(folder, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    log(f"  OK {name}: seed {seed}, min margin {minm:.4g}, {len(quantised)} FP8 tensors, layout {layout}, "
        f"folder {size} bytes, {time.time() - t_start:.1f} s")
    return {"seed": seed, "min_margin": minm, "eos": eos[0], "size": size, "fp8_check": cross_check}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/golden_fp8")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--seed0", type=int, default=1)
    ap.add_argument("--max-seeds", type=int, default=50)
    ap.add_argument("--head-scale", type=float, default=0.6)
    args = ap.parse_args()
    import transformers
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}")
    os.makedirs(args.out, exist_ok=True)
    results, failed = {}, {}
    for i, name in enumerate(CASES):
        if name not in args.cases.split(","):
            continue
        try:
            results[name] = run_case(name, CASES[name], args.out, args, i)
        except Exception as e:  # noqa: BLE001 - keep going, fail at the end
            import traceback
            traceback.print_exc()
            failed[name] = f"{type(e).__name__}: {e}"
            log(f"  FAILED {name}: {failed[name]}")
    log("SUMMARY " + json.dumps(results))
    if failed:
        log("FAILED " + json.dumps(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
