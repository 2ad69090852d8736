// Tokenizer: the encode pipeline (added tokens, normalizer, pre-tokenizer, model, post-processor) and decode.
#include "ringmoe/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe {

using tokenizer_internal::Pieces;
using tokenizer_internal::TokenizerImpl;

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<Tokenizer> Tokenizer::Load(const std::string& path) {
  auto impl = tokenizer_internal::LoadTokenizerImpl(path);
  if (!impl.ok()) return impl.status();
  return Tokenizer(std::move(*impl));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  if (auto bad = tokenizer_internal::FindInvalidUtf8(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8: byte 0x",
                     absl::Hex(static_cast<uint8_t>(text[*bad]), absl::kZeroPad2), " at byte offset ", *bad));
  }
  Pieces pieces;
  impl_->added_vocabulary->ExtractAndNormalize(text, impl_->normalizer.get(), pieces);
  if (impl_->pre_tokenizer != nullptr) {
    absl::Status status = impl_->pre_tokenizer->PreTokenize(pieces);
    if (!status.ok()) return status;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  for (const auto& piece : pieces) {
    if (piece.added_id >= 0) {
      ids.push_back(piece.added_id);
    } else {
      impl_->model->Tokenize(piece.text, ids);
    }
  }
  if (impl_->post_processor != nullptr) impl_->post_processor->Process(ids, add_special_tokens);
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::optional<std::string_view> token = impl_->TokenString(id);
    if (!token.has_value()) continue;  // Unknown ids are dropped, as in the library.
    if (skip_special_tokens && impl_->added_vocabulary->IsSpecialContent(*token)) continue;
    tokens.emplace_back(*token);
  }
  if (impl_->decoder == nullptr) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) joined.push_back(' ');
      joined += tokens[i];
    }
    return joined;
  }
  impl_->decoder->DecodeChain(tokens);
  std::string text;
  for (const std::string& piece : tokens) text += piece;
  return text;
}

std::string Tokenizer::TokenToString(int32_t id) const {
  const int32_t single[1] = {id};
  return Decode(single, /*skip_special_tokens=*/false);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  const std::optional<std::string_view> token = impl_->TokenString(id);
  if (!token.has_value()) return std::nullopt;
  return std::string(*token);
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto id = impl_->added_vocabulary->FindByContent(token)) return id;
  return impl_->model->TokenToId(token);
}

int Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::vector<int32_t> Tokenizer::EosTokenIds() const { return impl_->eos_ids; }
std::optional<int32_t> Tokenizer::BosTokenId() const { return impl_->bos_id; }
bool Tokenizer::IsSpecial(int32_t id) const { return impl_->IsSpecial(id); }

}  // namespace ringmoe
