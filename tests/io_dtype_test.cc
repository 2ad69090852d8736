#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "io/dtype.h"

namespace ringmoe::io {
namespace {

uint32_t Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}
float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

TEST(DTypeTest, ParsesEverySafetensorsSpellingAndBack) {
  const std::vector<std::pair<const char*, size_t>> names = {
      {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8},  {"I64", 8},     {"I32", 4},
      {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : names) {
    absl::StatusOr<DType> dtype = ParseSafetensorsDType(name);
    ASSERT_TRUE(dtype.ok()) << name << ": " << dtype.status();
    EXPECT_EQ(DTypeName(*dtype), name);
    EXPECT_EQ(DTypeSize(*dtype), size) << name;
  }
}

TEST(DTypeTest, UnknownDTypeIsAnErrorNamingIt) {
  for (const char* name : {"f32", "FP32", "U16", "", "BF16 "}) {
    absl::StatusOr<DType> dtype = ParseSafetensorsDType(name);
    ASSERT_FALSE(dtype.ok()) << name;
    EXPECT_NE(dtype.status().message().find(std::string("\"") + name + "\""), std::string::npos)
        << dtype.status();
  }
}

TEST(BF16Test, ExactValuesAndRoundToNearestEven) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToBF16(0.0f), 0x0000);
  EXPECT_EQ(F32ToBF16(-0.0f), 0x8000);
  // 1 + 2^-8 is exactly halfway between 0x3f80 and 0x3f81: ties go to the even 0x3f80.
  EXPECT_EQ(F32ToBF16(FromBits(0x3f808000)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 0x3f81 and 0x3f82: ties go to the even 0x3f82.
  EXPECT_EQ(F32ToBF16(FromBits(0x3f818000)), 0x3f82);
  EXPECT_EQ(F32ToBF16(FromBits(0x3f808001)), 0x3f81);  // Just above halfway rounds up.
  EXPECT_EQ(F32ToBF16(FromBits(0x3f807fff)), 0x3f80);  // Just below halfway rounds down.
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(F32ToBF16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::max()), 0x7f80);  // Rounds past the largest BF16.
  EXPECT_EQ(F32ToBF16(FromBits(0x00000001)), 0x0000);               // Smallest subnormal rounds to zero.
  EXPECT_EQ(F32ToBF16(FromBits(0x00018000)), 0x0002);               // Subnormal tie to even.
}

TEST(BF16Test, NaNStaysNaNEvenWhenThePayloadIsOnlyInTheDroppedBits) {
  for (const uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t bf16 = F32ToBF16(FromBits(nan_bits));
    EXPECT_TRUE(std::isnan(BF16ToF32(bf16))) << std::hex << nan_bits << " -> " << bf16;
    EXPECT_EQ(bf16 & 0x8000, (nan_bits >> 16) & 0x8000) << "sign kept";
  }
}

TEST(BF16Test, ToF32IsExact) {
  EXPECT_EQ(BF16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(BF16ToF32(0x4049), 3.140625f);
  EXPECT_EQ(Bits(BF16ToF32(0x8000)), 0x80000000u);
  EXPECT_EQ(BF16ToF32(0xff80), -std::numeric_limits<float>::infinity());
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = BF16ToF32(static_cast<uint16_t>(bits));
    EXPECT_EQ(Bits(f), bits << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToBF16(f), bits) << "round trip of " << bits;
    }
  }
}

TEST(F16Test, ExactValues) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToF16(0.0f), 0x0000);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);   // Largest finite F16.
  EXPECT_EQ(F32ToF16(65519.99f), 0x7bff);  // Below the halfway point to 65536: stays finite.
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);   // Halfway, ties to even = inf.
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);
  EXPECT_EQ(F32ToF16(-1e6f), 0xfc00);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400);  // Smallest normal.
  // 1 + 2^-11 is halfway between 0x3c00 and 0x3c01 (ties to even 0x3c00); 1 + 3 * 2^-11 goes to 0x3c02.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(F32ToF16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
}

TEST(F16Test, SubnormalsRoundToNearestEven) {
  const float unit = std::ldexp(1.0f, -24);  // The smallest F16 subnormal.
  EXPECT_EQ(F32ToF16(unit), 0x0001);
  EXPECT_EQ(F32ToF16(-unit), 0x8001);
  EXPECT_EQ(F32ToF16(0.5f * unit), 0x0000);                        // Tie, to even 0.
  EXPECT_EQ(F32ToF16(-0.5f * unit), 0x8000);                       // Negative zero.
  EXPECT_EQ(F32ToF16(std::nextafter(0.5f * unit, 1.0f)), 0x0001);  // Just above the tie.
  EXPECT_EQ(F32ToF16(1.5f * unit), 0x0002);                        // Tie, to even 2.
  EXPECT_EQ(F32ToF16(2.5f * unit), 0x0002);                        // Tie, to even 2.
  EXPECT_EQ(F32ToF16(1023 * unit), 0x03ff);                        // Largest subnormal.
  EXPECT_EQ(F32ToF16(1023.5f * unit), 0x0400);                     // Rounds up into the normals.
  EXPECT_EQ(F32ToF16(FromBits(0x00000001)), 0x0000);               // F32 subnormal: far below.
  EXPECT_EQ(F16ToF32(0x0001), unit);
  EXPECT_EQ(F16ToF32(0x8001), -unit);
  EXPECT_EQ(F16ToF32(0x03ff), 1023 * unit);
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));
}

TEST(F16Test, SpecialValuesToF32) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F16ToF32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7c01)));
  EXPECT_EQ(Bits(F16ToF32(0x8000)), 0x80000000u);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(FromBits(0x7f800001)))));  // Payload only in dropped bits.
}

TEST(F16Test, EveryValueRoundTrips) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = F16ToF32(static_cast<uint16_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), bits) << "F16 " << std::hex << bits << " -> " << f;
  }
}

TEST(BulkConversionTest, F16MatchesScalarForAllValuesAndUnalignedSource) {
  std::vector<uint8_t> buffer(1 + 2 * 0x10000);
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t value = static_cast<uint16_t>(bits);
    std::memcpy(buffer.data() + 1 + 2 * bits, &value, 2);
  }
  std::vector<float> out(0x10000);
  ASSERT_TRUE(ConvertToF32(DType::kF16, buffer.data() + 1, out.data(), out.size()).ok());
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    ASSERT_EQ(Bits(out[bits]), Bits(F16ToF32(static_cast<uint16_t>(bits)))) << std::hex << bits;
  }
}

TEST(BulkConversionTest, BF16AndF32MatchScalar) {
  std::mt19937 rng(7);
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(),
                               FromBits(0x7f800001),
                               FromBits(0x3f808000),
                               FromBits(0x3f818000),
                               std::numeric_limits<float>::max(),
                               FromBits(0x00000001),
                               65504.0f,
                               65520.0f,
                               65519.99f,
                               -65520.0f,
                               std::ldexp(1.0f, -25),
                               std::ldexp(1.5f, -24),
                               std::ldexp(1.0f, -14),
                               std::ldexp(1023.5f, -24),
                               1.0f + std::ldexp(1.0f, -11)};
  // Every F16 value and its neighbours, so that each F16 rounding boundary is crossed.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = F16ToF32(static_cast<uint16_t>(bits));
    values.push_back(f);
    values.push_back(std::nextafter(f, 0.0f));
    values.push_back(std::nextafter(f, std::numeric_limits<float>::infinity()));
  }
  for (int i = 0; i < 100000; ++i) values.push_back(FromBits(static_cast<uint32_t>(rng())));
  std::vector<uint16_t> bf16(values.size());
  ConvertF32ToBF16(values.data(), bf16.data(), values.size());
  std::vector<uint16_t> f16(values.size());
  ConvertF32ToF16(values.data(), f16.data(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(bf16[i], F32ToBF16(values[i])) << std::hex << Bits(values[i]);
    ASSERT_EQ(f16[i], F32ToF16(values[i])) << std::hex << Bits(values[i]);
  }
  std::vector<float> back(values.size());
  ASSERT_TRUE(ConvertToF32(DType::kBF16, bf16.data(), back.data(), back.size()).ok());
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(Bits(back[i]), Bits(BF16ToF32(bf16[i])));
  ASSERT_TRUE(ConvertToF32(DType::kF32, values.data(), back.data(), back.size()).ok());
  EXPECT_EQ(std::memcmp(back.data(), values.data(), values.size() * 4), 0);
}

TEST(BulkConversionTest, UnsupportedSourceTypeIsAnErrorNamingIt) {
  const int32_t src[2] = {1, 2};
  float dst[2];
  const absl::Status status = ConvertToF32(DType::kI32, src, dst, 2);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("I32"), std::string::npos) << status;
  EXPECT_FALSE(ConvertToF32(DType::kI8, src, dst, 2).ok());
}

TEST(Fp8Test, E4M3DecodesKnownCodes) {
  EXPECT_EQ(Bits(F8E4M3ToF32(0x00)), Bits(0.0f));
  EXPECT_EQ(Bits(F8E4M3ToF32(0x80)), Bits(-0.0f));
  EXPECT_EQ(F8E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(F8E4M3ToF32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(F8E4M3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(F8E4M3ToF32(0x38), 1.0f);
  EXPECT_EQ(F8E4M3ToF32(0x39), 1.125f);
  EXPECT_EQ(F8E4M3ToF32(0x40), 2.0f);
  EXPECT_EQ(F8E4M3ToF32(0x7e), 448.0f);
  EXPECT_EQ(F8E4M3ToF32(0xfe), -448.0f);
  EXPECT_EQ(F8E4M3ToF32(0x78), 256.0f);  // e4m3fn has no infinity: exponent 15 is ordinary
  EXPECT_TRUE(std::isnan(F8E4M3ToF32(0x7f)));
  EXPECT_TRUE(std::isnan(F8E4M3ToF32(0xff)));
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) != 0x7f) EXPECT_TRUE(std::isfinite(F8E4M3ToF32(static_cast<uint8_t>(code)))) << code;
  }
}

TEST(Fp8Test, E5M2IsTheTopByteOfF16) {
  EXPECT_EQ(F8E5M2ToF32(0x3c), 1.0f);
  EXPECT_EQ(F8E5M2ToF32(0xc0), -2.0f);
  EXPECT_EQ(F8E5M2ToF32(0x7b), 57344.0f);
  EXPECT_EQ(F8E5M2ToF32(0x01), std::ldexp(1.0f, -16));
  EXPECT_TRUE(std::isinf(F8E5M2ToF32(0x7c)));
  EXPECT_TRUE(std::isnan(F8E5M2ToF32(0x7d)));
}

// The nearest E4M3 value by exhaustive search, ties to the even code: the definition F32ToF8E4M3 must meet.
uint8_t NearestE4M3(float value) {
  if (std::isnan(value)) return std::signbit(value) ? 0xff : 0x7f;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const double magnitude = std::min<double>(std::fabs(static_cast<double>(value)), 448.0);
  int best = 0;
  double best_error = INFINITY;
  for (int code = 0; code <= 0x7e; ++code) {
    const double error = std::fabs(static_cast<double>(F8E4M3ToF32(static_cast<uint8_t>(code))) - magnitude);
    if (error < best_error || (error == best_error && code % 2 == 0)) {
      best = code;
      best_error = error;
    }
  }
  return static_cast<uint8_t>(sign | best);
}

TEST(Fp8Test, E4M3EncodeRoundsToNearestEvenAndSaturates) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    EXPECT_EQ(F32ToF8E4M3(F8E4M3ToF32(static_cast<uint8_t>(code))), code) << code;
  }
  // Every midpoint between neighbours, and a quarter step either side of it.
  for (int code = 0; code < 0x7e; ++code) {
    const float low = F8E4M3ToF32(static_cast<uint8_t>(code));
    const float high = F8E4M3ToF32(static_cast<uint8_t>(code + 1));
    for (float value : {0.5f * (low + high), 0.375f * low + 0.625f * high, 0.625f * low + 0.375f * high}) {
      EXPECT_EQ(F32ToF8E4M3(value), NearestE4M3(value)) << value;
      EXPECT_EQ(F32ToF8E4M3(-value), NearestE4M3(-value)) << -value;
    }
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-14.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    const float value = std::exp2(exponent(rng)) * (i % 2 == 0 ? 1.0f : -1.0f);
    ASSERT_EQ(F32ToF8E4M3(value), NearestE4M3(value)) << value;
  }
  EXPECT_EQ(F32ToF8E4M3(464.0f), 0x7e);
  EXPECT_EQ(F32ToF8E4M3(1e30f), 0x7e);
  EXPECT_EQ(F32ToF8E4M3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(F32ToF8E4M3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(F32ToF8E4M3(std::ldexp(1.0f, -11)), 0x00);  // a quarter of the smallest subnormal
  EXPECT_EQ(F32ToF8E4M3(-0.0f), 0x80);
}

TEST(Fp8Test, BulkConversionsMatchTheScalarOnes) {
  std::vector<uint8_t> codes(256);
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
  std::vector<float> wide(256);
  ASSERT_TRUE(ConvertToF32(DType::kF8E4M3, codes.data(), wide.data(), 256).ok());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(Bits(wide[i]), Bits(F8E4M3ToF32(codes[i]))) << i;
  ASSERT_TRUE(ConvertToF32(DType::kF8E5M2, codes.data(), wide.data(), 256).ok());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(Bits(wide[i]), Bits(F8E5M2ToF32(codes[i]))) << i;
  const std::vector<float> values = {0.0f, 1.0f, -3.3f, 500.0f, 1e-4f, -0.01f};
  std::vector<uint8_t> narrow(values.size());
  ConvertF32ToF8E4M3(values.data(), narrow.data(), values.size());
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(narrow[i], F32ToF8E4M3(values[i])) << values[i];
}

}  // namespace
}  // namespace ringmoe::io
