// The sampling fields of batch lines (runtime/frontend/sampling_fields.h): parsing and range checks, the
// generation_config.json defaults, the n-choice output line, and tests/data/requests/sampling_fields.jsonl (a
// mixed completions + chat file with every field) through `ringmoe run` on the tiny model, each field shown
// to change the result the way it should.
#include "runtime/frontend/sampling_fields.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/generation_defaults.h"
#include "tests/testing/output_lines.h"

namespace ringmoe {
namespace {

using ::ringmoe::testing::ErrorOf;
using ::ringmoe::testing::Succeeded;

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";
const std::string kRequests = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/requests/sampling_fields.jsonl";
constexpr int32_t kEos = 997;

TEST(SamplingFields, EveryFieldIsParsed) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "a", "prompt": "x", "max_tokens": 9, "top_k": 40, "min_p": 0.05, "presence_penalty": -0.5,
          "frequency_penalty": 1, "repetition_penalty": 1.2, "min_tokens": 3, "logit_bias": {"7": 100, "12": -2.5},
          "n": 4})",
      1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  const Request& request = *line.request;
  EXPECT_EQ(request.n, 4);
  EXPECT_EQ(request.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(request.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(request.sampling.presence_penalty, -0.5f);
  EXPECT_FLOAT_EQ(request.sampling.frequency_penalty, 1.0f);
  EXPECT_FLOAT_EQ(request.sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(request.sampling.min_tokens, 3);
  std::vector<std::pair<int32_t, float>> bias = request.sampling.logit_bias;
  std::sort(bias.begin(), bias.end());
  EXPECT_EQ(bias, (std::vector<std::pair<int32_t, float>>{{7, 100.0f}, {12, -2.5f}}));
  EXPECT_FALSE(line.omitted.top_k);
  EXPECT_FALSE(line.omitted.max_tokens);
  EXPECT_TRUE(line.omitted.temperature);
  EXPECT_TRUE(line.omitted.top_p);
  EXPECT_TRUE(line.unknown_fields.empty());

  // Defaults change nothing; null is absent.
  BatchLine plain = ParseBatchLine(R"({"custom_id": "b", "prompt": "x", "top_k": null, "n": null})", 2);
  ASSERT_TRUE(plain.request.ok());
  EXPECT_EQ(plain.request->n, 1);
  EXPECT_EQ(plain.request->sampling.top_k, 0);
  EXPECT_FLOAT_EQ(plain.request->sampling.repetition_penalty, 1.0f);
  EXPECT_TRUE(plain.request->sampling.logit_bias.empty());
  EXPECT_TRUE(plain.omitted.top_k && plain.omitted.min_p && plain.omitted.repetition_penalty &&
              plain.omitted.max_tokens);
}

TEST(SamplingFields, BadValuesNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("top_k": 1.5)", "field 'top_k' must be an integer"},
      {R"("top_k": -2)", "field 'top_k'"},
      {R"("min_p": -0.1)", "field 'min_p' must be a number in [0, 1]"},
      {R"("min_p": "0.1")", "field 'min_p'"},
      {R"("presence_penalty": 2.5)", "field 'presence_penalty' must be a number in [-2, 2]"},
      {R"("frequency_penalty": true)", "field 'frequency_penalty' must be a number in [-2, 2]"},
      {R"("repetition_penalty": 0)", "field 'repetition_penalty' must be a number > 0"},
      {R"("repetition_penalty": -1)", "field 'repetition_penalty'"},
      {R"("min_tokens": 1.5)", "field 'min_tokens' must be an integer >= 0"},
      {R"("max_tokens": 4, "min_tokens": 5)", "field 'min_tokens' must not exceed max_tokens (4), got 5"},
      {R"("logit_bias": [1, 2])", "field 'logit_bias' must be an object"},
      {R"("logit_bias": {"-1": 1})", "field 'logit_bias' key \"-1\" is not a token id"},
      {R"("logit_bias": {"7": "a lot"})",
       "field 'logit_bias' value for token id 7 must be a number in [-100, 100]"},
      {R"("logit_bias": {"7": -100.5})", "field 'logit_bias' value for token id 7"},
      {R"("n": 0)", "field 'n' must be an integer in 1..128, got 0"},
      {R"("n": 2.5)", "field 'n'"},
      {R"("max_tokens": 4, "max_completion_tokens": 5)",
       "field 'max_completion_tokens' is 5 but 'max_tokens' is 4"},
  };
  for (const auto& [fields, expected] : cases) {
    BatchLine line = ParseBatchLine(R"({"custom_id": "bad", "prompt": "x", )" + fields + "}", 3);
    ASSERT_FALSE(line.request.ok()) << fields;
    EXPECT_NE(std::string(line.request.status().message()).find(expected), std::string::npos)
        << fields << " -> " << line.request.status().message();
    EXPECT_NE(std::string(line.request.status().message()).find("line 3 (custom_id 'bad')"),
              std::string::npos);
  }
  // The same value under both names is what some clients send.
  BatchLine both =
      ParseBatchLine(R"({"custom_id": "ok", "prompt": "x", "max_tokens": 4, "max_completion_tokens": 4})", 4);
  ASSERT_TRUE(both.request.ok()) << both.request.status();
  EXPECT_EQ(both.request->max_tokens, 4);
}

TEST(GenerationDefaults, FillOnlyTheFieldsALineOmits) {
  absl::StatusOr<GenerationDefaults> defaults = ParseGenerationDefaults(
      R"({"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.01, "repetition_penalty": 1.05,
          "max_new_tokens": 64, "do_sample": true, "eos_token_id": [1, 2]})",
      "generation_config.json");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->Describe(),
            "temperature 0.6, top_p 0.95, top_k 20, min_p 0.01, repetition_penalty 1.05, max_tokens 64");
  std::vector<BatchLine> lines;
  lines.push_back(ParseBatchLine(R"({"custom_id": "bare", "prompt": "x"})", 1));
  lines.push_back(ParseBatchLine(
      R"({"custom_id": "given", "prompt": "x", "temperature": 0, "top_p": 1, "top_k": 0, "min_p": 0,
          "repetition_penalty": 1, "max_completion_tokens": 5})",
      2));
  ApplyGenerationDefaults(*defaults, &lines);
  const SamplingParams& bare = lines[0].request->sampling;
  EXPECT_FLOAT_EQ(bare.temperature, 0.6f);
  EXPECT_FLOAT_EQ(bare.top_p, 0.95f);
  EXPECT_EQ(bare.top_k, 20);
  EXPECT_FLOAT_EQ(bare.min_p, 0.01f);
  EXPECT_FLOAT_EQ(bare.repetition_penalty, 1.05f);
  EXPECT_EQ(lines[0].request->max_tokens, 64);
  const SamplingParams& given = lines[1].request->sampling;
  EXPECT_FLOAT_EQ(given.temperature, 0.0f);
  EXPECT_FLOAT_EQ(given.top_p, 1.0f);
  EXPECT_EQ(given.top_k, 0);
  EXPECT_FLOAT_EQ(given.min_p, 0.0f);
  EXPECT_FLOAT_EQ(given.repetition_penalty, 1.0f);
  EXPECT_EQ(lines[1].request->max_tokens, 5);

  // Without sampling fields (the tiny model's file) there are no defaults: the OpenAI ones stay.
  absl::StatusOr<GenerationDefaults> tiny = LoadGenerationDefaults(kTinyModel);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_TRUE(tiny->empty());
  absl::StatusOr<GenerationDefaults> none = LoadGenerationDefaults("/nonexistent-model-folder");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  absl::StatusOr<GenerationDefaults> bad = ParseGenerationDefaults(R"({"top_p": 0})", "gc.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "gc.json: 'top_p' must be a number in (0, 1], got 0");
  bad = ParseGenerationDefaults(R"({"top_k": "20"})", "gc.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("'top_k'"), std::string::npos);
}

TEST(SamplingFields, ChoicesShareOneLineWithSummedUsage) {
  for (const char* text : {R"({"custom_id": "c", "prompt": "x", "n": 2})",
                           R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}], "n": 2})"}) {
    BatchLine line = ParseBatchLine(text, 1);
    ASSERT_TRUE(line.request.ok());
    Result result;
    result.prompt_ids = {1, 2, 3};
    result.token_ids = {7, 8};
    result.text = "first";
    result.finish_reason = FinishReason::kStop;
    Result& other = result.other_choices.emplace_back();
    other.prompt_ids = result.prompt_ids;
    other.token_ids = {9, 10, 11};
    other.text = "second";
    const json out = json::parse(FormatResultLine(line, &result, "tiny", "batch_req_run_1", 1700000000));
    const json& body = out["response"]["body"];
    ASSERT_EQ(body["choices"].size(), 2u) << out;
    EXPECT_EQ(body["choices"][0]["index"], 0);
    EXPECT_EQ(body["choices"][1]["index"], 1);
    EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
    EXPECT_EQ(body["choices"][1]["finish_reason"], "length");
    const bool chat = !line.chat_request.empty();
    EXPECT_EQ(chat ? body["choices"][1]["message"]["content"] : body["choices"][1]["text"], "second");
    EXPECT_EQ(body["usage"], json({{"prompt_tokens", 3}, {"completion_tokens", 5}, {"total_tokens", 8}}));
    EXPECT_EQ(body["created"], 1700000000);
  }
}

// Runs `ringmoe run` on the tiny model; returns the output lines by custom_id.
std::map<std::string, json> RunTiny(const std::string& model, const std::string& input, const fs::path& dir) {
  const std::string command = std::string(RINGMOE_BINARY_DIR) + "/ringmoe run --model " + model +
                              " --input " + input + " --output " + (dir / "out.jsonl").string() +
                              " --overwrite --threads 2 --device cpu --cpu-dtype f32 --no-plan --quiet 2> " +
                              (dir / "err.txt").string();
  const int status = std::system(command.c_str());
  std::ifstream err(dir / "err.txt");
  std::stringstream err_text;
  err_text << err.rdbuf();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err_text.str();
  std::map<std::string, json> lines;
  std::ifstream output(dir / "out.jsonl");
  for (std::string text; std::getline(output, text);) {
    json line = json::parse(text);
    const std::string id = line["custom_id"].get<std::string>();
    lines[id] = std::move(line);
  }
  return lines;
}

std::vector<int32_t> Tokens(const json& line, int choice = 0) {
  return line["response"]["body"]["choices"][choice]["token_ids"].get<std::vector<int32_t>>();
}

size_t Distinct(const std::vector<int32_t>& tokens) {
  return std::set<int32_t>(tokens.begin(), tokens.end()).size();
}

class SamplingFieldsRun : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_sampling_fields_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(SamplingFieldsRun, EachFieldChangesTheResultAsItShould) {
  std::map<std::string, json> out = RunTiny(kTinyModel, kRequests, dir_);
  std::ifstream input(kRequests);
  size_t input_lines = 0;
  for (std::string text; std::getline(input, text);) ++input_lines;
  ASSERT_EQ(out.size(), input_lines);
  for (const auto& [id, line] : out) {
    if (id.rfind("bad-", 0) != 0) ASSERT_TRUE(Succeeded(line)) << line;
  }

  // min_tokens: the greedy run that ends with EOS after a few tokens goes on past min_tokens.
  const std::vector<int32_t> eos_run = Tokens(out["greedy-eos"]);
  ASSERT_LT(eos_run.size(), 12u);
  ASSERT_EQ(eos_run.back(), kEos);
  const std::vector<int32_t> held = Tokens(out["min-tokens"]);
  ASSERT_GT(held.size(), 12u);
  EXPECT_EQ(std::count(held.begin(), held.begin() + 12, kEos), 0);
  EXPECT_TRUE(std::equal(eos_run.begin(), eos_run.end() - 1, held.begin()));  // the same until EOS was due

  // logit_bias: +100 forces a token; -100 bans one.
  EXPECT_EQ(Tokens(out["logit-bias-force"]), std::vector<int32_t>(5, 500));
  const std::vector<int32_t> repeats = Tokens(out["greedy-repeats"]);
  ASSERT_GT(std::count(repeats.begin(), repeats.end(), 995), 10);  // the greedy run loops on one token
  const std::vector<int32_t> banned = Tokens(out["logit-bias-ban"]);
  EXPECT_EQ(std::count(banned.begin(), banned.end(), 995), 0);

  // The penalties break the loop: far more distinct tokens, same start.
  for (const char* id : {"repetition-penalty", "frequency-penalty", "presence-penalty"}) {
    const std::vector<int32_t> penalised = Tokens(out[id]);
    EXPECT_NE(penalised, repeats) << id;
    EXPECT_GT(Distinct(penalised), Distinct(repeats) + 10) << id;
    EXPECT_EQ(penalised.front(), repeats.front()) << id;
  }

  // top_k 1 and min_p 1 at temperature 1 are greedy; top_k -1 is off.
  const std::vector<int32_t> sampled = Tokens(out["sampled"]);
  EXPECT_NE(sampled, repeats);
  EXPECT_EQ(Tokens(out["top-k-1"]), repeats);
  EXPECT_EQ(Tokens(out["min-p-1"]), repeats);
  EXPECT_EQ(Tokens(out["top-k-off"]), sampled);

  // n: three choices; greedy ones equal the greedy run, seeded sampled ones differ from one another.
  for (const char* id : {"n3-greedy", "n3-sampled"}) {
    const json& body = out[id]["response"]["body"];
    ASSERT_EQ(body["choices"].size(), 3u) << id;
    int completion_tokens = 0;
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(body["choices"][c]["index"], c);
      completion_tokens += static_cast<int>(Tokens(out[id], c).size());
    }
    EXPECT_EQ(body["usage"]["completion_tokens"], completion_tokens);
    EXPECT_EQ(body["usage"]["prompt_tokens"],
              out["greedy-repeats"]["response"]["body"]["usage"]["prompt_tokens"]);
  }
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(Tokens(out["n3-greedy"], c), std::vector<int32_t>(repeats.begin(), repeats.begin() + 10));
  }
  EXPECT_NE(Tokens(out["n3-sampled"], 0), Tokens(out["n3-sampled"], 1));
  EXPECT_NE(Tokens(out["n3-sampled"], 1), Tokens(out["n3-sampled"], 2));
  EXPECT_NE(Tokens(out["n3-sampled"], 0), Tokens(out["n3-sampled"], 2));

  // Chat lines take the same fields.
  const json& chat = out["chat-n2"]["response"]["body"];
  EXPECT_EQ(chat["object"], "chat.completion");
  ASSERT_EQ(chat["choices"].size(), 2u);
  EXPECT_NE(chat["choices"][0]["message"]["content"], chat["choices"][1]["message"]["content"]);
  const json& everything = out["chat-everything"]["response"]["body"];
  ASSERT_EQ(everything["choices"].size(), 2u);
  EXPECT_EQ(everything["usage"]["completion_tokens"], 24);  // min_tokens = max_tokens = 12, twice
  for (int c = 0; c < 2; ++c) EXPECT_EQ(everything["choices"][c]["finish_reason"], "length");

  // Bad values fail their line alone, naming the field.
  const std::map<std::string, std::string> errors = {
      {"bad-top-k", "'top_k'"},
      {"bad-min-p", "'min_p'"},
      {"bad-presence-penalty", "'presence_penalty'"},
      {"bad-frequency-penalty", "'frequency_penalty'"},
      {"bad-repetition-penalty", "'repetition_penalty'"},
      {"bad-min-tokens", "'min_tokens'"},
      {"bad-min-tokens-over-max", "'min_tokens' must not exceed max_tokens (5)"},
      {"bad-logit-bias-id", "logit_bias: token id 5000 is outside the vocabulary (1000 tokens)"},
      {"bad-logit-bias-key", "'logit_bias' key \"abc\""},
      {"bad-logit-bias-value", "'logit_bias' value for token id 5"},
      {"bad-n", "'n' must be an integer in 1..128"},
      {"bad-n-too-many", "'n' must be an integer in 1..128, got 129"},
      {"bad-max-completion-tokens", "'max_completion_tokens' is 6 but 'max_tokens' is 5"},
  };
  for (const auto& [id, expected] : errors) {
    const json& line = out[id];
    ASSERT_FALSE(Succeeded(line)) << id;
    EXPECT_EQ(line["response"]["status_code"], 400) << id;
    const json error = ErrorOf(line);
    EXPECT_EQ(error["type"], "invalid_request_error") << id;
    EXPECT_EQ(error["code"], "invalid_request") << id;
    EXPECT_NE(error["message"].get<std::string>().find(expected), std::string::npos)
        << id << ": " << error["message"];
  }
}

TEST_F(SamplingFieldsRun, GenerationConfigDefaultsApplyWhereALineOmitsTheField) {
  // The tiny model's files, with a generation_config.json that sets sampling defaults.
  const fs::path model = dir_ / "model";
  fs::create_directories(model);
  for (const fs::directory_entry& entry : fs::directory_iterator(kTinyModel)) {
    if (entry.path().filename() != "generation_config.json")
      fs::create_symlink(entry.path(), model / entry.path().filename());
  }
  std::ofstream(model / "generation_config.json")
      << R"({"eos_token_id": 997, "temperature": 1.0, "top_k": 1, "max_new_tokens": 7})";
  std::ofstream(dir_ / "in.jsonl")
      << R"({"custom_id": "greedy", "prompt": "Free software means", "max_tokens": 7, "temperature": 0})"
      << "\n"
      << R"({"custom_id": "defaults", "prompt": "Free software means", "seed": 3})"
      << "\n"
      << R"({"custom_id": "own-top-k", "prompt": "Free software means", "seed": 3, "top_k": 0})"
      << "\n";
  std::map<std::string, json> out = RunTiny(model.string(), (dir_ / "in.jsonl").string(), dir_);
  ASSERT_EQ(out.size(), 3u);
  const std::vector<int32_t> greedy = Tokens(out["greedy"]);
  ASSERT_EQ(greedy.size(), 7u);
  EXPECT_EQ(Tokens(out["defaults"]), greedy);  // top_k 1 from the file: greedy; max_new_tokens 7
  const std::vector<int32_t> own = Tokens(out["own-top-k"]);
  EXPECT_EQ(own.size(), 7u);
  EXPECT_NE(own, greedy);  // its own top_k 0 wins: it samples at the file's temperature 1
}

}  // namespace
}  // namespace ringmoe
