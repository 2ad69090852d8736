// CPU side of the probe: topology (hwloc), DRAM read bandwidth (TBB threads), the engine's attention kernel
// (decode and prefill continuation) on the engine's pool, oneDNN matmul rates, bf16 instruction support.
#include <cpuid.h>
#include <hwloc.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cpu/attention.h"
#include "cpu/mla_attention.h"
#include "cpu/thread_pool.h"
#include "io/dtype.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "planner/probe/probe.h"

namespace ringmoe::planner {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string CpuModelFromProc() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "";
}

// A buffer the probe owns, aligned for vector loads.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t bytes)
      : size(bytes), data(static_cast<char*>(std::aligned_alloc(64, RoundUp(bytes)))) {}
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  static size_t RoundUp(size_t bytes) { return (bytes + 63) / 64 * 64; }
  size_t size;
  char* data;
};

inline uint16_t FloatToBf16(float value) {
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(value) >> 16);
}

}  // namespace

Topology ProbeTopology() {
  Topology topology;
  hwloc_topology_t handle;
  if (hwloc_topology_init(&handle) != 0) return topology;
  if (hwloc_topology_load(handle) != 0) {
    hwloc_topology_destroy(handle);
    return topology;
  }
  topology.packages = std::max(1, hwloc_get_nbobjs_by_type(handle, HWLOC_OBJ_PACKAGE));
  topology.cores = std::max(1, hwloc_get_nbobjs_by_type(handle, HWLOC_OBJ_CORE));
  topology.threads = std::max(1, hwloc_get_nbobjs_by_type(handle, HWLOC_OBJ_PU));
  int nodes = hwloc_get_nbobjs_by_type(handle, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t node = hwloc_get_obj_by_type(handle, HWLOC_OBJ_NUMANODE, i);
    NumaNode numa;
    numa.os_index = static_cast<int>(node->os_index);
    numa.memory_bytes = static_cast<int64_t>(node->attr->numanode.local_memory);
    numa.cores = hwloc_get_nbobjs_inside_cpuset_by_type(handle, node->cpuset, HWLOC_OBJ_CORE);
    topology.memory_bytes += numa.memory_bytes;
    topology.numa_nodes.push_back(numa);
  }
  if (topology.memory_bytes == 0) {
    topology.memory_bytes = static_cast<int64_t>(hwloc_get_root_obj(handle)->total_memory);
  }
  if (hwloc_obj_t package = hwloc_get_obj_by_type(handle, HWLOC_OBJ_PACKAGE, 0); package != nullptr) {
    if (const char* model = hwloc_obj_get_info_by_name(package, "CPUModel")) topology.cpu_model = model;
  }
  hwloc_topology_destroy(handle);
  if (topology.cpu_model.empty()) topology.cpu_model = CpuModelFromProc();
  // Virtual machines may hot-plug memory outside the NUMA nodes hwloc lists; the kernel's total is the truth.
  int64_t pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) topology.memory_bytes = std::max(topology.memory_bytes, pages * page_size);
  return topology;
}

void DetectBf16Support(bool* avx512_bf16, bool* amx_bf16) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  *avx512_bf16 = false;
  *amx_bf16 = false;
  // oneDNN's cpu_isa values are bit masks, each including the bits of the sets it extends.
  const unsigned allowed = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto allows = [allowed](dnnl::cpu_isa isa) {
    return (allowed & static_cast<unsigned>(isa)) == static_cast<unsigned>(isa);
  };
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) {
    *avx512_bf16 = ((eax >> 5) & 1) && allows(dnnl::cpu_isa::avx512_core_bf16);
  }
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
    *amx_bf16 = ((edx >> 22) & 1) && allows(dnnl::cpu_isa::avx512_core_amx);
  }
}

double MeasureDramReadGbps(int threads, int64_t bytes, int repeats) {
  const size_t words = static_cast<size_t>(bytes) / sizeof(uint64_t);
  AlignedBuffer buffer(words * sizeof(uint64_t));
  auto* data = reinterpret_cast<uint64_t*>(buffer.data);
  tbb::task_arena arena(threads);
  const size_t grain = 1 << 16;
  // First touch from the same threads, so pages land near the readers.
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<size_t>(0, words, grain),
                      [&](const tbb::blocked_range<size_t>& range) {
                        for (size_t i = range.begin(); i < range.end(); ++i) data[i] = i;
                      });
  });
  double best = 0;
  std::atomic<uint64_t> sink{0};
  for (int repeat = 0; repeat < repeats; ++repeat) {
    Clock::time_point start = Clock::now();
    uint64_t total = arena.execute([&] {
      return tbb::parallel_reduce(
          tbb::blocked_range<size_t>(0, words, grain), uint64_t{0},
          [&](const tbb::blocked_range<size_t>& range, uint64_t acc) {
            uint64_t a = 0, b = 0, c = 0, d = 0;
            size_t i = range.begin();
            for (; i + 4 <= range.end(); i += 4) {
              a += data[i];
              b ^= data[i + 1];
              c += data[i + 2];
              d ^= data[i + 3];
            }
            for (; i < range.end(); ++i) a += data[i];
            return acc + a + b + c + d;
          },
          [](uint64_t x, uint64_t y) { return x + y; });
    });
    double seconds = SecondsSince(start);
    sink += total;
    if (seconds > 0) best = std::max(best, words * sizeof(uint64_t) / seconds / 1e9);
  }
  return best;
}

namespace {

// Decode attention (one query row per sequence over its whole context) with the engine's own kernel
// (cpu::PagedAttention) on `workers`, over a bf16 paged cache of `kv_heads` heads for `heads` query heads
// (blocks of 16 tokens in a scattered order, as the block allocator hands them out), one task per sequence
// as runtime/engine/attention_step.cc runs decodes. Returns passes per second over `sequences` x kContext
// tokens.
struct DecodeShape {
  int heads = 32, kv_heads = 4;
};
constexpr int kHeadDim = 128, kBlockTokens = 16, kContext = 2048;

struct PagedCache {
  std::vector<uint16_t> k_pool, v_pool;
  std::vector<uint8_t> k_fp8, v_fp8;      // AddFp8: an e4m3 cache of the same layout
  std::vector<float> k_scales, v_scales;  // one per (token, kv head) row of the e4m3 cache
  std::vector<int32_t> block_ids;
  int64_t block_elements = 0;
  int kv_heads = 0, blocks_per_sequence = 0;
  cpu::PagedKvView view_of(int sequence, int tokens, bool fp8 = false) const {
    cpu::PagedKvView view;
    view.dtype = fp8 ? io::DType::kF8E4M3 : io::DType::kBF16;
    view.k_pool = fp8 ? static_cast<const void*>(k_fp8.data()) : k_pool.data();
    view.v_pool = fp8 ? static_cast<const void*>(v_fp8.data()) : v_pool.data();
    if (fp8) {
      view.k_scales = k_scales.data();
      view.v_scales = v_scales.data();
    }
    view.block_stride = block_elements;
    view.block_tokens = kBlockTokens;
    view.kv_heads = kv_heads;
    view.head_dim = kHeadDim;
    view.block_ids = block_ids.data() + int64_t{sequence} * blocks_per_sequence;
    view.num_tokens = tokens;
    return view;
  }
};

PagedCache MakePagedCache(cpu::CpuWorkers& workers, int sequences, int kv_heads) {
  PagedCache cache;
  cache.kv_heads = kv_heads;
  cache.block_elements = int64_t{kBlockTokens} * kv_heads * kHeadDim;
  cache.blocks_per_sequence = kContext / kBlockTokens;
  const int64_t total_blocks = int64_t{sequences} * cache.blocks_per_sequence;
  cache.k_pool.resize(total_blocks * cache.block_elements);
  cache.v_pool.resize(total_blocks * cache.block_elements);
  workers.ParallelFor(static_cast<int64_t>(cache.k_pool.size()), int64_t{1} << 16,
                      [&](int64_t begin, int64_t end) {
                        for (int64_t i = begin; i < end; ++i) {
                          cache.k_pool[i] = FloatToBf16(static_cast<float>((i * 7919) % 97) / 97.0f - 0.5f);
                          cache.v_pool[i] = FloatToBf16(static_cast<float>((i * 104729) % 89) / 89.0f - 0.5f);
                        }
                      });
  cache.block_ids.resize(total_blocks);
  for (int64_t b = 0; b < total_blocks; ++b)
    cache.block_ids[b] = static_cast<int32_t>((b * 7919) % total_blocks);
  if (std::gcd(int64_t{7919}, total_blocks) != 1)
    std::iota(cache.block_ids.begin(), cache.block_ids.end(), 0);
  return cache;
}

// The e4m3 cache beside the bf16 one (finite codes of both signs, scales of a few units in the last place).
void AddFp8(cpu::CpuWorkers& workers, PagedCache* cache) {
  cache->k_fp8.resize(cache->k_pool.size());
  cache->v_fp8.resize(cache->v_pool.size());
  workers.ParallelFor(static_cast<int64_t>(cache->k_fp8.size()), int64_t{1} << 16,
                      [&](int64_t begin, int64_t end) {
                        for (int64_t i = begin; i < end; ++i) {
                          cache->k_fp8[i] = static_cast<uint8_t>((i * 7919) % 0x77 | ((i & 1) << 7));
                          cache->v_fp8[i] = static_cast<uint8_t>((i * 104729) % 0x77 | ((i & 2) << 6));
                        }
                      });
  cache->k_scales.assign(cache->k_pool.size() / kHeadDim, 1.0f / 256);
  cache->v_scales.assign(cache->v_pool.size() / kHeadDim, 1.0f / 256);
}

double DecodePassesPerSecond(cpu::CpuWorkers& workers, const PagedCache& cache, int sequences, int heads,
                             int repeats, bool fp8 = false) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  std::vector<float> q(static_cast<size_t>(sequences) * heads * kHeadDim, 0.01f);
  std::vector<float> out(q.size());
  double best = 0;
  for (int repeat = 0; repeat < repeats + 1; ++repeat) {  // The first pass warms pages and caches.
    Clock::time_point start = Clock::now();
    workers.ParallelFor(sequences, 1, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        const int64_t row = s * heads * kHeadDim;
        cpu::PagedAttention(q.data() + row, 1, heads, cache.view_of(static_cast<int>(s), kContext, fp8),
                            scale, 0, out.data() + row);
      }
    });
    double seconds = SecondsSince(start);
    if (repeat > 0 && seconds > 0) best = std::max(best, 1.0 / seconds);
  }
  return best;
}

// MLA's absorbed decode at DeepSeek-V3's shape (cpu::PagedMlaAttention, the engine's matmul path for a bf16
// latent cache): one decode query of 128 heads per sequence over 512 cached rows of 576 bf16 values, two
// sequences a thread. FLOP-bound (about 240 FLOPs per cached byte), so a small cache suffices.
double MlaDecodeGflops(cpu::CpuWorkers& workers, int threads, int repeats) {
  constexpr int kMlaHeads = 128, kLatent = 512, kRow = kLatent + 64, kMlaContext = 512, kBlock = 16;
  const int sequences = 2 * std::max(1, threads);
  const int blocks_per_sequence = kMlaContext / kBlock;
  std::vector<uint16_t> pool(static_cast<size_t>(sequences) * kMlaContext * kRow);
  for (size_t i = 0; i < pool.size(); ++i)
    pool[i] = io::F32ToBF16(static_cast<float>((i * 7919) % 1000) / 1000 - 0.5f);
  std::vector<int32_t> block_ids(static_cast<size_t>(sequences) * blocks_per_sequence);
  for (size_t i = 0; i < block_ids.size(); ++i) block_ids[i] = static_cast<int32_t>(i);
  std::vector<float> q(static_cast<size_t>(sequences) * kMlaHeads * kRow, 0.01f);
  std::vector<float> out(static_cast<size_t>(sequences) * kMlaHeads * kLatent);
  double best = 0;
  for (int repeat = 0; repeat < repeats + 1; ++repeat) {  // the first pass warms oneDNN's kernels
    Clock::time_point start = Clock::now();
    workers.ParallelFor(sequences, 1, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        cpu::PagedKvView view;
        view.dtype = io::DType::kBF16;
        view.k_pool = pool.data();
        view.block_stride = int64_t{kBlock} * kRow;
        view.block_tokens = kBlock;
        view.kv_heads = 1;
        view.head_dim = kRow;
        view.block_ids = block_ids.data() + s * blocks_per_sequence;
        view.num_tokens = kMlaContext;
        cpu::PagedMlaAttention(q.data() + s * kMlaHeads * kRow, 1, kMlaHeads, 0, kMlaHeads, view, kLatent,
                               0.1f, out.data() + s * kMlaHeads * kLatent);
      }
    });
    const double seconds = SecondsSince(start);
    if (repeat > 0 && seconds > 0) best = std::max(best, 1.0 / seconds);
  }
  return 2.0 * sequences * kMlaContext * kMlaHeads * (kRow + kLatent) * best / 1e9;
}

CpuAttentionRate MeasureEngineAttention(int threads, int64_t kv_bytes, int repeats) {
  // Two decode shapes: 4 query heads per KV head (Mixtral's) reads bytes faster than it computes, so it gives
  // the byte rate; 8 (Qwen3-30B-A3B's) computes more than it reads, so it gives the FLOP rate. The model
  // charges a step the slower of its bytes and its FLOPs at these two rates.
  constexpr DecodeShape kBytesShape{32, 8}, kFlopsShape{32, 4};
  constexpr int kHeads = kFlopsShape.heads, kKvHeads = kFlopsShape.kv_heads;
  cpu::CpuWorkers workers(threads);
  CpuAttentionRate rate;
  {
    const int64_t bytes_per_sequence = 2LL * kContext * kBytesShape.kv_heads * kHeadDim * sizeof(uint16_t);
    const int sequences = static_cast<int>(std::max<int64_t>(threads, kv_bytes / bytes_per_sequence));
    PagedCache cache = MakePagedCache(workers, sequences, kBytesShape.kv_heads);
    const double best = DecodePassesPerSecond(workers, cache, sequences, kBytesShape.heads, repeats);
    rate.kv_gbps = static_cast<double>(sequences) * bytes_per_sequence * best / 1e9;
    rate.bytes_heads = kBytesShape.heads;
    rate.bytes_kv_heads = kBytesShape.kv_heads;
  }
  const int64_t bytes_per_sequence = 2LL * kContext * kKvHeads * kHeadDim * sizeof(uint16_t);
  const int sequences = static_cast<int>(std::max<int64_t>(threads, kv_bytes / bytes_per_sequence));
  PagedCache cache = MakePagedCache(workers, sequences, kKvHeads);
  const double best = DecodePassesPerSecond(workers, cache, sequences, kHeads, repeats);
  rate.heads = kHeads;
  rate.kv_heads = kKvHeads;
  rate.head_dim = kHeadDim;
  rate.context = kContext;
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  rate.gflops = 4.0 * sequences * kContext * kHeads * kHeadDim * best / 1e9;
  {
    // The same decodes over an e4m3 cache (--kv-dtype fp8): half the bytes, more work per value.
    PagedCache fp8_cache = MakePagedCache(workers, sequences, kKvHeads);
    AddFp8(workers, &fp8_cache);
    fp8_cache.k_pool = {};
    fp8_cache.v_pool = {};
    const double fp8_best = DecodePassesPerSecond(workers, fp8_cache, sequences, kHeads, repeats, true);
    rate.fp8_gflops = 4.0 * sequences * kContext * kHeads * kHeadDim * fp8_best / 1e9;
  }

  // Prefill continuing a cached prefix: 256 new rows after 256 cached ones, split per kv head as the engine
  // splits long chunks (FLOP-bound: every K/V row serves many query rows).
  constexpr int kPrefix = 256, kNew = 256;
  const int prefill_sequences = std::max(1, std::min(sequences, 2 * threads / kKvHeads + 1));
  std::vector<float> prefill_q(static_cast<size_t>(prefill_sequences) * kNew * kHeads * kHeadDim, 0.01f);
  std::vector<float> prefill_out(prefill_q.size());
  double prefill_best = 0;
  for (int repeat = 0; repeat < repeats + 1; ++repeat) {
    Clock::time_point start = Clock::now();
    workers.ParallelFor(int64_t{prefill_sequences} * kKvHeads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int s = static_cast<int>(task / kKvHeads), g = static_cast<int>(task % kKvHeads);
        const int64_t row = int64_t{s} * kNew * kHeads * kHeadDim;
        cpu::PagedAttentionHeads(prefill_q.data() + row, kNew, kHeads, cache.view_of(s, kPrefix + kNew),
                                 scale, 0, prefill_out.data() + row, g, g + 1);
      }
    });
    double seconds = SecondsSince(start);
    if (repeat > 0 && seconds > 0) prefill_best = std::max(prefill_best, 1.0 / seconds);
  }
  const double pairs = static_cast<double>(kNew) * kPrefix + static_cast<double>(kNew) * (kNew + 1) / 2;
  rate.prefill_gflops = 4.0 * prefill_sequences * pairs * kHeads * kHeadDim * prefill_best / 1e9;
  rate.mla_gflops = MlaDecodeGflops(workers, threads, repeats);
  return rate;
}

}  // namespace

CpuAttentionRate MeasureCpuAttention(int threads, int64_t kv_bytes, int repeats) {
  // On a thread of its own: the engine's pool pins the threads that join it and makes their OpenMP
  // single-threaded (as the engine wants), which must not leak into the oneDNN measurements that follow.
  CpuAttentionRate rate;
  std::thread([&] { rate = MeasureEngineAttention(threads, kv_bytes, repeats); }).join();
  return rate;
}

std::vector<RatePoint> MeasureOnednnMatmul(bool bf16, int k, int n, const std::vector<int>& ms,
                                           double seconds_per_point, std::string* why_not) {
  std::vector<RatePoint> curve;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt type = bf16 ? dt::bf16 : dt::f32;
    for (int m : ms) {
      dnnl::memory::desc a_desc({m, k}, type, tag::ab);
      dnnl::memory::desc b_desc({k, n}, type, tag::any);  // oneDNN picks its packed weight layout
      dnnl::memory::desc c_desc({m, n}, dt::f32, tag::ab);
#if DNNL_VERSION_MAJOR >= 3  // oneDNN 3 (Ubuntu 24.04) dropped oneDNN 2's op descriptors
      dnnl::matmul::primitive_desc pd(engine, a_desc, b_desc, c_desc);
#else
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_desc, b_desc, c_desc), engine);
#endif
      std::string impl = pd.impl_info_str();
      if (impl.find("ref") != std::string::npos) {
        if (why_not != nullptr) *why_not = absl::StrCat("oneDNN has only its reference kernel (", impl, ")");
        return {};
      }
      dnnl::memory a(pd.src_desc(), engine), b(pd.weights_desc(), engine), c(pd.dst_desc(), engine);
      std::memset(a.get_data_handle(), 0, pd.src_desc().get_size());
      std::memset(b.get_data_handle(), 0, pd.weights_desc().get_size());
      dnnl::matmul matmul(pd);
      auto run = [&] {
        matmul.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
        stream.wait();
      };
      run();  // warm-up: JIT and first touch
      int runs = 0;
      Clock::time_point start = Clock::now();
      do {
        run();
        ++runs;
      } while (runs < 3 || SecondsSince(start) < seconds_per_point);
      double seconds = SecondsSince(start) / runs;
      curve.push_back({m, 2.0 * m * k * n / seconds / 1e12});
    }
  } catch (const dnnl::error& error) {
    if (why_not != nullptr) *why_not = absl::StrCat("oneDNN: ", error.what());
    return {};
  }
  return curve;
}

}  // namespace ringmoe::planner
