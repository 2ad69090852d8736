// ringmoe_make_checkpoint: writes a random-weight checkpoint with the shapes, tensor names, per-expert
// tensors, ~4 GiB sharding (model-0000i-of-0000n.safetensors + model.safetensors.index.json) and config.json
// of a published MoE model, in bf16 (routed experts in block FP8 with --fp8), for benchmarks on machines that
// cannot download the real weights.
//
//   ringmoe_make_checkpoint --model qwen3-30b-a3b --layers 16 --out /tmp/qwen3-16l
//
// Weights are uniform with std 1/sqrt(fan_in) (norm weights 1) so that activations stay finite through the
// layers. Filling is multi-threaded with a counter-based PRNG: the bytes depend on --seed only, not on the
// thread count. Standalone on purpose (no engine libraries): it must build even while the engine does not.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;

struct ModelShape {
  std::string preset;
  std::string model_type;    // config.json's model_type
  std::string architecture;  // config.json's architectures[0]
  int hidden = 0, layers = 0, experts = 0, top_k = 0, expert_intermediate = 0, dense_intermediate = 0;
  int heads = 0, kv_heads = 0, head_dim = 0, vocab = 0, max_position = 0;
  double rope_theta = 1e6, rms_norm_eps = 1e-6;
  bool norm_topk_prob = true;
  bool qk_norm = false;
  int bos = 1, eos = 2;
  // DeepSeek-V3 (model_type deepseek_v3): MLA and DeepSeekMoE. kv_lora 0: not DeepSeek.
  int q_lora = 0, kv_lora = 0, qk_nope = 0, qk_rope = 0, v_head = 0;
  int shared_experts = 0, first_dense = 0, n_group = 1, topk_group = 1, nextn_layers = 0;
  double routed_scaling = 1.0;
  bool deepseek() const { return kv_lora > 0; }
};

std::vector<ModelShape> Presets() {
  ModelShape qwen3;
  qwen3.preset = "qwen3-30b-a3b";
  qwen3.model_type = "qwen3_moe";
  qwen3.architecture = "Qwen3MoeForCausalLM";
  qwen3.hidden = 2048, qwen3.layers = 48, qwen3.experts = 128, qwen3.top_k = 8,
  qwen3.expert_intermediate = 768;
  qwen3.dense_intermediate = 6144, qwen3.heads = 32, qwen3.kv_heads = 4, qwen3.head_dim = 128;
  qwen3.vocab = 151936, qwen3.max_position = 40960, qwen3.rope_theta = 1e6, qwen3.rms_norm_eps = 1e-6;
  qwen3.norm_topk_prob = true, qwen3.qk_norm = true, qwen3.bos = 151643, qwen3.eos = 151645;

  ModelShape mixtral;
  mixtral.preset = "mixtral-8x7b";
  mixtral.model_type = "mixtral";
  mixtral.architecture = "MixtralForCausalLM";
  mixtral.hidden = 4096, mixtral.layers = 32, mixtral.experts = 8, mixtral.top_k = 2;
  mixtral.expert_intermediate = mixtral.dense_intermediate = 14336;
  mixtral.heads = 32, mixtral.kv_heads = 8, mixtral.head_dim = 128, mixtral.vocab = 32000;
  mixtral.max_position = 32768, mixtral.rope_theta = 1e6, mixtral.rms_norm_eps = 1e-5;
  mixtral.norm_topk_prob = true, mixtral.qk_norm = false, mixtral.bos = 1, mixtral.eos = 2;

  // The models that do not fit a 128 GB server in bf16 (the SSD tier's targets), from their published
  // config.json: Qwen3-235B-A22B (470 GB) and Mixtral-8x22B-v0.1 (281 GB).
  ModelShape qwen3_235b = qwen3;
  qwen3_235b.preset = "qwen3-235b-a22b";
  qwen3_235b.hidden = 4096, qwen3_235b.layers = 94, qwen3_235b.heads = 64, qwen3_235b.kv_heads = 4;
  qwen3_235b.expert_intermediate = 1536, qwen3_235b.dense_intermediate = 12288;

  ModelShape mixtral_8x22b = mixtral;
  mixtral_8x22b.preset = "mixtral-8x22b";
  mixtral_8x22b.hidden = 6144, mixtral_8x22b.layers = 56, mixtral_8x22b.heads = 48,
  mixtral_8x22b.kv_heads = 8;
  mixtral_8x22b.expert_intermediate = mixtral_8x22b.dense_intermediate = 16384;
  mixtral_8x22b.max_position = 65536;

  // A few MB, for smoke tests of the tool and of whatever reads its output.
  ModelShape tiny = qwen3;
  tiny.preset = "tiny-qwen3-moe";
  tiny.hidden = 128, tiny.layers = 4, tiny.experts = 8, tiny.top_k = 2, tiny.expert_intermediate = 64;
  tiny.dense_intermediate = 256, tiny.heads = 4, tiny.kv_heads = 2, tiny.head_dim = 32, tiny.vocab = 1000;
  tiny.max_position = 1024, tiny.bos = 997, tiny.eos = 997;
  // DeepSeek-V3 (671B; V3-0324, R1 and Kimi-K2's shape family), from deepseek-ai/DeepSeek-V3's config.json:
  // MLA (q LoRA 1536, kv latent 512, 128 + 64 q/k head dims, v 128), 3 dense layers of 18432 then 58 MoE
  // layers of 256 experts of 2048 (8 per token from the best 4 of 8 groups) plus one shared expert, YaRN
  // factor 40 over 4096 positions. Written in bf16 (the published checkpoint is block-FP8); the MTP layer is
  // not written.
  ModelShape deepseek_v3;
  deepseek_v3.preset = "deepseek-v3";
  deepseek_v3.model_type = "deepseek_v3";
  deepseek_v3.architecture = "DeepseekV3ForCausalLM";
  deepseek_v3.hidden = 7168, deepseek_v3.layers = 61, deepseek_v3.experts = 256, deepseek_v3.top_k = 8;
  deepseek_v3.expert_intermediate = 2048, deepseek_v3.dense_intermediate = 18432;
  deepseek_v3.heads = 128, deepseek_v3.kv_heads = 128, deepseek_v3.head_dim = 192, deepseek_v3.vocab = 129280;
  deepseek_v3.max_position = 163840, deepseek_v3.rope_theta = 10000, deepseek_v3.rms_norm_eps = 1e-6;
  deepseek_v3.norm_topk_prob = true, deepseek_v3.bos = 0, deepseek_v3.eos = 1;
  deepseek_v3.q_lora = 1536, deepseek_v3.kv_lora = 512, deepseek_v3.qk_nope = 128, deepseek_v3.qk_rope = 64;
  deepseek_v3.v_head = 128, deepseek_v3.shared_experts = 1, deepseek_v3.first_dense = 3;
  deepseek_v3.n_group = 8, deepseek_v3.topk_group = 4, deepseek_v3.routed_scaling = 2.5;
  return {qwen3, mixtral, qwen3_235b, mixtral_8x22b, tiny, deepseek_v3};
}

// kRandom: bf16 uniforms; kOnes: bf16 ones; kFp8Random: e4m3 values of magnitude 2^-6 to 3.75 (exponent
// fields 1-8, no NaN or subnormal), which a kF32Constant scale_inv of scale / 3.75 brings to the bf16 tensor's
// range; kF32Constant: `scale` in f32.
enum class Fill { kRandom, kOnes, kFp8Random, kF32Constant };

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  Fill fill = Fill::kRandom;
  float scale = 0;  // Uniform half-width: sqrt(3) * std (kF32Constant: the value).
  int element_bytes() const { return fill == Fill::kFp8Random ? 1 : fill == Fill::kF32Constant ? 4 : 2; }
  const char* dtype() const { return fill == Fill::kFp8Random ? "F8_E4M3" : fill == Fill::kF32Constant ? "F32" : "BF16"; }
  int64_t elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t bytes() const { return elements() * element_bytes(); }
};

// Largest magnitude kFp8Random writes: exponent field 8 (2^1) with mantissa 7/8.
constexpr float kFp8RandomMax = 3.75f;
constexpr int64_t kFp8Block = 128;

// The routed experts' weights as block-FP8 (the published fine-grained format: e4m3 and an f32 scale_inv per
// 128x128 block, right after each weight), as Qwen3's and DeepSeek's -FP8 checkpoints store them.
std::vector<Tensor> WithFp8Experts(const std::vector<Tensor>& tensors) {
  std::vector<Tensor> out;
  for (const Tensor& tensor : tensors) {
    if (tensor.name.find(".experts.") == std::string::npos || tensor.shape.size() != 2) {
      out.push_back(tensor);
      continue;
    }
    out.push_back({tensor.name, tensor.shape, Fill::kFp8Random, 0});
    out.push_back({tensor.name + "_scale_inv",
                   {(tensor.shape[0] + kFp8Block - 1) / kFp8Block, (tensor.shape[1] + kFp8Block - 1) / kFp8Block},
                   Fill::kF32Constant,
                   tensor.scale / kFp8RandomMax});
  }
  return out;
}

std::vector<Tensor> TensorsOf(const ModelShape& m) {
  std::vector<Tensor> tensors;
  auto random = [&](std::string name, std::vector<int64_t> shape, int64_t fan_in) {
    tensors.push_back({std::move(name), std::move(shape), Fill::kRandom,
                       static_cast<float>(std::sqrt(3.0 / static_cast<double>(fan_in)))});
  };
  auto ones = [&](std::string name, int64_t width) {
    tensors.push_back({std::move(name), {width}, Fill::kOnes, 0});
  };
  const int64_t h = m.hidden, q = int64_t{m.heads} * m.head_dim, kv = int64_t{m.kv_heads} * m.head_dim;
  // Embeddings: std 1 keeps the first layer's inputs O(1) (RMSNorm follows anyway).
  random("model.embed_tokens.weight", {m.vocab, h}, 1);
  const bool mixtral = m.model_type == "mixtral";
  for (int l = 0; l < m.layers && m.deepseek(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const int64_t qk = m.qk_nope + m.qk_rope, heads = m.heads;
    ones(p + "input_layernorm.weight", h);
    random(p + "self_attn.q_a_proj.weight", {m.q_lora, h}, h);
    ones(p + "self_attn.q_a_layernorm.weight", m.q_lora);
    random(p + "self_attn.q_b_proj.weight", {heads * qk, m.q_lora}, m.q_lora);
    random(p + "self_attn.kv_a_proj_with_mqa.weight", {m.kv_lora + m.qk_rope, h}, h);
    ones(p + "self_attn.kv_a_layernorm.weight", m.kv_lora);
    random(p + "self_attn.kv_b_proj.weight", {heads * (m.qk_nope + m.v_head), m.kv_lora}, m.kv_lora);
    random(p + "self_attn.o_proj.weight", {h, heads * m.v_head}, heads * m.v_head);
    ones(p + "post_attention_layernorm.weight", h);
    auto mlp = [&](const std::string& x, int64_t inter) {
      random(x + "gate_proj.weight", {inter, h}, h);
      random(x + "up_proj.weight", {inter, h}, h);
      random(x + "down_proj.weight", {h, inter}, inter);
    };
    if (l < m.first_dense) {
      mlp(p + "mlp.", m.dense_intermediate);
      continue;
    }
    random(p + "mlp.gate.weight", {m.experts, h}, h);
    ones(p + "mlp.gate.e_score_correction_bias", m.experts);
    for (int e = 0; e < m.experts; ++e)
      mlp(p + "mlp.experts." + std::to_string(e) + ".", m.expert_intermediate);
    mlp(p + "mlp.shared_experts.", int64_t{m.shared_experts} * m.expert_intermediate);
  }
  for (int l = 0; l < m.layers && !m.deepseek(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ones(p + "input_layernorm.weight", h);
    random(p + "self_attn.q_proj.weight", {q, h}, h);
    random(p + "self_attn.k_proj.weight", {kv, h}, h);
    random(p + "self_attn.v_proj.weight", {kv, h}, h);
    random(p + "self_attn.o_proj.weight", {h, q}, q);
    if (m.qk_norm) {
      ones(p + "self_attn.q_norm.weight", m.head_dim);
      ones(p + "self_attn.k_norm.weight", m.head_dim);
    }
    ones(p + "post_attention_layernorm.weight", h);
    const std::string moe = p + (mixtral ? "block_sparse_moe." : "mlp.");
    random(moe + "gate.weight", {m.experts, h}, h);
    const int64_t inter = m.expert_intermediate;
    for (int e = 0; e < m.experts; ++e) {
      const std::string x = moe + "experts." + std::to_string(e) + ".";
      if (mixtral) {
        random(x + "w1.weight", {inter, h}, h);      // gate
        random(x + "w2.weight", {h, inter}, inter);  // down
        random(x + "w3.weight", {inter, h}, h);      // up
      } else {
        random(x + "gate_proj.weight", {inter, h}, h);
        random(x + "up_proj.weight", {inter, h}, h);
        random(x + "down_proj.weight", {h, inter}, inter);
      }
    }
  }
  ones("model.norm.weight", h);
  random("lm_head.weight", {m.vocab, h}, h);
  return tensors;
}

json ConfigOf(const ModelShape& m) {
  json config = {
      {"architectures", {m.architecture}},
      {"model_type", m.model_type},
      {"hidden_size", m.hidden},
      {"intermediate_size", m.dense_intermediate},
      {"num_hidden_layers", m.layers},
      {"num_attention_heads", m.heads},
      {"num_key_value_heads", m.kv_heads},
      {"head_dim", m.head_dim},
      {"vocab_size", m.vocab},
      {"max_position_embeddings", m.max_position},
      {"rope_theta", m.rope_theta},
      {"rms_norm_eps", m.rms_norm_eps},
      {"num_experts_per_tok", m.top_k},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"},
      {"bos_token_id", m.bos},
      {"eos_token_id", m.eos},
      {"attention_dropout", 0.0},
      {"initializer_range", 0.02},
      {"sliding_window", nullptr},
      {"use_cache", true},
  };
  if (m.deepseek()) {
    config.erase("head_dim");
    config.erase("sliding_window");
    config["n_routed_experts"] = m.experts;
    config["n_shared_experts"] = m.shared_experts;
    config["moe_intermediate_size"] = m.expert_intermediate;
    config["first_k_dense_replace"] = m.first_dense;
    config["moe_layer_freq"] = 1;
    config["n_group"] = m.n_group;
    config["topk_group"] = m.topk_group;
    config["topk_method"] = "noaux_tc";
    config["scoring_func"] = "sigmoid";
    config["norm_topk_prob"] = m.norm_topk_prob;
    config["routed_scaling_factor"] = m.routed_scaling;
    config["q_lora_rank"] = m.q_lora;
    config["kv_lora_rank"] = m.kv_lora;
    config["qk_nope_head_dim"] = m.qk_nope;
    config["qk_rope_head_dim"] = m.qk_rope;
    config["v_head_dim"] = m.v_head;
    config["num_nextn_predict_layers"] = m.nextn_layers;
    config["rope_scaling"] = {
        {"type", "yarn"},       {"factor", 40},   {"original_max_position_embeddings", 4096},
        {"beta_fast", 32},      {"beta_slow", 1}, {"mscale", 1.0},
        {"mscale_all_dim", 1.0}};
    config["attention_bias"] = false;
  } else if (m.model_type == "mixtral") {
    config["num_local_experts"] = m.experts;
    config["router_aux_loss_coef"] = 0.02;
  } else {
    config["num_experts"] = m.experts;
    config["moe_intermediate_size"] = m.expert_intermediate;
    config["norm_topk_prob"] = m.norm_topk_prob;
    config["decoder_sparse_step"] = 1;
    config["mlp_only_layers"] = json::array();
    config["attention_bias"] = false;
    config["use_sliding_window"] = false;
    config["router_aux_loss_coef"] = 0.001;
  }
  return config;
}

uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint16_t ToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Fills `count` values of block `block` of tensor `tensor_index` into `bytes`: bf16 (four 16-bit uniforms per
// 64-bit draw), e4m3 (eight bytes per draw) or an f32 constant.
void FillBlock(const Tensor& tensor, uint64_t seed, int64_t tensor_index, int64_t block, uint8_t* bytes,
               int64_t count) {
  auto* out = reinterpret_cast<uint16_t*>(bytes);
  if (tensor.fill == Fill::kOnes) {
    std::fill(out, out + count, ToBf16(1.0f));
    return;
  }
  if (tensor.fill == Fill::kF32Constant) {
    for (int64_t i = 0; i < count; ++i) std::memcpy(bytes + 4 * i, &tensor.scale, 4);
    return;
  }
  uint64_t state =
      SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(tensor_index) * 0x100000001b3ull + block));
  if (tensor.fill == Fill::kFp8Random) {
    for (int64_t i = 0; i < count; i += 8) {
      state += 0x9e3779b97f4a7c15ull;
      __uint128_t mixed = static_cast<__uint128_t>(state) * (state ^ 0xe7037ed1a0b428dbull);
      uint64_t r = static_cast<uint64_t>(mixed >> 64) ^ static_cast<uint64_t>(mixed);
      for (int j = 0; j < 8 && i + j < count; ++j) {
        const auto b = static_cast<uint8_t>(r >> (8 * j));
        // sign | exponent field 1..8 | mantissa
        bytes[i + j] = static_cast<uint8_t>((b & 0x80) | ((1 + ((b >> 3) & 7)) << 3) | (b & 7));
      }
    }
    return;
  }
  const float step = 2.0f * tensor.scale / 65536.0f;
  const float offset = -tensor.scale + 0.5f * step;
  for (int64_t i = 0; i < count; i += 4) {
    state += 0x9e3779b97f4a7c15ull;  // wyrand-style: a Weyl sequence through a 128-bit multiply mix.
    __uint128_t mixed = static_cast<__uint128_t>(state) * (state ^ 0xe7037ed1a0b428dbull);
    uint64_t r = static_cast<uint64_t>(mixed >> 64) ^ static_cast<uint64_t>(mixed);
    for (int j = 0; j < 4 && i + j < count; ++j) {
      out[i + j] = ToBf16(offset + step * static_cast<float>((r >> (16 * j)) & 0xffffu));
    }
  }
}

struct Shard {
  std::string file;
  std::vector<int> tensors;
  std::vector<int64_t> offsets;  // Of each tensor within the data section.
  int64_t data_bytes = 0;
  std::string header;  // JSON, padded to a multiple of 8.
};

constexpr int64_t kBlockElements = int64_t{16} << 20;  // 32 MiB of bf16 (64 of f32) per work item.

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a random-weight bf16 checkpoint with a published MoE model's shapes and layout"};
  std::string preset = "qwen3-30b-a3b", out_dir;
  int layers = 0;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  uint64_t seed = 1;
  double shard_gib = 4.0;
  bool config_only = false, fp8 = false;
  std::vector<std::string> names;
  for (const ModelShape& shape : Presets()) names.push_back(shape.preset);
  app.add_option("--model", preset, "Model shape")->check(CLI::IsMember(names));
  app.add_option("--layers", layers, "Decoder layers to write (default: the model's own count)")
      ->check(CLI::PositiveNumber);
  app.add_option("--out", out_dir, "Output folder (created)")->required();
  app.add_option("--threads", threads, "Fill threads")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "PRNG seed: the same seed writes the same bytes");
  app.add_option("--shard-gib", shard_gib, "Target shard size in GiB")->check(CLI::PositiveNumber);
  app.add_flag("--config-only", config_only,
               "Write config.json and generation_config.json only: enough for `ringmoe plan` on models too "
               "large to write");
  app.add_flag("--fp8", fp8,
               "Routed experts in block FP8 (F8_E4M3 with an f32 weight_scale_inv per 128x128 block, "
               "quantization_config in config.json): about half the bytes");
  CLI11_PARSE(app, argc, argv);

  ModelShape shape;
  for (const ModelShape& candidate : Presets())
    if (candidate.preset == preset) shape = candidate;
  if (layers > 0) shape.layers = layers;
  const std::vector<Tensor> tensors = fp8 ? WithFp8Experts(TensorsOf(shape)) : TensorsOf(shape);
  json config = ConfigOf(shape);
  if (fp8) {
    config["quantization_config"] = {{"quant_method", "fp8"},
                                     {"fmt", "e4m3"},
                                     {"activation_scheme", "dynamic"},
                                     {"weight_block_size", {kFp8Block, kFp8Block}}};
  }

  // Shards in order, each up to shard_gib (a tensor larger than that gets a shard of its own).
  const int64_t shard_limit = static_cast<int64_t>(shard_gib * (int64_t{1} << 30));
  std::vector<Shard> shards(1);
  for (int t = 0; t < static_cast<int>(tensors.size()); ++t) {
    if (!shards.back().tensors.empty() && shards.back().data_bytes + tensors[t].bytes() > shard_limit)
      shards.emplace_back();
    Shard& shard = shards.back();
    shard.tensors.push_back(t);
    shard.offsets.push_back(shard.data_bytes);
    shard.data_bytes += tensors[t].bytes();
  }
  char name[64];
  json weight_map = json::object();
  int64_t total_bytes = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    Shard& shard = shards[s];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    shard.file = name;
    json header = {{"__metadata__", {{"format", "pt"}}}};
    for (size_t i = 0; i < shard.tensors.size(); ++i) {
      const Tensor& tensor = tensors[shard.tensors[i]];
      header[tensor.name] = {{"dtype", tensor.dtype()},
                             {"shape", tensor.shape},
                             {"data_offsets", {shard.offsets[i], shard.offsets[i] + tensor.bytes()}}};
      weight_map[tensor.name] = shard.file;
    }
    shard.header = header.dump();
    shard.header.append((8 - shard.header.size() % 8) % 8, ' ');
    total_bytes += shard.data_bytes;
  }

  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  if (error) {
    std::fprintf(stderr, "cannot create %s: %s\n", out_dir.c_str(), error.message().c_str());
    return 1;
  }
  if (config_only) {
    std::ofstream(out_dir + "/config.json") << config.dump(2) << "\n";
    json generation = {{"bos_token_id", shape.bos}, {"eos_token_id", shape.eos}, {"do_sample", false}};
    std::ofstream(out_dir + "/generation_config.json") << generation.dump(2) << "\n";
    std::printf("%s, %d layers: config only (the weights would be %.2f GB) -> %s\n", shape.preset.c_str(),
                shape.layers, total_bytes / 1e9, out_dir.c_str());
    return 0;
  }
  const auto started = std::chrono::steady_clock::now();
  std::printf("%s, %d layers: %zu tensors, %.2f GB in %zu shard(s) -> %s (%u threads)\n",
              shape.preset.c_str(), shape.layers, tensors.size(), total_bytes / 1e9, shards.size(),
              out_dir.c_str(), threads);

  for (const Shard& shard : shards) {
    const std::string path = out_dir + "/" + shard.file;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "cannot create %s: %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
    const uint64_t header_size = shard.header.size();
    std::string prefix(reinterpret_cast<const char*>(&header_size), 8);  // Little-endian on x86-64 and arm64.
    prefix += shard.header;
    const int64_t data_start = static_cast<int64_t>(prefix.size());
    if (::pwrite(fd, prefix.data(), prefix.size(), 0) != static_cast<ssize_t>(prefix.size()) ||
        ::ftruncate(fd, data_start + shard.data_bytes) != 0) {
      std::fprintf(stderr, "cannot write %s: %s\n", path.c_str(), std::strerror(errno));
      ::close(fd);
      return 1;
    }
    // Work items: (tensor, block) pairs, taken by the threads in order.
    struct Item {
      int tensor;
      int64_t block, file_offset, count;
    };
    std::vector<Item> items;
    for (size_t i = 0; i < shard.tensors.size(); ++i) {
      const Tensor& tensor = tensors[shard.tensors[i]];
      const int64_t elements = tensor.elements();
      for (int64_t b = 0; b * kBlockElements < elements; ++b) {
        items.push_back({shard.tensors[i], b,
                         data_start + shard.offsets[i] + b * kBlockElements * tensor.element_bytes(),
                         std::min(kBlockElements, elements - b * kBlockElements)});
      }
    }
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < threads; ++w) {
      workers.emplace_back([&] {
        std::vector<uint8_t> buffer(kBlockElements * 4);
        for (size_t i = next++; i < items.size() && !failed; i = next++) {
          const Item& item = items[i];
          FillBlock(tensors[item.tensor], seed, item.tensor, item.block, buffer.data(), item.count);
          const char* data = reinterpret_cast<const char*>(buffer.data());
          int64_t left = item.count * tensors[item.tensor].element_bytes(), offset = item.file_offset;
          while (left > 0) {
            ssize_t written = ::pwrite(fd, data, static_cast<size_t>(left), offset);
            if (written <= 0) {
              if (written < 0 && errno == EINTR) continue;
              failed = true;
              break;
            }
            data += written, offset += written, left -= written;
          }
        }
      });
    }
    for (std::thread& worker : workers) worker.join();
    if (failed || ::close(fd) != 0) {
      std::fprintf(stderr, "writing %s failed (disk full?): %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
    std::printf("  %s: %.2f GB\n", shard.file.c_str(), shard.data_bytes / 1e9);
  }

  json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  std::ofstream(out_dir + "/model.safetensors.index.json") << index.dump(2) << "\n";
  std::ofstream(out_dir + "/config.json") << config.dump(2) << "\n";
  json generation = {{"bos_token_id", shape.bos}, {"eos_token_id", shape.eos}, {"do_sample", false}};
  std::ofstream(out_dir + "/generation_config.json") << generation.dump(2) << "\n";
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("wrote %.2f GB in %.1f s (%.2f GB/s)\n", total_bytes / 1e9, seconds,
              total_bytes / 1e9 / seconds);
  return 0;
}
