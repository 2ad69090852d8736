#include "runtime/engine/forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "cpu/cpu_ops.h"
#include "runtime/engine/attention_step.h"

namespace ringmoe {
namespace {

class StageTimer {
 public:
  explicit StageTimer(double* total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~StageTimer() {
    *total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  double* total_;
  std::chrono::steady_clock::time_point start_;
};

template <typename T>
T* Grow(std::vector<T>& buffer, size_t count) {
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

void AddInPlace(float* dst, const float* src, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] += src[i];
}

}  // namespace

CpuForward::CpuForward(const ModelWeights& weights, KvCache& kv_cache, cpu::CpuWorkers& workers)
    : weights_(weights), spec_(weights.spec()), kv_cache_(kv_cache), workers_(workers) {
  if (spec_.is_mla()) mla_rotary_ = MlaRotary(spec_);
}

absl::Status CpuForward::Run(const std::vector<StepChunk>& chunks, StepOutput* step_out) {
  std::vector<float>* logits = &step_out->logits;
  const int hidden = spec_.hidden_size;
  int tokens = 0;
  for (const StepChunk& chunk : chunks) {
    tokens += chunk.count;
    // Each token's attention reads the K/V of every position up to its own.
    kv_read_bytes_ += kv_cache_.bytes_per_token() *
                      (int64_t{chunk.count} * chunk.start + int64_t{chunk.count} * (chunk.count + 1) / 2);
  }

  float* x = Grow(hidden_, static_cast<size_t>(tokens) * hidden);
  {
    StageTimer timer(&times_.embed);
    int row = 0;
    for (const StepChunk& chunk : chunks) {
      weights_.Embed(chunk.tokens, chunk.count, x + static_cast<int64_t>(row) * hidden);
      row += chunk.count;
    }
  }
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    Attention(layer, chunks, tokens);
    FeedForward(layer, tokens);
  }

  StageTimer timer(&times_.lm_head);
  int wanted = 0;
  for (const StepChunk& chunk : chunks) wanted += chunk.want_logits ? 1 : 0;
  float* last_rows = Grow(normed_, static_cast<size_t>(std::max(wanted, 1)) * hidden);
  int row = 0, out = 0;
  for (const StepChunk& chunk : chunks) {
    row += chunk.count;
    if (!chunk.want_logits) continue;
    cpu::RmsNorm(x + static_cast<int64_t>(row - 1) * hidden, weights_.final_norm().data(), 1, hidden,
                 static_cast<float>(spec_.rms_norm_eps), last_rows + static_cast<int64_t>(out++) * hidden);
  }
  logits->resize(static_cast<size_t>(wanted) * spec_.vocab_size);
  step_out->picked.assign(wanted, SampledToken{-1, 0.0f});
  cpu::Linear(last_rows, wanted, weights_.lm_head(), nullptr, logits->data(), &workers_);
  return PromptLogits(chunks, step_out);
}

absl::Status CpuForward::PromptLogits(const std::vector<StepChunk>& chunks, StepOutput* step_out) {
  const int hidden = spec_.hidden_size;
  int rows = 0;
  for (const StepChunk& chunk : chunks) rows += chunk.prompt_logits;
  step_out->prompt_logits.resize(static_cast<size_t>(rows) * spec_.vocab_size);
  if (rows == 0) return absl::OkStatus();
  // The final norm of each scored row (the layers are done with normed_), then one lm_head over them all.
  float* normed = Grow(normed_, static_cast<size_t>(rows) * hidden);
  int row = 0, out = 0;
  for (const StepChunk& chunk : chunks) {
    if (chunk.prompt_logits > 0) {
      cpu::RmsNorm(hidden_.data() + static_cast<int64_t>(row) * hidden, weights_.final_norm().data(),
                   chunk.prompt_logits, hidden, static_cast<float>(spec_.rms_norm_eps),
                   normed + static_cast<int64_t>(out) * hidden);
      out += chunk.prompt_logits;
    }
    row += chunk.count;
  }
  cpu::Linear(normed, rows, weights_.lm_head(), nullptr, step_out->prompt_logits.data(), &workers_);
  return absl::OkStatus();
}

ForwardStats CpuForward::stats() const {
  ForwardStats stats;
  stats.times = times_;
  stats.cpu_kv_read_bytes = kv_read_bytes_;
  return stats;
}

void CpuForward::Attention(int layer, const std::vector<StepChunk>& chunks, int tokens) {
  const AttentionWeights& w = weights_.layer(layer).attention;
  const int hidden = spec_.hidden_size, q_width = spec_.q_width(), kv_width = spec_.kv_width();
  float* x = hidden_.data();
  float* normed = Grow(normed_, static_cast<size_t>(tokens) * hidden);
  if (spec_.is_mla()) {
    const int out_width = spec_.num_heads * spec_.mla.v_head_dim;
    float* attention_out = Grow(attention_out_, static_cast<size_t>(tokens) * out_width);
    {
      StageTimer timer(&times_.attention);  // the projections included: they are interleaved with it
      cpu::RmsNorm(x, w.input_norm.data(), tokens, hidden, static_cast<float>(spec_.rms_norm_eps), normed);
      MlaAttentionOnCpu(spec_, w, mla_rotary_, layer, chunks, normed, tokens, attention_out, kv_cache_,
                        workers_, mla_scratch_);
    }
    StageTimer timer(&times_.projections);
    float* projected = Grow(projected_, static_cast<size_t>(tokens) * hidden);
    cpu::Linear(attention_out, tokens, w.o, nullptr, projected, &workers_);
    AddInPlace(x, projected, static_cast<size_t>(tokens) * hidden);
    return;
  }
  float* q = Grow(q_, static_cast<size_t>(tokens) * q_width);
  float* k = Grow(k_, static_cast<size_t>(tokens) * kv_width);
  float* v = Grow(v_, static_cast<size_t>(tokens) * kv_width);
  {
    StageTimer timer(&times_.projections);
    cpu::RmsNorm(x, w.input_norm.data(), tokens, hidden, static_cast<float>(spec_.rms_norm_eps), normed);
    cpu::Linear(normed, tokens, w.q, w.q_bias.empty() ? nullptr : w.q_bias.data(), q, &workers_);
    cpu::Linear(normed, tokens, w.k, w.k_bias.empty() ? nullptr : w.k_bias.data(), k, &workers_);
    cpu::Linear(normed, tokens, w.v, w.v_bias.empty() ? nullptr : w.v_bias.data(), v, &workers_);
  }
  float* attention_out = Grow(attention_out_, static_cast<size_t>(tokens) * q_width);
  {
    StageTimer timer(&times_.attention);
    AttentionOnCpu(spec_, w, layer, chunks, q, k, v, attention_out, kv_cache_, workers_);
  }
  StageTimer timer(&times_.projections);
  float* projected = Grow(projected_, static_cast<size_t>(tokens) * hidden);
  cpu::Linear(attention_out, tokens, w.o, nullptr, projected, &workers_);
  AddInPlace(x, projected, static_cast<size_t>(tokens) * hidden);
}

void CpuForward::FeedForward(int layer, int tokens) {
  const LayerWeights& w = weights_.layer(layer);
  const LayerSpec& layer_spec = spec_.layers[layer];
  const int hidden = spec_.hidden_size;
  const size_t size = static_cast<size_t>(tokens) * hidden;
  float* x = hidden_.data();
  float* normed = Grow(normed_, size);
  float* out = Grow(projected_, size);
  cpu::RmsNorm(x, w.attention.post_attention_norm.data(), tokens, hidden,
               static_cast<float>(spec_.rms_norm_eps), normed);
  if (!layer_spec.is_moe) {
    StageTimer timer(&times_.dense_mlp);
    cpu::SwiGluMlp(normed, tokens, w.dense_mlp, out, &workers_);
    AddInPlace(x, out, size);
    return;
  }
  StageTimer timer(&times_.moe);
  const int top_k = spec_.num_experts_per_tok;
  float* router_logits = Grow(router_logits_, static_cast<size_t>(tokens) * spec_.num_experts);
  int32_t* expert_ids = Grow(expert_ids_, static_cast<size_t>(tokens) * top_k);
  float* routing_weights = Grow(routing_weights_, static_cast<size_t>(tokens) * top_k);
  cpu::Linear(normed, tokens, w.router, nullptr, router_logits, &workers_);
  if (spec_.is_deepseek()) {
    const cpu::GroupRouting routing =
        DeepseekRouting(spec_, w.router_bias.empty() ? nullptr : w.router_bias.data());
    cpu::RouteGroupLimited(router_logits, tokens, spec_.num_experts, top_k, routing, expert_ids,
                           routing_weights);
  } else {
    cpu::RouteTopK(router_logits, tokens, spec_.num_experts, top_k,
                   spec_.router == RouterKind::kTopKSoftmax ? cpu::RouterScoring::kTopKThenSoftmax
                                                            : cpu::RouterScoring::kSoftmaxThenTopK,
                   spec_.norm_topk_prob, expert_ids, routing_weights);
  }
  std::fill_n(out, size, 0.0f);
  cpu::MoeForward(normed, tokens, hidden, expert_ids, routing_weights, top_k, w.experts, out, &workers_);
  if (layer_spec.has_shared_expert) {
    float* shared = Grow(shared_out_, size);
    float* gate = Grow(shared_gate_, static_cast<size_t>(tokens));
    cpu::SwiGluMlp(normed, tokens, w.shared_expert, shared, &workers_);
    if (!spec_.shared_expert_gated) {  // DeepSeek: shared experts added as they are
      AddInPlace(out, shared, size);
      AddInPlace(x, out, size);
      return;
    }
    cpu::Linear(normed, tokens, w.shared_expert_gate, nullptr, gate);
    for (int t = 0; t < tokens; ++t) {
      const float g = 1.0f / (1.0f + std::exp(-gate[t]));
      for (int i = 0; i < hidden; ++i)
        out[static_cast<int64_t>(t) * hidden + i] += g * shared[static_cast<int64_t>(t) * hidden + i];
    }
  }
  AddInPlace(x, out, size);
}

}  // namespace ringmoe
