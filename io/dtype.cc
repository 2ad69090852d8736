#include "io/dtype.h"

#include <algorithm>
#include <array>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace ringmoe::io {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 12> kDTypes = {{
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF64, "F64", 8},
    {DType::kI64, "I64", 8},
    {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},
    {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
}};

const DTypeInfo& Info(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[0];  // Unreachable for a valid enum value.
}

// Branch-free F16 -> F32 so that the bulk loop vectorises; exhaustively checked against F16ToF32 in
// tests/io_dtype_test.cc. Normal numbers are rebiased; subnormals are renormalised by an exact float
// subtraction (magic - magic trick); inf/NaN get the F32 all-ones exponent.
inline uint32_t F16ToF32BitsBranchless(uint16_t half) {
  const uint32_t magnitude = static_cast<uint32_t>(half & 0x7fffu) << 13;
  const uint32_t exponent = magnitude & 0x0f800000u;
  uint32_t bits = magnitude + (static_cast<uint32_t>(127 - 15) << 23);
  const uint32_t inf_nan_adjust = exponent == 0x0f800000u ? (static_cast<uint32_t>(128 - 16) << 23) : 0u;
  bits += inf_nan_adjust;
  // Subnormal: bits is now 2^-14 * (1 + m/1024) with a fake leading one; subtracting 2^-14 leaves m * 2^-24.
  const float renormalised = internal::BitsToFloat(bits + (1u << 23)) - internal::BitsToFloat(113u << 23);
  // A mask rather than ?: so that GCC does not sink the float subtraction into a branch (which blocks
  // vectorisation under the default -ftrapping-math).
  const uint32_t subnormal_mask = 0u - static_cast<uint32_t>(exponent == 0);
  bits = (internal::FloatBits(renormalised) & subnormal_mask) | (bits & ~subnormal_mask);
  return bits | (static_cast<uint32_t>(half & 0x8000u) << 16);
}

inline uint16_t F32ToBF16Branchless(uint32_t bits) {
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (bits >> 16) | 0x0040u;
  return static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// Branch-free F32ToF16 (same results, checked in tests/io_dtype_test.cc): all three paths are computed and
// the right one selected with masks, so the bulk loop vectorises.
inline uint16_t F32ToF16Branchless(uint32_t bits) {
  const uint32_t sign = (bits >> 16) & 0x8000u;
  bits &= 0x7fffffffu;
  const uint32_t inf_or_nan = bits > 0x7f800000u ? 0x7e00u : 0x7c00u;
  const uint32_t subnormal = internal::FloatBits(internal::BitsToFloat(bits) + 0.5f) - 0x3f000000u;
  const uint32_t normal =
      (bits + (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + ((bits >> 13) & 1u)) >> 13;
  const uint32_t big_mask = 0u - static_cast<uint32_t>(bits >= 0x47800000u);
  const uint32_t small_mask = 0u - static_cast<uint32_t>(bits < 0x38800000u);
  const uint32_t finite = (subnormal & small_mask) | (normal & ~small_mask);
  return static_cast<uint16_t>(((inf_or_nan & big_mask) | (finite & ~big_mask)) | sign);
}

// Every F8 value widened once: the bulk conversion is a table lookup (exact, and as fast as it gets).
struct F8Tables {
  std::array<float, 256> e4m3;
  std::array<float, 256> e5m2;
  F8Tables() {
    for (int i = 0; i < 256; ++i) {
      e4m3[i] = F8E4M3ToF32(static_cast<uint8_t>(i));
      e5m2[i] = F8E5M2ToF32(static_cast<uint8_t>(i));
    }
  }
};
const F8Tables& Tables() {
  static const F8Tables tables;
  return tables;
}

}  // namespace

absl::StatusOr<DType> ParseSafetensorsDType(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown or unsupported safetensors dtype \"",
                   absl::CHexEscape(absl::string_view(name.data(), std::min<size_t>(name.size(), 32))),
                   "\" (expected F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3 or F8_E5M2)"));
}

std::string_view DTypeName(DType dtype) { return Info(dtype).name; }

size_t DTypeSize(DType dtype) { return Info(dtype).size; }

absl::Status ConvertToF32(DType src_type, const void* src, float* dst, size_t count) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (src_type) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return absl::OkStatus();
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t value;
        std::memcpy(&value, bytes + 2 * i, 2);
        dst[i] = BF16ToF32(value);
      }
      return absl::OkStatus();
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t value;
        std::memcpy(&value, bytes + 2 * i, 2);
        dst[i] = internal::BitsToFloat(F16ToF32BitsBranchless(value));
      }
      return absl::OkStatus();
    case DType::kF8E4M3:
    case DType::kF8E5M2: {
      const std::array<float, 256>& table = src_type == DType::kF8E4M3 ? Tables().e4m3 : Tables().e5m2;
      for (size_t i = 0; i < count; ++i) dst[i] = table[bytes[i]];
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot convert dtype ", std::string(DTypeName(src_type)),
                       " to F32 (only F32, BF16, F16, F8_E4M3 and F8_E5M2 are supported)"));
  }
}

void ConvertF32ToBF16(const float* src, uint16_t* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = F32ToBF16Branchless(internal::FloatBits(src[i]));
}

void ConvertF32ToF8E4M3(const float* src, uint8_t* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = F32ToF8E4M3(src[i]);
}

void ConvertF32ToF16(const float* src, uint16_t* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = F32ToF16Branchless(internal::FloatBits(src[i]));
}

}  // namespace ringmoe::io
