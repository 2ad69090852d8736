#include "io/fp8_weights.h"

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ringmoe::io {
namespace {

constexpr absl::string_view kScaleSuffix = "_scale_inv";
constexpr absl::string_view kWeightSuffix = ".weight";

bool IsFp8(DType dtype) { return dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2; }

std::string Describe(const TensorView& view) {
  return absl::StrCat("tensor '", view.name(), "' (in ", view.file(), ", ",
                      std::string(DTypeName(view.dtype())), " ", FormatShape(view.shape()), ")");
}

// FP8 is allowed on linear-layer weights only: 2-D, named "<module>.weight", and not the embeddings
// (an nn.Embedding, which the format never converts).
absl::Status CheckFp8Allowed(const TensorView& weight) {
  const std::string& name = weight.name();
  if (weight.shape().size() != 2 || !absl::EndsWith(name, kWeightSuffix) ||
      absl::StrContains(name, "embed_tokens")) {
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(weight), ": the fp8 format allows FP8 only on the 2-D weights of linear layers"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ScaleInvName(std::string_view weight_name) {
  return absl::StrCat(absl::string_view(weight_name.data(), weight_name.size()), kScaleSuffix);
}

absl::StatusOr<std::optional<TensorView>> RequireWeightScale(const Checkpoint& checkpoint,
                                                             const TensorView& weight,
                                                             const QuantizationSpec& quantization) {
  const std::string scale_name = ScaleInvName(weight.name());
  const TensorView* scale = checkpoint.Find(scale_name);
  if (!IsFp8(weight.dtype())) {
    if (scale != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(Describe(*scale), " scales ", Describe(weight), ", which is not FP8"));
    }
    return std::nullopt;
  }
  if (absl::Status allowed = CheckFp8Allowed(weight); !allowed.ok()) return allowed;
  if (quantization.method != WeightQuantization::kFp8Block) {
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(weight), " is FP8 but config.json has no quantization_config with quant_method \"fp8\""));
  }
  if (weight.dtype() != DType::kF8E4M3) {
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(weight), " does not match quantization_config.fmt \"e4m3\" (expected F8_E4M3)"));
  }
  const std::string module(weight.name().substr(0, weight.name().size() - kWeightSuffix.size()));
  if (!quantization.Converts(module)) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(weight),
                                                   " is FP8 but quantization_config."
                                                   "modules_to_not_convert names module '",
                                                   module, "'"));
  }
  const std::vector<int64_t> expected = {
      (weight.shape()[0] + quantization.block_rows - 1) / quantization.block_rows,
      (weight.shape()[1] + quantization.block_cols - 1) / quantization.block_cols};
  const std::string expectation =
      absl::StrCat("F32 or BF16 ", FormatShape(expected), " (one per ", quantization.block_rows, "x",
                   quantization.block_cols, " block of ", FormatShape(weight.shape()), ")");
  if (scale == nullptr) {
    return absl::NotFoundError(absl::StrCat(Describe(weight), " is FP8 but the checkpoint has no tensor '",
                                            scale_name, "' (expected ", expectation, ")"));
  }
  const bool shape_ok =
      scale->shape().size() == 2 && scale->shape()[0] == expected[0] && scale->shape()[1] == expected[1];
  if (!shape_ok || (scale->dtype() != DType::kF32 && scale->dtype() != DType::kBF16)) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(*scale), " should be ", expectation));
  }
  return *scale;
}

absl::Status ValidateFp8Tensors(const Checkpoint& checkpoint, const QuantizationSpec& quantization) {
  for (const std::string& name : checkpoint.Names()) {
    const TensorView& view = *checkpoint.Find(name);
    if (absl::EndsWith(name, kScaleSuffix)) {
      const std::string weight_name = name.substr(0, name.size() - kScaleSuffix.size());
      const TensorView* weight = checkpoint.Find(weight_name);
      if (weight == nullptr || !IsFp8(weight->dtype())) {
        return absl::InvalidArgumentError(absl::StrCat(
            Describe(view), " has no FP8 weight '", weight_name, "' beside it",
            weight == nullptr
                ? ""
                : absl::StrCat(" (that tensor is ", std::string(DTypeName(weight->dtype())), ")")));
      }
      continue;
    }
    if (!IsFp8(view.dtype())) continue;
    absl::StatusOr<std::optional<TensorView>> scale = RequireWeightScale(checkpoint, view, quantization);
    if (!scale.ok()) return scale.status();
  }
  return absl::OkStatus();
}

}  // namespace ringmoe::io
