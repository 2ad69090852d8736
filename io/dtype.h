// Element types of checkpoint tensors, their safetensors spellings, and conversions to and from F32.
//
// The scalar conversions are exact bit manipulations (no reliance on _Float16 or F16C), so they give the same
// results on every compiler; the bulk loops are written so that the compiler vectorises them, because they
// run over gigabytes of weights at load time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::io {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2 };

// "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2".
// Anything else (including other safetensors types such as U16 that no supported model uses) is an error.
absl::StatusOr<DType> ParseSafetensorsDType(std::string_view name);
// The safetensors spelling, e.g. "BF16".
std::string_view DTypeName(DType dtype);
// Bytes per element.
size_t DTypeSize(DType dtype);

namespace internal {
inline uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}
inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
}  // namespace internal

inline float BF16ToF32(uint16_t value) { return internal::BitsToFloat(static_cast<uint32_t>(value) << 16); }

// Round to nearest, ties to even. NaN stays NaN (quietened, sign kept); values past the BF16 range become
// inf.
inline uint16_t F32ToBF16(float value) {
  const uint32_t bits = internal::FloatBits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

// Exact (every F16 value, subnormals included, is representable in F32).
inline float F16ToF32(uint16_t value) {
  const uint32_t sign = static_cast<uint32_t>(value & 0x8000u) << 16;
  const uint32_t exponent = (value >> 10) & 0x1fu;
  const uint32_t mantissa = value & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = 0x7f800000u | (mantissa << 13);  // inf or NaN (payload kept).
  } else if (exponent != 0) {
    bits = ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = 0;  // Signed zero.
  } else {
    // Subnormal: mantissa * 2^-24, exact in F32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return internal::BitsToFloat(sign | bits);
}

// Round to nearest, ties to even, including into the subnormal range. NaN stays NaN (0x7e00 with the sign);
// values past 65504 (after rounding) become inf.
inline uint16_t F32ToF16(float value) {
  uint32_t bits = internal::FloatBits(value);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  bits &= 0x7fffffffu;
  uint32_t result;
  if (bits >= 0x47800000u) {  // |value| >= 65536 (always inf), inf or NaN.
    result = bits > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (bits < 0x38800000u) {  // |value| < 2^-14: F16 subnormal or zero.
    // Adding 0.5 puts the F16 subnormal bits at the bottom of the F32 mantissa, rounded to nearest even
    // by the FPU itself (requires the default rounding mode, which this project never changes).
    const float shifted = internal::BitsToFloat(bits) + 0.5f;
    result = internal::FloatBits(shifted) - 0x3f000000u;
  } else {
    const uint32_t mantissa_odd = (bits >> 13) & 1u;
    bits += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + mantissa_odd;
    result = bits >> 13;  // A carry out of the mantissa correctly bumps the exponent (up to inf).
  }
  return static_cast<uint16_t>(result | sign);
}

// FP8 as safetensors stores it (the OCP / PyTorch formats). F8_E4M3 is "e4m3fn": exponent bias 7, no
// infinities, NaN only at S.1111.111 (0x7f / 0xff), largest finite 448, smallest subnormal 2^-9. F8_E5M2 is
// the top byte of an IEEE F16 (bias 15, with inf and NaN). Both widen to F32 exactly.
inline float F8E4M3ToF32(uint8_t value) {
  const uint32_t sign = static_cast<uint32_t>(value & 0x80u) << 24;
  const uint32_t exponent = (value >> 3) & 0xfu;
  const uint32_t mantissa = value & 0x7u;
  if (exponent == 0xf && mantissa == 0x7) return internal::BitsToFloat(sign | 0x7fc00000u);  // NaN
  if (exponent == 0) {
    // Subnormal (or zero): mantissa * 2^-9, exact in F32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-9f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return internal::BitsToFloat(sign | ((exponent + (127 - 7)) << 23) | (mantissa << 20));
}
inline float F8E5M2ToF32(uint8_t value) { return F16ToF32(static_cast<uint16_t>(value << 8)); }

// The largest finite F8_E4M3 value.
inline constexpr float kF8E4M3Max = 448.0f;

// Round to nearest, ties to even, saturating: finite values past 448 (and infinities) become +-448, the
// clamp a quantiser wants (torch's plain cast would give NaN instead). NaN stays NaN (0x7f with the sign).
inline uint8_t F32ToF8E4M3(float value) {
  uint32_t bits = internal::FloatBits(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  bits &= 0x7fffffffu;
  if (bits > 0x7f800000u) return sign | 0x7fu;
  if (bits >= 0x43e00000u) return sign | 0x7eu;  // |value| >= 448 (or inf): saturate.
  if (bits < 0x3c800000u) {                      // |value| < 2^-6: E4M3 subnormal or zero.
    // The sum's last mantissa bit is worth 2^-9 (2^14 * 2^-23), E4M3's subnormal step, so the FPU rounds
    // to nearest even for us (default rounding mode, which this project never changes); 8 steps = 2^-6 is
    // code 0x08, the smallest normal, so a round-up carries over correctly.
    const float shifted = internal::BitsToFloat(bits) + 16384.0f;
    return sign | static_cast<uint8_t>(internal::FloatBits(shifted) - 0x46800000u);
  }
  const uint32_t mantissa_odd = (bits >> 20) & 1u;
  bits += (static_cast<uint32_t>(7 - 127) << 23) + 0x7ffffu + mantissa_odd;
  const uint32_t result = bits >> 20;  // A carry out of the mantissa bumps the exponent; 448 is the top.
  return sign | static_cast<uint8_t>(result > 0x7eu ? 0x7eu : result);
}

// Converts `count` elements of `src_type` at `src` to F32. Supports F32, BF16, F16, F8_E4M3 and F8_E5M2;
// any other type is an InvalidArgument error naming the dtype. `src` need not be aligned.
absl::Status ConvertToF32(DType src_type, const void* src, float* dst, size_t count);
// Round to nearest even; NaN stays NaN.
void ConvertF32ToBF16(const float* src, uint16_t* dst, size_t count);
// Round to nearest even, saturating at +-448; NaN stays NaN.
void ConvertF32ToF8E4M3(const float* src, uint8_t* dst, size_t count);
// Round to nearest even; NaN stays NaN.
void ConvertF32ToF16(const float* src, uint16_t* dst, size_t count);

}  // namespace ringmoe::io
