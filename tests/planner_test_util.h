// Shared helpers for the planner tests: synthetic hardware profiles and configs.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "planner/hardware_profile.h"
#include "io/model_spec.h"

namespace ringmoe::planner::testing {

inline constexpr int64_t kGiB = int64_t{1} << 30;

// A machine whose only finite rates are the ones a test sets: everything else is effectively instant.
inline HardwareProfile InstantMachine() {
  HardwareProfile profile;
  profile.source = "test";
  profile.topology.packages = 1;
  profile.topology.cores = 8;
  profile.topology.threads = 8;
  profile.topology.memory_bytes = 64 * kGiB;
  profile.cpu.threads = 8;
  profile.cpu.dram_read_gbps = 1e6;
  profile.cpu.has_avx512_bf16 = true;
  profile.cpu.attention = {1e6, 1e9, 0, 32, 4, 128, 2048, false};
  profile.cpu.matmul_bf16 = {{1, 1e6}};
  profile.cpu.matmul_f32 = {{1, 1e6}};
  profile.contention = DramContention{1e6, 1e6, 1e6, 1e6};
  GpuProfile gpu;
  gpu.name = "test GPU";
  gpu.memory_bytes = 80 * kGiB;
  gpu.h2d_gbps = 1e6;
  gpu.d2h_gbps = 1e6;
  gpu.grouped_gemm_bf16 = {{1, 1e6}};
  gpu.prefill_attention_tflops = 1e6;
  profile.gpu = gpu;
  profile.ssd_absent_reason = "test machine has no SSD";
  return profile;
}

// 4 layers of 16 experts (top-2), hidden 1024, expert intermediate 512, 8 heads of 128 over 2 kv heads.
inline constexpr char kTinyMoe[] = R"({
  "model_type": "qwen3_moe", "vocab_size": 1000, "hidden_size": 1024, "num_hidden_layers": 4,
  "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 2048,
  "moe_intermediate_size": 512, "num_experts": 16, "num_experts_per_tok": 2, "norm_topk_prob": true,
  "max_position_embeddings": 8192})";

inline ModelSpec ParseOrDie(const std::string& text, const std::string& source) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(text, source);
  if (!spec.ok()) ADD_FAILURE() << spec.status();
  return spec.ok() ? *spec : ModelSpec{};
}

inline std::string ReadSourceFile(const std::string& relative) {
  std::ifstream in(absl::StrCat(RINGMOE_SOURCE_DIR, "/", relative), std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline ModelSpec ConfigNamed(const std::string& name) {
  return ParseOrDie(ReadSourceFile("tests/data/configs/" + name), name);
}

}  // namespace ringmoe::planner::testing
