// IncrementalDecoder: streaming detokenisation. Decodes a short window (the ids of the previous returned
// piece as context, plus the pending ids) and returns what the pending ids add, holding back text that ends
// in an incomplete character. Keeping real context makes decoders with first-token rules (SentencePiece's
// leading space) and multi-token characters (byte fallback, byte-level) come out as the whole-sequence Decode
// does.
#include "ringmoe/tokenizer.h"
#include "runtime/tokenizer/tokenizer_impl.h"

namespace ringmoe {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";
// After this many pending ids a trailing U+FFFD is taken as real (invalid bytes), not an incomplete
// character.
constexpr size_t kMaxPendingIds = 8;

bool EndsWithReplacement(const std::string& text) {
  return text.size() >= kReplacementCharacter.size() &&
         text.compare(text.size() - kReplacementCharacter.size(), kReplacementCharacter.size(),
                      kReplacementCharacter) == 0;
}

}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDecoder::Append(int32_t id) {
  // A skipped special token or an unknown id contributes nothing and must not become context.
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return "";
  if (!tokenizer_->impl_->TokenString(id).has_value()) return "";
  window_.push_back(id);
  const std::string text = tokenizer_->Decode(window_, skip_special_tokens_);
  if (EndsWithReplacement(text) && window_.size() - context_size_ < kMaxPendingIds) return "";
  std::string fresh = PendingText(text);
  // The ids just returned become the context of the next call.
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(context_size_));
  context_size_ = window_.size();
  context_text_ = tokenizer_->Decode(window_, skip_special_tokens_);
  return fresh;
}

std::string IncrementalDecoder::Flush() {
  std::string fresh;
  if (window_.size() > context_size_) fresh = PendingText(tokenizer_->Decode(window_, skip_special_tokens_));
  window_.clear();
  context_size_ = 0;
  context_text_.clear();
  return fresh;
}

std::string IncrementalDecoder::PendingText(const std::string& window_text) const {
  if (window_text.size() >= context_text_.size() &&
      window_text.compare(0, context_text_.size(), context_text_) == 0) {
    return window_text.substr(context_text_.size());
  }
  // The pending ids changed how the context decodes (byte-fallback runs that are invalid as a whole decode to
  // one U+FFFD per byte): return the pending ids' own text.
  const std::vector<int32_t> pending(window_.begin() + static_cast<std::ptrdiff_t>(context_size_),
                                     window_.end());
  return tokenizer_->Decode(pending, skip_special_tokens_);
}

}  // namespace ringmoe
