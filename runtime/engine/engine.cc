#include "ringmoe/engine.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cpu/cpu_features.h"
#include "cpu/thread_pool.h"
#include "gpu/device.h"
#include "io/checkpoint.h"
#include "io/model_spec.h"
#include "planner/expert_shards.h"
#include "planner/memory_table.h"
#include "planner/model_costs.h"
#include "ringmoe/tokenizer.h"
#include "runtime/engine/compute_type.h"
#include "runtime/engine/forward.h"
#include "runtime/engine/gpu_forward.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/logits_processors.h"
#include "runtime/engine/logprobs.h"
#include "runtime/engine/model_weights.h"
#include "runtime/engine/request_state.h"
#include "runtime/engine/scheduler.h"

namespace ringmoe {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int64_t AvailableHostBytes() {
  long pages = sysconf(_SC_AVPHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : int64_t{8} << 30;
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  ModelSpec spec;
  std::unique_ptr<ModelWeights> weights;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::unique_ptr<cpu::CpuWorkers> workers;
  std::unique_ptr<KvCache> kv_cache;
  std::unique_ptr<ForwardPass> forward;
  int max_step_tokens = 0;
  ModelInfo info;
  RunStats last_run_stats;
  // Cancel's request, read by Generate between steps: set from any thread (hence atomics, no lock). The
  // deadline is steady_clock nanoseconds since its epoch; in-flight sequences are cancelled once it passes.
  std::atomic<bool> cancel_requested{false};
  std::atomic<int64_t> cancel_deadline_ns{0};
};

namespace {

int64_t SteadyNanoseconds() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void Engine::Cancel(double grace_seconds) {
  Impl& impl = *impl_;
  const double grace = std::isfinite(grace_seconds) ? std::clamp(grace_seconds, 0.0, 1e6) : 0.0;
  impl.cancel_deadline_ns.store(SteadyNanoseconds() + static_cast<int64_t>(grace * 1e9),
                                std::memory_order_relaxed);
  impl.cancel_requested.store(true, std::memory_order_release);
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

const ModelInfo& Engine::info() const { return impl_->info; }
const planner::ExecutionPlan& Engine::plan() const { return impl_->options.plan; }
const RunStats& Engine::last_run_stats() const { return impl_->last_run_stats; }
const Tokenizer* Engine::tokenizer() const { return impl_->tokenizer.get(); }

absl::StatusOr<Engine> Engine::Open(const std::string& model_dir, const EngineOptions& options) {
  const planner::ExecutionPlan& plan = options.plan;  // impl->options.plan below: the plan as run
  const bool use_gpu = plan.device == planner::PlanDevice::kGpu;
  if (std::string why_not; use_gpu && !gpu::GpuAvailable(&why_not)) {
    return absl::FailedPreconditionError(absl::StrCat("the plan runs on the GPU: ", why_not));
  }
  if (absl::Status isa = cpu::CheckCpuIsaEnvironment(); !isa.ok()) return isa;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(model_dir);
  if (!spec.ok()) return spec.status();
  impl->spec = *spec;
  if (absl::Status valid = planner::ValidatePlan(plan, impl->spec); !valid.ok()) return valid;
  if (impl->spec.num_nextn_predict_layers > 0) {
    std::fprintf(stderr,
                 "ringmoe: note: %s has %d multi-token-prediction layer(s) (num_nextn_predict_layers) after "
                 "its %d layers; generation does not use them, so they are not loaded\n",
                 model_dir.c_str(), impl->spec.num_nextn_predict_layers, impl->spec.num_layers);
  }
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  const io::DType compute = ChooseComputeType(options.cpu_compute, checkpoint->get(), use_gpu);
  // The CPU path's KV cache has its compute type (the frontend plans it so); a default plan learns it here.
  // An fp8 cache (--kv-dtype fp8) stays fp8.
  if (!use_gpu && plan.kv.dtype != io::DType::kF8E4M3) impl->options.plan.kv.dtype = compute;
  // The GPU holds FP8 experts as FP8 blocks, packed from the checkpoint's tensors (GpuModel).
  const io::DType held_expert_dtype = use_gpu ? planner::HeldExpertDType(plan.expert_dtype) : compute;
  const bool gpu_packs_experts = use_gpu && held_expert_dtype == io::DType::kF8E4M3;
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Load(impl->spec, std::move(*checkpoint), compute, plan.expert_dtype,
                         /*hold_routed_experts=*/!gpu_packs_experts);
  if (!weights.ok()) return weights.status();
  impl->weights = std::move(*weights);

  // The tokenizer is optional: without one, prompts must be token ids and outputs carry no text.
  std::string tokenizer_path = options.tokenizer_path;
  if (tokenizer_path.empty() && std::filesystem::exists(model_dir + "/tokenizer.json"))
    tokenizer_path = model_dir;
  impl->tokenizer = options.tokenizer;
  if (impl->tokenizer == nullptr && !tokenizer_path.empty()) {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(tokenizer_path);
    if (!tokenizer.ok()) return tokenizer.status();
    impl->tokenizer = std::make_shared<const Tokenizer>(std::move(*tokenizer));
  }
  if (impl->tokenizer != nullptr) {
    for (int32_t id : impl->tokenizer->EosTokenIds()) {
      if (std::find(impl->spec.eos_token_ids.begin(), impl->spec.eos_token_ids.end(), id) ==
          impl->spec.eos_token_ids.end()) {
        impl->spec.eos_token_ids.push_back(id);
      }
    }
  }

  impl->workers = std::make_unique<cpu::CpuWorkers>(options.threads);

  // KV cache: enough for the plan's sequences at full context, within its host budget (default: half the free
  // RAM; untouched pages cost nothing), plus the device blocks of the GPU's share.
  const int block_tokens = plan.kv.block_tokens;
  const io::DType kv_dtype = impl->options.plan.kv.dtype;
  const int64_t bytes_per_token = KvCache::BytesPerToken(impl->spec, kv_dtype);
  const int64_t budget = plan.kv.host_bytes > 0 ? plan.kv.host_bytes : AvailableHostBytes() / 2;
  const int64_t wanted_tokens = static_cast<int64_t>(plan.batch) * impl->spec.max_position_embeddings;
  const int64_t tokens = std::min(wanted_tokens, budget / bytes_per_token);
  const int num_blocks = static_cast<int>(std::min<int64_t>(tokens / block_tokens, INT32_MAX / 2));
  if (num_blocks < 1) {
    return absl::ResourceExhaustedError(absl::StrCat("KV-cache budget of ", budget,
                                                     " bytes holds no block of ", block_tokens, " tokens (",
                                                     bytes_per_token, " bytes per token)"));
  }
  int device_blocks = 0;
  if (use_gpu && plan.kv.gpu_bytes > 0) {
    const int64_t block_bytes = bytes_per_token * block_tokens;  // the plan's GPU KV is bf16 (ValidatePlan)
    device_blocks = static_cast<int>(std::min<int64_t>(plan.kv.gpu_bytes / block_bytes, INT32_MAX / 2));
  }
  impl->kv_cache = std::make_unique<KvCache>(impl->spec, kv_dtype, block_tokens, num_blocks, device_blocks);
  impl->max_step_tokens = plan.max_step_tokens();
  if (use_gpu) {
    GpuPlacement placement;
    placement.expert_tiers = plan.expert_tiers;
    placement.micro_batches = plan.micro_batches;
    placement.expert_tile_tokens = plan.expert_tile_tokens;
    placement.layer_parts = plan.layer_parts;
    placement.expert_shards = plan.expert_shard_count();  // ValidatePlan: one GPU, so all of them here
    placement.ring_slots = plan.ring_sections;
    placement.prefill_attention_on_gpu = plan.prefill_attention_on_gpu;
    placement.routed_expert_copies = plan.routed_expert_copies;
    placement.expert_dtype = held_expert_dtype;
    placement.ssd_dirs = options.ssd_dirs;
    placement.gpu_stage_times = options.gpu_stage_times;
    placement.expert_gemm = options.expert_gemm == ExpertGemm::kLoop      ? gpu::GemmStrategy::kLoopGemmEx
                            : options.expert_gemm == ExpertGemm::kGrouped ? gpu::GemmStrategy::kGroupedBatched
                                                                          : gpu::GemmStrategy::kAuto;
    if (plan.ssd_moe_layers() > 0) {
      const ModelSpec& spec = impl->spec;
      const int64_t experts =
          planner::MaxPartExperts(spec.num_experts, plan.expert_shard_count(), plan.layer_parts);
      placement.ssd_staging_buffer_bytes = planner::SsdStagingBufferBytes(
          experts, int64_t{3} * spec.moe_intermediate_size * spec.hidden_size * 2,
          planner::CheckpointDType(spec));
    }
    absl::StatusOr<std::unique_ptr<GpuForward>> forward =
        GpuForward::Create(*impl->weights, *impl->kv_cache, *impl->workers, placement, plan.budgets.gpu_bytes,
                           impl->max_step_tokens);
    if (!forward.ok()) return forward.status();
    impl->forward = std::move(*forward);
    // Every weight but the embedding now lives in device or pinned memory: the checkpoint's mapped pages
    // would otherwise stay resident beside those copies (the plan prices host memory without them).
    impl->weights->checkpoint().ReleaseResidentPages();
  } else {
    impl->forward = std::make_unique<CpuForward>(*impl->weights, *impl->kv_cache, *impl->workers);
  }

  impl->info.model_type = impl->spec.model_type;
  impl->info.path = model_dir;
  impl->info.vocab_size = impl->spec.vocab_size;
  impl->info.num_layers = impl->spec.num_layers;
  impl->info.max_context = impl->spec.max_position_embeddings;
  impl->info.parameter_count = impl->spec.total_params();
  impl->info.device = use_gpu ? "gpu" : "cpu";
  return Engine(std::move(impl));
}

namespace {

// One request the engine holds, from when it is handed out until its result is reported: at most the
// scheduler's window of waiting requests plus the running batch.
struct HeldRequest {
  Request owned;                      // a streamed request lives here
  const Request* request = nullptr;   // &owned, or the caller's span element
  std::optional<RequestState> state;  // choice 0's
  Result result;                      // choice 0's; the other choices' are result.other_choices
  // Request::n > 1: the other choices' states, and how many of the request's choices are still to finish:
  // its Result is final, and reported, when none is.
  std::deque<RequestState> other_states;
  int choices_left = 1;
  // Reported as cancelled while another of its choices still ran: that choice stops at its next token, and
  // the request is reported no more.
  bool reported = false;

  RequestState& state_of(const Sequence& sequence) {
    return sequence.choice == 0 ? *state : other_states[sequence.choice - 1];
  }
  Result& result_of(const Sequence& sequence) {
    return sequence.choice == 0 ? result : result.other_choices[sequence.choice - 1];
  }
};

using HeldRequests = absl::flat_hash_map<size_t, std::unique_ptr<HeldRequest>>;

// Scores the prompt positions the step computed for scoring sequences (StepChunk::prompt_logits) into their
// requests' Results (choice 0's: the prompt is scored once), rows in parallel (each writes its own position).
void ScorePromptRows(const std::vector<StepChunk>& chunks, const std::vector<Sequence*>& owners,
                     HeldRequests& held, const Tokenizer* tokenizer, int vocab, cpu::CpuWorkers& workers,
                     StepOutput* step_output) {
  struct Row {
    HeldRequest* request;
    int position;
  };
  std::vector<Row> rows;
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (chunks[c].prompt_logits == 0) continue;
    HeldRequest* request = held.at(owners[c]->request_index).get();
    for (int j = 0; j < chunks[c].prompt_logits; ++j) rows.push_back({request, chunks[c].start + j});
  }
  if (rows.empty()) return;
  workers.ParallelFor(static_cast<int64_t>(rows.size()), 4, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> scratch;
    for (int64_t i = begin; i < end; ++i) {
      Result& result = rows[i].request->result;
      ScorePromptPosition(step_output->prompt_logits.data() + i * vocab, vocab, rows[i].position,
                          result.prompt_ids, rows[i].request->request->top_logprobs, tokenizer, &result,
                          scratch);
    }
  });
}

// Fills `held.request` with the next request; false at the end.
using NextHeldRequest = std::function<bool(HeldRequest& held)>;
// Reports a final result; the callee may move from it (it is dropped next).
using ReportResult = std::function<void(size_t request_index, Result& result)>;

// Generate and GenerateStream: continuous batching over the requests `next_request` hands out, pulled while
// fewer than `window` wait to be scheduled (0: the plan's batch). Admission (first come, first served, up to
// the batch) then sees the same queue head as with every request queued at once, so any window of at least
// the batch runs the same steps.
absl::Status RunRequests(Engine::Impl& impl, const NextHeldRequest& next_request,
                         const TokenCallback& on_token, const ReportResult& report, size_t window) {
  const Tokenizer* tokenizer = impl.tokenizer.get();
  Scheduler scheduler(*impl.kv_cache, impl.options.plan.batch, impl.max_step_tokens);
  // The requests handed out and not reported yet (or reported as cancelled while a choice still runs), by
  // request index.
  HeldRequests held;
  if (window == 0) window = static_cast<size_t>(std::max(1, impl.options.plan.batch));
  size_t next_index = 0;
  bool feed_done = false;

  // Cancel's request ends this call, whichever way it returns; a later Generate starts afresh.
  struct ClearCancel {
    Engine::Impl& impl;
    ~ClearCancel() { impl.cancel_requested.store(false, std::memory_order_release); }
  } clear_cancel{impl};
  auto cancelled = [&] { return impl.cancel_requested.load(std::memory_order_acquire); };
  // Reports held request `i` and forgets it.
  auto finish = [&](size_t i) {
    auto it = held.find(i);
    report(i, it->second->result);
    held.erase(it);
  };
  // Reports request `i` as cancelled: its status says how far it got; partial output is dropped. The request
  // stays held (marked reported) while another of its choices may still run: that choice stops at its next
  // token.
  auto report_cancelled = [&](size_t i, int generated) {
    HeldRequest& request = *held.at(i);
    if (request.reported) return;  // another of its choices was reported already
    request.reported = true;
    const std::string& id = request.request->id;
    request.result = Result{};
    request.result.id = id;
    request.result.status =
        generated < 0
            ? absl::CancelledError(absl::StrCat("request '", id, "' cancelled before it started"))
            : absl::CancelledError(absl::StrCat("request '", id, "' cancelled while running, after ",
                                                generated, " generated tokens"));
    report(i, request.result);
    request.result = Result{};  // the states stay: a choice still running samples with its own
  };
  // Pulls requests until the window is full or the feed ends; one that fails before it is scheduled is
  // reported at once and never held.
  auto pull = [&] {
    while (!feed_done && !cancelled() && static_cast<size_t>(scheduler.waiting()) < window) {
      auto request = std::make_unique<HeldRequest>();
      if (!next_request(*request)) {
        feed_done = true;
        break;
      }
      const size_t i = next_index++;
      request->state.emplace(*request->request, impl.spec, tokenizer);
      request->result.id = request->request->id;
      absl::StatusOr<std::unique_ptr<Sequence>> sequence =
          request->state->Prepare(i, impl.spec, *impl.kv_cache, &request->result.prompt_ids);
      if (!sequence.ok()) {
        request->result.status = sequence.status();
        report(i, request->result);  // final now: it will never be scheduled
        continue;
      }
      if ((*sequence)->max_new_tokens == 0 && !(*sequence)->prompt_logits) {
        // echo with max_tokens 0 and no logprobs: the answer is the prompt itself, with nothing to compute.
        request->state->Finish(**sequence, &request->result);
        report(i, request->result);
        continue;
      }
      if ((*sequence)->prompt_logits)
        SizePromptLogprobs(request->result.prompt_ids, tokenizer, &request->result);
      const Request& fields = *request->request;
      request->choices_left = fields.n;
      for (int choice = 1; choice < fields.n; ++choice) {
        request->other_states.emplace_back(fields, impl.spec, tokenizer);
        request->result.other_choices.emplace_back().id = fields.id;
      }
      held.emplace(i, std::move(request));
      scheduler.Enqueue(std::move(*sequence));
    }
  };

  ForwardPass& forward = *impl.forward;
  const ForwardStats before = forward.stats();
  RunStats stats;
  const auto run_start = std::chrono::steady_clock::now();
  std::vector<StepChunk> chunks;
  std::vector<Sequence*> owners;
  StepOutput step_output;
  // (logits row or -1 when the pass picked the token, sequence) per chunk that wants a token.
  std::vector<std::pair<int, Sequence*>> sampling_rows;
  std::vector<SampledToken> sampled;
  std::vector<HeldRequest*> sampling_requests;             // the request of each sampling row
  std::vector<std::vector<TokenLogprob>> sampled_tops;     // per sampling row, with top_logprobs
  absl::flat_hash_map<size_t, absl::Status> nan_failures;  // request index -> its error
  const int vocab = impl.spec.vocab_size;
  const int64_t kv_bytes_per_token = impl.kv_cache->bytes_per_token();
  std::unique_ptr<FILE, int (*)(FILE*)> step_log_file(nullptr, &std::fclose);
  if (!impl.options.step_log_path.empty()) {
    step_log_file.reset(std::fopen(impl.options.step_log_path.c_str(), "a"));
    if (step_log_file == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot append to the step log ", impl.options.step_log_path));
    }
  }
  FILE* step_log = step_log_file.get();
  for (;;) {
    pull();
    if (cancelled()) {
      // Stop admitting: what waits is cancelled now; what runs gets until the deadline.
      for (std::unique_ptr<Sequence>& waiting : scheduler.TakeWaiting()) {
        report_cancelled(waiting->request_index, -1);
      }
      if (SteadyNanoseconds() >= impl.cancel_deadline_ns.load(std::memory_order_relaxed)) {
        for (std::unique_ptr<Sequence>& running : scheduler.TakeRunning()) {
          report_cancelled(running->request_index, running->generated());
        }
      }
    }
    if (scheduler.Idle()) break;  // the feed has ended (or the run was cancelled) and nothing is left
    const auto schedule_start = std::chrono::steady_clock::now();
    scheduler.NextStep(&chunks, &owners);
    stats.peak_sequences_in_flight = std::max(stats.peak_sequences_in_flight, scheduler.running());
    if (chunks.empty()) {
      return absl::InternalError("scheduler stalled: sequences wait but none can be admitted");
    }
    for (size_t c = 0; c < chunks.size(); ++c) {
      // The pass may pick a greedy token itself only when no logits processor changes the argmax and no top
      // alternatives are read from the logits row.
      const Request& request = *held.at(owners[c]->request_index)->request;
      chunks[c].greedy = request.sampling.temperature <= 0.0f &&
                         !ChangesGreedyChoice(request.sampling, owners[c]->generated()) &&
                         !(request.logprobs && request.top_logprobs > 0);
    }
    // A checkpoint truncated or rewritten under the job ends it here with a clear error, before this step
    // reads it (a change during a step is MappedFile's SIGBUS handler's; see io/mapped_file.h).
    if (absl::Status unchanged = impl.weights->checkpoint().CheckUnchanged(); !unchanged.ok())
      return unchanged;
    // The step log's per-step stage columns are differences of two snapshots around the step.
    const ForwardStats before_step = step_log != nullptr ? forward.stats() : ForwardStats{};
    const auto step_start = std::chrono::steady_clock::now();
    stats.host_step_seconds += std::chrono::duration<double>(step_start - schedule_start).count();
    if (absl::Status status = forward.Run(chunks, &step_output); !status.ok()) return status;
    const auto pass_end = std::chrono::steady_clock::now();
    bool has_prefill = false;
    int64_t step_prefill_tokens = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const StepChunk& chunk = chunks[c];
      if (chunk.start < owners[c]->prompt_length) {
        has_prefill = true;
        step_prefill_tokens += chunk.count;
        stats.prompt_tokens += chunk.count;
      }
      // Each new token's attention reads the K/V of every position up to its own.
      stats.kv_read_bytes += kv_bytes_per_token * (static_cast<int64_t>(chunk.count) * chunk.start +
                                                   static_cast<int64_t>(chunk.count) * (chunk.count + 1) / 2);
    }
    scheduler.Commit(chunks, owners);

    // Sample every row in parallel (each sequence has its own generator), then record them in order.
    const auto sampling_start = std::chrono::steady_clock::now();
    ScorePromptRows(chunks, owners, held, tokenizer, vocab, *impl.workers, &step_output);
    for (size_t c = 0; c < chunks.size(); ++c) {
      // NaN logits fail a scoring request as they fail a generating one (below).
      if (chunks[c].prompt_logits == 0) continue;
      const Sequence& owner = *owners[c];
      const HeldRequest& owner_request = *held.at(owner.request_index);
      const std::vector<float>& scored = owner_request.result.prompt_logprobs;
      for (int j = 0; j < chunks[c].prompt_logits; ++j) {
        if (!std::isnan(scored[chunks[c].start + j + 1])) continue;
        nan_failures.emplace(
            owner.request_index,
            absl::InternalError(
                absl::StrCat("request '", owner_request.request->id,
                             "': the model's logits are NaN at prompt position ", chunks[c].start + j,
                             " (the checkpoint holds NaN or Inf weights, or the computation overflowed)")));
        owners[c]->finished = true;
        break;
      }
    }
    sampling_rows.clear();
    sampling_requests.clear();
    int logits_row = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      if (!chunks[c].want_logits) continue;
      const bool picked = step_output.picked[sampling_rows.size()].token >= 0;
      sampling_rows.push_back({picked ? -1 : logits_row++, owners[c]});
      sampling_requests.push_back(held.at(owners[c]->request_index).get());
    }
    sampled.resize(sampling_rows.size());
    sampled_tops.assign(sampling_rows.size(), {});
    impl.workers->ParallelFor(static_cast<int64_t>(sampling_rows.size()), 4, [&](int64_t begin, int64_t end) {
      ProcessorScratch scratch;
      for (int64_t i = begin; i < end; ++i) {
        const int row = sampling_rows[i].first;
        if (row < 0) {
          sampled[i] = step_output.picked[i];
          continue;
        }
        Sequence& sequence = *sampling_rows[i].second;
        HeldRequest& held_request = *sampling_requests[i];
        const Request& request = *held_request.request;
        float* logits = step_output.logits.data() + static_cast<int64_t>(row) * vocab;
        const TokenHistory history{sequence.tokens, sequence.prompt_length,
                                   held_request.state_of(sequence).stop_ids()};
        sampled[i] = SampleProcessed(logits, vocab, request.sampling, history, sequence.random, scratch);
        // SampleProcessed left the row's (unprocessed) log-probabilities in place.
        if (request.logprobs && request.top_logprobs > 0)
          sampled_tops[i] = TopLogprobs(logits, vocab, request.top_logprobs, tokenizer, scratch.ids);
      }
    });
    // The SSD tier's totals so far, for the callback's progress display (a snapshot between Runs).
    TokenEvent ssd_so_far{};
    if (on_token && before.ssd_moe_layers > 0) {
      const ForwardStats now = forward.stats();
      ssd_so_far.ssd_read_bytes = now.ssd_read_bytes - before.ssd_read_bytes;
      ssd_so_far.ssd_read_seconds = now.ssd_read_seconds - before.ssd_read_seconds;
      ssd_so_far.ssd_wait_seconds = now.ssd_wait_seconds - before.ssd_wait_seconds;
    }
    for (size_t i = 0; i < sampling_rows.size(); ++i) {
      Sequence& sequence = *sampling_rows[i].second;
      // NaN logits (NaN or Inf weights, or an overflow) make every log-probability NaN, and the argmax would
      // silently be token 0: the request fails instead. One compare per row: the sampler's log-softmax
      // already folded the whole row into this value.
      if (std::isnan(sampled[i].logprob)) {
        nan_failures.emplace(
            sequence.request_index,
            absl::InternalError(
                absl::StrCat("request '", sampling_requests[i]->request->id,
                             "': the model's logits are NaN at generated token ", sequence.generated() + 1,
                             " (the checkpoint holds NaN or Inf weights, or the computation overflowed)")));
        sequence.finished = true;
        continue;
      }
      sequence.tokens.push_back(sampled[i].token);
      HeldRequest& request = *sampling_requests[i];
      if (request.reported) {
        // Reported as cancelled while this choice ran: nothing of it is kept, so it stops here.
        sequence.finished = true;
      } else {
        request.state_of(sequence).Accept(sampled[i], sequence, &request.result_of(sequence));
        if (request.request->logprobs && request.request->top_logprobs > 0)
          request.result_of(sequence).top_logprobs.push_back(std::move(sampled_tops[i]));
      }
      if (on_token) {
        on_token({sequence.request_index, sampled[i].token, sampled[i].logprob, sequence.finished,
                  sequence.prompt_length, sequence.choice, ssd_so_far.ssd_read_bytes,
                  ssd_so_far.ssd_read_seconds, ssd_so_far.ssd_wait_seconds});
      }
    }
    stats.sampling_seconds += SecondsSince(sampling_start);
    // A sequence that generates nothing (scoring, max_tokens 0) is done once its prompt is.
    for (Sequence* owner : owners) {
      if (owner->max_new_tokens == 0 && owner->computed >= owner->prompt_length) owner->finished = true;
    }
    for (std::unique_ptr<Sequence>& done : scheduler.Retire()) {
      const size_t index = done->request_index;
      HeldRequest& request = *held.at(index);
      if (request.reported) continue;  // cancelled while this choice ran on
      request.state_of(*done).Finish(*done, &request.result_of(*done));
      if (--request.choices_left > 0) continue;
      if (auto failure = nan_failures.find(index); failure != nan_failures.end()) {
        request.result = Result{};
        request.result.id = request.request->id;
        request.result.status = failure->second;
        nan_failures.erase(failure);
      } else {
        for (Result& other : request.result.other_choices) {
          // The choices share the prompt: its ids, and with echo its text and (computed once, by choice 0)
          // its log-probabilities.
          other.prompt_ids = request.result.prompt_ids;
          if (other.prompt_text.empty()) other.prompt_text = request.result.prompt_text;
          other.prompt_logprobs = request.result.prompt_logprobs;
          other.prompt_top_logprobs = request.result.prompt_top_logprobs;
        }
      }
      finish(index);
    }
    const double step_seconds = SecondsSince(step_start);
    stats.host_step_seconds += SecondsSince(pass_end);
    if (step_log != nullptr) {
      const ForwardStats after_step = forward.stats();
      const auto delta = [](double after, double before) { return after - before; };
      // Columns after the first four: where the step's time went (the driving thread's CPU attention and its
      // waits on the GPU, the feeder's host time queueing GPU work and its waits on expert counts, its
      // queueing of MoE and projections), then the ring's copy seconds and streamed MB, which lag a step.
      std::fprintf(step_log, "%d %zu %lld %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.1f", stats.steps,
                   chunks.size(), static_cast<long long>(step_prefill_tokens), step_seconds,
                   delta(after_step.times.attention, before_step.times.attention),
                   delta(after_step.cpu_wait_seconds, before_step.cpu_wait_seconds),
                   delta(after_step.feeder_busy_seconds, before_step.feeder_busy_seconds),
                   delta(after_step.feeder_wait_seconds, before_step.feeder_wait_seconds),
                   delta(after_step.times.moe, before_step.times.moe),
                   delta(after_step.times.projections, before_step.times.projections),
                   delta(after_step.copy_seconds, before_step.copy_seconds),
                   static_cast<double>(after_step.streamed_bytes - before_step.streamed_bytes) / 1e6);
      if (impl.options.gpu_stage_times && impl.info.device == "gpu") {
        // The line goes on with the compute stream's seconds by stage (GpuStage's order), then its idle.
        for (int stage = 0; stage < kGpuStages; ++stage)
          std::fprintf(step_log, " %.6f",
                       delta(after_step.gpu_stages.work[stage], before_step.gpu_stages.work[stage]));
        std::fprintf(step_log, " %.6f", delta(after_step.gpu_stages.idle, before_step.gpu_stages.idle));
      }
      std::fputc('\n', step_log);
    }
    stats.generated_tokens += static_cast<int64_t>(sampling_rows.size());
    ++stats.steps;
    if (has_prefill) {
      stats.prefill_step_seconds += step_seconds;
    } else {
      stats.decode_step_seconds += step_seconds;
      stats.decode_step_tokens += static_cast<int64_t>(sampling_rows.size());
    }
  }
  stats.wall_seconds = SecondsSince(run_start);
  // The pass's counters over this run; its gauges as they are now.
  const ForwardStats after = forward.stats();
  stats.embed_seconds = after.times.embed - before.times.embed;
  stats.projection_seconds = after.times.projections - before.times.projections;
  stats.attention_seconds = after.times.attention - before.times.attention;
  stats.moe_seconds = after.times.moe - before.times.moe;
  stats.dense_seconds = after.times.dense_mlp - before.times.dense_mlp;
  stats.lm_head_seconds = after.times.lm_head - before.times.lm_head;
  stats.streamed_bytes = after.streamed_bytes - before.streamed_bytes;
  stats.h2d_copy_seconds = after.copy_seconds - before.copy_seconds;
  stats.ssd_read_bytes = after.ssd_read_bytes - before.ssd_read_bytes;
  stats.ssd_read_seconds = after.ssd_read_seconds - before.ssd_read_seconds;
  stats.ssd_wait_seconds = after.ssd_wait_seconds - before.ssd_wait_seconds;
  stats.ssd_moe_layers = after.ssd_moe_layers;
  stats.gpu_wait_seconds = after.cpu_wait_seconds - before.cpu_wait_seconds;
  stats.gpu_feeder_busy_seconds = after.feeder_busy_seconds - before.feeder_busy_seconds;
  stats.gpu_feeder_wait_seconds = after.feeder_wait_seconds - before.feeder_wait_seconds;
  stats.cpu_attention_kv_bytes = after.cpu_kv_read_bytes - before.cpu_kv_read_bytes;
  stats.gpu_cache_kv_bytes = after.gpu_cache_kv_read_bytes - before.gpu_cache_kv_read_bytes;
  stats.gpu_peak_bytes = after.gpu_peak_bytes;
  stats.gpu_cap_bytes = after.gpu_cap_bytes;
  stats.resident_moe_layers = after.resident_moe_layers;
  stats.streamed_moe_layers = after.streamed_moe_layers;
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) == 0)
    stats.host_peak_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  impl.last_run_stats = stats;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Result>> Engine::Generate(std::span<const Request> requests,
                                                     const TokenCallback& on_token,
                                                     const ResultCallback& on_result) {
  std::vector<Result> results(requests.size());
  std::vector<bool> reported(requests.size(), false);
  size_t next = 0;
  absl::Status run = RunRequests(
      *impl_,
      [&](HeldRequest& held) {
        if (next >= requests.size()) return false;
        held.request = &requests[next++];
        return true;
      },
      on_token,
      [&](size_t i, Result& result) {
        if (on_result) on_result(i, result);
        results[i] = std::move(result);
        reported[i] = true;
      },
      // Every request queued at once, as the span is held anyway: a request that fails before it is
      // scheduled is reported before the first step.
      std::numeric_limits<size_t>::max());
  if (!run.ok()) return run;
  // A cancelled run stops handing requests out: the rest never started.
  for (size_t i = 0; i < requests.size(); ++i) {
    if (reported[i]) continue;
    results[i].id = requests[i].id;
    results[i].status =
        absl::CancelledError(absl::StrCat("request '", requests[i].id, "' cancelled before it started"));
    if (on_result) on_result(i, results[i]);
  }
  return results;
}

absl::Status Engine::GenerateStream(const RequestFeed& next_request, const TokenCallback& on_token,
                                    const ResultCallback& on_result) {
  return RunRequests(
      *impl_,
      [&](HeldRequest& held) {
        if (!next_request(&held.owned)) return false;
        held.request = &held.owned;
        return true;
      },
      on_token,
      [&](size_t i, Result& result) {
        if (on_result) on_result(i, result);
      },
      /*window=*/0);
}

}  // namespace ringmoe
