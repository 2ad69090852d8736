// ModelWeights: every tensor of a checkpoint, checked against the ModelSpec and laid out for the CPU kernels.
//
// Matrices are either views into the memory-mapped checkpoint (when its dtype already is the compute dtype)
// or converted (or FP8-dequantised) copies owned here. Immutable after Load; safe to read from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cpu/linear.h"
#include "cpu/moe.h"
#include "io/checkpoint.h"
#include "io/model_spec.h"

namespace ringmoe {

struct AttentionWeights {
  cpu::Matrix q, k, v, o;
  std::vector<float> q_bias, k_bias, v_bias;  // empty without attention_bias
  std::vector<float> q_norm, k_norm;          // empty without QK-norm
  std::vector<float> input_norm, post_attention_norm;

  // MLA (DeepSeek; spec.is_mla()). q is q_proj (q_lora_rank null) or else empty, with q_a (+ q_a_norm) and
  // q_b. kv_a [latent + rope, hidden] gives the kv latent (normed by kv_a_norm) and the rope key. kv_b
  // [heads * (nope + v), latent] is f32; decode never applies it to the cache but absorbs it per head:
  //   absorb_q[h]   = W_UK_h^T [latent, nope]: q_nope_h into the latent space (an owned transposed copy)
  //   absorb_out[h] = W_UV_h   [v, latent]:   the latent output back to head h's values (a view of kv_b)
  cpu::Matrix q_a, q_b, kv_a, kv_b;
  std::vector<float> q_a_norm, kv_a_norm;
  std::vector<cpu::Matrix> absorb_q, absorb_out;
};

struct LayerWeights {
  AttentionWeights attention;
  // MoE layers.
  cpu::Matrix router;              // [num_experts, hidden], always f32
  std::vector<float> router_bias;  // DeepSeek-V3's e_score_correction_bias [num_experts] (choice only)
  std::vector<cpu::ExpertWeights> experts;
  // The same experts' tensors as the checkpoint stores them (file, offset, dtype): what the SSD tier reads.
  struct ExpertTensors {
    io::TensorView gate, up, down;
    std::optional<io::TensorView> gate_scale, up_scale, down_scale;  // FP8 weights' `_scale_inv`
  };
  std::vector<ExpertTensors> expert_tensors;
  cpu::ExpertWeights shared_expert;  // valid when the spec says has_shared_expert
  cpu::Matrix shared_expert_gate;    // [1, hidden], f32; Qwen2-MoE only (spec.shared_expert_gated)
  // Dense layers.
  cpu::ExpertWeights dense_mlp;
};

class ModelWeights {
 public:
  // compute_dtype: kF32 or kBF16, the dtype of every matmul weight handed to the kernels. FP8 checkpoints
  // (spec.quantization) are dequantised per block at load (weight * scale_inv in f32, then the compute
  // dtype): both paths compute on the dequantised values for now. expert_dtype kF8E4M3 (--expert-dtype fp8)
  // quantises the float routed experts to 128x128 FP8 blocks and dequantises them again, so that results
  // carry FP8's accuracy; kBF16 keeps the checkpoint's values.
  // hold_routed_experts false: the routed experts are checked but not converted (LayerWeights::experts stay
  // empty); the GPU engine packs them itself from expert_tensors when it holds them as FP8 blocks.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(const ModelSpec& spec,
                                                            std::unique_ptr<io::Checkpoint> checkpoint,
                                                            io::DType compute_dtype,
                                                            io::DType expert_dtype = io::DType::kBF16,
                                                            bool hold_routed_experts = true);

  const ModelSpec& spec() const { return spec_; }
  io::DType compute_dtype() const { return compute_dtype_; }
  // kF8E4M3 when the float routed experts were rounded through FP8 blocks at load (--expert-dtype fp8).
  io::DType expert_dtype() const { return expert_dtype_; }
  const LayerWeights& layer(int i) const { return layers_[i]; }
  const std::vector<float>& final_norm() const { return final_norm_; }
  const cpu::Matrix& lm_head() const { return lm_head_; }
  const io::Checkpoint& checkpoint() const { return *checkpoint_; }
  // Writes the embedding rows of `tokens` into out [count, hidden] as f32.
  void Embed(const int32_t* tokens, int count, float* out) const;
  // Bytes of converted copies held here (the mapped checkpoint is not counted).
  int64_t owned_bytes() const { return owned_bytes_; }

 private:
  ModelWeights(const ModelSpec& spec, std::unique_ptr<io::Checkpoint> checkpoint, io::DType compute_dtype);
  class Loader;

  ModelSpec spec_;
  std::unique_ptr<io::Checkpoint> checkpoint_;
  io::DType compute_dtype_;
  io::DType expert_dtype_ = io::DType::kBF16;
  io::TensorView embedding_;
  std::vector<float> final_norm_;
  cpu::Matrix lm_head_;
  std::vector<LayerWeights> layers_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;
  int64_t owned_bytes_ = 0;
};

}  // namespace ringmoe
