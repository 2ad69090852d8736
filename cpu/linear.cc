#include "cpu/linear.h"

#include <cassert>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace ringmoe::cpu {
namespace {

dnnl::engine& CpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::memory::data_type ToDnnl(io::DType dtype) {
  return dtype == io::DType::kBF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

}  // namespace

void Linear(const float* x, int m, const Matrix& w, const float* bias, float* y) {
  assert(w.dtype == io::DType::kF32 || w.dtype == io::DType::kBF16);
  if (m == 0) return;
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::memory::dim rows = m, in = w.cols, out = w.rows;
  const dt compute = ToDnnl(w.dtype);

  // With bf16 weights the activations are rounded to bf16 too, so the matmul runs on AMX / AVX512-BF16.
  thread_local std::vector<uint16_t> x_bf16;
  const void* src = x;
  if (compute == dt::bf16) {
    x_bf16.resize(static_cast<size_t>(rows * in));
    io::ConvertF32ToBF16(x, x_bf16.data(), x_bf16.size());
    src = x_bf16.data();
  }

  dnnl::engine& engine = CpuEngine();
  dnnl::memory::desc src_md({rows, in}, compute, tag::ab);
  dnnl::memory::desc weights_md({in, out}, compute, tag::ba);  // [out, in] row-major is W^T in "ba"
  dnnl::memory::desc dst_md({rows, out}, dt::f32, tag::ab);
  dnnl::memory::desc bias_md({1, out}, dt::f32, tag::ab);
  dnnl::matmul::desc desc = bias != nullptr ? dnnl::matmul::desc(src_md, weights_md, bias_md, dst_md)
                                            : dnnl::matmul::desc(src_md, weights_md, dst_md);
  dnnl::matmul::primitive_desc primitive_desc(desc, engine);  // served from oneDNN's primitive cache
  dnnl::matmul matmul(primitive_desc);

  dnnl::memory src_memory(src_md, engine, const_cast<void*>(src));
  dnnl::memory weights_memory(weights_md, engine, const_cast<void*>(w.data));
  dnnl::memory dst_memory(dst_md, engine, y);
  dnnl::stream stream(engine);
  if (bias != nullptr) {
    dnnl::memory bias_memory(bias_md, engine, const_cast<float*>(bias));
    matmul.execute(stream, {{DNNL_ARG_SRC, src_memory},
                            {DNNL_ARG_WEIGHTS, weights_memory},
                            {DNNL_ARG_BIAS, bias_memory},
                            {DNNL_ARG_DST, dst_memory}});
  } else {
    matmul.execute(stream,
                   {{DNNL_ARG_SRC, src_memory}, {DNNL_ARG_WEIGHTS, weights_memory}, {DNNL_ARG_DST, dst_memory}});
  }
  stream.wait();
}

}  // namespace ringmoe::cpu
