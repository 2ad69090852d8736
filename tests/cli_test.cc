// `ringmoe run` end to end, as a user runs it: a JSONL file in, a JSONL file out, per-line errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/testing/output_lines.h"

namespace {

using ::ringmoe::testing::ErrorOf;
using ::ringmoe::testing::Succeeded;

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";
const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

struct CommandRun {
  int exit_code;
  std::string stderr_text;
};

CommandRun RunCommand(const std::string& arguments, const fs::path& dir) {
  const fs::path err = dir / "stderr.txt";
  const std::string command = kBinary + " " + arguments + " 2> " + err.string();
  const int status = std::system(command.c_str());
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

std::vector<json> ReadLines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

class CliTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CliTest, MixedBatchFileWithBadLines) {
  json golden = json::parse(std::ifstream(kTinyModel + "/golden.json"));
  std::ofstream input(dir_ / "requests.jsonl");
  std::map<std::string, std::vector<int>> expected_greedy;
  int good = 0;
  for (int i = 0; i < 66; ++i) {
    const json& prompt = golden["prompts"][i % golden["prompts"].size()];
    json body = {{"model", "tiny"}, {"max_tokens", 1 + i % 12}};
    const std::string id = "job-" + std::to_string(i);
    if (i % 4 == 0) {
      body["prompt"] = prompt["prompt_ids"];
      body["temperature"] = 0;
      body["max_tokens"] = prompt["tokens"].size();
      expected_greedy[id] = prompt["tokens"].get<std::vector<int>>();
    } else if (i % 4 == 1) {
      body["prompt"] = prompt.contains("prompt_text") ? prompt["prompt_text"] : json("Once upon a time");
      body["temperature"] = 0.7;
      body["top_p"] = 0.9;
      body["seed"] = i;
      body["logprobs"] = 1;
    } else if (i % 4 == 2) {
      body["prompt"] = "The licence says";
      body["stop"] = json::array({"\n", " the"});
    } else {
      body["prompt"] = prompt["prompt_ids"];  // default temperature 1.0, seed from the custom_id
    }
    json line = {{"custom_id", id}, {"method", "POST"}, {"url", "/v1/completions"}, {"body", body}};
    input << line.dump() << (i % 10 == 9 ? "\r\n" : "\n");
    ++good;
  }
  input << "{\"custom_id\": \"bad-json\", \n";
  input << R"({"custom_id": "bad-max", "prompt": [1, 2], "max_tokens": -3})"
        << "\n";
  input << R"({"custom_id": "too-long", "prompt": "x", "max_tokens": 5})"
        << "\n";
  input << R"({"custom_id": "job-3", "prompt": [4, 5], "max_tokens": 2})"
        << "\n";  // duplicate id
  input
      << R"({"custom_id": "bad-url", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}})"
      << "\n";
  input.close();

  CommandRun run = RunCommand("run --model " + kTinyModel + " --input " + (dir_ / "requests.jsonl").string() +
                                  " --output " + (dir_ / "results.jsonl").string() +
                                  " --max-batch 8 --threads 2 --device cpu --cpu-dtype f32 --hardware " +
                                  std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json",
                              dir_);
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  std::vector<json> lines = ReadLines(dir_ / "results.jsonl");
  ASSERT_EQ(lines.size(), static_cast<size_t>(good + 5));
  std::map<std::string, int> seen;
  int errors = 0;
  for (const json& line : lines) {
    ++seen[line["custom_id"].get<std::string>()];
    if (!Succeeded(line)) {
      ++errors;
      EXPECT_TRUE(line["error"].is_null()) << line.dump();
      EXPECT_EQ(line["response"]["status_code"], 400) << line.dump();
      EXPECT_FALSE(ErrorOf(line)["message"].get<std::string>().empty());
      continue;
    }
    const json& body = line["response"]["body"];
    EXPECT_EQ(line["response"]["status_code"], 200);
    EXPECT_EQ(body["object"], "text_completion");
    const json& choice = body["choices"][0];
    const std::string id = line["custom_id"];
    if (expected_greedy.count(id))
      EXPECT_EQ(choice["token_ids"].get<std::vector<int>>(), expected_greedy[id]) << id;
    EXPECT_EQ(body["usage"]["completion_tokens"], choice["token_ids"].size());
    EXPECT_TRUE(choice["finish_reason"] == "stop" || choice["finish_reason"] == "length");
    const std::string text = choice["text"];
    if (choice["finish_reason"] == "stop" && id.find("job-") == 0 && (std::stoi(id.substr(4)) % 4 == 2)) {
      EXPECT_EQ(text.find(" the"), std::string::npos);
      EXPECT_EQ(text.find('\n'), std::string::npos);
    }
  }
  EXPECT_EQ(errors, 4);  // bad JSON, bad max_tokens, duplicate, empty chat messages; "too-long" is only a text prompt
  for (int i = 0; i < 66; ++i) EXPECT_EQ(seen["job-" + std::to_string(i)], i == 3 ? 2 : 1) << i;
  EXPECT_NE(run.stderr_text.find("generated tokens/s"), std::string::npos) << run.stderr_text;
}

TEST_F(CliTest, MissingModelAndUsageErrors) {
  std::ofstream(dir_ / "in.jsonl") << R"({"custom_id": "a", "prompt": [1], "max_tokens": 1})"
                                   << "\n";
  CommandRun missing =
      RunCommand("run --model " + (dir_ / "nope").string() + " --input " + (dir_ / "in.jsonl").string() +
                     " --output " + (dir_ / "out.jsonl").string(),
                 dir_);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_text.find("nope"), std::string::npos) << missing.stderr_text;
  CommandRun no_input =
      RunCommand("run --model " + kTinyModel + " --input " + (dir_ / "absent.jsonl").string() + " --output " +
                     (dir_ / "out.jsonl").string(),
                 dir_);
  EXPECT_EQ(no_input.exit_code, 1);
  EXPECT_NE(no_input.stderr_text.find("absent.jsonl"), std::string::npos);
  EXPECT_NE(RunCommand("run --input x", dir_).exit_code, 0);
  EXPECT_NE(RunCommand("frobnicate", dir_).exit_code, 0);
}

// The plan `ringmoe run` searched is the plan its engine ran ("plan" == "executed_plan" in --report-json),
// and `ringmoe plan` on the same job and flags prints that same plan; with --no-plan the engine runs the pins
// and the defaults. --cpu-dtype f32 fixes a CPU plan's KV type on any CPU, so the comparisons are exact.
TEST_F(CliTest, ReportJsonRecordsThePlanTheEngineRan) {
  const std::string hardware = std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json";
  const std::string requests = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/requests/quickstart.jsonl";
  // A private cache folder: the test never reads or writes the user's probe cache.
  const std::string env = "XDG_CACHE_HOME=" + (dir_ / "cache").string() + " ";
  const std::string pins = " --device cpu --cpu-dtype f32 --hardware " + hardware +
                           " --max-batch 3 --prefill-chunk 40 --model " + kTinyModel + " --input " + requests;
  auto run = [&](const std::string& arguments) {
    const fs::path err = dir_ / "stderr.txt";
    const std::string command =
        env + kBinary + " " + arguments + " > " + (dir_ / "stdout.txt").string() + " 2> " + err.string();
    const int status = std::system(command.c_str());
    std::ifstream in(err);
    std::stringstream text;
    text << in.rdbuf();
    return CommandRun{WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
  };
  auto read_json = [](const fs::path& path) {
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << path;
    return json::parse(in, nullptr, /*allow_exceptions=*/false);
  };

  const fs::path r1 = dir_ / "run.json", r2 = dir_ / "plan.json", r3 = dir_ / "no_plan.json";
  CommandRun searched = run("run" + pins + " --output " + (dir_ / "out1.jsonl").string() +
                            " --threads 2 --quiet" + " --report-json " + r1.string());
  ASSERT_EQ(searched.exit_code, 0) << searched.stderr_text;
  const json run_report = read_json(r1);
  ASSERT_TRUE(run_report.is_object()) << searched.stderr_text;
  ASSERT_TRUE(run_report.contains("plan") && run_report["plan"].is_object()) << run_report.dump(2);
  ASSERT_TRUE(run_report.contains("executed_plan") && run_report["executed_plan"].is_object())
      << run_report.dump(2);
  const json& executed = run_report["executed_plan"];
  EXPECT_EQ(run_report["plan"], executed) << run_report["plan"].dump(2) << "\nvs\n" << executed.dump(2);
  EXPECT_EQ(executed["device"], "cpu");
  EXPECT_EQ(executed["batch"], 3);
  EXPECT_EQ(executed["prefill_chunk"], 40);
  EXPECT_EQ(executed["max_step_tokens"], 43);
  EXPECT_EQ(executed["kv"]["dtype"], "F32");
  EXPECT_EQ(ReadLines(dir_ / "out1.jsonl").size(), 5u);

  CommandRun planned = run("plan" + pins + " --report-json " + r2.string());
  ASSERT_EQ(planned.exit_code, 0) << planned.stderr_text;
  const json plan_report = read_json(r2);
  ASSERT_TRUE(plan_report.is_object()) << planned.stderr_text;
  ASSERT_TRUE(plan_report.contains("plan")) << plan_report.dump(2);
  EXPECT_FALSE(plan_report.contains("executed_plan"));
  EXPECT_EQ(plan_report["plan"], executed) << plan_report["plan"].dump(2) << "\nvs\n" << executed.dump(2);

  CommandRun fixed = run("run" + pins + " --no-plan --output " + (dir_ / "out3.jsonl").string() +
                         " --threads 2 --quiet --report-json " + r3.string());
  ASSERT_EQ(fixed.exit_code, 0) << fixed.stderr_text;
  const json fixed_report = read_json(r3);
  ASSERT_TRUE(fixed_report.is_object()) << fixed.stderr_text;
  EXPECT_FALSE(fixed_report.contains("plan"));
  ASSERT_TRUE(fixed_report.contains("executed_plan")) << fixed_report.dump(2);
  const json& ran = fixed_report["executed_plan"];
  EXPECT_EQ(ran["device"], "cpu");
  EXPECT_EQ(ran["batch"], 3);
  EXPECT_EQ(ran["prefill_chunk"], 40);
  EXPECT_EQ(ran["max_step_tokens"], 43);
  EXPECT_EQ(ran["micro_batches"], 1);
  EXPECT_EQ(ran["kv"]["dtype"], "F32");
  EXPECT_EQ(ran["expert_tiers"], json::array());
  EXPECT_GT(fixed_report["measured"]["generated_tokens"].get<int64_t>(), 0);
  // The same plan, searched or not, gives the same tokens (greedy and seeded requests alike).
  std::vector<json> with_plan = ReadLines(dir_ / "out1.jsonl"), without = ReadLines(dir_ / "out3.jsonl");
  ASSERT_EQ(with_plan.size(), 5u);
  ASSERT_EQ(without.size(), 5u);
  int answered = 0;
  for (size_t i = 0; i < with_plan.size(); ++i) {
    EXPECT_EQ(with_plan[i]["custom_id"], without[i]["custom_id"]);
    EXPECT_EQ(Succeeded(with_plan[i]), Succeeded(without[i])) << i;
    if (!Succeeded(with_plan[i]) || !Succeeded(without[i])) continue;
    ++answered;
    EXPECT_EQ(with_plan[i]["response"]["body"]["choices"][0]["token_ids"],
              without[i]["response"]["body"]["choices"][0]["token_ids"])
        << with_plan[i]["custom_id"];
  }
  EXPECT_EQ(answered, 4);  // "broken" asks for 0 tokens
}

}  // namespace
