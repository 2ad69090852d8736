#include "io/deepseek_config.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace ringmoe::io_internal {
namespace {

absl::Status Bad(const ConfigReader& config, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(config.source(), ": ", message));
}

}  // namespace

double YarnMscale(double factor, double m) { return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; }

absl::Status ParseYarn(ConfigReader& params, int max_position_embeddings, RopeScaling* out) {
  RopeScaling yarn;
  yarn.yarn = true;
  yarn.factor = params.Get<double>("factor", 0.0);
  yarn.original_max_position_embeddings =
      params.Get<int>("original_max_position_embeddings", max_position_embeddings);
  yarn.beta_fast = params.Get<double>("beta_fast", 32.0);
  yarn.beta_slow = params.Get<double>("beta_slow", 1.0);
  yarn.mscale = params.Get<double>("mscale", 0.0);
  yarn.mscale_all_dim = params.Get<double>("mscale_all_dim", 0.0);
  const double given_attention_factor = params.Get<double>("attention_factor", 0.0);
  yarn.truncate = params.Get<bool>("truncate", true);
  if (!params.status().ok()) return params.status();
  auto bad = [&](absl::string_view key, double value, absl::string_view why) {
    return Bad(params, absl::StrCat("rope_scaling.", key, " is ", value, ": ", why));
  };
  if (!(yarn.factor > 0 && std::isfinite(yarn.factor) && yarn.factor < 1e6))
    return bad("factor", yarn.factor, "YaRN needs a positive factor");
  if (yarn.original_max_position_embeddings <= 0)
    return bad("original_max_position_embeddings", yarn.original_max_position_embeddings, "must be positive");
  for (auto [key, value] : {std::pair{"beta_fast", yarn.beta_fast}, {"beta_slow", yarn.beta_slow}}) {
    if (!(value > 0 && std::isfinite(value))) return bad(key, value, "must be positive");
  }
  for (auto [key, value] : {std::pair{"mscale", yarn.mscale},
                            {"mscale_all_dim", yarn.mscale_all_dim},
                            {"attention_factor", given_attention_factor}}) {
    if (!(value >= 0 && value < 1e3)) return bad(key, value, "must be in [0, 1000)");
  }
  // transformers: attention_factor if given, else the ratio of the two mscales when both are set, else
  // mscale(factor, 1).
  if (given_attention_factor > 0) {
    yarn.attention_factor = given_attention_factor;
  } else if (yarn.mscale != 0 && yarn.mscale_all_dim != 0) {
    yarn.attention_factor =
        YarnMscale(yarn.factor, yarn.mscale) / YarnMscale(yarn.factor, yarn.mscale_all_dim);
  } else {
    yarn.attention_factor = YarnMscale(yarn.factor, 1.0);
  }
  *out = yarn;
  return absl::OkStatus();
}

absl::Status ParseDeepseekConfig(ConfigReader& config, ModelSpec* spec) {
  const bool v3 = spec->type == ModelType::kDeepseekV3;
  MlaSpec& mla = spec->mla;
  // q_lora_rank: null (DeepSeek-V2-Lite) means a direct q_proj. transformers' default (1536) applies only
  // to configs that leave the key out, which no published checkpoint does: absent is an error, not a guess.
  if (!config.Present("q_lora_rank")) {
    return Bad(config, "q_lora_rank is missing (null for a direct q_proj, else the rank of q_a_proj)");
  }
  mla.q_lora_rank = config.Get<int>("q_lora_rank", 0);
  mla.kv_lora_rank = config.Get<int>("kv_lora_rank", 0);
  mla.qk_nope_head_dim = config.Get<int>("qk_nope_head_dim", 0);
  mla.qk_rope_head_dim = config.Get<int>("qk_rope_head_dim", 0);
  mla.v_head_dim = config.Get<int>("v_head_dim", 0);
  const int written_head_dim = config.Get<int>("head_dim", 0);
  if (!config.status().ok()) return config.status();
  if (config.Has("q_lora_rank") && mla.q_lora_rank <= 0) {
    return Bad(config, absl::StrCat("q_lora_rank is ", mla.q_lora_rank, ": positive, or null for q_proj"));
  }
  for (auto [key, value] : {std::pair{"kv_lora_rank", mla.kv_lora_rank},
                            {"qk_nope_head_dim", mla.qk_nope_head_dim},
                            {"qk_rope_head_dim", mla.qk_rope_head_dim},
                            {"v_head_dim", mla.v_head_dim}}) {
    if (value <= 0 || value > 65536) {
      return Bad(config, absl::StrCat(key, " is ", value, ": MLA needs it positive (and at most 65536)"));
    }
  }
  if (mla.q_lora_rank > 65536)
    return Bad(config, absl::StrCat("q_lora_rank is ", mla.q_lora_rank, ", too large"));
  if (mla.qk_rope_head_dim % 2 != 0) {
    return Bad(config, absl::StrCat("qk_rope_head_dim is ", mla.qk_rope_head_dim, ": RoPE needs it even"));
  }
  // transformers sets head_dim = qk_rope_head_dim (the rotary dim); some writers use the q/k head width.
  if (written_head_dim != 0 && written_head_dim != mla.qk_rope_head_dim &&
      written_head_dim != mla.qk_head_dim()) {
    return Bad(config, absl::StrCat("head_dim is ", written_head_dim, " but qk_rope_head_dim is ",
                                    mla.qk_rope_head_dim, " and qk_nope_head_dim + qk_rope_head_dim is ",
                                    mla.qk_head_dim(), ": inconsistent head dims"));
  }
  // transformers gives q_a_proj, kv_a_proj_with_mqa and o_proj a bias under attention_bias; no released
  // DeepSeek sets it, and the loader reads no such bias: refused by name rather than silently ignored.
  if (config.Get<bool>("attention_bias", false)) {
    return absl::UnimplementedError(
        absl::StrCat(config.source(), ": attention_bias true is not supported for ", spec->model_type));
  }
  if (!config.status().ok()) return config.status();
  spec->head_dim = mla.qk_head_dim();
  spec->num_kv_heads = spec->num_heads;  // num_key_value_heads is cosmetic in MLA
  spec->rope_interleave = v3 ? config.Get<bool>("rope_interleave", true) : true;  // V2: complex-multiply RoPE

  // DeepSeekMoE.
  spec->num_experts = config.GetAny<int>({"n_routed_experts", "num_experts"}, 0);
  spec->moe_intermediate_size = config.Get<int>("moe_intermediate_size", 0);
  const int n_shared = config.Get<int>("n_shared_experts", v3 ? 1 : 0);
  spec->first_k_dense_replace = config.Get<int>("first_k_dense_replace", v3 ? 3 : 0);
  spec->moe_layer_freq = config.Get<int>("moe_layer_freq", 1);
  spec->norm_topk_prob = config.Get<bool>("norm_topk_prob", v3);
  spec->routed_scaling_factor = config.Get<double>("routed_scaling_factor", v3 ? 2.5 : 1.0);
  const std::string topk_method = config.Get<std::string>("topk_method", v3 ? "noaux_tc" : "greedy");
  const std::string scoring = config.Get<std::string>("scoring_func", v3 ? "sigmoid" : "softmax");
  spec->num_nextn_predict_layers = config.Get<int>("num_nextn_predict_layers", 0);
  if (!config.status().ok()) return config.status();
  if (n_shared < 0 || n_shared > 64) return Bad(config, absl::StrCat("n_shared_experts is ", n_shared));
  spec->shared_expert_intermediate_size = n_shared * spec->moe_intermediate_size;
  spec->shared_expert_gated = false;
  if (spec->first_k_dense_replace < 0 || spec->first_k_dense_replace > spec->num_layers) {
    return Bad(config, absl::StrCat("first_k_dense_replace is ", spec->first_k_dense_replace,
                                    " but there are ", spec->num_layers, " layers"));
  }
  if (spec->moe_layer_freq < 1 || spec->moe_layer_freq > 4096) {
    return Bad(config, absl::StrCat("moe_layer_freq is ", spec->moe_layer_freq, ": must be at least 1"));
  }
  if (spec->num_nextn_predict_layers < 0 || spec->num_nextn_predict_layers > 64) {
    return Bad(config, absl::StrCat("num_nextn_predict_layers is ", spec->num_nextn_predict_layers));
  }
  if (!(spec->routed_scaling_factor > 0 && spec->routed_scaling_factor < 1e4)) {
    return Bad(config,
               absl::StrCat("routed_scaling_factor is ", spec->routed_scaling_factor, ": must be positive"));
  }

  // Routing. transformers hard-codes noaux_tc + sigmoid for V3 and softmax for V2; other values would compute
  // something else than the checkpoint was trained with, so they are refused by key.
  const char* v3_methods = "noaux_tc";
  const char* v2_methods = "greedy, group_limited_greedy";
  if (v3 ? topk_method != "noaux_tc" : topk_method != "greedy" && topk_method != "group_limited_greedy") {
    return absl::UnimplementedError(absl::StrCat(config.source(), ": topk_method '", topk_method,
                                                 "' is not supported for ", spec->model_type,
                                                 " (supported: ", v3 ? v3_methods : v2_methods, ")"));
  }
  const char* wanted_scoring = v3 ? "sigmoid" : "softmax";
  if (scoring != wanted_scoring) {
    return absl::UnimplementedError(absl::StrCat(config.source(), ": scoring_func '", scoring,
                                                 "' is not supported for ", spec->model_type,
                                                 " (supported: ", wanted_scoring, ")"));
  }
  const bool grouped = topk_method != "greedy";
  spec->router = v3 ? RouterKind::kSigmoidGroupTopK : RouterKind::kSoftmaxGroupTopK;
  spec->n_group = grouped ? config.Get<int>("n_group", v3 ? 8 : 1) : 1;
  spec->topk_group = grouped ? config.Get<int>("topk_group", v3 ? 4 : 1) : 1;
  if (!config.status().ok()) return config.status();
  if (spec->n_group < 1)
    return Bad(config, absl::StrCat("n_group is ", spec->n_group, ": must be at least 1"));
  if (spec->topk_group < 1 || spec->topk_group > spec->n_group) {
    return Bad(config, absl::StrCat("topk_group is ", spec->topk_group, " but n_group is ", spec->n_group,
                                    ": topk_group must be in [1, n_group]"));
  }
  if (spec->num_experts > 0) {
    if (spec->num_experts % spec->n_group != 0) {
      return Bad(config, absl::StrCat("n_routed_experts (", spec->num_experts,
                                      ") is not a multiple of n_group (", spec->n_group, ")"));
    }
    const int per_group = spec->num_experts / spec->n_group;
    if (v3 && per_group < 2) {
      return Bad(config,
                 absl::StrCat("n_group is ", spec->n_group, " for ", spec->num_experts,
                              " experts: noaux_tc scores each group by its top 2, so a group needs 2"));
    }
    if (spec->num_experts_per_tok > spec->topk_group * per_group) {
      return Bad(config, absl::StrCat("num_experts_per_tok (", spec->num_experts_per_tok, ") exceeds the ",
                                      spec->topk_group * per_group, " experts of topk_group (",
                                      spec->topk_group, ") groups"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ringmoe::io_internal
