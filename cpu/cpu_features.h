// What the CPU side may use on this machine. The library is compiled for x86-64-v3 (AVX2, FMA) so that it
// runs on every such CPU; wider code is chosen at run time: our own kernels by KernelIsa(), oneDNN by itself
// within its own limit (the environment variable ONEDNN_MAX_CPU_ISA, which everything here that asks about
// oneDNN honours).
//
// Testing the AVX2 paths on an AVX-512 machine:
//   ONEDNN_MAX_CPU_ISA=AVX2 RINGMOE_CPU_ISA=avx2 ./build/tests/cpu_ops_test
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::cpu {

// Instruction sets our hand-written kernels have a version for, narrowest first.
enum class CpuIsa { kAvx2, kAvx512 };

// "avx2" or "avx512"; InvalidArgument for anything else.
absl::StatusOr<CpuIsa> ParseCpuIsa(std::string_view name);

// The widest set our kernels use: AVX-512 (F, BW and VL, with the OS saving the zmm state) where the CPU has
// it, else AVX2; capped by the environment variable RINGMOE_CPU_ISA=avx2|avx512 when set (read once, at the
// first call). An unknown value caps nothing; CheckCpuIsaEnvironment reports it.
CpuIsa KernelIsa();

// InvalidArgument when RINGMOE_CPU_ISA is set to something ParseCpuIsa rejects; OK when unset or empty.
absl::Status CheckCpuIsaEnvironment();

// Whether oneDNN runs bf16 matmuls on bf16 instructions (AVX512-BF16 or AMX-BF16) here: the CPU has them and
// ONEDNN_MAX_CPU_ISA allows them. Without, bf16 weights are slower than f32 ones (see Linear).
bool CpuHasNativeBf16();

// Whether oneDNN has an optimised bf16 x bf16 matmul here, native or emulated on AVX-512 (oneDNN 2 has none
// below AVX-512; its reference kernel does not count). Probed once by building a small one.
bool OneDnnHasBf16Matmul();

// Whether oneDNN may use AMX-BF16 tiles here (the CPU has them and ONEDNN_MAX_CPU_ISA allows them): bf16
// matmuls then run several times faster than f32 ones (cpu/mla_attention.h's split-bf16 matmuls).
bool OneDnnHasAmxBf16();

}  // namespace ringmoe::cpu
