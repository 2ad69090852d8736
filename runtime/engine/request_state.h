// RequestState: one request's life in the engine around its Sequence: validation and tokenisation before it is
// scheduled, and after each sampled token the stop checks (EOS, stop ids, stop strings across token
// boundaries), incremental detokenisation and the Result fields.
// Threading: used by the engine's scheduler thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/engine/kv_cache.h"
#include "io/model_spec.h"
#include "runtime/engine/sampler.h"
#include "runtime/engine/scheduler.h"

namespace ringmoe {

class RequestState {
 public:
  RequestState(const Request& request, const ModelSpec& spec, const Tokenizer* tokenizer);

  // Validates the request and builds its sequence. Errors name the request and what is wrong with it.
  absl::StatusOr<std::unique_ptr<Sequence>> Prepare(size_t request_index, const ModelSpec& spec,
                                                    const KvCache& kv_cache, std::vector<int32_t>* prompt_ids);
  // Records the token just appended to sequence.tokens; marks the sequence finished when it should stop.
  void Accept(const SampledToken& sampled, Sequence& sequence, Result* result);
  // Completes the Result once the sequence has finished.
  void Finish(const Sequence& sequence, Result* result);
  // The ids that end generation: stop_token_ids, and EOS unless ignore_eos (min_tokens holds them back).
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }

 private:
  absl::Status Error(absl::StatusCode code, absl::string_view message) const;

  const Request& request_;
  const Tokenizer* tokenizer_;
  std::vector<int32_t> stop_ids_;
  std::optional<IncrementalDecoder> decoder_;
  std::string text_;
  bool stopped_by_string_ = false;
  FinishReason finish_reason_ = FinishReason::kLength;
};

}  // namespace ringmoe
