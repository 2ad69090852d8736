// logprobs with top alternatives, echo and scoring end to end: a batch file through `ringmoe run` on the tiny
// model (CPU, f32), and the same requests through the C++ API.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "io/dtype.h"
#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/scheduler.h"
#include "runtime/engine/step_layout.h"
#include "tests/testing/output_lines.h"

namespace ringmoe {
namespace {

using ::ringmoe::testing::ErrorOf;
using ::ringmoe::testing::Succeeded;

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

// Runs `lines` through `ringmoe run` and returns the output lines by custom_id.
std::map<std::string, ordered_json> RunBatch(const std::string& name, const std::vector<std::string>& lines) {
  const fs::path dir =
      fs::temp_directory_path() / ("ringmoe_scoring_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream input(dir / "in.jsonl");
    for (const std::string& line : lines) input << line << "\n";
  }
  const std::string command =
      std::string(RINGMOE_BINARY_DIR) + "/ringmoe run --model " + kTinyModel + " --input " +
      (dir / "in.jsonl").string() + " --output " + (dir / "out.jsonl").string() +
      " --threads 2 --device cpu --cpu-dtype f32 --no-plan --quiet 2> " + (dir / "err.txt").string();
  const int status = std::system(command.c_str());
  std::stringstream err;
  err << std::ifstream(dir / "err.txt").rdbuf();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err.str();
  std::map<std::string, ordered_json> out;
  std::ifstream output(dir / "out.jsonl");
  for (std::string text; std::getline(output, text);) {
    ordered_json line = ordered_json::parse(text);
    out[line["custom_id"].get<std::string>()] = line;
  }
  fs::remove_all(dir);
  return out;
}

const ordered_json& Choice(const ordered_json& line) { return line["response"]["body"]["choices"][0]; }

TEST(Scoring, TopLogprobsThroughRingmoeRun) {
  std::map<std::string, ordered_json> out = RunBatch(
      "top",
      {R"({"custom_id": "greedy", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "logprobs": 5})",
       R"({"custom_id": "sampled", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 1, "logprobs": 3})",
       R"({"custom_id": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, )"
       R"("temperature": 0, "logprobs": true, "top_logprobs": 4})"});
  ASSERT_EQ(out.size(), 3u);
  for (const char* id : {"greedy", "sampled"}) {
    const bool greedy = std::string(id) == "greedy";
    ASSERT_TRUE(Succeeded(out[id])) << out[id].dump();
    const ordered_json& logprobs = Choice(out[id])["logprobs"];
    const size_t tokens = Choice(out[id])["token_ids"].size();
    ASSERT_EQ(tokens, 6u);
    ASSERT_EQ(logprobs["top_logprobs"].size(), tokens);
    ASSERT_EQ(logprobs["text_offset"].size(), tokens);
    for (size_t t = 0; t < tokens; ++t) {
      const ordered_json& top = logprobs["top_logprobs"][t];
      const std::string token = logprobs["tokens"][t];
      const double chosen = logprobs["token_logprobs"][t];
      // The asked-for count, plus the chosen token when it is not among them (byte pieces may share a text).
      const size_t asked = greedy ? 5 : 3;
      EXPECT_LE(top.size(), asked + 1) << top.dump();
      EXPECT_GE(top.size(), 2u) << top.dump();
      ASSERT_TRUE(top.contains(token)) << top.dump();
      EXPECT_EQ(top[token].get<double>(), chosen);
      double previous = 0;
      size_t index = 0;
      for (const auto& [text, value] : top.items()) {
        if (index++ == asked) break;  // the chosen token appended after the alternatives
        EXPECT_LE(value.get<double>(), previous) << "alternatives out of order: " << top.dump();
        previous = value.get<double>();
      }
      // At temperature 0 the chosen token is the most likely one: its logprob is the top-1's.
      if (greedy) EXPECT_EQ(top.begin().value().get<double>(), chosen) << top.dump();
    }
  }
  ASSERT_TRUE(Succeeded(out["chat"])) << out["chat"].dump();
  const ordered_json& content = Choice(out["chat"])["logprobs"]["content"];
  ASSERT_FALSE(content.empty());
  for (const ordered_json& entry : content) {
    ASSERT_EQ(entry["top_logprobs"].size(), 4u) << entry.dump();
    EXPECT_EQ(entry["top_logprobs"][0]["logprob"], entry["logprob"]) << entry.dump();
    for (size_t k = 1; k < 4; ++k) {
      EXPECT_LE(entry["top_logprobs"][k]["logprob"].get<double>(),
                entry["top_logprobs"][k - 1]["logprob"].get<double>());
    }
  }
}

TEST(Scoring, EchoAndScoringThroughRingmoeRun) {
  std::map<std::string, ordered_json> out = RunBatch(
      "echo",
      {R"({"custom_id": "plain", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "logprobs": 1})",
       R"({"custom_id": "echo", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "echo": true, "logprobs": 1})",
       R"({"custom_id": "echo-text", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "echo": true})",
       R"({"custom_id": "score", "prompt": "Once upon a time", "max_tokens": 0, "echo": true, "logprobs": 2})",
       R"({"custom_id": "no-echo-zero", "prompt": "Once upon a time", "max_tokens": 0})",
       R"({"custom_id": "echo-zero", "prompt": "Once upon a time", "max_tokens": 0, "echo": true})"});
  ASSERT_EQ(out.size(), 6u);
  // echo with nothing to generate and no logprobs: the prompt back, nothing computed.
  ASSERT_TRUE(Succeeded(out["echo-zero"])) << out["echo-zero"].dump();
  EXPECT_EQ(Choice(out["echo-zero"])["text"], "Once upon a time");
  EXPECT_EQ(Choice(out["echo-zero"])["finish_reason"], "length");
  EXPECT_TRUE(Choice(out["echo-zero"])["logprobs"].is_null());
  for (const char* id : {"plain", "echo", "echo-text", "score"}) ASSERT_TRUE(Succeeded(out[id])) << id;
  const std::string completion = Choice(out["plain"])["text"];
  EXPECT_EQ(Choice(out["echo"])["text"], "Once upon a time" + completion);
  EXPECT_EQ(Choice(out["echo-text"])["text"], "Once upon a time" + completion);
  EXPECT_TRUE(Choice(out["echo-text"])["logprobs"].is_null());
  EXPECT_EQ(Choice(out["echo"])["token_ids"], Choice(out["plain"])["token_ids"]);

  const int prompt_tokens = out["echo"]["response"]["body"]["usage"]["prompt_tokens"];
  const ordered_json& echoed = Choice(out["echo"])["logprobs"];
  ASSERT_EQ(echoed["tokens"].size(), static_cast<size_t>(prompt_tokens) + 5);
  EXPECT_TRUE(echoed["token_logprobs"][0].is_null());
  EXPECT_TRUE(echoed["top_logprobs"][0].is_null());
  EXPECT_EQ(echoed["text_offset"][0], 0);
  // The completion's part equals the plain run's.
  const ordered_json& plain = Choice(out["plain"])["logprobs"];
  for (size_t t = 0; t < 5; ++t) {
    EXPECT_EQ(echoed["tokens"][prompt_tokens + t], plain["tokens"][t]);
    EXPECT_EQ(echoed["token_logprobs"][prompt_tokens + t], plain["token_logprobs"][t]);
  }

  const ordered_json& score = Choice(out["score"]);
  EXPECT_EQ(score["text"], "Once upon a time");
  EXPECT_EQ(score["finish_reason"], "length");
  EXPECT_EQ(score["token_ids"], ordered_json::array());
  EXPECT_EQ(out["score"]["response"]["body"]["usage"]["completion_tokens"], 0);
  EXPECT_EQ(out["score"]["response"]["body"]["usage"]["prompt_tokens"], prompt_tokens);
  ASSERT_EQ(score["logprobs"]["tokens"].size(), static_cast<size_t>(prompt_tokens));
  for (int p = 0; p < prompt_tokens; ++p) {
    EXPECT_EQ(score["logprobs"]["tokens"][p], echoed["tokens"][p]);
    // The same prompt positions: the echo run's values, up to the rounding of another step's batch (the
    // AVX2 kernels' sums group differently: 1e-6 apart there).
    if (p == 0) {
      EXPECT_EQ(score["logprobs"]["token_logprobs"][p], echoed["token_logprobs"][p]);
      continue;
    }
    EXPECT_NEAR(score["logprobs"]["token_logprobs"][p].get<double>(), echoed["token_logprobs"][p].get<double>(),
                1e-5)
        << p;
    EXPECT_LE(score["logprobs"]["token_logprobs"][p].get<double>(), 0.0);
    EXPECT_GE(score["logprobs"]["top_logprobs"][p].size(), 2u);
  }
  ASSERT_FALSE(Succeeded(out["no-echo-zero"]));
  EXPECT_NE(ErrorOf(out["no-echo-zero"])["message"].get<std::string>().find("max_tokens"), std::string::npos);
}

// Scoring a generated continuation through the API gives back the logprobs it was generated with (f32 CPU:
// within 1e-4; decode and prefill take different kernels), at every temperature.
TEST(Scoring, ScoringAContinuationReproducesItsLogprobs) {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<Request> generate(2);
  for (size_t i = 0; i < generate.size(); ++i) {
    generate[i].id = "g" + std::to_string(i);
    generate[i].prompt_text = "The quick brown fox";
    generate[i].max_tokens = 10;
    generate[i].logprobs = true;
    generate[i].ignore_eos = true;
    generate[i].sampling = {.temperature = i == 0 ? 0.0f : 0.9f, .top_p = 1.0f, .seed = 3};
  }
  auto generated = engine->Generate(generate);
  ASSERT_TRUE(generated.ok()) << generated.status();
  std::vector<Request> score(2);
  for (size_t i = 0; i < score.size(); ++i) {
    const Result& result = (*generated)[i];
    ASSERT_TRUE(result.status.ok()) << result.status;
    score[i].id = "s" + std::to_string(i);
    score[i].prompt_ids = result.prompt_ids;
    score[i].prompt_ids.insert(score[i].prompt_ids.end(), result.token_ids.begin(), result.token_ids.end());
    score[i].max_tokens = 0;
    score[i].echo = true;
    score[i].logprobs = true;
  }
  auto scored = engine->Generate(score);
  ASSERT_TRUE(scored.ok()) << scored.status();
  for (size_t i = 0; i < score.size(); ++i) {
    const Result& result = (*scored)[i];
    const Result& original = (*generated)[i];
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_TRUE(result.token_ids.empty());
    ASSERT_EQ(result.prompt_logprobs.size(), score[i].prompt_ids.size());
    EXPECT_TRUE(result.prompt_top_logprobs[1].empty());  // none asked for
    const Tokenizer* tokenizer = engine->tokenizer();
    EXPECT_EQ(result.prompt_text, tokenizer->Decode(score[i].prompt_ids, true));
    for (size_t t = 0; t < original.token_ids.size(); ++t) {
      const size_t position = original.prompt_ids.size() + t;
      EXPECT_NEAR(result.prompt_logprobs[position], original.logprobs[t], 1e-4)
          << "request " << i << " token " << t;
      EXPECT_EQ(result.prompt_token_strings[position], original.token_strings[t]);
    }
  }
  // Bad requests fail alone: max_tokens 0 without echo, top_logprobs out of range.
  std::vector<Request> bad(2, score[0]);
  bad[0].echo = false;
  bad[1].top_logprobs = kMaxTopLogprobs + 1;
  auto failed = engine->Generate(bad);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ((*failed)[0].status.code(), absl::StatusCode::kInvalidArgument) << (*failed)[0].status;
  EXPECT_EQ((*failed)[1].status.code(), absl::StatusCode::kInvalidArgument) << (*failed)[1].status;
}

// The scheduler scores at most kPromptLogitsStepRows prompt positions per step, over all scoring sequences
// (first come, first served; a scoring sequence left without rows waits for the next step), each chunk asking
// for the logits of every position whose next token is in the prompt; one that generates nothing asks for no
// sampling row, and once its prompt is done it gets no chunk.
TEST(Scoring, SchedulerBoundsTheScoredRowsOfAStep) {
  ModelSpec spec;
  spec.num_layers = 1;
  spec.num_kv_heads = 1;
  spec.head_dim = 2;
  KvCache kv_cache(spec, io::DType::kF32, 16, 256);
  Scheduler scheduler(kv_cache, 4, 4096);
  auto make = [](size_t index, int prompt, int new_tokens, bool scoring) {
    auto sequence = std::make_unique<Sequence>();
    sequence->request_index = index;
    sequence->tokens.assign(prompt, 5);
    sequence->prompt_length = prompt;
    sequence->max_new_tokens = new_tokens;
    sequence->prompt_logits = scoring;
    return sequence;
  };
  ASSERT_EQ(kPromptLogitsStepRows, 512);
  scheduler.Enqueue(make(0, 700, 0, true));
  scheduler.Enqueue(make(1, 300, 2, true));
  scheduler.Enqueue(make(2, 300, 2, false));
  struct Expected {
    size_t sequence;
    int start, count, prompt_logits;
    bool want_logits;
  };
  const std::vector<std::vector<Expected>> steps = {
      // 512 of sequence 0's 700 positions; none left for sequence 1; sequence 2 is not scored.
      {{0, 0, 512, 512, false}, {2, 0, 300, 0, true}},
      // Sequence 2's decode; the rest of sequence 0 (its last position predicts nothing); all of sequence 1.
      {{2, 300, 1, 0, true}, {0, 512, 188, 187, false}, {1, 0, 300, 299, true}},
      // Decodes only: sequence 0 has nothing left to compute.
      {{1, 300, 1, 0, true}, {2, 301, 1, 0, true}}};
  std::vector<StepChunk> chunks;
  std::vector<Sequence*> owners;
  for (size_t step = 0; step < steps.size(); ++step) {
    scheduler.NextStep(&chunks, &owners);
    ASSERT_EQ(chunks.size(), steps[step].size()) << "step " << step;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const Expected& want = steps[step][c];
      EXPECT_EQ(owners[c]->request_index, want.sequence) << "step " << step << " chunk " << c;
      EXPECT_EQ(chunks[c].start, want.start) << "step " << step << " chunk " << c;
      EXPECT_EQ(chunks[c].count, want.count) << "step " << step << " chunk " << c;
      EXPECT_EQ(chunks[c].prompt_logits, want.prompt_logits) << "step " << step << " chunk " << c;
      EXPECT_EQ(chunks[c].want_logits, want.want_logits) << "step " << step << " chunk " << c;
    }
    scheduler.Commit(chunks, owners);
    for (size_t c = 0; c < chunks.size(); ++c) {
      if (chunks[c].want_logits) owners[c]->tokens.push_back(7);
    }
  }
}

// The GPU path's layout of a step lists the scoring rows in the caller's chunk order, whatever order the
// micro-batches and row kinds put the chunks in: each chunk's first prompt_logits rows, at its positions.
TEST(Scoring, StepLayoutListsScoringRowsInChunkOrder) {
  const int32_t tokens[16] = {};
  std::vector<int32_t> t0{0}, t1{1}, t2{2}, t3{3};
  auto chunk = [&](const std::vector<int32_t>& table, int start, int count, int prompt_logits) {
    StepChunk c;
    c.tokens = tokens;
    c.start = start;
    c.count = count;
    c.block_table = &table;
    c.want_logits = prompt_logits < count;
    c.prompt_logits = prompt_logits;
    return c;
  };
  // A decode, a fresh scoring prompt (attended on the GPU: laid out after the CPU chunks), a continuing
  // scoring chunk (CPU attention) and another fresh one, over two micro-batches.
  const std::vector<StepChunk> chunks = {chunk(t0, 10, 1, 0), chunk(t1, 0, 5, 5), chunk(t2, 8, 4, 3),
                                         chunk(t3, 0, 3, 2)};
  for (int micro_batches : {1, 2}) {
    const StepLayout layout = LayOutStep(chunks, micro_batches, /*fresh_on_gpu=*/true);
    ASSERT_EQ(layout.prompt_logit_rows.size(), 10u);
    // Which chunk each row holds, from the micro-batches' chunk lists.
    std::vector<const std::vector<int32_t>*> row_table(layout.rows);
    for (const MicroBatch& batch : layout.batches) {
      int row = batch.first_row;
      for (const StepChunk& c : batch.chunks) {
        for (int t = 0; t < c.count; ++t) row_table[row++] = c.block_table;
      }
    }
    size_t next = 0;
    for (const StepChunk& c : chunks) {
      for (int t = 0; t < c.prompt_logits; ++t, ++next) {
        const int row = layout.prompt_logit_rows[next];
        EXPECT_EQ(row_table[row], c.block_table) << micro_batches << " micro-batches, entry " << next;
        EXPECT_EQ(layout.positions[row], c.start + t) << micro_batches << " micro-batches, entry " << next;
      }
    }
  }
}

// A prompt longer than a step's scored rows (kPromptLogitsStepRows), scored with one large step budget and
// with a small one: the same values (f32 CPU, within 1e-4); its last token, the greedy continuation of the
// rest, gets the logprob that generating it got.
TEST(Scoring, LongPromptsScoreTheSameInAnyChunking) {
  std::vector<int32_t> context;
  for (int i = 0; i < 699; ++i) context.push_back((i * 37 + 11) % 500);
  std::vector<std::vector<float>> scored;
  int32_t continuation = -1;
  float continuation_logprob = 0;
  for (int budget : {4096, 100}) {
    EngineOptions options;
    options.cpu_compute = ComputeType::kF32;
    options.threads = 2;
    options.plan.batch = 2;
    options.plan.prefill_chunk = budget;
    absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    if (continuation < 0) {
      Request generate;
      generate.id = "generate";
      generate.prompt_ids = context;
      generate.max_tokens = 1;
      generate.logprobs = true;
      generate.ignore_eos = true;
      auto generated = engine->Generate(std::span<const Request>(&generate, 1));
      ASSERT_TRUE(generated.ok()) << generated.status();
      ASSERT_TRUE((*generated)[0].status.ok()) << (*generated)[0].status;
      continuation = (*generated)[0].token_ids[0];
      continuation_logprob = (*generated)[0].logprobs[0];
    }
    Request score;
    score.id = "score";
    score.prompt_ids = context;
    score.prompt_ids.push_back(continuation);
    score.max_tokens = 0;
    score.echo = true;
    score.logprobs = true;
    score.top_logprobs = 1;
    auto results = engine->Generate(std::span<const Request>(&score, 1));
    ASSERT_TRUE(results.ok()) << results.status();
    const Result& result = (*results)[0];
    ASSERT_TRUE(result.status.ok()) << result.status;
    ASSERT_EQ(result.prompt_logprobs.size(), score.prompt_ids.size());
    EXPECT_EQ(result.prompt_top_logprobs.back()[0].token, continuation);
    scored.push_back(result.prompt_logprobs);
  }
  for (size_t p = 1; p < scored[0].size(); ++p) {
    EXPECT_NEAR(scored[0][p], scored[1][p], 1e-4) << "position " << p;
    EXPECT_LT(scored[0][p], 0.0f);
  }
  EXPECT_NEAR(scored[0].back(), continuation_logprob, 1e-4);
}

}  // namespace
}  // namespace ringmoe
