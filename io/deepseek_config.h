// DeepSeek-V2/V3 config.json keys (MLA, DeepSeekMoE routing, YaRN), read into a ModelSpec. Internal to io/:
// ParseModelSpec calls these for model_type deepseek_v2 / deepseek_v3.
#pragma once

#include "absl/status/status.h"
#include "io/config_reader.h"
#include "io/model_spec.h"

namespace ringmoe::io_internal {

// MLA dimensions, routed/shared experts, routing (topk_method, scoring_func, groups, scaling) and the dense
// layers before first_k_dense_replace. spec->type is set; spec->num_layers and num_heads are read already.
// Errors name the key.
absl::Status ParseDeepseekConfig(ConfigReader& config, ModelSpec* spec);

// A YaRN rope_scaling / rope_parameters object (rope_type "yarn"): factor, original_max_position_embeddings
// (default max_position_embeddings), beta_fast, beta_slow, mscale, mscale_all_dim, attention_factor,
// truncate, as transformers' _compute_yarn_parameters reads them.
absl::Status ParseYarn(ConfigReader& params, int max_position_embeddings, RopeScaling* out);

// transformers' yarn_get_mscale: 1 for factor <= 1, else 0.1 * m * ln(factor) + 1.
double YarnMscale(double factor, double m);

}  // namespace ringmoe::io_internal
