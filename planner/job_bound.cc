// PerfModel::JobLevelBound: the whole job at the machine's limits with no pipeline (planner/DESIGN.md,
// "Job-level bound").
#include <algorithm>

#include "planner/perf_model.h"

namespace ringmoe::planner {

JobBound PerfModel::JobLevelBound(const ExecutionPlan& plan, const MemoryPlan& memory, double batch) const {
  JobBound job;
  const double requests = static_cast<double>(workload_.num_requests);
  const double prompt = workload_.mean_prompt_tokens, gen = workload_.mean_gen_tokens;
  const double generated = requests * gen;
  if (generated <= 0 || batch <= 0) return job;
  constexpr double gbps = 1e9;
  // Every generated token is a decode row: the job takes generated / batch decode steps, and each streams the
  // plan's per-step weight bytes (the routed share of them with routed copies).
  const double decode_steps = generated / batch;
  double weight_bytes = static_cast<double>(memory.streamed_bytes_per_step);
  if (plan.routed_expert_copies && weight_bytes > 0) weight_bytes *= RoutedCopyShare(costs_, batch);
  // Decode attention reads every earlier position's K/V: on average the prompt and half the generation.
  const double gpu_share = plan.device == PlanDevice::kGpu ? plan.kv.gpu_fraction : 0;
  const double kv_bytes =
      (1 - gpu_share) * generated * (prompt + (gen + 1) / 2) * static_cast<double>(costs_.kv_bytes_per_token);
  const double flops =
      requests * (prompt + gen) * costs_.dense_flops_per_token() + generated * costs_.lm_head_flops;
  // The CPU's decode attention computes as well as reads: its FLOPs over the same positions, and MLA's
  // absorption of kv_b into each decode row's query and output (128 heads over one latent: DeepSeek-V3's
  // decode computes far more than it reads).
  double cpu_attention_flops =
      (1 - gpu_share) * generated * (prompt + (gen + 1) / 2) * costs_.attention_flops_per_context_token;
  for (const LayerCosts& layer : costs_.layers)
    cpu_attention_flops += (1 - gpu_share) * generated * layer.mla_absorb_flops;
  const double kv_alone = KvBoundGbps() * gbps;
  const double dram_total = DramTotalGbps() * gbps;
  double kv_beside_dma = kv_alone * kDefaultCpuShare;
  if (profile_.contention && profile_.contention->cpu_alone_gbps > 0)
    kv_beside_dma = kv_alone * profile_.contention->cpu_shared_gbps / profile_.contention->cpu_alone_gbps;
  double link_bytes = 0, dram_bytes = kv_bytes;
  if (plan.device == PlanDevice::kGpu && profile_.gpu) {
    // With several GPUs each link carries its share of the weights and the split's hidden states and
    // partial outputs (CombineBytesPerLink, the host-to-device half); the links copy at once.
    const int gpus = std::max(1, plan.gpus);
    link_bytes = decode_steps * (weight_bytes + gpus * CombineBytesPerLink(gpus, batch));
    dram_bytes += link_bytes;  // the copies read pinned DRAM
    if (link_bytes > 0) job.stage_seconds["pcie"] = link_bytes / AllLinksH2dBytesPerSecond(gpus);
    // The SSD tier's bytes are read every decode step at the drive's best measured rate; they land in
    // pinned staging (DRAM writes) before the link reads them (counted above).
    const double ssd_bytes = memory.ring_holds_streamed ? 0 : decode_steps * memory.ssd_weight_bytes;
    if (ssd_bytes > 0 && profile_.ssd && profile_.ssd->planning_gbps() > 0) {
      job.stage_seconds["ssd"] = ssd_bytes / (profile_.ssd->planning_gbps() * gbps);
      dram_bytes += ssd_bytes;
    }
    double gpu_flops = 0;
    for (const RatePoint& point : profile_.gpu->grouped_gemm_bf16)
      gpu_flops = std::max(gpu_flops, point.tflops * 1e12);
    if (gpu_flops > 0) job.stage_seconds["gpu_flops"] = flops / (gpu_flops * gpus);
    // At the faster of the CPU's matmul peak and its measured decode-attention rate, as the plan's bound.
    const double cpu_rate = std::max(CpuPeakFlops(), DecodeAttentionGflops() * 1e9);
    if (cpu_attention_flops > 0 && cpu_rate > 0)
      job.stage_seconds["cpu_attention_flops"] = cpu_attention_flops / cpu_rate;
  } else {
    // The CPU device reads its weights from DRAM every step, and computes everything, attention included.
    dram_bytes += decode_steps * static_cast<double>(memory.dram_weight_bytes_per_step);
    if (CpuPeakFlops() > 0) job.stage_seconds["cpu_flops"] = (flops + cpu_attention_flops) / CpuPeakFlops();
  }
  if (kv_bytes > 0) job.stage_seconds["kv_read"] = kv_bytes / (link_bytes > 0 ? kv_beside_dma : kv_alone);
  if (dram_bytes > 0 && dram_total > 0) job.stage_seconds["dram"] = dram_bytes / dram_total;
  for (const auto& [stage, seconds] : job.stage_seconds) {
    if (seconds > job.seconds) {
      job.seconds = seconds;
      job.limit = stage;
    }
  }
  if (job.seconds > 0) job.output_tokens_per_s = generated / job.seconds;
  return job;
}

}  // namespace ringmoe::planner
