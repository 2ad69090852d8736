#include "gpu/gpu_probe.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/attention_ops.h"
#include "gpu/blas.h"
#include "gpu/dense_ops.h"
#include "gpu/device_arena.h"
#include "gpu/expert_packing.h"
#include "gpu/host_memory.h"
#include "gpu/kv_cache_ops.h"
#include "gpu/stream.h"
#include "io/status_macros.h"

namespace ringmoe::gpu {
namespace {

constexpr int kCopyRepeats = 3;

// Best of kCopyRepeats timed runs of `enqueue` on `stream`, in milliseconds.
template <typename Enqueue>
absl::StatusOr<float> BestMilliseconds(const Stream& stream, Enqueue enqueue) {
  RINGMOE_ASSIGN_OR_RETURN(Event start, Event::Create(/*timing=*/true));
  RINGMOE_ASSIGN_OR_RETURN(Event end, Event::Create(/*timing=*/true));
  RINGMOE_RETURN_IF_ERROR(enqueue());  // Warm-up.
  float best = 0;
  for (int i = 0; i < kCopyRepeats; ++i) {
    RINGMOE_RETURN_IF_ERROR(start.Record(stream));
    RINGMOE_RETURN_IF_ERROR(enqueue());
    RINGMOE_RETURN_IF_ERROR(end.Record(stream));
    RINGMOE_RETURN_IF_ERROR(end.Synchronize());
    RINGMOE_ASSIGN_OR_RETURN(float ms, ElapsedMilliseconds(start, end));
    best = i == 0 ? ms : std::min(best, ms);
  }
  return best;
}

double GigabytesPerSecond(int64_t bytes, float ms) { return ms > 0 ? bytes / (ms * 1e6) : 0; }

}  // namespace

absl::StatusOr<std::vector<GemmRate>> MeasureExpertGemm(const GpuProbeOptions& options,
                                                        GemmStrategy strategy) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (options.hidden <= 0 || options.intermediate <= 0 || options.experts <= 0) {
    return absl::InvalidArgumentError("MeasureExpertGemm: non-positive shape");
  }
  int max_tokens_per_expert = 0;
  for (int t : options.tokens_per_expert) {
    if (t <= 0) return absl::InvalidArgumentError(absl::StrCat("MeasureExpertGemm: tokens_per_expert ", t));
    max_tokens_per_expert = std::max(max_tokens_per_expert, t);
  }
  const int h = options.hidden, e = options.experts;
  const int max_tokens = max_tokens_per_expert * e;  // top_k = 1: every token goes to one expert.
  DeviceArena arena(0);
  RINGMOE_ASSIGN_OR_RETURN(Stream stream, Stream::Create());
  RINGMOE_ASSIGN_OR_RETURN(BlasHandle blas, BlasHandle::Create(arena));
  MoeShape shape{h, options.intermediate, e, 1};
  RINGMOE_ASSIGN_OR_RETURN(MoeRunner runner, MoeRunner::Create(arena, shape, max_tokens, strategy));
  const PackedLayerIndex index = MakePackedLayerIndex(e, h, options.intermediate);
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer layer, arena.Allocate(index.total_bytes(), "probe expert weights"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer x, arena.Allocate(int64_t{2} * max_tokens * h, "probe activations"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer out, arena.Allocate(int64_t{4} * max_tokens * h, "probe output"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer ids, arena.Allocate(int64_t{4} * max_tokens, "probe expert ids"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer weights, arena.Allocate(int64_t{4} * max_tokens, "probe weights"));
  RINGMOE_RETURN_IF_ERROR(FillRandomBf16(layer.data(), index.total_bytes() / 2, 1, 0.02f, stream));
  RINGMOE_RETURN_IF_ERROR(FillRandomBf16(x.data(), int64_t{max_tokens} * h, 2, 1.0f, stream));
  RINGMOE_RETURN_IF_ERROR(FillDeviceBytes(out.data(), 0, out.size(), stream));
  std::vector<int32_t> host_ids(max_tokens);
  std::vector<float> host_weights(max_tokens, 1.0f);
  for (int t = 0; t < max_tokens; ++t) host_ids[t] = t % e;
  RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(ids.data(), host_ids.data(), ids.size(), stream));
  RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(weights.data(), host_weights.data(), weights.size(), stream));
  RINGMOE_RETURN_IF_ERROR(stream.Synchronize());

  RINGMOE_ASSIGN_OR_RETURN(Event start, Event::Create(/*timing=*/true));
  RINGMOE_ASSIGN_OR_RETURN(Event end, Event::Create(/*timing=*/true));
  std::vector<GemmRate> rates;
  for (int t : options.tokens_per_expert) {
    const int tokens = t * e;
    RINGMOE_RETURN_IF_ERROR(runner.SortByExpert(ids.as<int32_t>(), tokens, stream));
    auto pass = [&] {
      return runner.RunExperts(blas, x.data(), weights.as<float>(), layer.data(), index, out.as<float>(),
                               stream);
    };
    RINGMOE_RETURN_IF_ERROR(pass());  // Warm-up (cuBLAS picks and loads its kernels).
    // Enough passes for ~1 TFLOP of work, between 5 and 200, so the events see well past launch overhead.
    const double flops = 2.0 * tokens * 3.0 * h * options.intermediate;
    const int repeats = std::clamp(static_cast<int>(1e12 / flops), 5, 200);
    RINGMOE_RETURN_IF_ERROR(start.Record(stream));
    for (int r = 0; r < repeats; ++r) RINGMOE_RETURN_IF_ERROR(pass());
    RINGMOE_RETURN_IF_ERROR(end.Record(stream));
    RINGMOE_RETURN_IF_ERROR(end.Synchronize());
    RINGMOE_ASSIGN_OR_RETURN(float ms, ElapsedMilliseconds(start, end));
    rates.push_back({t, ms > 0 ? flops * repeats / (ms * 1e-3) / 1e12 : 0});
  }
  if (strategy == GemmStrategy::kGroupedBatched && runner.strategy() != strategy) {
    return absl::UnimplementedError(absl::StrCat("grouped GEMM unavailable: ", runner.fallback_reason()));
  }
  return rates;
}

absl::StatusOr<double> MeasurePrefillAttention(int chunks, int rows) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  constexpr int kHeads = 32, kKvHeads = 4, kHeadDim = 128;
  if (chunks < 1 || rows < 1) return absl::InvalidArgumentError("MeasurePrefillAttention: empty problem");
  DeviceArena arena(0);
  RINGMOE_ASSIGN_OR_RETURN(Stream stream, Stream::Create());
  const int64_t tokens = int64_t{chunks} * rows;
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer q, arena.Allocate(4 * tokens * kHeads * kHeadDim, "probe q"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer kv, arena.Allocate(8 * tokens * kKvHeads * kHeadDim, "probe k/v"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer out, arena.Allocate(4 * tokens * kHeads * kHeadDim, "probe out"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer offsets, arena.Allocate(4 * (chunks + 1), "probe offsets"));
  // Random values (bf16 noise widened to f32), so that the scores vary as real ones do.
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer noise, arena.Allocate(q.size() / 2, "probe noise"));
  for (auto [buffer, seed] : {std::pair{&q, 3}, {&kv, 4}}) {
    const int64_t count = buffer->size() / 4;
    RINGMOE_RETURN_IF_ERROR(FillRandomBf16(noise.data(), count, seed, 1.0f, stream));
    RINGMOE_RETURN_IF_ERROR(ConvertBf16ToF32(noise.data(), count, buffer->as<float>(), stream));
  }
  std::vector<int32_t> host_offsets(chunks + 1);
  for (int c = 0; c <= chunks; ++c) host_offsets[c] = c * rows;
  RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(offsets.data(), host_offsets.data(), 4 * (chunks + 1), stream));
  const float* k = kv.as<float>();
  const float* v = k + tokens * kKvHeads * kHeadDim;
  auto pass = [&] {
    return PrefillAttention(q.as<float>(), k, v, offsets.as<int32_t>(), chunks, rows, kHeads, kKvHeads,
                            kHeadDim, 0.088f, 0, out.as<float>(), stream);
  };
  RINGMOE_ASSIGN_OR_RETURN(float ms, BestMilliseconds(stream, pass));
  const double pairs = static_cast<double>(chunks) * rows * (rows + 1) / 2;
  return ms > 0 ? 4.0 * kHeads * kHeadDim * pairs / (ms * 1e-3) / 1e12 : 0.0;
}

absl::StatusOr<double> MeasurePagedAttention(int sequences, int tokens) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockTokens = 16;
  if (sequences < 1 || tokens < 1) return absl::InvalidArgumentError("MeasurePagedAttention: empty problem");
  DeviceArena arena(0);
  RINGMOE_ASSIGN_OR_RETURN(Stream stream, Stream::Create());
  const int blocks_per_sequence = (tokens + kBlockTokens - 1) / kBlockTokens;
  const int64_t blocks = int64_t{sequences} * blocks_per_sequence;
  const int64_t block_stride = int64_t{kBlockTokens} * kKvHeads * kHeadDim;
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer k, arena.Allocate(2 * blocks * block_stride, "probe K"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer v, arena.Allocate(2 * blocks * block_stride, "probe V"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer q, arena.Allocate(4LL * sequences * kHeads * kHeadDim, "probe q"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer out, arena.Allocate(q.size(), "probe out"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer tables, arena.Allocate(4 * blocks, "probe tables"));
  RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer rows, arena.Allocate(8LL * sequences, "probe rows"));
  RINGMOE_RETURN_IF_ERROR(FillRandomBf16(k.data(), blocks * block_stride, 5, 1.0f, stream));
  RINGMOE_RETURN_IF_ERROR(FillRandomBf16(v.data(), blocks * block_stride, 6, 1.0f, stream));
  RINGMOE_RETURN_IF_ERROR(FillRandomBf16(out.data(), q.size() / 2, 7, 1.0f, stream));
  RINGMOE_RETURN_IF_ERROR(ConvertBf16ToF32(out.data(), q.size() / 4, q.as<float>(), stream));
  // Blocks interleaved across sequences, as a cache filled by many admissions is.
  std::vector<int32_t> host_tables(blocks), host_rows(2LL * sequences);
  for (int s = 0; s < sequences; ++s) {
    for (int b = 0; b < blocks_per_sequence; ++b)
      host_tables[int64_t{s} * blocks_per_sequence + b] = b * sequences + s;
    host_rows[s] = s * blocks_per_sequence;
    host_rows[sequences + s] = tokens - 1;
  }
  RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(tables.data(), host_tables.data(), 4 * blocks, stream));
  RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(rows.data(), host_rows.data(), 8LL * sequences, stream));
  DevicePagedKv kv;
  kv.k_pool = k.as<uint16_t>();
  kv.v_pool = v.as<uint16_t>();
  kv.block_stride = block_stride;
  kv.block_tokens = kBlockTokens;
  kv.kv_heads = kKvHeads;
  kv.head_dim = kHeadDim;
  kv.tables = tables.as<int32_t>();
  kv.row_tables = rows.as<int32_t>();
  kv.positions = rows.as<int32_t>() + sequences;
  auto pass = [&] {
    return PagedAttentionRows(q.as<float>(), sequences, kHeads, kv, 0.088f, 0, out.as<float>(), stream);
  };
  RINGMOE_ASSIGN_OR_RETURN(float ms, BestMilliseconds(stream, pass));
  const double kv_bytes = 2.0 * 2.0 * sequences * tokens * kKvHeads * kHeadDim;
  return ms > 0 ? kv_bytes / (ms * 1e-3) / 1e9 : 0.0;
}

absl::StatusOr<GpuProbeResult> ProbeGpu(const GpuProbeOptions& options) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (options.copy_bytes <= 0) return absl::InvalidArgumentError("ProbeGpu: copy_bytes must be positive");
  GpuProbeResult result;
  RINGMOE_ASSIGN_OR_RETURN(DeviceProperties props, QueryDeviceProperties());
  result.name = props.name;
  result.memory_bytes = props.memory_bytes;
  result.sm_count = props.sm_count;

  const int64_t bytes = options.copy_bytes;
  {
    DeviceArena arena(0);
    RINGMOE_ASSIGN_OR_RETURN(Stream up, Stream::Create());
    RINGMOE_ASSIGN_OR_RETURN(Stream down, Stream::Create());
    RINGMOE_ASSIGN_OR_RETURN(PinnedHostBuffer host_a, PinnedHostBuffer::Allocate(bytes, "probe copy source"));
    RINGMOE_ASSIGN_OR_RETURN(PinnedHostBuffer host_b, PinnedHostBuffer::Allocate(bytes, "probe copy target"));
    RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer device_a, arena.Allocate(bytes, "probe copy target"));
    RINGMOE_ASSIGN_OR_RETURN(DeviceBuffer device_b, arena.Allocate(bytes, "probe copy source"));
    RINGMOE_ASSIGN_OR_RETURN(float h2d_ms, BestMilliseconds(up, [&] {
                               return CopyHostToDevice(device_a.data(), host_a.data(), bytes, up);
                             }));
    RINGMOE_ASSIGN_OR_RETURN(float d2h_ms, BestMilliseconds(up, [&] {
                               return CopyDeviceToHost(host_b.data(), device_b.data(), bytes, up);
                             }));
    // Both directions at once: the second stream joins the first at the start and rejoins it at the end.
    RINGMOE_ASSIGN_OR_RETURN(Event fork, Event::Create());
    RINGMOE_ASSIGN_OR_RETURN(Event join, Event::Create());
    RINGMOE_ASSIGN_OR_RETURN(
        float both_ms, BestMilliseconds(up, [&]() -> absl::Status {
          RINGMOE_RETURN_IF_ERROR(fork.Record(up));
          RINGMOE_RETURN_IF_ERROR(down.WaitFor(fork));
          RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(device_a.data(), host_a.data(), bytes, up));
          RINGMOE_RETURN_IF_ERROR(CopyDeviceToHost(host_b.data(), device_b.data(), bytes, down));
          RINGMOE_RETURN_IF_ERROR(join.Record(down));
          return up.WaitFor(join);
        }));
    result.h2d_gbps = GigabytesPerSecond(bytes, h2d_ms);
    result.d2h_gbps = GigabytesPerSecond(bytes, d2h_ms);
    result.bidirectional_gbps = GigabytesPerSecond(2 * bytes, both_ms);
  }

  RINGMOE_ASSIGN_OR_RETURN(std::vector<GemmRate> loop, MeasureExpertGemm(options, GemmStrategy::kLoopGemmEx));
  absl::StatusOr<std::vector<GemmRate>> grouped = MeasureExpertGemm(options, GemmStrategy::kGroupedBatched);
  RINGMOE_ASSIGN_OR_RETURN(result.prefill_attention_tflops, MeasurePrefillAttention());
  RINGMOE_ASSIGN_OR_RETURN(result.paged_attention_gbps, MeasurePagedAttention());
  result.grouped_gemm_bf16 = loop;
  if (grouped.ok()) {
    for (size_t i = 0; i < loop.size() && i < grouped->size(); ++i) {
      result.grouped_gemm_bf16[i].tflops = std::max(loop[i].tflops, (*grouped)[i].tflops);
    }
  }
  return result;
}

}  // namespace ringmoe::gpu
