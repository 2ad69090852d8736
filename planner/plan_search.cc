#include "planner/plan_search.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ringmoe::planner {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

// 1, 2, 3, 4, 6, 8, 12, 16, ... up to `most`, and `most` itself.
std::vector<int> BatchCandidates(int64_t most) {
  std::vector<int> batches;
  most = std::min<int64_t>(most, 1 << 16);
  for (int64_t power = 1; power <= most; power *= 2) {
    batches.push_back(static_cast<int>(power));
    if (power >= 2 && power * 3 / 2 <= most) batches.push_back(static_cast<int>(power * 3 / 2));
  }
  batches.push_back(static_cast<int>(std::max<int64_t>(1, most)));
  std::sort(batches.begin(), batches.end());
  batches.erase(std::unique(batches.begin(), batches.end()), batches.end());
  return batches;
}

// Every (chunk, expert tile) pair, tiles in their order of preference for each chunk.
std::vector<std::pair<int, int>> ChunkTilePairs(const std::vector<int>& chunks,
                                                const std::vector<int>& tiles) {
  std::vector<std::pair<int, int>> pairs;
  for (int chunk : chunks) {
    for (int tile : tiles) pairs.emplace_back(chunk, tile);
  }
  return pairs;
}

}  // namespace

absl::StatusOr<SearchResult> SearchPlan(const PerfModel& model, PlanDevice device, const PlanPins& pins) {
  const bool gpu = device == PlanDevice::kGpu;
  std::vector<double> kv_fractions = {0.0};
  // MLA models keep their whole cache on the host (ModelCosts::mla): no GPU share to try.
  if (gpu && !model.costs().mla && model.profile().gpu && model.profile().gpu->attention_kv_gbps > 0) {
    kv_fractions = {0.0, 0.25, 0.5, 0.75, 1.0};
  }
  if (pins.kv_gpu_fraction) kv_fractions = {*pins.kv_gpu_fraction};
  // Over several GPUs the KV cache stays in host memory (PerfModel::PlanMemory).
  const int gpus = pins.gpus.value_or(1);
  if (gpus > 1 && !pins.kv_gpu_fraction) kv_fractions = {0.0};
  // Two first: on a tie (copy-bound steps) prefer the overlap the engine is built around.
  std::vector<int> micro_batches = gpu ? std::vector<int>{2, 1, 3, 4} : std::vector<int>{1};
  if (pins.micro_batches) micro_batches = {*pins.micro_batches};
  // Chunks above 8192 fit a small GPU only with the experts in tiles (below); they let the first wave's
  // prompts take fewer steps, each of which streams every layer.
  std::vector<int> chunks = {256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  if (pins.prefill_chunk) chunks = {*pins.prefill_chunk};
  // Expert tiles: none first (on a tie, the fewest expert-count round trips), then tiles whose scratch
  // leaves room for larger chunks and batches.
  std::vector<int> tiles = gpu ? std::vector<int>{0, 4096, 1024} : std::vector<int>{0};
  if (pins.expert_tile_tokens) tiles = {*pins.expert_tile_tokens};
  std::vector<int> batches = BatchCandidates(model.workload().num_requests);
  if (pins.batch) batches = {*pins.batch};
  // Ring shapes (parts per layer, slots): a whole layer streaming ahead first, then halves and quarters of
  // layers, which fit smaller GPUs; fewer slots than two layers' worth save memory but stream less ahead.
  std::vector<std::pair<int, int>> rings = {{1, 2}, {2, 4}, {4, 8}, {4, 6}, {2, 3}, {4, 5}};
  if (!gpu) rings = {{1, 2}};
  if (pins.layer_parts) {
    std::erase_if(rings, [&](const auto& ring) { return ring.first != *pins.layer_parts; });
    if (rings.empty()) rings = {{*pins.layer_parts, *pins.layer_parts + 1}};
  }
  if (pins.ring_sections) {
    std::erase_if(rings, [&](const auto& ring) { return ring.second != *pins.ring_sections; });
    if (rings.empty()) rings = {{pins.layer_parts.value_or(1), *pins.ring_sections}};
  }

  SearchResult result;
  // When nothing fits, the most telling reason is the first failure (from the smallest batch and chunk) of
  // the ring that needs the least GPU memory: a ring that could never fit says less than the one that came
  // closest (DeepSeek-V3 at 16 GiB: not the two whole layers tried first, but the five quarter layers).
  absl::Status first_error;
  double first_error_ring_layers = 0;  // the slots' share of a layer, of first_error's ring
  double ring_layers = 0;              // of the ring being searched
  bool found = false;
  // Returns the plan's SSD-tier bytes, or its error.
  auto consider = [&](const ExecutionPlan& plan) -> absl::StatusOr<int64_t> {
    ++result.plans_evaluated;
    absl::StatusOr<Prediction> prediction = model.Predict(plan);
    if (!prediction.ok()) {
      if (first_error.ok() || ring_layers < first_error_ring_layers) {
        first_error = prediction.status();
        first_error_ring_layers = ring_layers;
      }
      return prediction.status();
    }
    ++result.plans_feasible;
    int64_t ssd_bytes = prediction->memory.ssd_weight_bytes;
    // Small steps touch few experts: copying only the routed ones can win where something streams and a
    // decode step leaves a quarter of the experts untouched. A pin decides instead.
    const std::optional<bool>& routed_pin = pins.routed_expert_copies;
    const bool routed_may_win =
        prediction->memory.streamed_bytes_per_step > 0 && RoutedCopyShare(model.costs(), plan.batch) < 1.0;
    if (routed_pin.value_or(routed_may_win)) {
      ExecutionPlan routed = plan;
      routed.routed_expert_copies = true;
      absl::StatusOr<Prediction> with_routed = model.Predict(routed);
      ++result.plans_evaluated;
      if (with_routed.ok()) {
        ++result.plans_feasible;
        if (routed_pin || with_routed->total_tokens_per_s > prediction->total_tokens_per_s * (1 + 1e-9)) {
          prediction = std::move(with_routed);
        }
      }
    }
    if (!found || prediction->total_tokens_per_s > result.best.total_tokens_per_s * (1 + 1e-9)) {
      result.best = *std::move(prediction);
      found = true;
    }
    return ssd_bytes;
  };
  // Throughput jumps where a limit is crossed: the batch at which the weights start spilling to SSD, and the
  // largest batch that fits at all. Bisect between the candidates on either side to find each edge exactly.
  auto bisect = [&](ExecutionPlan plan, int low, int high, auto&& still_good) {
    while (low > 0 && high - low > 1) {
      plan.batch = low + (high - low) / 2;
      if (still_good(consider(plan))) {
        low = plan.batch;
      } else {
        high = plan.batch;
      }
    }
  };
  auto fits = [](const absl::StatusOr<int64_t>& outcome) { return outcome.ok(); };
  auto fits_in_memory = [](const absl::StatusOr<int64_t>& outcome) { return outcome.ok() && *outcome == 0; };
  auto search_rings = [&](const std::vector<std::pair<int, int>>& candidate_rings) {
    for (const auto& [parts, slots] : candidate_rings) {
      ring_layers = static_cast<double>(slots) / parts;
      // A ring shallower than a layer runs its parts one at a time: one micro-batch, no tiles (unless pinned
      // otherwise, when ValidatePlan's reason is the answer).
      const bool one_at_a_time = parts > 1 && slots < parts + 1;
      for (double kv_fraction : kv_fractions) {
        for (int micro : micro_batches) {
          if (one_at_a_time && micro != 1 && !pins.micro_batches) continue;
          for (const auto& [chunk, tile] : ChunkTilePairs(chunks, tiles)) {
            if (one_at_a_time && tile > 0 && !pins.expert_tile_tokens) continue;
            ExecutionPlan plan;
            plan.device = device;
            plan.layer_parts = parts;
            plan.ring_sections = slots;
            plan.micro_batches = micro;
            plan.prefill_chunk = chunk;
            plan.expert_tile_tokens = tile;
            plan.kv.gpu_fraction = kv_fraction;
            plan.gpus = gpus;
            plan.max_resident_moe_layers = pins.max_resident_moe_layers.value_or(-1);
            plan.prefill_attention_on_gpu = pins.prefill_attention_on_gpu.value_or(true);
            plan.kv.host_bytes = pins.kv_host_bytes.value_or(0);
            int last_fit = 0, last_in_memory = 0;
            bool spilled = false;
            for (int batch : batches) {
              plan.batch = batch;
              absl::StatusOr<int64_t> outcome = consider(plan);
              if (outcome.ok()) {
                if (*outcome > 0 && !spilled && last_in_memory > 0)
                  bisect(plan, last_in_memory, batch, fits_in_memory);
                spilled = spilled || *outcome > 0;
                if (!spilled) last_in_memory = batch;
                last_fit = batch;
                continue;
              }
              // Memory only grows with the batch: larger batches fail too.
              if (!absl::IsResourceExhausted(outcome.status())) continue;
              if (!spilled && last_in_memory > 0) {
                bisect(plan, last_in_memory, batch, fits_in_memory);
              } else {
                bisect(plan, last_fit, batch, fits);
              }
              break;
            }
          }
        }
      }
    }
  };
  search_rings(rings);
  if (!found && gpu && !pins.layer_parts && !pins.ring_sections) {
    // Only when no ring that holds a whole layer fits: layers cut finely and run part by part through a ring
    // of two or three slots (ExecutionPlan::parts_one_at_a_time), for layers that dwarf the GPU budget.
    search_rings({{4, 2}, {4, 3}, {8, 2}, {8, 3}, {16, 2}, {16, 3}});
  }
  if (!found) return first_error.ok() ? absl::InvalidArgumentError("no plan was tried") : first_error;
  return result;
}

std::vector<WhatIf> ExploreWhatIfs(const HardwareProfile& profile, const ModelCosts& costs,
                                   const Workload& workload, const Budgets& budgets, PlanDevice device,
                                   const PlanPins& pins, double base_total_tokens_per_s) {
  struct Variant {
    std::string change;
    HardwareProfile profile;
    Budgets budgets;
  };
  std::vector<Variant> variants;
  if (device == PlanDevice::kGpu && profile.gpu) {
    Budgets more_gpu = budgets;
    more_gpu.gpu_bytes += kGiB;
    variants.push_back({"+1 GiB GPU memory", profile, more_gpu});
  }
  Budgets more_cpu = budgets;
  more_cpu.cpu_bytes += kGiB;
  variants.push_back({"+1 GiB CPU memory", profile, more_cpu});
  if (device == PlanDevice::kGpu && profile.gpu) {
    HardwareProfile faster_link = profile;
    faster_link.gpu->h2d_gbps *= 2;
    faster_link.gpu->d2h_gbps *= 2;
    faster_link.gpu->bidirectional_gbps *= 2;
    faster_link.gpu->all_links_h2d_gbps *= 2;
    if (faster_link.contention) {
      faster_link.contention->dma_alone_gbps *= 2;
      faster_link.contention->dma_shared_gbps *= 2;
    }
    variants.push_back({"2x host-to-GPU bandwidth", faster_link, budgets});
    HardwareProfile faster_gemm = profile;
    for (RatePoint& point : faster_gemm.gpu->grouped_gemm_bf16) point.tflops *= 2;
    variants.push_back({"2x GPU GEMM rate", faster_gemm, budgets});
  }
  std::vector<WhatIf> what_ifs;
  for (Variant& variant : variants) {
    WhatIf what_if;
    what_if.change = variant.change;
    PerfModel model(std::move(variant.profile), costs, workload, variant.budgets);
    absl::StatusOr<SearchResult> result = SearchPlan(model, device, pins);
    if (result.ok()) {
      what_if.feasible = true;
      what_if.total_tokens_per_s = result->best.total_tokens_per_s;
      what_if.bottleneck = result->best.bottleneck;
      if (base_total_tokens_per_s > 0) {
        what_if.gain_percent = 100.0 * (what_if.total_tokens_per_s / base_total_tokens_per_s - 1.0);
      }
    } else {
      what_if.note = std::string(result.status().message());
    }
    what_ifs.push_back(std::move(what_if));
  }
  return what_ifs;
}

}  // namespace ringmoe::planner
