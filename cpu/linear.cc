#include "cpu/linear.h"

#include <algorithm>
#include <cassert>
#include <vector>

#include "cpu/thread_pool.h"
#include "oneapi/dnnl/dnnl.hpp"

#include <omp.h>

namespace ringmoe::cpu {
namespace {

dnnl::engine& CpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::memory::data_type ToDnnl(io::DType dtype) {
  return dtype == io::DType::kBF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

// y[:, first .. first + count) for rows first .. first + count - 1 of w. `src` is x in the compute type.
void LinearSlice(const void* src, int m, const Matrix& w, const float* bias, float* y, int first, int count) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::memory::dim rows = m, in = w.cols, out = count;
  const dt compute = ToDnnl(w.dtype);
  const size_t element = w.dtype == io::DType::kBF16 ? 2 : 4;
  dnnl::engine& engine = CpuEngine();
  dnnl::memory::desc src_md({rows, in}, compute, tag::ab);
  dnnl::memory::desc weights_md({in, out}, compute, tag::ba);  // [out, in] row-major is W^T in "ba"
  dnnl::memory::desc dst_md({rows, out}, dt::f32, dnnl::memory::dims{w.rows, 1});  // a column slice of y
  dnnl::memory::desc bias_md({1, out}, dt::f32, tag::ab);
  // Served from oneDNN's primitive cache after the first call with these shapes. oneDNN 3 (Ubuntu 24.04)
  // dropped the op descriptors of oneDNN 2 (Debian 12).
#if DNNL_VERSION_MAJOR >= 3
  dnnl::matmul::primitive_desc primitive_desc =
      bias != nullptr ? dnnl::matmul::primitive_desc(engine, src_md, weights_md, bias_md, dst_md)
                      : dnnl::matmul::primitive_desc(engine, src_md, weights_md, dst_md);
#else
  dnnl::matmul::desc desc = bias != nullptr ? dnnl::matmul::desc(src_md, weights_md, bias_md, dst_md)
                                            : dnnl::matmul::desc(src_md, weights_md, dst_md);
  dnnl::matmul::primitive_desc primitive_desc(desc, engine);
#endif
  dnnl::matmul matmul(primitive_desc);

  const uint8_t* weights = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(first) * w.cols * element;
  dnnl::memory src_memory(src_md, engine, const_cast<void*>(src));
  dnnl::memory weights_memory(weights_md, engine, const_cast<uint8_t*>(weights));
  dnnl::memory dst_memory(dst_md, engine, y + first);
  dnnl::stream stream(engine);
  if (bias != nullptr) {
    dnnl::memory bias_memory(bias_md, engine, const_cast<float*>(bias + first));
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

// Below this many multiply-adds a product is not worth splitting across threads.
constexpr int64_t kMinParallelWork = int64_t{1} << 20;

}  // namespace

void Linear(const float* x, int m, const Matrix& w, const float* bias, float* y, CpuWorkers* workers) {
  assert(w.dtype == io::DType::kF32 || w.dtype == io::DType::kBF16);
  if (m == 0) return;
  thread_local bool single_threaded_dnnl = (omp_set_num_threads(1), true);  // see the header
  (void)single_threaded_dnnl;
  // With bf16 weights the activations are rounded to bf16 too, so the matmul runs on AMX / AVX512-BF16.
  thread_local std::vector<uint16_t> x_bf16;
  const void* src = x;
  if (w.dtype == io::DType::kBF16) {
    x_bf16.resize(static_cast<size_t>(m) * w.cols);
    io::ConvertF32ToBF16(x, x_bf16.data(), x_bf16.size());
    src = x_bf16.data();
  }

  const int64_t work = static_cast<int64_t>(m) * w.rows * w.cols;
  const int threads = workers != nullptr ? workers->threads() : 1;
  if (threads <= 1 || work < kMinParallelWork) {
    LinearSlice(src, m, w, bias, y, 0, w.rows);
    return;
  }
  // Slices of 64 output features at least, about two per thread for balance.
  const int64_t slice = std::max<int64_t>(64, (w.rows + 2 * threads - 1) / (2 * threads) + 63) / 64 * 64;
  const int64_t slices = (w.rows + slice - 1) / slice;
  workers->ParallelFor(slices, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int first = static_cast<int>(i * slice);
      LinearSlice(src, m, w, bias, y, first, static_cast<int>(std::min<int64_t>(slice, w.rows - first)));
    }
  });
}

}  // namespace ringmoe::cpu
