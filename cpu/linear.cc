#include "cpu/linear.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/thread_pool.h"
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

// y[r, 0 .. count) = src[r, :] * weights^T (+ bias[0 .. count)) for r < m, y's rows y_stride floats apart.
// weights: count rows of `in` elements, row-major, or (in_major_stride > 0) `in` rows of count elements
// in_major_stride apart; src and weights in the `compute` type.
void OneDnnMatmul(const void* src, dnnl::memory::data_type compute, int m, const void* weights, int in,
                  int count, const float* bias, float* y, int64_t y_stride, int64_t in_major_stride = 0) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::memory::dim rows = m, out = count;
  dnnl::engine& engine = CpuEngine();
  dnnl::memory::desc src_md({rows, in}, compute, tag::ab);
  // [out, in] row-major is W^T in "ba"; W^T itself, [in, out] with a row stride, by its strides.
  dnnl::memory::desc weights_md =
      in_major_stride > 0 ? dnnl::memory::desc({in, out}, compute, dnnl::memory::dims{in_major_stride, 1})
                          : dnnl::memory::desc({in, out}, compute, tag::ba);
  dnnl::memory::desc dst_md({rows, out}, dt::f32, dnnl::memory::dims{y_stride, 1});  // a column slice of y
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

  dnnl::memory src_memory(src_md, engine, const_cast<void*>(src));
  dnnl::memory weights_memory(weights_md, engine, const_cast<void*>(weights));
  dnnl::memory dst_memory(dst_md, engine, y);
  dnnl::stream stream(engine);
  if (bias != nullptr) {
    dnnl::memory bias_memory(bias_md, engine, const_cast<float*>(bias));
    matmul.execute(stream, {{DNNL_ARG_SRC, src_memory},
                            {DNNL_ARG_WEIGHTS, weights_memory},
                            {DNNL_ARG_BIAS, bias_memory},
                            {DNNL_ARG_DST, dst_memory}});
  } else {
    matmul.execute(
        stream, {{DNNL_ARG_SRC, src_memory}, {DNNL_ARG_WEIGHTS, weights_memory}, {DNNL_ARG_DST, dst_memory}});
  }
  stream.wait();
}

// Widened weights per block: small enough to stay in L2 between the conversion and the matmul.
constexpr int64_t kWidenedBlockBytes = int64_t{1} << 20;

// y[:, first .. first + count) for rows first .. first + count - 1 of w. `src` is x in the compute type: w's
// own, or f32 (holding bf16-rounded values) when `widen` runs a BF16 w as f32.
void LinearSlice(const void* src, int m, const Matrix& w, const float* bias, float* y, int first, int count,
                 bool widen) {
  const size_t element = w.dtype == io::DType::kBF16 ? 2 : 4;
  const bool in_major = w.in_major_stride > 0;
  // Out features first .. first + count - 1: rows of W, or the columns of W^T from `first` on.
  const uint8_t* weights =
      static_cast<const uint8_t*>(w.data) + static_cast<size_t>(first) * (in_major ? 1 : w.cols) * element;
  const float* slice_bias = bias != nullptr ? bias + first : nullptr;
  if (!widen) {
    OneDnnMatmul(src, ToDnnl(w.dtype), m, weights, w.cols, count, slice_bias, y + first, w.rows,
                 w.in_major_stride);
    return;
  }
  if (in_major) {
    // W^T's columns are not contiguous: the slice is widened whole, [in, count].
    const auto* bf16 = reinterpret_cast<const uint16_t*>(weights);
    thread_local std::vector<float> widened_t;
    widened_t.resize(static_cast<size_t>(w.cols) * count);
    for (int i = 0; i < w.cols; ++i) {
      for (int j = 0; j < count; ++j)
        widened_t[static_cast<size_t>(i) * count + j] = io::BF16ToF32(bf16[i * w.in_major_stride + j]);
    }
    OneDnnMatmul(src, dnnl::memory::data_type::f32, m, widened_t.data(), w.cols, count, slice_bias, y + first,
                 w.rows, count);
    return;
  }
  const auto* bf16 = reinterpret_cast<const uint16_t*>(weights);
  const int block_rows =
      static_cast<int>(std::clamp<int64_t>(kWidenedBlockBytes / (int64_t{4} * w.cols), 1, count));
  thread_local std::vector<float> widened;
  widened.resize(static_cast<size_t>(block_rows) * w.cols);
  for (int begin = 0; begin < count; begin += block_rows) {
    const int rows = std::min(block_rows, count - begin);
    const uint16_t* block = bf16 + static_cast<size_t>(begin) * w.cols;
    const size_t elements = static_cast<size_t>(rows) * w.cols;
    for (size_t i = 0; i < elements; ++i) widened[i] = io::BF16ToF32(block[i]);
    OneDnnMatmul(src, dnnl::memory::data_type::f32, m, widened.data(), w.cols, rows,
                 slice_bias != nullptr ? slice_bias + begin : nullptr, y + first + begin, w.rows);
  }
}

std::atomic<internal::Bf16LinearPath> forced_bf16_path{internal::Bf16LinearPath::kAuto};

// Below this many multiply-adds a product is not worth splitting across threads.
constexpr int64_t kMinParallelWork = int64_t{1} << 20;

}  // namespace

void Linear(const float* x, int m, const Matrix& w, const float* bias, float* y, CpuWorkers* workers) {
  assert(w.dtype == io::DType::kF32 || w.dtype == io::DType::kBF16);
  if (m == 0) return;
  thread_local bool single_threaded_dnnl = (omp_set_num_threads(1), true);  // see the header
  (void)single_threaded_dnnl;
  // With bf16 weights the activations are rounded to bf16 too, so the matmul runs on AMX / AVX512-BF16; the
  // widened path keeps them as f32 holding the rounded values, so both compute the same products.
  const bool bf16 = w.dtype == io::DType::kBF16;
  const bool widen =
      bf16 && (forced_bf16_path.load() == internal::Bf16LinearPath::kWidenToF32 || !OneDnnHasBf16Matmul());
  thread_local std::vector<uint16_t> x_bf16;
  thread_local std::vector<float> x_rounded;
  const void* src = x;
  const size_t x_elements = static_cast<size_t>(m) * w.cols;
  if (widen) {
    x_rounded.resize(x_elements);
    for (size_t i = 0; i < x_elements; ++i) x_rounded[i] = io::BF16ToF32(io::F32ToBF16(x[i]));
    src = x_rounded.data();
  } else if (bf16) {
    x_bf16.resize(x_elements);
    io::ConvertF32ToBF16(x, x_bf16.data(), x_bf16.size());
    src = x_bf16.data();
  }

  const int64_t work = static_cast<int64_t>(m) * w.rows * w.cols;
  const int threads = workers != nullptr ? workers->threads() : 1;
  if (threads <= 1 || work < kMinParallelWork) {
    LinearSlice(src, m, w, bias, y, 0, w.rows, widen);
    return;
  }
  // Slices of 64 output features at least, about two per thread for balance.
  const int64_t slice = std::max<int64_t>(64, (w.rows + 2 * threads - 1) / (2 * threads) + 63) / 64 * 64;
  const int64_t slices = (w.rows + slice - 1) / slice;
  workers->ParallelFor(slices, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int first = static_cast<int>(i * slice);
      LinearSlice(src, m, w, bias, y, first, static_cast<int>(std::min<int64_t>(slice, w.rows - first)),
                  widen);
    }
  });
}

namespace internal {

void SetBf16LinearPathForTesting(Bf16LinearPath path) { forced_bf16_path.store(path); }

}  // namespace internal
}  // namespace ringmoe::cpu
