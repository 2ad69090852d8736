/// @file
/// ringmoe public API: open a Hugging Face MoE checkpoint, submit a batch of requests, get results.
///
/// This header (and the others under runtime/include/ringmoe) is the only public face of the engine. It
/// carries no CUDA, oneDNN or TBB types. Errors a user can cause come back as absl::Status naming the file,
/// tensor or request at fault; a bad request fails alone and the rest of the batch completes.
///
/// @code
///   auto engine = ringmoe::Engine::Open("models/tiny", {});
///   std::vector<ringmoe::Request> requests = ...;
///   auto results = engine->Generate(requests);
/// @endcode
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "planner/execution_plan.h"

namespace ringmoe {

class Tokenizer;
struct PlanReport;

/// Arithmetic type of the CPU matmuls. kAuto: bf16 when the checkpoint is not f32 and the CPU has AMX or
/// AVX512-BF16, f32 otherwise. Golden tests force kF32. (The GPU path always computes in bf16.)
enum class ComputeType { kAuto, kF32, kBF16 };

/// How the GPU path issues the routed experts' GEMMs (EngineOptions::expert_gemm).
enum class ExpertGemm { kAuto, kLoop, kGrouped };

struct EngineOptions {
  ComputeType cpu_compute = ComputeType::kAuto;
  int threads = 0;             ///< CPU worker threads; 0 = every core hwloc reports.
  std::string tokenizer_path;  ///< tokenizer.json or folder; empty = the model folder.
  /// A tokenizer already loaded (the frontend loads one to count the job's prompts): used instead of loading
  /// tokenizer_path again. Null: load it.
  std::shared_ptr<const Tokenizer> tokenizer;
  /// Diagnostics: when set, Generate appends one line per step to this file: index, chunks, prefill tokens,
  /// seconds (for fitting the planner to what each kind of step costs), then the step's share of the pass's
  /// stage counters (ForwardStats): CPU attention, the CPU's waits on the GPU, the GPU feeder's busy time and
  /// its waits on expert counts, its MoE and projection queueing (seconds), ring copy seconds and streamed MB
  /// (these two as of the end of the previous step on the GPU path). Zeros where a pass does not count.
  std::string step_log_path;
  /// Diagnostics, GPU path: times each stage of the compute stream's work with CUDA events (a few
  /// microseconds of host time per stage) and adds to each step-log line the GPU's seconds by stage (upload,
  /// projections, its own attention, router, expert sort, expert GEMMs, dense MLP and shared experts, waits
  /// for the ring, lm_head) and the seconds the stream sat empty waiting for the host.
  bool gpu_stage_times = false;
  /// Diagnostics, GPU path: how the routed experts' GEMMs are issued. kAuto (the default) picks per call by
  /// the rows each routed expert gets (gpu/moe_ops.h: cuBLAS's grouped call, or one GEMM per expert); the
  /// others force one way, to compare them inside a run.
  ExpertGemm expert_gemm = ExpertGemm::kAuto;
  /// The plan the engine runs, and the only place its choices come from: the device, sequences in flight,
  /// tokens per step, the KV cache (block size, type, host budget, the GPU's share) and, on the GPU, where
  /// each layer's routed experts live, the ring and the micro-batches. `ringmoe plan` and the frontend's
  /// PlanJob (runtime/frontend/job_plan.h) make one for a job; this default runs on the CPU. On the CPU the
  /// KV cache takes the compute type (cpu_compute), whatever plan.kv.dtype says, unless it is F8_E4M3
  /// (--kv-dtype fp8); Engine::plan() shows it.
  planner::ExecutionPlan plan = planner::DefaultPlan(planner::PlanDevice::kCpu);
  /// --ssd-dir: directories (one per NVMe drive) where the GPU path lays out, once per model and plan, the
  /// plan's SSD-tier sections as section files striped over them, and reads them from there. Empty: the SSD
  /// tier reads the checkpoint's own files. Never the model's folder.
  std::vector<std::string> ssd_dirs;
};

/// Sampling: temperature 0 is greedy. With temperature > 0 the token is drawn from the top-p nucleus of the
/// tempered distribution with a per-request generator seeded by `seed` (the same seed gives the same tokens).
/// The logits processors below run first, in vLLM's order: min_tokens, logit_bias, the penalties, then
/// temperature, min_p and top_k / top_p (runtime/engine/logits_processors.h). Their defaults change nothing.
struct SamplingParams {
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int top_k = 0;                    ///< Keep the k most likely tokens; 0 or -1: all.
  float min_p = 0.0f;               ///< Drop tokens less likely than min_p times the most likely one.
  float presence_penalty = 0.0f;    ///< Subtracted once from the logit of every token generated so far.
  float frequency_penalty = 0.0f;   ///< Subtracted per occurrence among the generated tokens.
  float repetition_penalty = 1.0f;  ///< > 0; prompt and generated tokens: positive logits / p, negative * p.
  int min_tokens = 0;  ///< EOS and stop_token_ids are impossible (stop strings unchecked) until this many.
  std::vector<std::pair<int32_t, float>> logit_bias;  ///< (token id, bias added to its logit).
};

struct Request {
  std::string id;                   ///< The caller's name for it (custom_id in batch files).
  std::vector<int32_t> prompt_ids;  ///< Used when prompt_text is empty.
  std::string prompt_text;          ///< Encoded with the model's tokenizer when non-empty.
  int max_tokens = 16;              ///< At least 1; 0 only with echo (scoring: nothing is generated).
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  ///< Generation stops after emitting one of these (as with EOS).
  std::vector<std::string> stop;        ///< Stop strings; the text is cut before the match.
  bool logprobs = false;                ///< Report the log-probability of each generated token.
  bool ignore_eos = false;
  /// Completions to generate from the one prompt, each with its own generator (choice 0 seeded by
  /// sampling.seed). The prompt is prefilled once: the other choices share its KV blocks.
  int n = 1;
  /// With logprobs: also report this many most likely tokens at each position (0..kMaxTopLogprobs).
  int top_logprobs = 0;
  /// Return the prompt beside the completion (Result::prompt_text) and, with logprobs, the log-probability
  /// of every prompt token (Result::prompt_logprobs): the LM head then runs over every prompt position.
  /// With echo, max_tokens may be 0: the prompt is scored and nothing is generated.
  bool echo = false;
};

/// The most alternatives Request::top_logprobs may ask for (OpenAI's and vLLM's limit).
inline constexpr int kMaxTopLogprobs = 20;

/// A token and its log-probability, with its text piece (empty without a tokenizer).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  std::string text;
};

enum class FinishReason { kStop, kLength };

struct Result {
  std::string id;
  absl::Status status;  ///< Non-OK: the request failed alone; the fields below are empty.
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;             ///< One per token when Request::logprobs, else empty.
  std::vector<std::string> token_strings;  ///< Decoded text piece of each token, with logprobs.
  /// With logprobs and top_logprobs > 0: per generated token, the top_logprobs most likely tokens, most
  /// likely first (ties: lower id first). All log-probabilities here are the model's own distribution,
  /// before temperature and top-p, as `logprobs` is.
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  /// With echo: the prompt as text (prompt_text as given, else the decoded prompt_ids).
  std::string prompt_text;
  /// With echo and logprobs, one entry per prompt token: its log-probability given the tokens before it
  /// (NaN for the first, which has no context), its text piece, and (top_logprobs > 0) the most likely
  /// tokens at its position (empty for the first).
  std::vector<float> prompt_logprobs;
  std::vector<std::string> prompt_token_strings;
  std::vector<std::vector<TokenLogprob>> prompt_top_logprobs;
  std::string text;  ///< Detokenised completion; empty when no tokenizer is loaded.
  FinishReason finish_reason = FinishReason::kLength;
  /// Request::n > 1: choices 1 .. n-1 (the fields above are choice 0), each a whole Result with the request's
  /// id, status and prompt_ids and its own tokens, text and finish_reason. Empty when n is 1.
  std::vector<Result> other_choices;
};

/// One generated token, reported as soon as it is sampled. Called on the engine's scheduler thread: keep it
/// short and do not call back into the engine.
struct TokenEvent {
  size_t request_index;  ///< Index into the span passed to Generate (GenerateStream: the feed's order).
  int32_t token;
  float logprob;
  bool finished;
  int prompt_tokens;  ///< The request's prompt length in tokens (after tokenisation).
  int choice = 0;     ///< Which of the request's n choices (Request::n); `finished` is that choice's.
  /// A plan with an SSD tier (GPU path): this Generate's SSD totals so far, as of the step that sampled
  /// this token (all 0 without an SSD tier), for progress displays.
  int64_t ssd_read_bytes = 0;   ///< bytes read from SSD
  double ssd_read_seconds = 0;  ///< time the SSD reader had reads in flight
  double ssd_wait_seconds = 0;  ///< time the ring waited for SSD reads (the SSD's share of step time)
};
using TokenCallback = std::function<void(const TokenEvent&)>;

/// One request's final Result, reported as soon as it is final: when its sequence retires, or at once when
/// the request fails before it is scheduled (a prompt too long, a text prompt without a tokenizer, ...).
/// Called exactly once per request, in completion order, on the engine's scheduler thread, before Generate
/// returns; `request_index` indexes the span passed to Generate (for GenerateStream, it counts the requests
/// in the order the feed handed them out) and `result` is the same value Generate returns for it. This lets a
/// caller save each result while the rest still run (ringmoe run appends it to the output file), so an
/// interrupted job keeps what finished. When Generate fails as a whole, requests not yet reported get no
/// call.
using ResultCallback = std::function<void(size_t request_index, const Result& result)>;

/// Where GenerateStream's requests come from: fills `*request` with the next request and returns true, or
/// returns false when there are no more (it is not called again in that run). Called on the engine's
/// scheduler thread, between steps, whenever fewer requests wait to be scheduled than the plan's batch (so
/// the engine holds at most about twice the batch of requests, whatever the job's length), and never after
/// Cancel. Do not call back into the engine from it.
using RequestFeed = std::function<bool(Request* request)>;

struct ModelInfo {
  std::string model_type;
  std::string path;
  int vocab_size = 0;
  int num_layers = 0;
  int max_context = 0;
  int64_t parameter_count = 0;
  std::string device;  ///< "cpu" or "gpu": where the forward actually runs.
};

/// What the last Generate measured: for reports and benchmarks.
struct RunStats {
  double wall_seconds = 0;
  int steps = 0;
  int64_t prompt_tokens = 0;  ///< prefilled
  int64_t generated_tokens = 0;
  double prefill_step_seconds = 0;  ///< steps that held at least one prefill chunk
  double decode_step_seconds = 0;   ///< steps of decodes only
  int64_t decode_step_tokens = 0;   ///< tokens generated in decode-only steps
  /// Per stage, as the forward pass splits them (seconds of host time).
  double embed_seconds = 0, projection_seconds = 0, attention_seconds = 0, moe_seconds = 0, dense_seconds = 0,
         lm_head_seconds = 0, sampling_seconds = 0;
  double gpu_wait_seconds = 0;         ///< host time blocked on the GPU
  double h2d_copy_seconds = 0;         ///< time the copy stream spent streaming weights
  double gpu_feeder_busy_seconds = 0;  ///< GPU path: the feeder thread queueing GPU work (its waits included)
  double gpu_feeder_wait_seconds = 0;  ///< of which waiting for MoE expert counts
  int64_t streamed_bytes = 0;          ///< host-to-GPU expert bytes
  int64_t ssd_read_bytes = 0;          ///< of which first read from SSD (the plan's SSD tier)
  double ssd_read_seconds = 0;         ///< time the SSD reader had reads in flight
  double ssd_wait_seconds = 0;         ///< time the ring waited for SSD reads
  int64_t kv_read_bytes = 0;           ///< KV-cache bytes attention read
  int64_t cpu_attention_kv_bytes = 0;  ///< of which the CPU's attention read (the rest ran on the GPU)
  int64_t gpu_cache_kv_bytes = 0;  ///< of which the GPU read from its share of the cache (plan.kv.gpu_bytes)
  int64_t gpu_peak_bytes = 0;
  int64_t gpu_cap_bytes = 0;
  int64_t host_peak_bytes = 0;  ///< peak resident set of the process
  int resident_moe_layers = 0, streamed_moe_layers = 0, ssd_moe_layers = 0;
  /// Most sequences in flight in one step (the plan's batch, where the KV cache and the requests allow).
  int peak_sequences_in_flight = 0;
  /// Host time of the step loop outside the forward pass: admission and KV blocks, the step's chunks,
  /// sampling and retiring finished sequences.
  double host_step_seconds = 0;
};

/// Threading: an Engine may be used from one thread at a time; Generate and GenerateStream run their own
/// worker threads. The one
/// exception is Cancel, which any thread may call at any time (a signal-watching thread, a UI thread).
class Engine {
 public:
  static absl::StatusOr<Engine> Open(const std::string& model_dir, const EngineOptions& options);

  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;
  ~Engine();

  /// Runs every request to completion with continuous batching. Per-request failures (prompt too long, text
  /// prompt without a tokenizer, ...) are reported in that Result's status; the returned status is non-OK
  /// only when the engine itself failed. `on_token` sees each token as it is sampled, `on_result` each
  /// request's Result as soon as it is final (see ResultCallback).
  absl::StatusOr<std::vector<Result>> Generate(std::span<const Request> requests,
                                               const TokenCallback& on_token = nullptr,
                                               const ResultCallback& on_result = nullptr);

  /// Generate for a job of any length: requests are pulled from `next_request` a window ahead of the engine
  /// (the plan's batch), each is tokenised when it is pulled, its Result reported through `on_result` as soon
  /// as it is final and then forgotten, so memory stays bounded by what is in flight. (Generate queues its
  /// whole span at once, and so reports requests that fail before they are scheduled before the first step;
  /// GenerateStream reports them when it pulls them.) `request_index` in the
  /// callbacks counts the requests in the order the feed handed them out (0, 1, ...). Scheduling is the same
  /// as Generate's (first come, first served), so the same requests give the same results. After Cancel the
  /// feed is not called again; requests it handed out and that are not finished are reported cancelled, as
  /// Generate reports them. Returns non-OK only when the engine itself failed.
  absl::Status GenerateStream(const RequestFeed& next_request, const TokenCallback& on_token = nullptr,
                              const ResultCallback& on_result = nullptr);

  /// Asks the Generate in progress (or, when none runs, the next one to start) to stop: it admits no more
  /// requests, lets the ones already running go on for at most `grace_seconds` (0: none; each that finishes
  /// in that time keeps its result), and then returns. Every request not finished by then is reported,
  /// through the ResultCallback and in the returned vector, with an absl::CancelledError status (error code
  /// "cancelled"): never-started ones and in-flight ones alike, the latter without their partial tokens.
  /// Generate itself returns OK. The stop takes effect between steps, so Generate returns within one step
  /// (plus the grace) of the call. Thread-safe and lock-free: any thread may call it, as often as it likes
  /// (the latest grace wins). Generate clears the request as it returns. From a signal handler, set a flag
  /// there and call Cancel from a thread that watches it.
  void Cancel(double grace_seconds = 0);

  const ModelInfo& info() const;
  /// The plan this engine runs: EngineOptions::plan, with the CPU path's KV type resolved.
  const planner::ExecutionPlan& plan() const;
  const RunStats& last_run_stats() const;
  /// The model's tokenizer, or nullptr when the model folder has none.
  const Tokenizer* tokenizer() const;

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringmoe
