// Decoders of tokenizer.json ("decoder"): turn token strings back into text. Each step maps the list of token
// strings to a new list (the library's decode_chain); the final text is their concatenation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/tokenizer/pre_tokenizers.h"
#include "runtime/tokenizer/regex.h"

namespace ringmoe::tokenizer_internal {

// Threading: immutable; DecodeChain is safe from many threads.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void DecodeChain(std::vector<std::string>& tokens) const = 0;
};

// ByteLevel: characters back to bytes (a token with a character outside the alphabet keeps its UTF-8 bytes);
// the bytes of all tokens are joined and invalid UTF-8 becomes U+FFFD.
class ByteLevelDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override;

 private:
  Regex pattern_;
  std::string content_;
};

// ByteFallback: runs of <0xNN> tokens become their bytes when those form valid UTF-8, else one U+FFFD per
// byte.
class ByteFallbackDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override;
};

class FuseDecoder final : public Decoder {  // Joins every token into one.
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override;
};

// Strip: removes up to `start` leading and `stop` trailing occurrences of `content` from each token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>& tokens) const override;

 private:
  char32_t content_;
  size_t start_, stop_;
};

// Metaspace: the replacement character becomes a space, except in the first token when a prefix was
// prepended.
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, PrependScheme scheme) : replacement_(replacement), scheme_(scheme) {}
  void DecodeChain(std::vector<std::string>& tokens) const override;

 private:
  char32_t replacement_;
  PrependScheme scheme_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->DecodeChain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace ringmoe::tokenizer_internal
