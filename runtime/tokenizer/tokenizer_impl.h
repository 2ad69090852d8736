// The parts of a loaded tokenizer, shared by the loader (tokenizer_json.cc), the Tokenizer methods
// (tokenizer.cc) and the incremental decoder.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/added_vocabulary.h"
#include "runtime/tokenizer/bpe_model.h"
#include "runtime/tokenizer/decoders.h"
#include "runtime/tokenizer/normalizers.h"
#include "runtime/tokenizer/post_processor.h"
#include "runtime/tokenizer/pre_tokenizers.h"

namespace ringmoe::tokenizer_internal {

// Threading: immutable after LoadTokenizerImpl (the model's word cache locks itself).
struct TokenizerImpl {
  std::string source;                           // The file it came from, for messages.
  std::unique_ptr<Normalizer> normalizer;       // May be null.
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // May be null.
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> post_processor;  // May be null.
  std::unique_ptr<Decoder> decoder;               // May be null: tokens are joined with spaces.
  std::optional<AddedVocabulary> added_vocabulary;
  std::vector<int32_t> eos_ids;
  std::optional<int32_t> bos_id;
  int32_t vocab_size = 0;

  // The string a token decodes from: the added token's content, else the model's; nullptr if unknown.
  std::optional<std::string_view> TokenString(int32_t id) const;
  bool IsSpecial(int32_t id) const;
};

// Parses a tokenizer.json text. `source` names it in errors.
absl::StatusOr<std::unique_ptr<TokenizerImpl>> ParseTokenizerJson(std::string json,
                                                                  const std::string& source);

// Resolves `path` (file or folder), reads tokenizer.json(.gz) and, when found next to it,
// tokenizer_config.json.
absl::StatusOr<std::unique_ptr<TokenizerImpl>> LoadTokenizerImpl(const std::string& path);

}  // namespace ringmoe::tokenizer_internal
