// libFuzzer target: arbitrary bytes as a model's config.json, through ParseModelSpec.
//
// Checks beyond "does not crash": an accepted spec has every size positive and within the bounds the reader
// promises, so that the products the planner and the loaders take of them (total_params and friends) cannot
// overflow (UBSan would report a signed overflow as a finding).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "io/model_spec.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ringmoe::ModelSpec> spec =
      ringmoe::ParseModelSpec(absl::string_view(text.data(), text.size()), "fuzz/config.json");
  if (!spec.ok()) {
    Check(!spec.status().message().empty());
    return 0;
  }
  Check(spec->vocab_size > 0 && spec->vocab_size <= (1 << 24));
  Check(spec->hidden_size > 0 && spec->hidden_size <= (1 << 17));
  Check(spec->num_layers > 0 && static_cast<int>(spec->layers.size()) == spec->num_layers);
  Check(spec->num_experts > 0 && spec->num_experts_per_tok <= spec->num_experts);
  Check(spec->num_heads % spec->num_kv_heads == 0);
  Check(spec->total_params() > 0);
  Check(spec->attention_params() > 0 && spec->expert_params() > 0);
  return 0;
}
