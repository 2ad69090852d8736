#include "io/model_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <tuple>
#include <type_traits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/config_reader.h"
#include "io/deepseek_config.h"
#include "io/regular_file.h"
#include "io/status_macros.h"
#include "nlohmann/json.hpp"

namespace ringmoe {
namespace {

using io_internal::ConfigReader;
using nlohmann::json;

// Token ids: integers in [0, 2^31); anything else is ignored (ValidateTokenIds below checks the vocabulary).
std::vector<int32_t> ReadTokenIds(const json& value) {
  std::vector<int32_t> ids;
  auto add = [&](const json& item) {
    if (item.is_number_integer() && item.get<int64_t>() >= 0 && item.get<int64_t>() <= INT32_MAX &&
        !(item.is_number_unsigned() && item.get<uint64_t>() > INT32_MAX)) {
      ids.push_back(static_cast<int32_t>(item.get<int64_t>()));
    }
  };
  if (value.is_array()) {
    for (const json& item : value) add(item);
  } else {
    add(value);
  }
  return ids;
}

// A config.json is a few KiB; anything past this is not one.
constexpr int64_t kMaxConfigBytes = int64_t{16} << 20;
// Real configs nest 3 levels (rope_scaling, quantization_config...); deeper input is hostile.
constexpr int kMaxConfigNesting = 64;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  return io::ReadRegularFile(path, kMaxConfigBytes);
}

// quantization_config: only Hugging Face's fine-grained FP8 (block-wise e4m3) is read; anything else is
// refused naming the field, so that a quantised checkpoint never loads as garbage.
absl::Status ParseQuantization(const json& config, absl::string_view source, QuantizationSpec* out) {
  auto bad = [&](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": quantization_config.", field, " ", why));
  };
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": quantization_config is a JSON ", config.type_name(), ", not an object"));
  }
  ConfigReader reader(config, source);
  const std::string method = reader.Get<std::string>("quant_method", "");
  if (!reader.status().ok()) return reader.status();
  if (method != "fp8") {
    return absl::UnimplementedError(absl::StrCat(
        source, ": quantization_config.quant_method '", method,
        "' is not supported (supported: fp8, the block-wise e4m3 format with weight_scale_inv tensors)"));
  }
  QuantizationSpec quantization;
  quantization.method = WeightQuantization::kFp8Block;
  const std::string fmt = reader.Get<std::string>("fmt", "e4m3");
  if (fmt != "e4m3" && fmt != "float8_e4m3fn")
    return bad("fmt", absl::StrCat("'", fmt, "' is not supported (supported: e4m3)"));
  quantization.activation_scheme = reader.Get<std::string>("activation_scheme", "dynamic");
  if (quantization.activation_scheme != "dynamic") {
    return bad("activation_scheme",
               absl::StrCat("'", quantization.activation_scheme, "' is not supported (supported: dynamic)"));
  }
  if (config.contains("weight_block_size")) {
    const json& block = config["weight_block_size"];
    if (!block.is_array() || block.size() != 2 || !block[0].is_number_integer() ||
        !block[1].is_number_integer() || block[0].get<int64_t>() < 1 || block[1].get<int64_t>() < 1 ||
        block[0].get<int64_t>() > 65536 || block[1].get<int64_t>() > 65536) {
      return bad("weight_block_size",
                 absl::StrCat("must be two positive integers [rows, cols] (got ", block.dump(),
                              "); per-tensor FP8 scales are not supported"));
    }
    quantization.block_rows = block[0].get<int>();
    quantization.block_cols = block[1].get<int>();
  }
  quantization.modules_to_not_convert = reader.Get<std::vector<std::string>>("modules_to_not_convert", {});
  if (!reader.status().ok()) return reader.status();
  *out = std::move(quantization);
  return absl::OkStatus();
}

}  // namespace

bool QuantizationSpec::Converts(absl::string_view module) const {
  for (const std::string& pattern : modules_to_not_convert) {
    if (pattern.empty()) continue;
    if (module == pattern) return false;
    if (module.size() > pattern.size()) {
      if (absl::EndsWith(module, pattern) && module[module.size() - pattern.size() - 1] == '.') return false;
      if (absl::StartsWith(module, pattern) && module[pattern.size()] == '.') return false;
    }
  }
  return true;
}

int ModelSpec::num_moe_layers() const {
  return static_cast<int>(
      std::count_if(layers.begin(), layers.end(), [](const LayerSpec& l) { return l.is_moe; }));
}

int64_t ModelSpec::expert_params() const { return 3LL * hidden_size * moe_intermediate_size; }

float ModelSpec::softmax_scale() const {
  return attention_scale > 0 ? static_cast<float>(attention_scale)
                             : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

int64_t ModelSpec::router_params() const {
  return static_cast<int64_t>(num_experts) * hidden_size +
         (router == RouterKind::kSigmoidGroupTopK ? num_experts : 0);  // e_score_correction_bias
}

int64_t ModelSpec::attention_params() const {
  if (is_mla()) {
    const int64_t h = hidden_size, heads = num_heads;
    const int64_t q = mla.q_lora_rank > 0 ? h * mla.q_lora_rank + mla.q_lora_rank +
                                                int64_t{mla.q_lora_rank} * heads * mla.qk_head_dim()
                                          : h * heads * mla.qk_head_dim();
    const int64_t kv = h * mla.cache_width() + mla.kv_lora_rank +
                       int64_t{mla.kv_lora_rank} * heads * (mla.qk_nope_head_dim + mla.v_head_dim);
    return q + kv + heads * mla.v_head_dim * h + 2 * h;
  }
  int64_t params = static_cast<int64_t>(hidden_size) * (q_width() + 2 * kv_width()) +
                   static_cast<int64_t>(q_width()) * hidden_size;
  if (attention_bias) params += q_width() + 2 * kv_width();
  if (qk_norm == QkNorm::kPerHead) params += 2 * head_dim;
  if (qk_norm == QkNorm::kFullWidth) params += q_width() + kv_width();
  return params + 2LL * hidden_size;  // input and post-attention norms
}

int64_t ModelSpec::total_params() const {
  int64_t params =
      static_cast<int64_t>(vocab_size) * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
  for (const LayerSpec& layer : layers) {
    params += attention_params();
    if (layer.is_moe) {
      params += num_experts * expert_params() + router_params();
      if (layer.has_shared_expert)
        params +=
            3LL * hidden_size * shared_expert_intermediate_size + (shared_expert_gated ? hidden_size : 0);
    } else {
      params += 3LL * hidden_size * intermediate_size;
    }
  }
  return params;
}

absl::StatusOr<ModelSpec> ParseModelSpec(absl::string_view config_json, absl::string_view source) {
  if (absl::Status nesting =
          io::CheckJsonNesting(std::string_view(config_json.data(), config_json.size()), kMaxConfigNesting,
                               std::string_view(source.data(), source.size()));
      !nesting.ok()) {
    return nesting;
  }
  json root = json::parse(config_json.begin(), config_json.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  ConfigReader config(root, source);
  ModelSpec spec;
  spec.model_type = config.Get<std::string>("model_type", "");
  if (spec.model_type == "mixtral") {
    spec.type = ModelType::kMixtral;
  } else if (spec.model_type == "qwen2_moe") {
    spec.type = ModelType::kQwen2Moe;
  } else if (spec.model_type == "qwen3_moe") {
    spec.type = ModelType::kQwen3Moe;
  } else if (spec.model_type == "olmoe") {
    spec.type = ModelType::kOlmoe;
  } else if (spec.model_type == "deepseek_v2") {
    spec.type = ModelType::kDeepseekV2;
  } else if (spec.model_type == "deepseek_v3") {
    spec.type = ModelType::kDeepseekV3;
  } else {
    return absl::UnimplementedError(absl::StrCat(source, ": model_type '", spec.model_type,
                                                 "' is not supported (supported: mixtral, qwen2_moe, "
                                                 "qwen3_moe, olmoe, deepseek_v2, deepseek_v3)"));
  }

  spec.vocab_size = config.Get<int>("vocab_size", 0);
  spec.hidden_size = config.Get<int>("hidden_size", 0);
  spec.num_layers = config.Get<int>("num_hidden_layers", 0);
  spec.num_heads = config.Get<int>("num_attention_heads", 0);
  spec.num_kv_heads = config.Get<int>("num_key_value_heads", spec.num_heads);
  spec.head_dim = config.Get<int>("head_dim", spec.num_heads > 0 ? spec.hidden_size / spec.num_heads : 0);
  spec.intermediate_size = config.Get<int>("intermediate_size", 0);
  spec.num_experts = config.GetAny<int>({"num_experts", "num_local_experts"}, 0);
  spec.num_experts_per_tok = config.Get<int>("num_experts_per_tok", 0);
  spec.rms_norm_eps = config.Get<double>("rms_norm_eps", 1e-6);
  spec.max_position_embeddings = config.Get<int>("max_position_embeddings", 0);
  spec.tie_word_embeddings = config.Get<bool>("tie_word_embeddings", false);
  spec.torch_dtype = config.GetAny<std::string>({"torch_dtype", "dtype"}, "");
  spec.bos_token_id = config.Get<int32_t>("bos_token_id", -1);
  if (config.Has("eos_token_id")) spec.eos_token_ids = ReadTokenIds(root["eos_token_id"]);

  // RoPE: published checkpoints say rope_theta; transformers 5 writes rope_parameters {rope_theta,
  // rope_type}.
  spec.rope_theta = config.Get<double>("rope_theta", 10000.0);
  std::string rope_type = "default";
  const json* rope_object = nullptr;  // the object that names the rope type (and holds YaRN's parameters)
  if (config.Has("rope_parameters") && root["rope_parameters"].is_object()) {
    ConfigReader rope(root["rope_parameters"], source);
    spec.rope_theta = rope.Get<double>("rope_theta", spec.rope_theta);
    rope_type = rope.GetAny<std::string>({"rope_type", "type"}, rope_type);
    if (!rope.status().ok()) return rope.status();
    rope_object = &root["rope_parameters"];
  }
  if (config.Has("rope_scaling") && root["rope_scaling"].is_object()) {
    ConfigReader scaling(root["rope_scaling"], source);
    const std::string scaling_type = scaling.GetAny<std::string>({"rope_type", "type"}, "");
    if (!scaling.status().ok()) return scaling.status();
    if (!scaling_type.empty()) {
      rope_type = scaling_type;
      rope_object = &root["rope_scaling"];
    }
  }
  if (rope_type == "yarn" && spec.is_deepseek()) {
    ConfigReader yarn(*rope_object, source);
    if (absl::Status status =
            io_internal::ParseYarn(yarn, config.Get<int>("max_position_embeddings", 0), &spec.rope_scaling);
        !status.ok()) {
      return status;
    }
  } else if (rope_type != "default") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": rope type '", rope_type, "' is not supported",
                     spec.is_deepseek() ? " (supported: default, yarn)" : " yet"));
  }

  switch (spec.type) {
    case ModelType::kMixtral:
      spec.router = RouterKind::kTopKSoftmax;
      spec.moe_intermediate_size = spec.intermediate_size;
      spec.sliding_window = config.Get<int>("sliding_window", 0);
      break;
    case ModelType::kQwen2Moe:
      spec.moe_intermediate_size = config.Get<int>("moe_intermediate_size", 0);
      spec.shared_expert_intermediate_size = config.Get<int>("shared_expert_intermediate_size", 0);
      spec.attention_bias = config.GetAny<bool>({"qkv_bias", "attention_bias"}, true);
      spec.norm_topk_prob = config.Get<bool>("norm_topk_prob", false);
      break;
    case ModelType::kQwen3Moe:
      spec.moe_intermediate_size = config.Get<int>("moe_intermediate_size", 0);
      spec.attention_bias = config.Get<bool>("attention_bias", false);
      spec.norm_topk_prob = config.Get<bool>("norm_topk_prob", false);
      spec.qk_norm = QkNorm::kPerHead;
      break;
    case ModelType::kOlmoe:
      spec.moe_intermediate_size = spec.intermediate_size;
      spec.attention_bias = config.Get<bool>("attention_bias", false);
      spec.norm_topk_prob = config.Get<bool>("norm_topk_prob", false);
      spec.qk_norm = QkNorm::kFullWidth;
      spec.clip_qkv = config.Get<float>("clip_qkv", 0.0f);
      break;
    case ModelType::kDeepseekV2:
    case ModelType::kDeepseekV3:
      if (absl::Status status = io_internal::ParseDeepseekConfig(config, &spec); !status.ok()) return status;
      break;
  }
  if ((spec.type == ModelType::kQwen2Moe || spec.type == ModelType::kQwen3Moe) &&
      config.Get<bool>("use_sliding_window", false)) {
    return absl::UnimplementedError(absl::StrCat(source, ": use_sliding_window=true is not supported"));
  }

  if (config.Has("quantization_config")) {
    if (absl::Status status = ParseQuantization(root["quantization_config"], source, &spec.quantization);
        !status.ok()) {
      return status;
    }
  }

  std::vector<int> mlp_only_layers = config.Get<std::vector<int>>("mlp_only_layers", {});
  int decoder_sparse_step = config.Get<int>("decoder_sparse_step", 1);
  if (!config.status().ok()) return config.status();

  auto require_positive = [&](const char* what, int value) -> absl::Status {
    if (value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", what, " must be positive (got ", value, ")"));
  };
  for (auto [what, value] : {std::pair{"vocab_size", spec.vocab_size},
                             {"hidden_size", spec.hidden_size},
                             {"num_hidden_layers", spec.num_layers},
                             {"num_attention_heads", spec.num_heads},
                             {"num_key_value_heads", spec.num_kv_heads},
                             {"head_dim", spec.head_dim},
                             {"num_experts", spec.num_experts},
                             {"num_experts_per_tok", spec.num_experts_per_tok},
                             {"expert intermediate size", spec.moe_intermediate_size},
                             {"max_position_embeddings", spec.max_position_embeddings},
                             {"decoder_sparse_step", decoder_sparse_step}}) {
    if (absl::Status status = require_positive(what, value); !status.ok()) return status;
  }
  // Upper bounds far above any published model, so that no size from the file reaches an allocation or an
  // int64 product unchecked (num_experts 2^31-1 would otherwise ask for terabytes of router rows).
  for (auto [what, value, most] :
       {std::tuple{"vocab_size", spec.vocab_size, 1 << 24},
        {"hidden_size", spec.hidden_size, 1 << 17},
        {"num_hidden_layers", spec.num_layers, 4096},
        {"num_attention_heads", spec.num_heads, 4096},
        {"num_key_value_heads", spec.num_kv_heads, 4096},
        {"head_dim", spec.head_dim, 8192},
        {"num_experts", spec.num_experts, 1 << 16},
        {"num_experts_per_tok", spec.num_experts_per_tok, 1 << 16},
        {"expert intermediate size", spec.moe_intermediate_size, 1 << 20},
        {"intermediate_size", spec.intermediate_size, 1 << 20},
        {"shared_expert_intermediate_size", spec.shared_expert_intermediate_size, 1 << 20},
        {"max_position_embeddings", spec.max_position_embeddings, 1 << 26},
        {"decoder_sparse_step", decoder_sparse_step, 4096},
        {"sliding_window", spec.sliding_window, 1 << 26}}) {
    if (value > most) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", what, " is ", value, "; more than ", most, " is not a real model"));
    }
  }
  if (!(spec.rms_norm_eps > 0 && spec.rms_norm_eps < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": rms_norm_eps must be in (0, 1), got ", spec.rms_norm_eps));
  }
  if (!(spec.rope_theta > 0 && std::isfinite(spec.rope_theta))) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": rope_theta must be positive, got ", spec.rope_theta));
  }
  if (static_cast<int64_t>(spec.num_heads) * spec.head_dim > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": num_attention_heads x head_dim is too large"));
  }
  if (spec.num_heads % spec.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": num_attention_heads (", spec.num_heads,
                                                   ") is not a multiple of num_key_value_heads (",
                                                   spec.num_kv_heads, ")"));
  }
  if (!spec.is_mla() && spec.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": head_dim must be even for RoPE"));
  }
  if (spec.num_experts_per_tok > spec.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": num_experts_per_tok (", spec.num_experts_per_tok,
                     ") exceeds the number of experts (", spec.num_experts, ")"));
  }
  for (int layer : mlp_only_layers) {
    if (layer < 0 || layer >= spec.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": mlp_only_layers names layer ", layer,
                                                     " but the model has ", spec.num_layers));
    }
  }

  spec.layers.resize(spec.num_layers);
  for (int i = 0; i < spec.num_layers; ++i) {
    bool mlp_only = std::find(mlp_only_layers.begin(), mlp_only_layers.end(), i) != mlp_only_layers.end();
    spec.layers[i].is_moe = spec.is_deepseek()
                                ? i >= spec.first_k_dense_replace && i % spec.moe_layer_freq == 0
                                : !mlp_only && (i + 1) % decoder_sparse_step == 0;
    spec.layers[i].has_shared_expert = spec.layers[i].is_moe && spec.shared_expert_intermediate_size > 0;
  }
  bool any_dense =
      std::any_of(spec.layers.begin(), spec.layers.end(), [](const LayerSpec& l) { return !l.is_moe; });
  if (any_dense && spec.intermediate_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": dense layers need a positive intermediate_size"));
  }
  // Each size is bounded above; their product must be too, before total_params() multiplies them in int64.
  const double layer_params = 3.0 * spec.hidden_size *
                                  (static_cast<double>(spec.num_experts) * spec.moe_intermediate_size +
                                   spec.shared_expert_intermediate_size + spec.intermediate_size) +
                              4.0 * spec.hidden_size * spec.num_heads * spec.head_dim;
  const double parameters = spec.num_layers * layer_params + 2.0 * spec.vocab_size * spec.hidden_size;
  if (parameters > 1e14) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": the sizes describe about ", parameters,
                                                   " parameters; more than 1e14 is not a real model"));
  }
  if (spec.is_deepseek()) {
    // transformers' DeepSeek attention: qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 under YaRN.
    double scale = 1.0 / std::sqrt(static_cast<double>(spec.mla.qk_head_dim()));
    if (spec.rope_scaling.yarn && spec.rope_scaling.mscale_all_dim != 0) {
      const double m = io_internal::YarnMscale(spec.rope_scaling.factor, spec.rope_scaling.mscale_all_dim);
      scale *= m * m;
    }
    spec.attention_scale = scale;
  }
  return spec;
}

absl::StatusOr<ModelSpec> LoadModelSpec(const std::string& model_dir) {
  std::string config_path = model_dir + "/config.json";
  RINGMOE_ASSIGN_OR_RETURN(const std::string text, ReadFile(config_path));
  RINGMOE_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpec(text, config_path));

  // generation_config.json may name more EOS ids than config.json (chat models stop on several).
  std::string generation_path = model_dir + "/generation_config.json";
  if (absl::StatusOr<std::string> generation = ReadFile(generation_path); generation.ok()) {
    json root = json::parse(*generation, nullptr, false);
    if (root.is_object() && root.contains("eos_token_id")) {
      for (int32_t id : ReadTokenIds(root["eos_token_id"])) {
        if (std::find(spec.eos_token_ids.begin(), spec.eos_token_ids.end(), id) == spec.eos_token_ids.end()) {
          spec.eos_token_ids.push_back(id);
        }
      }
    }
  }
  return spec;
}

}  // namespace ringmoe
