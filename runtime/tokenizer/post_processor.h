// Post-processors of tokenizer.json ("post_processor"): add the special tokens around a single sequence when
// add_special_tokens is set. Only ids matter here; offset trimming (ByteLevel) has no effect on them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace ringmoe::tokenizer_internal {

// Threading: immutable; Process is safe from many threads.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

// TemplateProcessing's single-sequence template, BertProcessing and RobertaProcessing all reduce to this:
// fixed ids before and after the sequence.
class TemplatePostProcessor final : public PostProcessor {
 public:
  TemplatePostProcessor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), before_.begin(), before_.end());
    ids.insert(ids.end(), after_.begin(), after_.end());
  }

 private:
  std::vector<int32_t> before_, after_;
};

// ByteLevel as a post-processor only trims offsets: ids pass through.
class PassThroughPostProcessor final : public PostProcessor {
 public:
  void Process(std::vector<int32_t>&, bool) const override {}
};

class SequencePostProcessor final : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& step : steps_) step->Process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

}  // namespace ringmoe::tokenizer_internal
