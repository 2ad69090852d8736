#include "runtime/engine/model_weights.h"

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cpu/fp8_blocks.h"
#include "io/fp8_weights.h"

namespace ringmoe {
namespace {

// --expert-dtype fp8 quantises to the block size of the published FP8 checkpoints.
constexpr int kFp8Block = 128;

}  // namespace

// Pulls tensors out of the checkpoint by their published names, checks shapes against the spec, and converts
// them to the layout the kernels want. The first error sticks; later calls become no-ops.
class ModelWeights::Loader {
 public:
  explicit Loader(ModelWeights& weights) : weights_(weights), checkpoint_(*weights.checkpoint_) {}

  const absl::Status& status() const { return status_; }

  std::optional<io::TensorView> Tensor(const std::string& name, std::initializer_list<int64_t> shape) {
    if (!status_.ok()) return std::nullopt;
    absl::StatusOr<io::TensorView> view = checkpoint_.Require(name, shape);
    if (!view.ok()) {
      status_ = view.status();
      return std::nullopt;
    }
    if (view->dtype() != io::DType::kF32 && view->dtype() != io::DType::kBF16 &&
        view->dtype() != io::DType::kF16) {
      const bool fp8 = view->dtype() == io::DType::kF8E4M3 || view->dtype() == io::DType::kF8E5M2;
      status_ = absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' (in ", view->file(), ") has dtype ", std::string(io::DTypeName(view->dtype())),
          "; supported: F32, BF16, F16", fp8 ? " (FP8 only on linear-layer weights)" : ""));
      return std::nullopt;
    }
    return *view;
  }

  // A linear layer's weight: also FP8 (with its block scales) when the checkpoint is FP8-quantised.
  std::optional<io::TensorView> WeightTensor(const std::string& name, std::initializer_list<int64_t> shape,
                                             std::optional<io::TensorView>* scale) {
    if (!status_.ok()) return std::nullopt;
    absl::StatusOr<io::TensorView> view = checkpoint_.Require(name, shape);
    if (!view.ok()) {
      status_ = view.status();
      return std::nullopt;
    }
    absl::StatusOr<std::optional<io::TensorView>> found =
        io::RequireWeightScale(checkpoint_, *view, weights_.spec_.quantization);
    if (!found.ok()) {
      status_ = found.status();
      return std::nullopt;
    }
    *scale = *found;
    if (scale->has_value()) return *view;
    return Tensor(name, shape);
  }

  std::vector<float> Vector(const std::string& name, int64_t length) {
    std::optional<io::TensorView> view = Tensor(name, {length});
    if (!view) return {};
    std::vector<float> values(length);
    Convert(*view, values.data());
    return values;
  }

  // A matrix in the compute dtype: a view into the mapped file when possible, else a converted copy. FP8
  // weights are dequantised block by block (weight * scale_inv, in f32). With fp8_round_trip a float weight
  // is quantised to FP8 blocks and back (--expert-dtype fp8: the values an FP8 copy holds).
  cpu::Matrix Matrix(const std::string& name, int64_t rows, int64_t cols, io::DType dtype,
                     bool fp8_round_trip = false) {
    cpu::Matrix matrix{dtype, nullptr, static_cast<int>(rows), static_cast<int>(cols)};
    std::optional<io::TensorView> scale;
    std::optional<io::TensorView> view = WeightTensor(name, {rows, cols}, &scale);
    if (!view) return matrix;
    const size_t count = static_cast<size_t>(rows * cols);
    const bool aligned = reinterpret_cast<uintptr_t>(view->data()) % io::DTypeSize(dtype) == 0;
    if (view->dtype() == dtype && aligned && !fp8_round_trip) {
      matrix.data = view->data();
      return matrix;
    }
    float* f32 = reinterpret_cast<float*>(Own(count * sizeof(float)));
    if (scale.has_value()) {
      const QuantizationSpec& quantization = weights_.spec_.quantization;
      cpu::DequantizeFp8Blocks({rows, cols, quantization.block_rows, quantization.block_cols}, view->dtype(),
                               view->data(), scale->dtype(), scale->data(), f32);
    } else {
      Convert(*view, f32);
      if (fp8_round_trip) cpu::RoundTripFp8Blocks({rows, cols, kFp8Block, kFp8Block}, f32);
    }
    if (dtype == io::DType::kF32) {
      matrix.data = f32;
      return matrix;
    }
    uint16_t* bf16 = reinterpret_cast<uint16_t*>(Own(count * sizeof(uint16_t)));
    io::ConvertF32ToBF16(f32, bf16, count);
    Release(f32);
    matrix.data = bf16;
    return matrix;
  }

  cpu::ExpertWeights SwiGlu(const std::string& gate, const std::string& up, const std::string& down,
                            int hidden, int inter, io::DType dtype, bool fp8_round_trip = false) {
    return {Matrix(gate, inter, hidden, dtype, fp8_round_trip),
            Matrix(up, inter, hidden, dtype, fp8_round_trip),
            Matrix(down, hidden, inter, dtype, fp8_round_trip)};
  }

  // MLA's projections (spec.is_mla()) and the per-head absorbed matrices built from kv_b.
  void LoadMla(const std::string& attn, AttentionWeights* attention) {
    const ModelSpec& spec = weights_.spec_;
    const MlaSpec& mla = spec.mla;
    const io::DType dtype = weights_.compute_dtype_;
    const int hidden = spec.hidden_size, heads = spec.num_heads;
    const int q_rows = heads * mla.qk_head_dim();
    if (mla.q_lora_rank > 0) {
      Absent(attn + "q_proj.weight",
             absl::StrCat("q_lora_rank is ", mla.q_lora_rank, " (q_a_proj, q_b_proj)"));
      attention->q_a = Matrix(attn + "q_a_proj.weight", mla.q_lora_rank, hidden, dtype);
      attention->q_a_norm = Vector(attn + "q_a_layernorm.weight", mla.q_lora_rank);
      attention->q_b = Matrix(attn + "q_b_proj.weight", q_rows, mla.q_lora_rank, dtype);
    } else {
      Absent(attn + "q_a_proj.weight", "q_lora_rank is null (a direct q_proj)");
      attention->q = Matrix(attn + "q_proj.weight", q_rows, hidden, dtype);
    }
    attention->kv_a = Matrix(attn + "kv_a_proj_with_mqa.weight", mla.cache_width(), hidden, dtype);
    attention->kv_a_norm = Vector(attn + "kv_a_layernorm.weight", mla.kv_lora_rank);
    const int per_head = mla.qk_nope_head_dim + mla.v_head_dim;
    attention->kv_b =
        Matrix(attn + "kv_b_proj.weight", int64_t{heads} * per_head, mla.kv_lora_rank, io::DType::kF32);
    attention->o = Matrix(attn + "o_proj.weight", hidden, int64_t{heads} * mla.v_head_dim, dtype);
    if (!status_.ok()) return;
    const float* kv_b = static_cast<const float*>(attention->kv_b.data);
    const int latent = mla.kv_lora_rank, nope = mla.qk_nope_head_dim;
    float* absorb_q = OwnFloats(static_cast<size_t>(heads) * latent * nope);
    for (int h = 0; h < heads; ++h) {
      // W_UK_h = kv_b rows [h * per_head, h * per_head + nope): [nope, latent]; stored transposed.
      const float* w_uk = kv_b + static_cast<int64_t>(h) * per_head * latent;
      float* transposed = absorb_q + static_cast<int64_t>(h) * latent * nope;
      for (int r = 0; r < nope; ++r) {
        for (int c = 0; c < latent; ++c)
          transposed[static_cast<int64_t>(c) * nope + r] = w_uk[int64_t{r} * latent + c];
      }
      attention->absorb_q.push_back({io::DType::kF32, transposed, latent, nope});
      attention->absorb_out.push_back({io::DType::kF32,
                                       kv_b + (static_cast<int64_t>(h) * per_head + nope) * latent,
                                       mla.v_head_dim, latent});
    }
  }

  // Room for `count` floats owned by the weights.
  float* OwnFloats(size_t count) { return reinterpret_cast<float*>(Own(count * sizeof(float))); }

  // Fails naming the tensor unless the checkpoint has it (for tensors whose absence needs its reason told).
  bool Expect(const std::string& name, const std::string& why) {
    if (status_.ok() && checkpoint_.Find(name) == nullptr) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("checkpoint in ", checkpoint_.dir(), " lacks tensor '", name, "', which ", why));
    }
    return status_.ok();
  }

  // A tensor that must not be there: the config and the checkpoint disagree about the model's size.
  void Absent(const std::string& name, const std::string& why) {
    if (status_.ok() && checkpoint_.Find(name) != nullptr) {
      status_ = absl::InvalidArgumentError(absl::StrCat("checkpoint in ", checkpoint_.dir(), " has tensor '",
                                                        name, "' but config.json says ", why));
    }
  }

 private:
  void Convert(const io::TensorView& view, float* out) {
    // The shapes were checked, so the byte count matches; copy first in case the mapping is unaligned.
    if (view.dtype() == io::DType::kF32) {
      std::memcpy(out, view.data(), view.nbytes());
      return;
    }
    absl::Status status = io::ConvertToF32(view.dtype(), view.data(), out, static_cast<size_t>(view.numel()));
    if (!status.ok() && status_.ok()) status_ = status;
  }

  uint8_t* Own(size_t bytes) {
    weights_.owned_.push_back(std::unique_ptr<uint8_t[]>(new uint8_t[bytes]));
    weights_.owned_bytes_ += static_cast<int64_t>(bytes);
    return weights_.owned_.back().get();
  }

  void Release(void* buffer) {
    auto& owned = weights_.owned_;
    for (size_t i = owned.size(); i-- > 0;) {
      if (owned[i].get() == buffer) {
        owned.erase(owned.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    }
  }

  ModelWeights& weights_;
  const io::Checkpoint& checkpoint_;
  absl::Status status_;
};

ModelWeights::ModelWeights(const ModelSpec& spec, std::unique_ptr<io::Checkpoint> checkpoint,
                           io::DType compute_dtype)
    : spec_(spec), checkpoint_(std::move(checkpoint)), compute_dtype_(compute_dtype) {}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(const ModelSpec& spec,
                                                                 std::unique_ptr<io::Checkpoint> checkpoint,
                                                                 io::DType compute_dtype,
                                                                 io::DType expert_dtype,
                                                                 bool hold_routed_experts) {
  if (expert_dtype != io::DType::kBF16 && expert_dtype != io::DType::kF8E4M3) {
    return absl::InvalidArgumentError(absl::StrCat("routed experts in ",
                                                   std::string(io::DTypeName(expert_dtype)),
                                                   ": supported are BF16 (as stored) and F8_E4M3"));
  }
  // Every FP8 tensor and scale, including those no layer reads, checked up front (what `plan` checks too).
  if (absl::Status fp8 = io::ValidateFp8Tensors(*checkpoint, spec.quantization); !fp8.ok()) return fp8;
  std::unique_ptr<ModelWeights> weights(new ModelWeights(spec, std::move(checkpoint), compute_dtype));
  const bool fp8_round_trip = expert_dtype == io::DType::kF8E4M3;
  weights->expert_dtype_ = expert_dtype;
  Loader load(*weights);
  const io::DType dtype = compute_dtype;
  const int hidden = spec.hidden_size;
  const bool mixtral = spec.type == ModelType::kMixtral;

  if (std::optional<io::TensorView> embedding =
          load.Tensor("model.embed_tokens.weight", {spec.vocab_size, hidden})) {
    weights->embedding_ = *embedding;
  }
  weights->final_norm_ = load.Vector("model.norm.weight", hidden);
  const bool has_lm_head = weights->checkpoint_->Find("lm_head.weight") != nullptr;
  weights->lm_head_ =
      load.Matrix(has_lm_head || !spec.tie_word_embeddings ? "lm_head.weight" : "model.embed_tokens.weight",
                  spec.vocab_size, hidden, dtype);

  weights->layers_.resize(spec.num_layers);
  for (int i = 0; i < spec.num_layers && load.status().ok(); ++i) {
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    LayerWeights& layer = weights->layers_[i];
    AttentionWeights& attention = layer.attention;
    const std::string attn = prefix + "self_attn.";
    if (spec.is_mla()) {
      load.LoadMla(attn, &attention);
    } else {
      attention.q = load.Matrix(attn + "q_proj.weight", spec.q_width(), hidden, dtype);
      attention.k = load.Matrix(attn + "k_proj.weight", spec.kv_width(), hidden, dtype);
      attention.v = load.Matrix(attn + "v_proj.weight", spec.kv_width(), hidden, dtype);
      attention.o = load.Matrix(attn + "o_proj.weight", hidden, spec.q_width(), dtype);
      if (spec.attention_bias) {
        attention.q_bias = load.Vector(attn + "q_proj.bias", spec.q_width());
        attention.k_bias = load.Vector(attn + "k_proj.bias", spec.kv_width());
        attention.v_bias = load.Vector(attn + "v_proj.bias", spec.kv_width());
      }
      if (spec.qk_norm == QkNorm::kPerHead) {
        attention.q_norm = load.Vector(attn + "q_norm.weight", spec.head_dim);
        attention.k_norm = load.Vector(attn + "k_norm.weight", spec.head_dim);
      } else if (spec.qk_norm == QkNorm::kFullWidth) {
        attention.q_norm = load.Vector(attn + "q_norm.weight", spec.q_width());
        attention.k_norm = load.Vector(attn + "k_norm.weight", spec.kv_width());
      }
    }
    attention.input_norm = load.Vector(prefix + "input_layernorm.weight", hidden);
    attention.post_attention_norm = load.Vector(prefix + "post_attention_layernorm.weight", hidden);

    const LayerSpec& layer_spec = spec.layers[i];
    if (!layer_spec.is_moe) {
      load.Absent(prefix + "mlp.gate.weight", absl::StrCat("layer ", i, " is a dense MLP layer"));
      layer.dense_mlp = load.SwiGlu(prefix + "mlp.gate_proj.weight", prefix + "mlp.up_proj.weight",
                                    prefix + "mlp.down_proj.weight", hidden, spec.intermediate_size, dtype);
      continue;
    }
    const std::string moe = prefix + (mixtral ? "block_sparse_moe." : "mlp.");
    layer.router = load.Matrix(moe + "gate.weight", spec.num_experts, hidden, io::DType::kF32);
    if (spec.router == RouterKind::kSigmoidGroupTopK &&
        load.Expect(moe + "gate.e_score_correction_bias",
                    "topk_method 'noaux_tc' needs (the routing bias)")) {
      layer.router_bias = load.Vector(moe + "gate.e_score_correction_bias", spec.num_experts);
    }
    layer.experts.resize(spec.num_experts);
    for (int e = 0; e < spec.num_experts; ++e) {
      const std::string expert = absl::StrCat(moe, "experts.", e, ".");
      if (!hold_routed_experts) {  // checked, not converted: the GPU packs them from expert_tensors
        const int inter = spec.moe_intermediate_size;
        std::optional<io::TensorView> scale;
        load.WeightTensor(expert + (mixtral ? "w1.weight" : "gate_proj.weight"), {inter, hidden}, &scale);
        load.WeightTensor(expert + (mixtral ? "w3.weight" : "up_proj.weight"), {inter, hidden}, &scale);
        load.WeightTensor(expert + (mixtral ? "w2.weight" : "down_proj.weight"), {hidden, inter}, &scale);
        continue;
      }
      layer.experts[e] = mixtral
                             ? load.SwiGlu(expert + "w1.weight", expert + "w3.weight", expert + "w2.weight",
                                           hidden, spec.moe_intermediate_size, dtype, fp8_round_trip)
                             : load.SwiGlu(expert + "gate_proj.weight", expert + "up_proj.weight",
                                           expert + "down_proj.weight", hidden, spec.moe_intermediate_size,
                                           dtype, fp8_round_trip);
    }
    for (int e = 0; e < spec.num_experts && load.status().ok(); ++e) {
      const std::string expert = absl::StrCat(moe, "experts.", e, ".");
      const io::Checkpoint& checkpoint = *weights->checkpoint_;
      auto find = [&](const char* name) { return *checkpoint.Find(expert + name); };
      LayerWeights::ExpertTensors& tensors = layer.expert_tensors.emplace_back(
          mixtral ? LayerWeights::ExpertTensors{find("w1.weight"), find("w3.weight"), find("w2.weight")}
                  : LayerWeights::ExpertTensors{find("gate_proj.weight"), find("up_proj.weight"),
                                                find("down_proj.weight")});
      // FP8 weights' block scales (validated with the weights above).
      for (auto [weight, scale] : {std::pair{&tensors.gate, &tensors.gate_scale},
                                   std::pair{&tensors.up, &tensors.up_scale},
                                   std::pair{&tensors.down, &tensors.down_scale}}) {
        if (const io::TensorView* found = checkpoint.Find(io::ScaleInvName(weight->name()))) *scale = *found;
      }
    }
    load.Absent(absl::StrCat(moe, "experts.", spec.num_experts, mixtral ? ".w1.weight" : ".gate_proj.weight"),
                absl::StrCat("there are ", spec.num_experts, " experts"));
    if (layer_spec.has_shared_expert) {
      // DeepSeek: shared_experts (n_shared_experts of them fused into one MLP), no gate.
      const std::string shared = moe + (spec.is_deepseek() ? "shared_experts." : "shared_expert.");
      layer.shared_expert =
          load.SwiGlu(shared + "gate_proj.weight", shared + "up_proj.weight", shared + "down_proj.weight",
                      hidden, spec.shared_expert_intermediate_size, dtype);
      if (spec.shared_expert_gated) {
        layer.shared_expert_gate = load.Matrix(moe + "shared_expert_gate.weight", 1, hidden, io::DType::kF32);
      }
    }
  }
  // DeepSeek's multi-token-prediction layers (num_nextn_predict_layers) follow the last layer; generation
  // never uses them, so they stay unread.
  if (spec.num_nextn_predict_layers == 0) {
    load.Absent(absl::StrCat("model.layers.", spec.num_layers, ".input_layernorm.weight"),
                absl::StrCat("num_hidden_layers is ", spec.num_layers));
  }
  if (!load.status().ok()) return load.status();
  return weights;
}

void ModelWeights::Embed(const int32_t* tokens, int count, float* out) const {
  const int hidden = spec_.hidden_size;
  const size_t row_bytes = static_cast<size_t>(hidden) * io::DTypeSize(embedding_.dtype());
  for (int t = 0; t < count; ++t) {
    const uint8_t* row = embedding_.data() + static_cast<size_t>(tokens[t]) * row_bytes;
    float* dst = out + static_cast<int64_t>(t) * hidden;
    if (embedding_.dtype() == io::DType::kF32) {
      std::memcpy(dst, row, row_bytes);
    } else {
      // Loading checked the dtype is F32, BF16 or F16, so this cannot fail.
      (void)io::ConvertToF32(embedding_.dtype(), row, dst, hidden);
    }
  }
}

}  // namespace ringmoe
