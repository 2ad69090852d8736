#include "runtime/engine/compute_type.h"

#include <filesystem>
#include <memory>

#include "cpu/cpu_features.h"

namespace ringmoe {

io::DType ChooseComputeType(ComputeType requested, const io::Checkpoint* checkpoint, bool gpu) {
  if (gpu) return io::DType::kBF16;  // the GPU path computes in bf16 with f32 accumulation
  if (requested == ComputeType::kF32) return io::DType::kF32;
  if (requested == ComputeType::kBF16) return io::DType::kBF16;
  // o_proj: DeepSeek with q LoRA has no q_proj.
  const io::TensorView* probe =
      checkpoint != nullptr ? checkpoint->Find("model.layers.0.self_attn.q_proj.weight") : nullptr;
  if (probe == nullptr && checkpoint != nullptr)
    probe = checkpoint->Find("model.layers.0.self_attn.o_proj.weight");
  const bool f32_checkpoint =
      checkpoint != nullptr && (probe == nullptr || probe->dtype() == io::DType::kF32);
  return !f32_checkpoint && cpu::CpuHasNativeBf16() ? io::DType::kBF16 : io::DType::kF32;
}

io::DType ChooseComputeType(ComputeType requested, const std::string& model_dir, bool gpu) {
  std::unique_ptr<io::Checkpoint> checkpoint;
  if (std::filesystem::is_directory(model_dir)) {
    absl::StatusOr<std::unique_ptr<io::Checkpoint>> opened = io::Checkpoint::Open(model_dir);
    if (opened.ok()) checkpoint = std::move(*opened);
  }
  return ChooseComputeType(requested, checkpoint.get(), gpu);
}

}  // namespace ringmoe
