#include "cpu/cpu_features.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace ringmoe::cpu {
namespace {

constexpr char kIsaVariable[] = "RINGMOE_CPU_ISA";

CpuIsa DetectedCpuIsa() {
  // libgcc's feature bits include the OS check (XCR0) for the zmm state.
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  return avx512 ? CpuIsa::kAvx512 : CpuIsa::kAvx2;
}

// RINGMOE_CPU_ISA as parsed: no cap when unset, empty or invalid (the status says which).
struct IsaCap {
  bool set = false;
  CpuIsa isa = CpuIsa::kAvx512;
  absl::Status status;
};

const IsaCap& EnvironmentIsaCap() {
  static const IsaCap cap = [] {
    IsaCap parsed;
    const char* value = std::getenv(kIsaVariable);
    if (value == nullptr || *value == '\0') return parsed;
    absl::StatusOr<CpuIsa> isa = ParseCpuIsa(value);
    if (!isa.ok()) {
      parsed.status = absl::InvalidArgumentError(absl::StrCat(kIsaVariable, ": ", isa.status().message()));
      return parsed;
    }
    parsed.set = true;
    parsed.isa = *isa;
    return parsed;
  }();
  return cap;
}

// oneDNN's cpu_isa values are bit masks, each including the bits of the sets it extends.
bool OneDnnIsaIncludes(dnnl::cpu_isa wanted) {
  const unsigned effective = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  return (effective & static_cast<unsigned>(wanted)) == static_cast<unsigned>(wanted);
}

bool ProbeOneDnnBf16Matmul() {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    // Linear's layouts: x row-major, W [out, in] row-major ("ba"), f32 output.
    dnnl::memory::desc src_md({16, 64}, dt::bf16, tag::ab);
    dnnl::memory::desc weights_md({64, 64}, dt::bf16, tag::ba);
    dnnl::memory::desc dst_md({16, 64}, dt::f32, tag::ab);
#if DNNL_VERSION_MAJOR >= 3
    dnnl::matmul::primitive_desc primitive_desc(engine, src_md, weights_md, dst_md);
#else
    dnnl::matmul::primitive_desc primitive_desc(dnnl::matmul::desc(src_md, weights_md, dst_md), engine);
#endif
    return std::string(primitive_desc.impl_info_str()).find("ref") == std::string::npos;
  } catch (const dnnl::error&) {
    return false;  // no implementation at all under this ISA
  }
}

}  // namespace

absl::StatusOr<CpuIsa> ParseCpuIsa(std::string_view name) {
  if (name == "avx2") return CpuIsa::kAvx2;
  if (name == "avx512") return CpuIsa::kAvx512;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown instruction set \"", std::string(name), "\" (want avx2 or avx512)"));
}

CpuIsa KernelIsa() {
  static const CpuIsa isa = [] {
    const CpuIsa detected = DetectedCpuIsa();
    const IsaCap& cap = EnvironmentIsaCap();
    return cap.set && cap.isa < detected ? cap.isa : detected;
  }();
  return isa;
}

absl::Status CheckCpuIsaEnvironment() { return EnvironmentIsaCap().status; }

bool CpuHasNativeBf16() {
  // The effective ISA is the CPU's, capped by ONEDNN_MAX_CPU_ISA; AMX's mask includes AVX512-BF16's.
  static const bool native = OneDnnIsaIncludes(dnnl::cpu_isa::avx512_core_bf16);
  return native;
}

bool OneDnnHasAmxBf16() {
  static const bool amx = OneDnnIsaIncludes(dnnl::cpu_isa::avx512_core_amx);
  return amx;
}

bool OneDnnHasBf16Matmul() {
  static const bool available = ProbeOneDnnBf16Matmul();
  return available;
}

}  // namespace ringmoe::cpu
