// Validation of FP8 block-quantised checkpoints (config.json's quantization_config, io/model_spec.h): which
// tensors may be FP8, and each FP8 weight's `<name>_scale_inv` tensor, checked like every other tensor.
// Header checks only: no tensor data is read, so `ringmoe plan` runs them too and refuses what `run` would.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "io/checkpoint.h"
#include "io/model_spec.h"

namespace ringmoe::io {

// "x.weight" -> "x.weight_scale_inv" (Hugging Face's naming).
std::string ScaleInvName(std::string_view weight_name);

// The block scales of one 2-D weight: std::nullopt when the weight is not FP8. When it is FP8, checks that
// config.json declares the format with that dtype, that the module is not in modules_to_not_convert, and
// that `<name>_scale_inv` exists with dtype F32 or BF16 and shape [ceil(rows / block_rows), ceil(cols /
// block_cols)]. Errors name the tensor, its file, shape and dtype, and what was expected.
absl::StatusOr<std::optional<TensorView>> RequireWeightScale(const Checkpoint& checkpoint,
                                                             const TensorView& weight,
                                                             const QuantizationSpec& quantization);

// Every FP8 tensor and every scale tensor of the checkpoint: FP8 only on 2-D linear weights (never
// embeddings, norms or biases), each with a valid scale (RequireWeightScale), and no scale without an FP8
// weight beside it.
absl::Status ValidateFp8Tensors(const Checkpoint& checkpoint, const QuantizationSpec& quantization);

}  // namespace ringmoe::io
