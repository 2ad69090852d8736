// Engine::Open on broken model folders: every failure is a Status naming the file or tensor at fault.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe {
namespace {

namespace fs = std::filesystem;
const fs::path kOlmoe = fs::path(RINGMOE_SOURCE_DIR) / "tests/data/golden/olmoe";
const fs::path kMixtral = fs::path(RINGMOE_SOURCE_DIR) / "tests/data/golden/mixtral";

class BrokenModel : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ringmoe_open_" + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void CopyFrom(const fs::path& source) { fs::copy(source, dir_, fs::copy_options::recursive); }

  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json config = nlohmann::json::parse(std::ifstream(dir_ / "config.json"));
    edit(config);
    std::ofstream(dir_ / "config.json") << config.dump();
  }

  absl::Status Open() {
    EngineOptions options;
    options.cpu_compute = ComputeType::kF32;
    return Engine::Open(dir_.string(), options).status();
  }

  fs::path dir_;
};

MATCHER_P(MentionsText, text, "") { return std::string(arg.message()).find(text) != std::string::npos; }

TEST_F(BrokenModel, MissingFolderAndConfig) {
  absl::Status status = Open();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status, MentionsText("config.json"));
  fs::create_directories(dir_);
  EXPECT_THAT(Open(), MentionsText("config.json"));
}

TEST_F(BrokenModel, UnknownModelType) {
  CopyFrom(kOlmoe);
  EditConfig([](nlohmann::json& c) { c["model_type"] = "llama"; });
  absl::Status status = Open();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(status, MentionsText("llama"));
}

TEST_F(BrokenModel, ConfigThatDoesNotMatchTheTensors) {
  CopyFrom(kOlmoe);
  EditConfig([](nlohmann::json& c) { c["intermediate_size"] = 48; });
  absl::Status status = Open();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status, MentionsText("experts.0.gate_proj.weight"));
  EXPECT_THAT(status, MentionsText("48"));
}

TEST_F(BrokenModel, FewerExpertsOrLayersInConfigThanInCheckpoint) {
  CopyFrom(kOlmoe);
  EditConfig([](nlohmann::json& c) { c["num_experts"] = 4; });
  EXPECT_THAT(Open(), MentionsText("mlp.gate.weight"));  // router shape [8, 64] vs [4, 64]
  EditConfig([](nlohmann::json& c) {
    c["num_experts"] = 8;
    c["num_hidden_layers"] = c["num_hidden_layers"].get<int>() - 1;
  });
  EXPECT_THAT(Open(), MentionsText("num_hidden_layers"));
}

TEST_F(BrokenModel, MissingTensor) {
  CopyFrom(kOlmoe);
  EditConfig([](nlohmann::json& c) { c["tie_word_embeddings"] = false; });
  EditConfig([](nlohmann::json& c) { c["num_hidden_layers"] = c["num_hidden_layers"].get<int>() + 1; });
  EXPECT_THAT(Open(), MentionsText("has no tensor"));
}

TEST_F(BrokenModel, TruncatedWeights) {
  CopyFrom(kOlmoe);
  const fs::path weights = dir_ / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) - 1000);
  absl::Status status = Open();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status, MentionsText("model.safetensors"));
}

TEST_F(BrokenModel, MissingShard) {
  CopyFrom(kMixtral);
  fs::remove(dir_ / "model-00002-of-00003.safetensors");
  absl::Status status = Open();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status, MentionsText("model-00002-of-00003.safetensors"));
}

TEST_F(BrokenModel, NoWeightsAtAll) {
  CopyFrom(kOlmoe);
  fs::remove(dir_ / "model.safetensors");
  EXPECT_FALSE(Open().ok());
}

}  // namespace
}  // namespace ringmoe
