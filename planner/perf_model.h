// PerfModel: maps an ExecutionPlan (batch, micro-batches, prefill chunk, residency, attention split) to a
// memory plan per tier and to per-stage times for a decode step, a prefill chunk and a whole job. The
// equations are in planner/DESIGN.md. Threading: immutable after construction; every method is const and safe
// to call from several threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/execution_plan.h"
#include "planner/hardware_profile.h"
#include "planner/model_costs.h"

namespace ringmoe::planner {

// The job: how many requests and how long they are.
struct Workload {
  int64_t num_requests = 0;
  double mean_prompt_tokens = 0;
  double mean_gen_tokens = 0;
  int max_context_tokens = 0;      // Longest prompt + generation: sizes each sequence's KV reservation.
  std::string prompt_length_note;  // How prompt lengths were counted (exact ids, tokenizer, or estimate).
};

// A workload from each request's prompt length and generation budget (max_tokens); contexts are capped at
// `max_position` (the model's max_position_embeddings; 0 = no cap). `note` says how prompts were counted.
Workload MakeWorkload(const std::vector<int64_t>& prompt_tokens, const std::vector<int64_t>& gen_tokens,
                      int max_position, std::string note);

// GPU: its memory less max(1 GiB, 5%) for the CUDA context; CPU: host memory less max(4 GiB, 10%).
Budgets ResolveBudgets(const HardwareProfile& profile, Budgets requested);

// Where every byte lives under a plan.
// With several GPUs (ExecutionPlan::gpus) the gpu_* fields are each GPU's (they are alike); the expert
// counts and streamed_bytes_per_step are all GPUs' together.
struct MemoryPlan {
  int gpus = 1;
  int64_t gpu_budget = 0;
  std::array<int64_t, kNumWeightGroups> gpu_resident_bytes{};  // Per WeightGroup.
  int gpu_resident_moe_layers = 0;  // MoE layers whose routed experts stay on the GPU (GpuPlacement).
  int gpu_total_moe_layers = 0;
  int64_t gpu_resident_experts = 0;  // The routed experts in those layers.
  int64_t gpu_total_experts = 0;
  int64_t gpu_ring_bytes = 0;
  int64_t gpu_workspace_bytes = 0;
  int64_t gpu_kv_bytes = 0;
  int64_t gpu_used() const;

  int64_t cpu_budget = 0;
  int64_t cpu_weight_bytes = 0;  // Weights held in host memory (pinned on the GPU device).
  int64_t cpu_embedding_bytes = 0;
  int64_t cpu_kv_bytes = 0;
  int64_t cpu_staging_bytes = 0;  // Pinned activation buffers and the SSD staging ring.
  int64_t pinned_bytes = 0;
  int64_t pinned_limit = 0;
  int64_t cpu_used() const {
    return cpu_weight_bytes + cpu_embedding_bytes + cpu_kv_bytes + cpu_staging_bytes;
  }

  int64_t ssd_weight_bytes = 0;   // Weights read from SSD every step (did not fit the CPU budget).
  int ssd_moe_layers = 0;         // MoE layers whose routed experts are read from SSD (ExpertTier::kSsd).
  int64_t ssd_staging_bytes = 0;  // The pinned staging buffers SSD reads land in (part of cpu_staging_bytes).
  int64_t streamed_bytes_per_step = 0;  // Host-to-GPU weight bytes per step, all links (GPU device).
  // The ring has a slot for every streamed section, so it is filled once and then holds them all: the
  // engine refills slots only when sections outnumber them. Nothing streams per step then.
  bool ring_holds_streamed = false;
  int64_t dram_weight_bytes_per_step =
      0;                          // CPU device: weight bytes the matmuls read per step (upper bound).
  int kv_capacity_sequences = 0;  // Sequences of max context whose KV fits the KV budgets.
  int64_t kv_bytes_per_sequence = 0;
};

// Seconds of one step per stage. Stages overlap; `step` is what the step takes.
struct StageTimes {
  double tokens = 0;  // Tokens the step processes.
  double ssd_read = 0, h2d_copy = 0, d2h_copy = 0, gpu_gemm = 0, gpu_attention = 0, cpu_attention = 0,
         cpu_matmul = 0;
  double engine_overhead = 0;  // Host-side launch and hand-off time per step (GPU path), see DESIGN.md.
  double serial_chain = 0;     // One micro-batch's GPU work plus its CPU attention, done in turn.
  double step = 0;
  std::string bottleneck;  // The stage that sets `step`.
  // (name, seconds) for each stage, in report order. Names are the keys of MeasuredRun::stage_seconds.
  std::vector<std::pair<std::string, double>> Stages() const;
};

// Stage names shared by predictions and measurements.
inline constexpr char kStageSsdRead[] = "ssd_read";
inline constexpr char kStageH2dCopy[] = "h2d_copy";
inline constexpr char kStageD2hCopy[] = "d2h_copy";
inline constexpr char kStageGpuGemm[] = "gpu_gemm";
inline constexpr char kStageGpuAttention[] = "gpu_attention";
inline constexpr char kStageCpuAttention[] = "cpu_attention";
inline constexpr char kStageCpuMatmul[] = "cpu_matmul";

// The job-level bound: over the whole job no stage beats its hardware rate, whatever the pipeline. Stage
// minimums: the streamed weight bytes of the job's decode steps over the link (prefill rides on those steps'
// weights), the CPU's share of the KV bytes decode attention reads over DRAM at the rate it keeps while DMA
// streams, both together over DRAM's total, and the job's FLOPs at the GPU's (or on the CPU device the CPU's)
// best measured rate. Unlike the plan's bound it assumes no pipeline: measured / job bound says how much of
// the machine the engine uses (planner/DESIGN.md, "Job-level bound").
struct JobBound {
  double output_tokens_per_s = 0;  // Generated tokens / seconds.
  double seconds = 0;              // The slowest stage's minimum.
  std::string limit;  // That stage: "pcie", "ssd", "kv_read", "dram", "gpu_flops" or "cpu_flops".
  std::map<std::string, double> stage_seconds;  // Each stage's minimum over the job.
};

struct Prediction {
  ExecutionPlan plan;
  MemoryPlan memory;
  int effective_batch = 0;           // Sequences in flight in steady state (<= plan.batch).
  double steady_prefill_tokens = 0;  // Prefill tokens riding along each steady-state step.
  StageTimes decode_step;            // effective_batch decodes at the mean context.
  StageTimes prefill_chunk;          // prefill_chunk prompt tokens alone.
  StageTimes mixed_step;             // Steady state: decodes plus the prefill that keeps the batch full.
  double fill_steps = 0, mixed_steps = 0, tail_steps = 0;
  double fill_step_seconds = 0;
  double prefill_tokens_per_s = 0;  // Prefill alone, chunk after chunk.
  double decode_tokens_per_s = 0;   // Decode alone at effective_batch.
  double output_tokens_per_s = 0;   // Whole job: generated tokens / duration.
  double total_tokens_per_s = 0;    // Whole job: (prompt + generated) tokens / duration.
  double duration_s = 0;
  // The hardware bound of the same plan: every stage at the machine's limits (copies at the measured link
  // rate, CPU attention at DRAM bandwidth under contention, GEMMs on the measured curve), perfectly
  // overlapped, no engine overheads. Measured over this is the engine's efficiency.
  double bound_output_tokens_per_s = 0;
  double bound_total_tokens_per_s = 0;
  double bound_duration_s = 0;
  std::map<std::string, double> job_stage_seconds;  // Each stage's busy seconds over the whole job.
  JobBound job_bound;                               // The machine's limit for this job (see JobBound).
  std::string bottleneck;                           // Of the phase that takes most of the job.
};

class PerfModel {
 public:
  // `budgets` must be resolved (non-zero); `costs` must describe bf16 weights.
  PerfModel(HardwareProfile profile, ModelCosts costs, Workload workload, Budgets budgets);

  const HardwareProfile& profile() const { return profile_; }
  const ModelCosts& costs() const { return costs_; }
  const Workload& workload() const { return workload_; }
  const Budgets& budgets() const { return budgets_; }

  // Where the bytes go; an error (ResourceExhausted / FailedPrecondition) says which limit the plan breaks.
  absl::StatusOr<MemoryPlan> PlanMemory(const ExecutionPlan& plan) const;
  // One step of `decode_tokens` decodes at mean context `decode_context` plus `prefill_tokens` prompt tokens
  // of prompts `prompt_tokens` long.
  // bound: the hardware-bound version of the step (see Prediction::bound_output_tokens_per_s).
  StageTimes StepTime(const ExecutionPlan& plan, const MemoryPlan& memory, double decode_tokens,
                      double decode_context, double prefill_tokens, double prompt_tokens,
                      bool bound = false) const;
  absl::StatusOr<Prediction> Predict(const ExecutionPlan& plan) const;

  // The CPU device's matmul type: bf16 when the profile has a bf16 curve and the CPU has bf16 hardware.
  bool CpuUsesBf16() const;
  // Rates from the measured curves (FLOP/s), interpolated in log(tokens).
  double GpuGemmFlops(double tokens_per_expert) const;
  double CpuMatmulFlops(double tokens) const;
  // The best CPU matmul rate measured (f32 or bf16): the CPU's arithmetic limit, for the hardware bound.
  double CpuPeakFlops() const;
  // The fastest KV read measured (GB/s): DRAM read or the attention probe's, for the hardware bound.
  double KvBoundGbps() const;
  // Decode attention's FLOP rate on the CPU for the plan's KV type (an e4m3 cache computes slower).
  double DecodeAttentionGflops() const;
  // What DRAM delivers to all readers at once (GB/s): the all-cores read, or the DMA and CPU rates measured
  // together when that is more.
  double DramTotalGbps() const;
  // Host-to-device bytes per second of `gpus` links copying at once with nothing else reading DRAM: the
  // profile's all-links reading, else gpus x one link capped by DRAM (never below one link).
  double AllLinksH2dBytesPerSecond(int gpus) const;
  // Bytes each GPU's link carries in each direction per step of `tokens` tokens to hand the step's hidden
  // states to every GPU holding a share of a layer's experts and bring the partial outputs back, through
  // pinned host memory: tokens x hidden x 2 bytes x (gpus - 1) / gpus per MoE layer (0 for one GPU).
  double CombineBytesPerLink(int gpus, double tokens) const;
  // The job-level bound of `plan` at `batch` sequences in flight (its MemoryPlan `memory`).
  JobBound JobLevelBound(const ExecutionPlan& plan, const MemoryPlan& memory, double batch) const;

 private:
  StageTimes GpuStep(const ExecutionPlan& plan, const MemoryPlan& memory, double decode_tokens,
                     double decode_context, double prefill_tokens, double prompt_tokens, bool bound) const;
  StageTimes CpuStep(const MemoryPlan& memory, double decode_tokens, double decode_context,
                     double prefill_tokens, double prompt_tokens, bool bound) const;
  absl::StatusOr<MemoryPlan> PlanGpuMemory(const ExecutionPlan& plan) const;
  absl::StatusOr<MemoryPlan> PlanCpuMemory(const ExecutionPlan& plan) const;

  HardwareProfile profile_;
  ModelCosts costs_;
  Workload workload_;
  Budgets budgets_;
};

// Interpolates a rate curve (FLOP/s) at `tokens` in log(tokens). Below the first point: `scale_below` true
// keeps the time constant (rate proportional to tokens: a weight-bound kernel), false keeps the rate.
// Above the last point the rate stays flat.
double InterpolateRate(const std::vector<RatePoint>& curve, double tokens, bool scale_below);

// Engine constants the model cannot take from a probe (planner/DESIGN.md, "Engine overheads"): host time per
// (layer, micro-batch) on the GPU path that the GPU waits for - kernel launches after the expert-count read
// back, the q/k/v hand-off to the CPU - and per step (scheduling, embedding, sampling; on either device). The
// H200 run of 2026-12-02 measured 2.3-3.5 ms of feeder time per (layer, micro-batch), most of it overlapping
// kernels already queued; the shipped tiny model's CPU steps take about 0.5 ms on a 2-core machine.
inline constexpr double kGpuLayerOverheadSeconds = 1.0e-3;
inline constexpr double kStepOverheadSeconds = 1e-3;
// FP8 experts (HeldExpertDType): the GPU reads each routed expert's e4m3 bytes and writes its bf16 copy (3
// bytes a weight) once per micro-batch and layer, at this rate: a plain element-wise kernel's share of HBM
// (H100 3.35 TB/s, H200 4.8 TB/s), an engine constant until the probe measures it.
inline constexpr double kGpuFp8DequantBytesPerSecond = 1.5e12;
// How the engine's own loop falls short of the probe's isolated readings (planner/DESIGN.md, "Engine
// efficiencies"), read off the H200 runs of 2026-12-02 (bench/results/h200-2026-12-02-session3):
// - Decode attention over the engine's cache, one call per (layer, micro-batch) over contexts of mixed
//   lengths with the K/V writes, reads its bytes at 0.86 of the probe's single long pass (Mixtral-8x7B, nothing
//   streaming: 79.5 GB/s against the probe's 92.7).
// - In a step bound by the ring's copies the copy engine is busy 0.86-0.91 of the step (the fills wait on
//   the slots' last micro-batch and on the step's end), and each copy runs at 0.96-0.98 of the probe's
//   pinned rate: 0.86 together.
inline constexpr double kEngineKvReadShare = 0.86;
inline constexpr double kRingCopyDuty = 0.86;
// Without a contention measurement, DMA and CPU reads of DRAM slow as the H200 box measured them when both
// ran (53.2 of 55.3 GB/s, 63.9 of 79.6 GB/s).
inline constexpr double kDefaultDmaShare = 53.2 / 55.3;
inline constexpr double kDefaultCpuShare = 63.9 / 79.6;
// GPU prefill attention rate when the profile has no reading (an H200 ran gpu::PrefillAttention at 22.7
// TFLOP/s on 16 x 512-token prompts, tests/gpu_attention_test.cc, 2026-12-02).
inline constexpr double kDefaultPrefillAttentionTflops = 20.0;

// Expected number of distinct experts `tokens` tokens touch when each picks top_k of num_experts uniformly.
double ExpectedTouchedExperts(double tokens, int num_experts, int top_k);
// The share of a streamed layer's expert bytes that routed copies move for a step of `tokens`: the experts
// they route to, or all of them once that passes three quarters (the engine then copies whole parts).
double RoutedCopyShare(const ModelCosts& costs, double tokens);

}  // namespace ringmoe::planner
