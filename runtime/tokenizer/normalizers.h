// Normalizers of tokenizer.json ("normalizer"): applied to each piece of the input that is not an added
// token.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/tokenizer/regex.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {

// Threading: immutable; Normalize is safe from many threads.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string& text) const = 0;
};

class UnicodeNormalizer final : public Normalizer {  // NFC, NFD, NFKC, NFKD.
 public:
  explicit UnicodeNormalizer(NormalizationForm form) : form_(form) {}
  void Normalize(std::string& text) const override { text = NormalizeUnicode(text, form_); }

 private:
  NormalizationForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void Normalize(std::string& text) const override { text = ToLowercase(text); }
};

// Strip: removes leading and/or trailing White_Space characters.
class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string& text) const override;

 private:
  bool left_, right_;
};

// Prepend: adds `prefix` in front of every non-empty piece.
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

// Replace: every match of a literal string or a regex becomes `content`.
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string& text) const override;

 private:
  Regex pattern_;
  std::string content_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void Normalize(std::string& text) const override {
    for (const auto& step : steps_) step->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// Replaces every match of `pattern` in `text` by `content` (shared with the Replace decoder).
void ReplaceAll(const Regex& pattern, const std::string& content, std::string& text);

}  // namespace ringmoe::tokenizer_internal
