// The bad-input corpus, model side (issue 21): config.json cases (tests/data/bad_inputs/configs.jsonl),
// safetensors files with lying headers, offsets, dtypes and shapes or cut short, tokenizer files, FIFOs and
// devices where files belong, NaN weights, and a checkpoint that changes under a running engine. Each must be
// a clear error naming the file and what is wrong: no crash, no hang, no allocation of what a file claims.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";
const std::string kConfigs = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/bad_inputs/configs.jsonl";

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string Lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Expects `status` to be an error whose message contains every one of `words` (case-insensitive).
void ExpectClearError(const absl::Status& status, const std::vector<std::string>& words,
                      const std::string& what) {
  ASSERT_FALSE(status.ok()) << what << ": accepted";
  const std::string message = Lowercase(std::string(status.message()));
  for (const std::string& word : words) {
    EXPECT_NE(message.find(Lowercase(word)), std::string::npos)
        << what << ": the message does not say '" << word << "': " << status.message();
  }
  EXPECT_LT(status.message().size(), 2000u) << what;
}

class BadModelFiles : public testing::Test {
 protected:
  void SetUp() override {
    const auto* test = testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        fs::temp_directory_path() / ("ringmoe_bad_model_" + std::to_string(::getpid()) + "_" + test->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A fresh copy of the tiny model in dir_/<name>.
  fs::path CopyOfTinyModel(const std::string& name) {
    const fs::path model = dir_ / name;
    fs::remove_all(model);
    fs::create_directories(model);
    for (const char* file : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                             "tokenizer_config.json"}) {
      fs::copy_file(fs::path(kTinyModel) / file, model / file);
    }
    return model;
  }

  static absl::Status OpenEngine(const fs::path& model) {
    EngineOptions options;
    options.cpu_compute = ComputeType::kF32;
    options.threads = 1;
    options.plan.kv.host_bytes = int64_t{64} << 20;
    return Engine::Open(model.string(), options).status();
  }

  fs::path dir_;
};

TEST_F(BadModelFiles, ConfigCorpusCasesAreClearErrors) {
  const json base = json::parse(ReadBytes(fs::path(kTinyModel) / "config.json"));
  std::ifstream in(kConfigs);
  int cases = 0, number = 0;
  for (std::string text; std::getline(in, text);) {
    ++number;
    const json item = json::parse(text);
    std::string config;
    if (item.contains("text")) {
      config = item["text"];
    } else {
      json patched = base;
      if (item.contains("set")) {
        for (const auto& [key, value] : item["set"].items()) patched[key] = value;
      }
      if (item.contains("remove")) {
        for (const std::string key : item["remove"]) patched.erase(key);
      }
      config = patched.dump();
    }
    ++cases;
    absl::StatusOr<ModelSpec> spec = ParseModelSpec(config, "bad/config.json");
    ExpectClearError(spec.status(), {"bad/config.json", item["expect"]},
                     "configs.jsonl:" + std::to_string(number));
  }
  EXPECT_GE(cases, 100);
}

// The three of issue 21, through the whole loader (config, checkpoint, weights) on a real model folder.
TEST_F(BadModelFiles, HugeSizesInConfigAreErrorsBeforeAnyAllocation) {
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, json>>{{"num_experts", json(2147483647)},
                                                 {"hidden_size", json(uint64_t{4294967296} + 128)},
                                                 {"vocab_size", json(2147483647)},
                                                 {"max_position_embeddings", json(2147483647)}}) {
    const fs::path model = CopyOfTinyModel("huge_" + key);
    json config = json::parse(ReadBytes(model / "config.json"));
    config[key] = value;
    WriteBytes(model / "config.json", config.dump());
    ExpectClearError(OpenEngine(model), {"config.json", key}, key);
  }
}

// One safetensors header edit: the header JSON is changed by `edit` and written back with its new length.
struct HeaderEdit {
  std::string name;
  std::function<void(json&)> edit;
  std::vector<std::string> expect;
};

std::string WithHeader(const std::string& file, const std::function<void(json&)>& edit) {
  uint64_t length = 0;
  std::memcpy(&length, file.data(), 8);
  json header = json::parse(file.substr(8, length));
  edit(header);
  std::string text = header.dump();
  const uint64_t new_length = text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &new_length, 8);
  return out + text + file.substr(8 + length);
}

TEST_F(BadModelFiles, SafetensorsWithLyingHeadersOffsetsDtypesAndShapes) {
  const std::string file = ReadBytes(fs::path(kTinyModel) / "model.safetensors");
  const std::string embed = "model.embed_tokens.weight", norm = "model.norm.weight";
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  std::vector<HeaderEdit> edits = {
      {"dtype F64", [&](json& h) { h[q]["dtype"] = "F64"; }, {q}},
      {"dtype Q4", [&](json& h) { h[q]["dtype"] = "Q4"; }, {q, "Q4"}},
      {"dtype empty", [&](json& h) { h[q]["dtype"] = ""; }, {q}},
      {"dtype number", [&](json& h) { h[q]["dtype"] = 5; }, {q}},
      {"dtype F32 over BF16 bytes", [&](json& h) { h[q]["dtype"] = "F32"; }, {q}},
      {"dtype U8", [&](json& h) { h[q]["dtype"] = "U8"; }, {q}},
      {"shape negative", [&](json& h) { h[q]["shape"][0] = -128; }, {q}},
      {"shape fraction", [&](json& h) { h[q]["shape"][0] = 1.5; }, {q}},
      {"shape string", [&](json& h) { h[q]["shape"] = "128,128"; }, {q}},
      {"shape huge",
       [&](json& h) {
         h[q]["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40};
       },
       {q}},
      {"shape overflowing int64",
       [&](json& h) {
         h[q]["shape"] = {uint64_t{1} << 62, 16};
       },
       {q}},
      {"shape rank 0", [&](json& h) { h[q]["shape"] = json::array(); }, {q}},
      {"shape swapped", [&](json& h) { std::swap(h[embed]["shape"][0], h[embed]["shape"][1]); }, {embed}},
      {"shape with more rows", [&](json& h) { h[q]["shape"][0] = h[q]["shape"][0].get<int>() * 2; }, {q}},
      {"offsets reversed",
       [&](json& h) { std::swap(h[q]["data_offsets"][0], h[q]["data_offsets"][1]); },
       {q}},
      {"offsets past the end",
       [&](json& h) {
         h[q]["data_offsets"][0] = h[q]["data_offsets"][0].get<uint64_t>() + (uint64_t{1} << 40);
         h[q]["data_offsets"][1] = h[q]["data_offsets"][1].get<uint64_t>() + (uint64_t{1} << 40);
       },
       {q}},
      {"offsets overlapping", [&](json& h) { h[q]["data_offsets"] = h[embed]["data_offsets"]; }, {}},
      {"offsets three", [&](json& h) { h[q]["data_offsets"].push_back(0); }, {q}},
      {"offsets negative", [&](json& h) { h[q]["data_offsets"][0] = -1; }, {q}},
      {"offsets strings",
       [&](json& h) {
         h[q]["data_offsets"] = {"0", "10"};
       },
       {q}},
      {"offsets missing", [&](json& h) { h[q].erase("data_offsets"); }, {q}},
      {"dtype missing", [&](json& h) { h[q].erase("dtype"); }, {q}},
      {"entry not an object", [&](json& h) { h[q] = 5; }, {q}},
      {"tensor missing", [&](json& h) { h.erase(embed); }, {embed}},
      {"norm missing", [&](json& h) { h.erase(norm); }, {norm}},
      {"metadata not an object", [&](json& h) { h["__metadata__"] = 5; }, {"__metadata__"}},
      {"metadata value not a string",
       [&](json& h) {
         h["__metadata__"] = {{"format", 5}};
       },
       {"__metadata__"}},
      {"header an array",
       [&](json& h) {
         h = json::array({1, 2});
       },
       {}},
      {"header empty object", [&](json& h) { h = json::object(); }, {}},
      {"offsets in the header",
       [&](json& h) {
         h[q]["data_offsets"] = {0, 0};
       },
       {q}},
  };
  int cases = 0;
  for (const HeaderEdit& edit : edits) {
    const fs::path model = CopyOfTinyModel("edit");
    WriteBytes(model / "model.safetensors", WithHeader(file, edit.edit));
    std::vector<std::string> expect = edit.expect;
    expect.push_back("model.safetensors");
    if (edit.name == "tensor missing" || edit.name == "norm missing" || edit.name == "shape swapped" ||
        edit.name == "shape with more rows" || edit.name == "header empty object")
      expect.pop_back();  // found by the weights loader, which names the tensor
    ExpectClearError(OpenEngine(model), expect, edit.name);
    ++cases;
  }
  // Byte-level lies: the length prefix and truncation at every kind of place.
  uint64_t header_length = 0;
  std::memcpy(&header_length, file.data(), 8);
  auto with_length = [&](uint64_t length) {
    std::string out = file;
    std::memcpy(out.data(), &length, 8);
    return out;
  };
  const std::vector<std::pair<std::string, std::string>> raw = {
      {"length past the end", with_length(file.size())},
      {"length 2^63", with_length(uint64_t{1} << 63)},
      {"length all ones", with_length(~uint64_t{0})},
      {"length zero", with_length(0)},
      {"length into the data", with_length(header_length + 3)},
      {"empty file", ""},
      {"4 bytes", file.substr(0, 4)},
      {"8 bytes", file.substr(0, 8)},
      {"cut in the header", file.substr(0, 8 + header_length / 2)},
      {"header only", file.substr(0, 8 + header_length)},
      {"cut in the data", file.substr(0, 8 + header_length + (file.size() - 8 - header_length) / 2)},
      {"one byte short", file.substr(0, file.size() - 1)},
      {"garbage header",
       std::string(file.substr(0, 8)) + std::string(header_length, '\x01') + file.substr(8 + header_length)},
      {"NUL header",
       std::string(file.substr(0, 8)) + std::string(header_length, '\0') + file.substr(8 + header_length)},
      {"deeply nested header",
       [&] {
         std::string header = std::string(100000, '[') + std::string(100000, ']');
         std::string out(8, '\0');
         const uint64_t length = header.size();
         std::memcpy(out.data(), &length, 8);
         return out + header;
       }()},
  };
  for (const auto& [name, bytes] : raw) {
    const fs::path model = CopyOfTinyModel("raw");
    WriteBytes(model / "model.safetensors", bytes);
    ExpectClearError(OpenEngine(model), {"model.safetensors"}, name);
    ++cases;
  }
  EXPECT_GE(cases, 40);
}

TEST_F(BadModelFiles, IndexFilesThatLie) {
  const std::vector<std::pair<std::string, std::string>> indexes = {
      {"not json", "{"},
      {"array", "[]"},
      {"no weight_map", "{}"},
      {"weight_map a list", R"({"weight_map": ["model.safetensors"]})"},
      {"empty weight_map", R"({"weight_map": {}})"},
      {"shard not a string", R"({"weight_map": {"model.norm.weight": 5}})"},
      {"shard outside the folder", R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})"},
      {"absolute shard", R"({"weight_map": {"model.norm.weight": "/etc/passwd"}})"},
      {"missing shard", R"({"weight_map": {"model.norm.weight": "nowhere.safetensors"}})"},
      {"shard a directory", R"({"weight_map": {"model.norm.weight": "folder"}})"},
      {"shard a FIFO", R"({"weight_map": {"model.norm.weight": "pipe.safetensors"}})"},
      {"shard a device", R"({"weight_map": {"model.norm.weight": "zero.safetensors"}})"},
      {"deep", std::string(100000, '[')},
  };
  for (const auto& [name, text] : indexes) {
    const fs::path model = CopyOfTinyModel("index");
    fs::remove(model / "model.safetensors");
    fs::create_directories(model / "folder");
    ASSERT_EQ(::mkfifo((model / "pipe.safetensors").c_str(), 0600), 0);
    fs::create_symlink("/dev/zero", model / "zero.safetensors");
    WriteBytes(model / "model.safetensors.index.json", text);
    ExpectClearError(OpenEngine(model), {}, name);  // (must return at all: a FIFO used to hang here)
  }
}

// FIFOs and devices where regular files belong are refused before they are opened: a FIFO would block the
// open forever (the test would hang), /dev/zero would never end.
TEST_F(BadModelFiles, FifosAndDevicesAreRefusedBeforeOpening) {
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json"}) {
    for (const char* kind : {"fifo", "device"}) {
      const fs::path model = CopyOfTinyModel(std::string(kind) + "_" + file);
      fs::remove(model / file);
      if (std::string(kind) == "fifo") {
        ASSERT_EQ(::mkfifo((model / file).c_str(), 0600), 0);
      } else {
        fs::create_symlink("/dev/zero", model / file);
      }
      const std::string what = std::string(kind) + " as " + file;
      absl::Status status = std::string(file) == "tokenizer.json" ? Tokenizer::Load(model.string()).status()
                                                                  : OpenEngine(model);
      ExpectClearError(status, {file, std::string(kind) == "fifo" ? "FIFO" : "device"}, what);
    }
  }
}

TEST_F(BadModelFiles, TokenizerFilesThatLie) {
  const json base = json::parse(ReadBytes(fs::path(kTinyModel) / "tokenizer.json"));
  const std::string some_token = base["model"]["vocab"].begin().key();
  struct Lie {
    std::string name;
    std::function<void(json&)> edit;
    std::string expect;
  };
  const std::vector<Lie> lies = {
      {"no model", [](json& t) { t.erase("model"); }, "model"},
      {"model a string", [](json& t) { t["model"] = "BPE"; }, "model"},
      {"model type WordPiece", [](json& t) { t["model"]["type"] = "WordPiece"; }, "WordPiece"},
      {"model type number", [](json& t) { t["model"]["type"] = 5; }, "type"},
      {"vocab a list", [](json& t) { t["model"]["vocab"] = json::array({"a"}); }, "vocab"},
      {"vocab id 2^31-1", [&](json& t) { t["model"]["vocab"][some_token] = 2147483647; }, "id"},
      {"vocab id 2^40", [&](json& t) { t["model"]["vocab"][some_token] = uint64_t{1} << 40; }, "id"},
      {"vocab id -1", [&](json& t) { t["model"]["vocab"][some_token] = -1; }, "id"},
      {"vocab id string", [&](json& t) { t["model"]["vocab"][some_token] = "5"; }, "id"},
      {"vocab id fraction", [&](json& t) { t["model"]["vocab"][some_token] = 1.5; }, "id"},
      {"merges an object", [](json& t) { t["model"]["merges"] = json::object(); }, "merges"},
      {"merge without a space", [](json& t) { t["model"]["merges"][0] = "ab"; }, "merge"},
      {"merge of three", [](json& t) { t["model"]["merges"][0] = "a b c"; }, "merge"},
      {"merge of numbers",
       [](json& t) {
         t["model"]["merges"][0] = json::array({1, 2});
       },
       "merge"},
      {"added_tokens an object", [](json& t) { t["added_tokens"] = json::object(); }, "added_tokens"},
      {"added token id 2^31-1", [](json& t) { t["added_tokens"][0]["id"] = 2147483647; }, "id"},
      {"added token id -5", [](json& t) { t["added_tokens"][0]["id"] = -5; }, "id"},
      {"added token id 2^40", [](json& t) { t["added_tokens"][0]["id"] = uint64_t{1} << 40; }, "id"},
      {"added token without content", [](json& t) { t["added_tokens"][0].erase("content"); }, "content"},
      {"normalizer unknown",
       [](json& t) {
         t["normalizer"] = {{"type", "Bogus"}};
       },
       "Bogus"},
      {"pre_tokenizer unknown",
       [](json& t) {
         t["pre_tokenizer"] = {{"type", "Bogus"}};
       },
       "Bogus"},
      {"pre_tokenizer bad regex",
       [](json& t) { t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; }, "regex"},
      {"decoder unknown",
       [](json& t) {
         t["decoder"] = {{"type", "Bogus"}};
       },
       "Bogus"},
      {"post_processor bad id",
       [](json& t) {
         t["post_processor"] = {{"type", "BertProcessing"}, {"cls", {"[CLS]", -7}}, {"sep", {"[SEP]", 2}}};
       },
       "cls"},
  };
  int cases = 0;
  for (const Lie& lie : lies) {
    json edited = base;
    lie.edit(edited);
    const fs::path folder = dir_ / "tokenizer";
    fs::remove_all(folder);
    fs::create_directories(folder);
    WriteBytes(folder / "tokenizer.json", edited.dump());
    ExpectClearError(Tokenizer::Load(folder.string()).status(), {"tokenizer.json", lie.expect}, lie.name);
    ++cases;
  }
  const std::string text = ReadBytes(fs::path(kTinyModel) / "tokenizer.json");
  const std::vector<std::pair<std::string, std::string>> raw = {
      {"empty", ""},
      {"not json", "{"},
      {"an array", "[]"},
      {"null", "null"},
      {"cut in half", text.substr(0, text.size() / 2)},
      {"deep", std::string(100000, '[')},
      {"gzip garbage", std::string("\x1f\x8b\x08\x00garbage", 12)},
      {"gzip cut", std::string("\x1f\x8b", 2)},
  };
  for (const auto& [name, bytes] : raw) {
    const fs::path folder = dir_ / "tokenizer";
    fs::remove_all(folder);
    fs::create_directories(folder);
    WriteBytes(folder / "tokenizer.json", bytes);
    ExpectClearError(Tokenizer::Load(folder.string()).status(), {"tokenizer.json"}, name);
    ++cases;
  }
  // tokenizer_config.json beside it: deep nesting and an EOS that is no token.
  for (const auto& [name, config] : std::vector<std::pair<std::string, std::string>>{
           {"config deep", std::string(100000, '[')},
           {"config eos unknown", R"({"eos_token": "<no such token>"})"},
           {"config not an object", "[1]"}}) {
    const fs::path folder = dir_ / "tokenizer";
    fs::remove_all(folder);
    fs::create_directories(folder);
    fs::copy_file(fs::path(kTinyModel) / "tokenizer.json", folder / "tokenizer.json");
    WriteBytes(folder / "tokenizer_config.json", config);
    ExpectClearError(Tokenizer::Load(folder.string()).status(), {"tokenizer_config.json"}, name);
    ++cases;
  }
  EXPECT_GE(cases, 30);
}

// Sets every element of `tensor` in a safetensors file's bytes to NaN (f32 or bf16).
void PoisonTensor(std::string& file, const std::string& tensor) {
  uint64_t length = 0;
  std::memcpy(&length, file.data(), 8);
  const json header = json::parse(file.substr(8, length));
  const std::string dtype = header[tensor]["dtype"];
  const uint64_t begin = header[tensor]["data_offsets"][0], end = header[tensor]["data_offsets"][1];
  char* data = file.data() + 8 + length;
  if (dtype == "F32") {
    const float nan = std::nanf("");
    for (uint64_t at = begin; at < end; at += 4) std::memcpy(data + at, &nan, 4);
  } else {
    ASSERT_TRUE(dtype == "BF16") << dtype;
    const uint16_t nan = 0x7fc0;
    for (uint64_t at = begin; at < end; at += 2) std::memcpy(data + at, &nan, 2);
  }
}

// NaN weights: each request fails with an error that says NaN, rather than emitting token 0.
TEST_F(BadModelFiles, NanWeightsAreAnErrorNotTokenZero) {
  const fs::path model = CopyOfTinyModel("nan");
  std::string file = ReadBytes(model / "model.safetensors");
  PoisonTensor(file, "model.norm.weight");
  WriteBytes(model / "model.safetensors", file);
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(model.string(), options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<Request> requests(3);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "nan-" + std::to_string(i);
    requests[i].prompt_ids = {1, 2, 3, static_cast<int32_t>(i)};
    requests[i].max_tokens = 4;
  }
  // Scoring (echo, logprobs, max_tokens 0) fails the same way, at its prompt's first scored position.
  requests[2].echo = true;
  requests[2].logprobs = true;
  requests[2].max_tokens = 0;
  absl::StatusOr<std::vector<Result>> results = engine->Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const Result& result : *results) {
    ExpectClearError(result.status, {result.id, "NaN"}, result.id);
    if (result.id == "nan-2") EXPECT_NE(result.status.message().find("prompt position 0"), std::string::npos);
    EXPECT_TRUE(result.token_ids.empty());
    // Its output line is a server-side failure: HTTP 500, "server_error", ringmoe's code internal_error.
    BatchLine line;
    line.line_number = 1;
    line.custom_id = result.id;
    line.request = requests[0];
    const json output = json::parse(FormatResultLine(line, &result, "nan", "batch_req_r_1", 0));
    EXPECT_TRUE(output["error"].is_null()) << output.dump();
    EXPECT_EQ(output["response"]["status_code"], 500) << output.dump();
    EXPECT_EQ(output["response"]["body"]["error"]["type"], "server_error");
    EXPECT_EQ(output["response"]["body"]["error"]["code"], "internal_error");
    EXPECT_NE(output["response"]["body"]["error"]["message"].get<std::string>().find("NaN"),
              std::string::npos);
  }
}

// A checkpoint truncated under an open engine: the next Generate ends with an error naming the file, not a
// SIGBUS (the step checks the file before reading it).
TEST_F(BadModelFiles, ACheckpointTruncatedUnderTheEngineIsAnError) {
  const fs::path model = CopyOfTinyModel("truncated");
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(model.string(), options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<Request> requests(2);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "t-" + std::to_string(i);
    requests[i].prompt_ids = {1, 2, 3};
    requests[i].max_tokens = 2;
  }
  ASSERT_TRUE(engine->Generate(requests).ok());
  fs::resize_file(model / "model.safetensors", fs::file_size(model / "model.safetensors") / 3);
  absl::StatusOr<std::vector<Result>> after = engine->Generate(requests);
  ExpectClearError(after.status(), {"model.safetensors", "changed"}, "truncated");
}

// A truncation that lands in the middle of a read faults; the handler turns the fault into a message naming
// the file and exit status 1 instead of a bare SIGBUS.
TEST_F(BadModelFiles, AFaultInAMappedFileIsAMessageNotASigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const fs::path path = dir_ / "mapped.bin";
  WriteBytes(path, std::string(1 << 16, 'x'));
  EXPECT_EXIT(
      {
        absl::StatusOr<io::MappedFile> mapped = io::MappedFile::Open(path.string());
        if (!mapped.ok()) std::_Exit(3);
        ::truncate(path.c_str(), 0);
        volatile uint8_t byte = mapped->bytes()[40000];
        (void)byte;
        std::_Exit(4);
      },
      testing::ExitedWithCode(1), "mapped.bin was truncated");
}

}  // namespace
}  // namespace ringmoe
