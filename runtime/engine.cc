#include "ringmoe/engine.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cpu/thread_pool.h"
#include "io/checkpoint.h"
#include "ringmoe/tokenizer.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/model_config.h"
#include "runtime/model_weights.h"
#include "runtime/request_state.h"
#include "runtime/scheduler.h"

namespace ringmoe {
namespace {

int64_t AvailableHostBytes() {
  long pages = sysconf(_SC_AVPHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : int64_t{8} << 30;
}

io::DType ChooseComputeType(ComputeType requested, const io::Checkpoint& checkpoint) {
  if (requested == ComputeType::kF32) return io::DType::kF32;
  if (requested == ComputeType::kBF16) return io::DType::kBF16;
  const io::TensorView* probe = checkpoint.Find("model.layers.0.self_attn.q_proj.weight");
  const bool f32_checkpoint = probe == nullptr || probe->dtype() == io::DType::kF32;
  return !f32_checkpoint && cpu::CpuHasNativeBf16() ? io::DType::kBF16 : io::DType::kF32;
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  ModelSpec spec;
  std::unique_ptr<ModelWeights> weights;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<cpu::CpuWorkers> workers;
  std::unique_ptr<KvCache> kv_cache;
  ModelInfo info;
  StageTimes stage_times;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

const ModelInfo& Engine::info() const { return impl_->info; }
const Tokenizer* Engine::tokenizer() const { return impl_->tokenizer ? &*impl_->tokenizer : nullptr; }

absl::StatusOr<Engine> Engine::Open(const std::string& model_dir, const EngineOptions& options) {
  if (options.device == Device::kGpu) {
    return absl::UnimplementedError("the GPU path is not wired into the engine yet; use --device cpu or auto");
  }
  if (options.max_batch < 1 || options.max_step_tokens < 1 || options.kv_block_tokens < 1) {
    return absl::InvalidArgumentError("max_batch, max_step_tokens and kv_block_tokens must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(model_dir);
  if (!spec.ok()) return spec.status();
  impl->spec = *spec;
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  const io::DType compute = ChooseComputeType(options.cpu_compute, **checkpoint);
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Load(impl->spec, std::move(*checkpoint), compute);
  if (!weights.ok()) return weights.status();
  impl->weights = std::move(*weights);

  // The tokenizer is optional: without one, prompts must be token ids and outputs carry no text.
  std::string tokenizer_path = options.tokenizer_path;
  if (tokenizer_path.empty() && std::filesystem::exists(model_dir + "/tokenizer.json")) tokenizer_path = model_dir;
  if (!tokenizer_path.empty()) {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(tokenizer_path);
    if (!tokenizer.ok()) return tokenizer.status();
    impl->tokenizer.emplace(std::move(*tokenizer));
    for (int32_t id : impl->tokenizer->EosTokenIds()) {
      if (std::find(impl->spec.eos_token_ids.begin(), impl->spec.eos_token_ids.end(), id) ==
          impl->spec.eos_token_ids.end()) {
        impl->spec.eos_token_ids.push_back(id);
      }
    }
  }

  impl->workers = std::make_unique<cpu::CpuWorkers>(options.threads);

  // KV cache: enough for max_batch sequences of full context, within the budget (default: half the free RAM).
  const int64_t bytes_per_token = KvCache::BytesPerToken(impl->spec, compute);
  const int64_t budget = options.kv_cache_bytes > 0 ? options.kv_cache_bytes : AvailableHostBytes() / 2;
  const int64_t wanted_tokens = static_cast<int64_t>(options.max_batch) * impl->spec.max_position_embeddings;
  const int64_t tokens = std::min(wanted_tokens, budget / bytes_per_token);
  const int num_blocks = static_cast<int>(std::min<int64_t>(tokens / options.kv_block_tokens, INT32_MAX / 2));
  if (num_blocks < 1) {
    return absl::ResourceExhaustedError(absl::StrCat("KV-cache budget of ", budget, " bytes holds no block of ",
                                                     options.kv_block_tokens, " tokens (", bytes_per_token,
                                                     " bytes per token)"));
  }
  impl->kv_cache = std::make_unique<KvCache>(impl->spec, compute, options.kv_block_tokens, num_blocks);

  impl->info.model_type = impl->spec.model_type;
  impl->info.path = model_dir;
  impl->info.vocab_size = impl->spec.vocab_size;
  impl->info.num_layers = impl->spec.num_layers;
  impl->info.max_context = impl->spec.max_position_embeddings;
  impl->info.parameter_count = impl->spec.total_params();
  impl->info.device = "cpu";
  return Engine(std::move(impl));
}

absl::StatusOr<std::vector<Result>> Engine::Generate(std::span<const Request> requests,
                                                     const TokenCallback& on_token) {
  Impl& impl = *impl_;
  const Tokenizer* tokenizer = this->tokenizer();
  std::vector<Result> results(requests.size());
  std::vector<RequestState> states;
  states.reserve(requests.size());
  const int max_step_tokens = std::max(impl.options.max_step_tokens, impl.options.max_batch);
  Scheduler scheduler(*impl.kv_cache, impl.options.max_batch, max_step_tokens);

  for (size_t i = 0; i < requests.size(); ++i) {
    states.emplace_back(requests[i], impl.spec, tokenizer);
    Result& result = results[i];
    result.id = requests[i].id;
    absl::StatusOr<std::unique_ptr<Sequence>> sequence =
        states.back().Prepare(i, impl.spec, *impl.kv_cache, &result.prompt_ids);
    if (!sequence.ok()) {
      result.status = sequence.status();
      continue;
    }
    scheduler.Enqueue(std::move(*sequence));
  }

  CpuForward forward(*impl.weights, *impl.kv_cache, *impl.workers);
  std::vector<StepChunk> chunks;
  std::vector<Sequence*> owners;
  std::vector<float> logits;
  std::vector<int32_t> scratch;
  const int vocab = impl.spec.vocab_size;
  while (!scheduler.Idle()) {
    scheduler.NextStep(&chunks, &owners);
    if (chunks.empty()) {
      return absl::InternalError("scheduler stalled: sequences wait but none can be admitted");
    }
    if (absl::Status status = forward.Run(chunks, &logits); !status.ok()) return status;
    scheduler.Commit(chunks, owners);
    int row = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      if (!chunks[c].want_logits) continue;
      Sequence& sequence = *owners[c];
      RequestState& state = states[sequence.request_index];
      SampledToken sampled = SampleToken(logits.data() + static_cast<int64_t>(row++) * vocab, vocab,
                                         requests[sequence.request_index].sampling, sequence.random, scratch);
      sequence.tokens.push_back(sampled.token);
      state.Accept(sampled, sequence, &results[sequence.request_index]);
      if (on_token) {
        on_token({sequence.request_index, sampled.token, sampled.logprob, sequence.finished, sequence.prompt_length});
      }
    }
    for (std::unique_ptr<Sequence>& done : scheduler.Retire()) {
      states[done->request_index].Finish(*done, &results[done->request_index]);
    }
  }
  impl.stage_times = forward.stage_times();
  return results;
}

}  // namespace ringmoe
