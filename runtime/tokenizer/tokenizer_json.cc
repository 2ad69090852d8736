// Loading: tokenizer.json (plain or gzip) into TokenizerImpl, plus the EOS/BOS tokens of
// tokenizer_config.json. simdjson parses the big vocabularies quickly (gpt-oss: 28 MB, 200k tokens, 446k
// merges).
#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/regular_file.h"
#include "runtime/tokenizer/file_reader.h"
#include "runtime/tokenizer/string_map.h"
#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {
namespace {

using Element = simdjson::dom::element;

// Token ids index dense tables (id -> token), so an id from the file bounds an allocation: far above any
// real vocabulary (262k), far below what would exhaust memory.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// Parsing context: the file name for messages.
struct Context {
  const std::string& source;
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", ToAbsl(what)));
  }
  absl::Status Unsupported(std::string_view kind, std::string_view type) const {
    return absl::UnimplementedError(absl::StrCat(source, ": unsupported ", ToAbsl(kind), " type '",
                                                 ToAbsl(type), "' (see runtime/tokenizer/README.md)"));
  }
};

// The value of `key`, or nullopt when it is absent or null.
std::optional<Element> Field(Element object, std::string_view key) {
  Element value;
  if (!object.is_object() || object.at_key(key).get(value) != simdjson::SUCCESS || value.is_null()) {
    return std::nullopt;
  }
  return value;
}

bool BoolField(Element object, std::string_view key, bool default_value) {
  auto value = Field(object, key);
  bool result;
  if (!value || value->get_bool().get(result) != simdjson::SUCCESS) return default_value;
  return result;
}

absl::StatusOr<std::string_view> StringField(const Context& context, Element object, std::string_view key) {
  auto value = Field(object, key);
  std::string_view result;
  if (!value || value->get_string().get(result) != simdjson::SUCCESS) {
    return context.Error(absl::StrCat("expected a string field '", ToAbsl(key), "'"));
  }
  return result;
}

absl::StatusOr<int64_t> IntField(const Context& context, Element object, std::string_view key,
                                 std::optional<int64_t> default_value = std::nullopt) {
  auto value = Field(object, key);
  int64_t result;
  if (value && value->get_int64().get(result) == simdjson::SUCCESS) return result;
  uint64_t unsigned_result;
  if (value && value->get_uint64().get(unsigned_result) == simdjson::SUCCESS) {
    return static_cast<int64_t>(unsigned_result);
  }
  if (!value && default_value.has_value()) return *default_value;
  return context.Error(absl::StrCat("expected an integer field '", ToAbsl(key), "'"));
}

// A single character given as a one-character string (Metaspace replacement, Strip content).
absl::StatusOr<char32_t> CharField(const Context& context, Element object, std::string_view key) {
  auto text = StringField(context, object, key);
  if (!text.ok()) return text.status();
  if (text->empty() || Utf8SequenceLength(*text, 0) != static_cast<int>(text->size())) {
    return context.Error(absl::StrCat("field '", ToAbsl(key), "' must be a single character"));
  }
  size_t pos = 0;
  return NextCodePoint(*text, pos);
}

// {"String": "..."} or {"Regex": "..."} as a compiled regex.
absl::StatusOr<Regex> ParsePattern(const Context& context, Element object) {
  auto pattern = Field(object, "pattern");
  if (!pattern) return context.Error("missing 'pattern'");
  if (auto literal = Field(*pattern, "String")) {
    std::string_view text;
    if (literal->get_string().get(text) != simdjson::SUCCESS) return context.Error("bad String pattern");
    return Regex::Compile(EscapeLiteral(text));
  }
  if (auto regex = Field(*pattern, "Regex")) {
    std::string_view text;
    if (regex->get_string().get(text) != simdjson::SUCCESS) return context.Error("bad Regex pattern");
    auto compiled = Regex::Compile(text);
    if (!compiled.ok()) return context.Error(std::string(compiled.status().message()));
    return compiled;
  }
  return context.Error("pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Context& context, Element config) {
  auto type = StringField(context, config, "type");
  if (!type.ok()) return type.status();
  if (*type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfc);
  if (*type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfd);
  if (*type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfkc);
  if (*type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfkd);
  if (*type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (*type == "Strip") {
    return std::make_unique<StripNormalizer>(BoolField(config, "strip_left", true),
                                             BoolField(config, "strip_right", true));
  }
  if (*type == "Prepend") {
    auto prefix = StringField(context, config, "prepend");
    if (!prefix.ok()) return prefix.status();
    return std::make_unique<PrependNormalizer>(std::string(*prefix));
  }
  if (*type == "Replace") {
    auto pattern = ParsePattern(context, config);
    if (!pattern.ok()) return pattern.status();
    auto content = StringField(context, config, "content");
    if (!content.ok()) return content.status();
    return std::make_unique<ReplaceNormalizer>(std::move(*pattern), std::string(*content));
  }
  if (*type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    simdjson::dom::array list;
    auto field = Field(config, "normalizers");
    if (!field || field->get_array().get(list) != simdjson::SUCCESS)
      return context.Error("Sequence needs a list");
    for (Element step : list) {
      auto parsed = ParseNormalizer(context, step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(std::move(*parsed));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  return context.Unsupported("normalizer", *type);
}

absl::StatusOr<PrependScheme> ParsePrependScheme(const Context& context, Element config) {
  if (auto scheme = Field(config, "prepend_scheme")) {
    std::string_view name;
    if (scheme->get_string().get(name) != simdjson::SUCCESS) return context.Error("bad prepend_scheme");
    if (name == "first") return PrependScheme::kFirst;
    if (name == "always") return PrependScheme::kAlways;
    if (name == "never") return PrependScheme::kNever;
    return context.Error(absl::StrCat("unknown prepend_scheme '", ToAbsl(name), "'"));
  }
  // Files older than prepend_scheme carry add_prefix_space instead.
  return BoolField(config, "add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Context& context, Element config) {
  auto type = StringField(context, config, "type");
  if (!type.ok()) return type.status();
  if (*type == "Split") {
    auto pattern = ParsePattern(context, config);
    if (!pattern.ok()) return pattern.status();
    auto behavior_name = StringField(context, config, "behavior");
    if (!behavior_name.ok()) return behavior_name.status();
    SplitBehavior behavior;
    if (*behavior_name == "Removed") {
      behavior = SplitBehavior::kRemoved;
    } else if (*behavior_name == "Isolated") {
      behavior = SplitBehavior::kIsolated;
    } else if (*behavior_name == "MergedWithPrevious") {
      behavior = SplitBehavior::kMergedWithPrevious;
    } else if (*behavior_name == "MergedWithNext") {
      behavior = SplitBehavior::kMergedWithNext;
    } else if (*behavior_name == "Contiguous") {
      behavior = SplitBehavior::kContiguous;
    } else {
      return context.Error(absl::StrCat("unknown Split behavior '", ToAbsl(*behavior_name), "'"));
    }
    return std::make_unique<SplitPreTokenizer>(std::move(*pattern), behavior,
                                               BoolField(config, "invert", false));
  }
  if (*type == "ByteLevel") {
    std::optional<Regex> regex;
    if (BoolField(config, "use_regex", true)) {
      auto compiled = Regex::Compile(kGpt2Pattern);
      if (!compiled.ok()) return compiled.status();
      regex.emplace(std::move(*compiled));
    }
    return std::make_unique<ByteLevelPreTokenizer>(BoolField(config, "add_prefix_space", true),
                                                   std::move(regex));
  }
  if (*type == "Digits")
    return std::make_unique<DigitsPreTokenizer>(BoolField(config, "individual_digits", false));
  if (*type == "Metaspace") {
    auto replacement = CharField(context, config, "replacement");
    if (!replacement.ok()) return replacement.status();
    auto scheme = ParsePrependScheme(context, config);
    if (!scheme.ok()) return scheme.status();
    return std::make_unique<MetaspacePreTokenizer>(*replacement, *scheme, BoolField(config, "split", true));
  }
  if (*type == "Whitespace") {
    auto regex = Regex::Compile("\\w+|[^\\w\\s]+");
    if (!regex.ok()) return regex.status();
    return std::make_unique<WhitespacePreTokenizer>(std::move(*regex));
  }
  if (*type == "WhitespaceSplit") return std::make_unique<WhitespacePreTokenizer>(std::nullopt);
  if (*type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    simdjson::dom::array list;
    auto field = Field(config, "pretokenizers");
    if (!field || field->get_array().get(list) != simdjson::SUCCESS)
      return context.Error("Sequence needs a list");
    for (Element step : list) {
      auto parsed = ParsePreTokenizer(context, step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(std::move(*parsed));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return context.Unsupported("pre_tokenizer", *type);
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Context& context, Element config) {
  auto type = StringField(context, config, "type");
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (*type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (*type == "Fuse") return std::make_unique<FuseDecoder>();
  if (*type == "Replace") {
    auto pattern = ParsePattern(context, config);
    if (!pattern.ok()) return pattern.status();
    auto content = StringField(context, config, "content");
    if (!content.ok()) return content.status();
    return std::make_unique<ReplaceDecoder>(std::move(*pattern), std::string(*content));
  }
  if (*type == "Strip") {
    auto content = CharField(context, config, "content");
    if (!content.ok()) return content.status();
    auto start = IntField(context, config, "start", 0);
    auto stop = IntField(context, config, "stop", 0);
    if (!start.ok()) return start.status();
    if (!stop.ok()) return stop.status();
    return std::make_unique<StripDecoder>(*content, static_cast<size_t>(*start), static_cast<size_t>(*stop));
  }
  if (*type == "Metaspace") {
    auto replacement = CharField(context, config, "replacement");
    if (!replacement.ok()) return replacement.status();
    auto scheme = ParsePrependScheme(context, config);
    if (!scheme.ok()) return scheme.status();
    return std::make_unique<MetaspaceDecoder>(*replacement, *scheme);
  }
  if (*type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    simdjson::dom::array list;
    auto field = Field(config, "decoders");
    if (!field || field->get_array().get(list) != simdjson::SUCCESS)
      return context.Error("Sequence needs a list");
    for (Element step : list) {
      auto parsed = ParseDecoder(context, step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(std::move(*parsed));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  return context.Unsupported("decoder", *type);
}

// [token, id] pairs of BertProcessing / RobertaProcessing.
absl::StatusOr<int32_t> PairId(const Context& context, Element config, std::string_view key) {
  auto field = Field(config, key);
  simdjson::dom::array pair;
  int64_t id;
  if (!field || field->get_array().get(pair) != simdjson::SUCCESS || pair.size() != 2 ||
      pair.at(1).get_int64().get(id) != simdjson::SUCCESS) {
    return context.Error(absl::StrCat("expected '", ToAbsl(key), "': [token, id]"));
  }
  if (id < 0 || id > kMaxTokenId) {
    return context.Error(
        absl::StrCat("'", ToAbsl(key), "' token id ", id, " is out of range (0 to ", kMaxTokenId, ")"));
  }
  return static_cast<int32_t>(id);
}

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Context& context, Element config) {
  auto type = StringField(context, config, "type");
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return std::make_unique<PassThroughPostProcessor>();
  if (*type == "BertProcessing" || *type == "RobertaProcessing") {
    auto cls = PairId(context, config, "cls");
    auto sep = PairId(context, config, "sep");
    if (!cls.ok()) return cls.status();
    if (!sep.ok()) return sep.status();
    return std::make_unique<TemplatePostProcessor>(std::vector<int32_t>{*cls}, std::vector<int32_t>{*sep});
  }
  if (*type == "TemplateProcessing") {
    simdjson::dom::array single;
    auto single_field = Field(config, "single");
    if (!single_field || single_field->get_array().get(single) != simdjson::SUCCESS) {
      return context.Error("TemplateProcessing needs 'single'");
    }
    auto special_tokens = Field(config, "special_tokens");
    std::vector<int32_t> before, after;
    bool seen_sequence = false;
    for (Element piece : single) {
      if (Field(piece, "Sequence")) {
        seen_sequence = true;
        continue;
      }
      auto special = Field(piece, "SpecialToken");
      if (!special) return context.Error("TemplateProcessing piece is neither Sequence nor SpecialToken");
      auto name = StringField(context, *special, "id");
      if (!name.ok()) return name.status();
      std::optional<Element> entry = special_tokens ? Field(*special_tokens, *name) : std::nullopt;
      simdjson::dom::array ids;
      auto ids_field = entry ? Field(*entry, "ids") : std::nullopt;
      if (!ids_field || ids_field->get_array().get(ids) != simdjson::SUCCESS) {
        return context.Error(
            absl::StrCat("TemplateProcessing special token '", ToAbsl(*name), "' has no ids"));
      }
      for (Element id : ids) {
        int64_t value;
        if (id.get_int64().get(value) != simdjson::SUCCESS || value < 0 || value > kMaxTokenId)
          return context.Error("bad special token id");
        (seen_sequence ? after : before).push_back(static_cast<int32_t>(value));
      }
    }
    return std::make_unique<TemplatePostProcessor>(std::move(before), std::move(after));
  }
  if (*type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> steps;
    simdjson::dom::array list;
    auto field = Field(config, "processors");
    if (!field || field->get_array().get(list) != simdjson::SUCCESS)
      return context.Error("Sequence needs a list");
    for (Element step : list) {
      auto parsed = ParsePostProcessor(context, step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(std::move(*parsed));
    }
    return std::make_unique<SequencePostProcessor>(std::move(steps));
  }
  return context.Unsupported("post_processor", *type);
}

absl::StatusOr<std::unique_ptr<BpeModel>> ParseModel(const Context& context, Element config) {
  std::string_view type = "BPE";
  if (auto type_field = Field(config, "type")) {
    if (type_field->get_string().get(type) != simdjson::SUCCESS) return context.Error("bad model type");
  }
  if (type != "BPE") return context.Unsupported("model", type);
  if (auto dropout = Field(config, "dropout")) {
    double value = 0;
    if (dropout->get_double().get(value) == simdjson::SUCCESS && value > 0) {
      return context.Error("BPE dropout is random; it is not supported for inference");
    }
  }
  BpeOptions options;
  if (auto unk = Field(config, "unk_token")) {
    std::string_view text;
    if (unk->get_string().get(text) == simdjson::SUCCESS) options.unk_token = std::string(text);
  }
  if (auto prefix = Field(config, "continuing_subword_prefix")) {
    std::string_view text;
    if (prefix->get_string().get(text) == simdjson::SUCCESS) options.continuing_subword_prefix = text;
  }
  if (auto suffix = Field(config, "end_of_word_suffix")) {
    std::string_view text;
    if (suffix->get_string().get(text) == simdjson::SUCCESS) options.end_of_word_suffix = text;
  }
  options.fuse_unk = BoolField(config, "fuse_unk", false);
  options.byte_fallback = BoolField(config, "byte_fallback", false);
  options.ignore_merges = BoolField(config, "ignore_merges", false);

  simdjson::dom::object vocab_object;
  auto vocab_field = Field(config, "vocab");
  if (!vocab_field || vocab_field->get_object().get(vocab_object) != simdjson::SUCCESS) {
    return context.Error("model.vocab must be an object");
  }
  std::vector<std::pair<std::string_view, int32_t>> vocab;
  vocab.reserve(vocab_object.size());
  for (auto [key, value] : vocab_object) {
    int64_t id;
    if (value.get_int64().get(id) != simdjson::SUCCESS || id < 0 || id > kMaxTokenId) {
      return context.Error(absl::StrCat("vocab entry '", ToAbsl(key),
                                        "' has no valid id (ids are integers from 0 to ", kMaxTokenId, ")"));
    }
    vocab.emplace_back(key, static_cast<int32_t>(id));
  }
  std::vector<std::pair<std::string_view, std::string_view>> merges;
  if (auto merges_field = Field(config, "merges")) {
    simdjson::dom::array list;
    if (merges_field->get_array().get(list) != simdjson::SUCCESS)
      return context.Error("model.merges must be a list");
    merges.reserve(list.size());
    size_t index = 0;
    for (Element merge : list) {
      std::string_view text;
      simdjson::dom::array pair;
      if (merge.get_string().get(text) == simdjson::SUCCESS) {
        // "a b": exactly one space separates the two parts.
        const size_t space = text.find(' ');
        if (space == std::string_view::npos || text.find(' ', space + 1) != std::string_view::npos) {
          return context.Error(
              absl::StrCat("merge ", index, " '", ToAbsl(text), "' is not two tokens separated by a space"));
        }
        merges.emplace_back(text.substr(0, space), text.substr(space + 1));
      } else if (merge.get_array().get(pair) == simdjson::SUCCESS && pair.size() == 2) {
        std::string_view left, right;
        if (pair.at(0).get_string().get(left) != simdjson::SUCCESS ||
            pair.at(1).get_string().get(right) != simdjson::SUCCESS) {
          return context.Error(absl::StrCat("merge ", index, " is not a pair of strings"));
        }
        merges.emplace_back(left, right);
      } else {
        return context.Error(absl::StrCat("merge ", index, " is neither \"a b\" nor [\"a\", \"b\"]"));
      }
      ++index;
    }
  }
  auto model = BpeModel::Create(vocab, merges, std::move(options));
  if (!model.ok()) return context.Error(std::string(model.status().message()));
  return model;
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Context& context, Element root) {
  std::vector<AddedToken> tokens;
  auto field = Field(root, "added_tokens");
  if (!field) return tokens;
  simdjson::dom::array list;
  if (field->get_array().get(list) != simdjson::SUCCESS) return context.Error("added_tokens must be a list");
  for (Element entry : list) {
    AddedToken token;
    auto id = IntField(context, entry, "id");
    if (!id.ok()) return id.status();
    if (*id < 0 || *id > kMaxTokenId) {
      return context.Error(absl::StrCat("added token id ", *id, " is out of range (0 to ", kMaxTokenId, ")"));
    }
    auto content = StringField(context, entry, "content");
    if (!content.ok()) return content.status();
    token.id = static_cast<int32_t>(*id);
    token.content = std::string(*content);
    token.special = BoolField(entry, "special", false);
    token.lstrip = BoolField(entry, "lstrip", false);
    token.rstrip = BoolField(entry, "rstrip", false);
    token.single_word = BoolField(entry, "single_word", false);
    token.normalized = BoolField(entry, "normalized", !token.special);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// eos_token / bos_token of tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> ConfigTokenContent(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return std::nullopt;
}

std::optional<int32_t> ResolveToken(const TokenizerImpl& impl, std::string_view content) {
  if (auto id = impl.added_vocabulary->FindByContent(content)) return id;
  return impl.model->TokenToId(content);
}

absl::Status ApplyConfig(const std::string& config_path, TokenizerImpl& impl) {
  absl::StatusOr<std::string> text = ReadFileMaybeGzip(config_path);
  if (!text.ok()) return text.status();
  // nlohmann's printer and destructor recurse: deep nesting must not reach them.
  if (absl::Status nesting = io::CheckJsonNesting(*text, 256, config_path); !nesting.ok()) return nesting;
  nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  if (auto eos = ConfigTokenContent(config, "eos_token")) {
    auto id = ResolveToken(impl, *eos);
    if (!id)
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": eos_token '", *eos, "' is not a token"));
    impl.eos_ids.push_back(*id);
  }
  if (auto bos = ConfigTokenContent(config, "bos_token")) {
    auto id = ResolveToken(impl, *bos);
    if (!id)
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": bos_token '", *bos, "' is not a token"));
    impl.bos_id = *id;
  }
  return absl::OkStatus();
}

// generation_config.json's eos_token_id (a number or a list): models often stop on several ids (Llama 3.1:
// end of text, end of message, end of turn). Added to EosTokenIds after the tokenizer_config one, without
// duplicates.
absl::Status ApplyGenerationConfig(const std::string& path, TokenizerImpl& impl) {
  absl::StatusOr<std::string> text = ReadFileMaybeGzip(path);
  if (!text.ok()) return text.status();
  if (absl::Status nesting = io::CheckJsonNesting(*text, 256, path); !nesting.ok()) return nesting;
  nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  auto it = config.find("eos_token_id");
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  const nlohmann::json ids = it->is_array() ? *it : nlohmann::json::array({*it});
  for (const auto& id : ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= impl.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": eos_token_id ", id.dump(), " is not a token id"));
    }
    const int32_t value = id.get<int32_t>();
    if (std::find(impl.eos_ids.begin(), impl.eos_ids.end(), value) == impl.eos_ids.end()) {
      impl.eos_ids.push_back(value);
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string_view> TokenizerImpl::TokenString(int32_t id) const {
  if (const AddedToken* token = added_vocabulary->FindById(id)) return std::string_view(token->content);
  return model->IdToToken(id);
}

bool TokenizerImpl::IsSpecial(int32_t id) const {
  const std::optional<std::string_view> token = TokenString(id);
  return token.has_value() && added_vocabulary->IsSpecialContent(*token);
}

absl::StatusOr<std::unique_ptr<TokenizerImpl>> ParseTokenizerJson(std::string json,
                                                                  const std::string& source) {
  const Context context{source};
  simdjson::dom::parser parser;
  // simdjson reads up to SIMDJSON_PADDING bytes past the end; the file reader leaves that much spare
  // capacity, so this reserve does not copy the (possibly 30 MB) text.
  json.reserve(json.size() + simdjson::SIMDJSON_PADDING);
  Element root;
  if (auto error = parser.parse(json.data(), json.size(), /*realloc_if_needed=*/false).get(root);
      error != simdjson::SUCCESS) {
    return context.Error(absl::StrCat("not valid JSON: ", simdjson::error_message(error)));
  }
  if (!root.is_object()) return context.Error("not a JSON object");
  auto impl = std::make_unique<TokenizerImpl>();
  impl->source = source;
  if (auto config = Field(root, "normalizer")) {
    auto parsed = ParseNormalizer(context, *config);
    if (!parsed.ok()) return parsed.status();
    impl->normalizer = std::move(*parsed);
  }
  if (auto config = Field(root, "pre_tokenizer")) {
    auto parsed = ParsePreTokenizer(context, *config);
    if (!parsed.ok()) return parsed.status();
    impl->pre_tokenizer = std::move(*parsed);
  }
  if (auto config = Field(root, "post_processor")) {
    auto parsed = ParsePostProcessor(context, *config);
    if (!parsed.ok()) return parsed.status();
    impl->post_processor = std::move(*parsed);
  }
  if (auto config = Field(root, "decoder")) {
    auto parsed = ParseDecoder(context, *config);
    if (!parsed.ok()) return parsed.status();
    impl->decoder = std::move(*parsed);
  }
  auto model_config = Field(root, "model");
  if (!model_config) return context.Error("missing 'model'");
  auto model = ParseModel(context, *model_config);
  if (!model.ok()) return model.status();
  impl->model = std::move(*model);
  auto added_tokens = ParseAddedTokens(context, root);
  if (!added_tokens.ok()) return added_tokens.status();
  int32_t max_id = impl->model->max_id();
  for (const AddedToken& token : *added_tokens) max_id = std::max(max_id, token.id);
  impl->vocab_size = max_id + 1;
  auto added = AddedVocabulary::Create(std::move(*added_tokens), impl->normalizer.get());
  if (!added.ok()) return added.status();
  impl->added_vocabulary.emplace(std::move(*added));
  return impl;
}

absl::StatusOr<std::unique_ptr<TokenizerImpl>> LoadTokenizerImpl(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path file = path;
  if (fs::is_directory(file, error)) {
    if (fs::exists(file / "tokenizer.json", error)) {
      file /= "tokenizer.json";
    } else if (fs::exists(file / "tokenizer.json.gz", error)) {
      file /= "tokenizer.json.gz";
    } else {
      return absl::NotFoundError(absl::StrCat("no tokenizer.json (or tokenizer.json.gz) in ", path));
    }
  }
  absl::StatusOr<std::string> json = ReadFileMaybeGzip(file.string());
  if (!json.ok()) return json.status();
  auto impl = ParseTokenizerJson(std::move(*json), file.string());
  if (!impl.ok()) return impl.status();
  // "<prefix>tokenizer.json[.gz]" pairs with "<prefix>tokenizer_config.json" in the same folder.
  std::string name = file.filename().string();
  for (std::string_view suffix : {".json.gz", ".json"}) {
    if (absl::EndsWith(name, ToAbsl(suffix))) {
      name.resize(name.size() - suffix.size());
      break;
    }
  }
  const fs::path config = file.parent_path() / (name + "_config.json");
  if (fs::exists(config, error)) {
    absl::Status status = ApplyConfig(config.string(), **impl);
    if (!status.ok()) return status;
  }
  const fs::path generation_config = file.parent_path() / "generation_config.json";
  if (fs::exists(generation_config, error)) {
    absl::Status status = ApplyGenerationConfig(generation_config.string(), **impl);
    if (!status.ok()) return status;
  }
  return impl;
}

}  // namespace ringmoe::tokenizer_internal
