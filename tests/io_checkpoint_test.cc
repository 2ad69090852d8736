// Checkpoint::Open over real files in a temporary directory: single files, sharded checkpoints with and
// without an index, and the ways a checkpoint directory can be broken.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "tests/testing/safetensors_writer.h"

namespace ringmoe::io {
namespace {

using testing::BF16Bytes;
using testing::F16Bytes;
using testing::F32Bytes;
using testing::TempDir;
using testing::TensorSpec;
using testing::WriteSafetensors;
using testing::WriteSafetensorsIndex;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

std::vector<float> ToF32(const TensorView& view) {
  std::vector<float> values(static_cast<size_t>(view.numel()));
  EXPECT_TRUE(ConvertToF32(view.dtype(), view.data(), values.data(), values.size()).ok());
  return values;
}

// The bytes of `view` read back from its file at file_offset(), as the SSD tier does.
std::vector<uint8_t> ReadFromFile(const TensorView& view) {
  std::ifstream in(view.path(), std::ios::binary);
  in.seekg(static_cast<std::streamoff>(view.file_offset()));
  std::vector<uint8_t> bytes(view.nbytes());
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  TempDir dir_;
};

TEST_F(CheckpointTest, SingleFileRoundTripsF32BF16AndF16) {
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0e-3f, 1.0e6f, -0.0f, 7.0f};
  const std::vector<float> exact = {1.5f, -2.25f, 0.5f, -8.0f};  // Exactly representable in BF16 and F16.
  ASSERT_TRUE(
      WriteSafetensors(dir_.File("model.safetensors"), {{"layer.f32", "F32", {2, 3}, F32Bytes(f32)},
                                                        {"layer.bf16", "BF16", {4}, BF16Bytes(exact)},
                                                        {"layer.f16", "F16", {2, 2}, F16Bytes(exact)}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const Checkpoint& ckpt = **checkpoint;
  EXPECT_EQ(ckpt.dir(), dir_.path());
  EXPECT_EQ(ckpt.Names(), (std::vector<std::string>{"layer.bf16", "layer.f16", "layer.f32"}));
  EXPECT_EQ(ckpt.total_bytes(), 24 + 8 + 8);
  EXPECT_EQ(ckpt.Find("absent"), nullptr);

  absl::StatusOr<TensorView> f32_view = ckpt.Require("layer.f32", {2, 3});
  ASSERT_TRUE(f32_view.ok()) << f32_view.status();
  EXPECT_EQ(f32_view->dtype(), DType::kF32);
  EXPECT_EQ(f32_view->nbytes(), 24u);
  EXPECT_EQ(f32_view->file(), "model.safetensors");
  EXPECT_EQ(ToF32(*f32_view), f32);
  EXPECT_EQ(ReadFromFile(*f32_view), std::vector<uint8_t>(f32_view->data(), f32_view->data() + 24));

  const TensorView* bf16_view = ckpt.Find("layer.bf16");
  ASSERT_NE(bf16_view, nullptr);
  EXPECT_EQ(bf16_view->dtype(), DType::kBF16);
  EXPECT_EQ(ToF32(*bf16_view), exact);
  const TensorView* f16_view = ckpt.Find("layer.f16");
  ASSERT_NE(f16_view, nullptr);
  EXPECT_EQ(f16_view->dtype(), DType::kF16);
  EXPECT_EQ(std::vector<int64_t>(f16_view->shape().begin(), f16_view->shape().end()),
            (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ToF32(*f16_view), exact);
  EXPECT_EQ(ReadFromFile(*f16_view), F16Bytes(exact));
}

TEST_F(CheckpointTest, ShardedCheckpointWithIndex) {
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7, 8, 9};
  ASSERT_TRUE(WriteSafetensors(
      dir_.File("model-00001-of-00002.safetensors"),
      {{"embed.weight", "BF16", {2, 2}, BF16Bytes(a)}, {"norm.weight", "F32", {2}, F32Bytes(b)}}));
  ASSERT_TRUE(WriteSafetensors(dir_.File("model-00002-of-00002.safetensors"),
                               {{"lm_head.weight", "F16", {3}, F16Bytes(c)}}));
  // A stray single file must be ignored when an index exists.
  ASSERT_TRUE(WriteSafetensors(dir_.File("model.safetensors"), {{"stray", "F32", {1}, F32Bytes({0})}}));
  ASSERT_TRUE(WriteSafetensorsIndex(dir_.File("model.safetensors.index.json"),
                                    {{"embed.weight", "model-00001-of-00002.safetensors"},
                                     {"norm.weight", "model-00001-of-00002.safetensors"},
                                     {"lm_head.weight", "model-00002-of-00002.safetensors"}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const Checkpoint& ckpt = **checkpoint;
  EXPECT_EQ(ckpt.Names(), (std::vector<std::string>{"embed.weight", "lm_head.weight", "norm.weight"}));
  EXPECT_EQ(ckpt.ShardPaths().size(), 2u);
  EXPECT_EQ(ckpt.total_bytes(), 8 + 8 + 6);
  absl::StatusOr<TensorView> head = ckpt.Require("lm_head.weight", {3});
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->file(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(ToF32(*head), c);
  EXPECT_EQ(ReadFromFile(*head), F16Bytes(c));
  EXPECT_EQ(ToF32(*ckpt.Find("embed.weight")), a);
  EXPECT_EQ(ToF32(*ckpt.Find("norm.weight")), b);
  EXPECT_EQ(ckpt.Find("embed.weight")->file(), "model-00001-of-00002.safetensors");
}

TEST_F(CheckpointTest, DirectoryOfShardsWithoutIndexIsMerged) {
  ASSERT_TRUE(WriteSafetensors(dir_.File("part-b.safetensors"), {{"b", "F32", {1}, F32Bytes({2})}}));
  ASSERT_TRUE(WriteSafetensors(dir_.File("part-a.safetensors"), {{"a", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(testing::WriteFile(dir_.File("notes.txt"), "not a checkpoint"));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->Names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*checkpoint)->Find("b")->file(), "part-b.safetensors");
}

TEST_F(CheckpointTest, DuplicateTensorAcrossShardsWithoutIndex) {
  ASSERT_TRUE(WriteSafetensors(dir_.File("part-a.safetensors"), {{"dup.weight", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(WriteSafetensors(dir_.File("part-b.safetensors"), {{"dup.weight", "F32", {1}, F32Bytes({2})}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  const std::string message = Message(checkpoint.status());
  EXPECT_NE(message.find("'dup.weight'"), std::string::npos) << message;
  EXPECT_NE(message.find("part-a.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("part-b.safetensors"), std::string::npos) << message;
}

TEST_F(CheckpointTest, DuplicateTensorAcrossShardsWithIndex) {
  ASSERT_TRUE(WriteSafetensors(dir_.File("s1.safetensors"),
                               {{"x", "F32", {1}, F32Bytes({1})}, {"dup", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(WriteSafetensors(dir_.File("s2.safetensors"),
                               {{"y", "F32", {1}, F32Bytes({1})}, {"dup", "F32", {1}, F32Bytes({2})}}));
  ASSERT_TRUE(
      WriteSafetensorsIndex(dir_.File("model.safetensors.index.json"),
                            {{"x", "s1.safetensors"}, {"y", "s2.safetensors"}, {"dup", "s1.safetensors"}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(Message(checkpoint.status()).find("'dup' appears in both s1.safetensors and s2.safetensors"),
            std::string::npos)
      << checkpoint.status();
}

TEST_F(CheckpointTest, MissingShardNamedByIndex) {
  ASSERT_TRUE(WriteSafetensors(dir_.File("s1.safetensors"), {{"x", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(WriteSafetensorsIndex(dir_.File("model.safetensors.index.json"),
                                    {{"x", "s1.safetensors"}, {"y", "s2-missing.safetensors"}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(checkpoint.status()).find("s2-missing.safetensors"), std::string::npos)
      << checkpoint.status();
  EXPECT_NE(Message(checkpoint.status()).find("No such file"), std::string::npos) << checkpoint.status();
}

TEST_F(CheckpointTest, IndexNamesATensorTheShardLacks) {
  ASSERT_TRUE(WriteSafetensors(dir_.File("s1.safetensors"), {{"x", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(WriteSafetensorsIndex(dir_.File("model.safetensors.index.json"),
                                    {{"x", "s1.safetensors"}, {"ghost.weight", "s1.safetensors"}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(Message(checkpoint.status())
                .find("'ghost.weight' is in s1.safetensors, but s1.safetensors has no such"),
            std::string::npos)
      << checkpoint.status();
}

TEST_F(CheckpointTest, IndexPlacesATensorInTheWrongShard) {
  ASSERT_TRUE(WriteSafetensors(dir_.File("s1.safetensors"), {{"x", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(WriteSafetensors(dir_.File("s2.safetensors"), {{"y", "F32", {1}, F32Bytes({1})}}));
  ASSERT_TRUE(
      WriteSafetensorsIndex(dir_.File("model.safetensors.index.json"),
                            {{"x", "s2.safetensors"}, {"y", "s2.safetensors"}, {"z", "s1.safetensors"}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(Message(checkpoint.status()).find("'x' is in s2.safetensors, but it is in s1.safetensors"),
            std::string::npos)
      << checkpoint.status();
}

TEST_F(CheckpointTest, BrokenIndexFiles) {
  const std::string index = dir_.File("model.safetensors.index.json");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not valid JSON"},
      {"[]", "not a JSON object"},
      {R"({"metadata": {}})", "missing \"weight_map\""},
      {R"({"weight_map": []})", "not an object"},
      {R"({"weight_map": {"x": 3}})", "'x' is a JSON number, not a file name"},
      {R"({"weight_map": {"x": "../elsewhere.safetensors"}})", "not a file inside the model directory"},
      {R"({"weight_map": {}})", "names no tensors"},
  };
  for (const auto& [text, expected] : cases) {
    ASSERT_TRUE(testing::WriteFile(index, text));
    absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
    ASSERT_FALSE(checkpoint.ok()) << text;
    EXPECT_NE(Message(checkpoint.status()).find(index), std::string::npos) << checkpoint.status();
    EXPECT_NE(Message(checkpoint.status()).find(expected), std::string::npos) << checkpoint.status();
  }
}

TEST_F(CheckpointTest, TruncatedFileNamesTheFileAndTensor) {
  const std::string path = dir_.File("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(
      path, {{"a", "F32", {4}, F32Bytes({1, 2, 3, 4})}, {"b", "F32", {4}, F32Bytes({5, 6, 7, 8})}}));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  const std::string message = Message(checkpoint.status());
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("'b'"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST_F(CheckpointTest, TruncatedInsideTheHeader) {
  const std::string path = dir_.File("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", "F32", {4}, F32Bytes({1, 2, 3, 4})}}));
  std::filesystem::resize_file(path, 20);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(Message(checkpoint.status()).find(path), std::string::npos) << checkpoint.status();
  EXPECT_NE(Message(checkpoint.status()).find("truncated"), std::string::npos) << checkpoint.status();
}

TEST_F(CheckpointTest, MissingAndEmptyDirectories) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> missing = Checkpoint::Open(dir_.File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(missing.status()).find(dir_.File("nope")), std::string::npos) << missing.status();

  absl::StatusOr<std::unique_ptr<Checkpoint>> empty = Checkpoint::Open(dir_.path());
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(Message(empty.status()).find("no model.safetensors"), std::string::npos) << empty.status();

  ASSERT_TRUE(testing::WriteFile(dir_.File("file"), "x"));
  absl::StatusOr<std::unique_ptr<Checkpoint>> not_dir = Checkpoint::Open(dir_.File("file"));
  ASSERT_FALSE(not_dir.ok());
  EXPECT_NE(Message(not_dir.status()).find("not a directory"), std::string::npos) << not_dir.status();
}

TEST_F(CheckpointTest, RequireReportsWrongShapeAndMissingTensor) {
  ASSERT_TRUE(
      WriteSafetensors(dir_.File("model-00001-of-00003.safetensors"),
                       {{"model.layers.0.mlp.gate.weight", "BF16", {8, 64}, std::vector<uint8_t>(1024)}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const std::vector<int64_t> expected = {16, 64};
  absl::StatusOr<TensorView> wrong = (*checkpoint)->Require("model.layers.0.mlp.gate.weight", expected);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(
      Message(wrong.status()),
      "tensor 'model.layers.0.mlp.gate.weight' (in model-00001-of-00003.safetensors) has shape [8, 64] but "
      "config.json implies [16, 64]");
  EXPECT_FALSE((*checkpoint)->Require("model.layers.0.mlp.gate.weight", {8, 64, 1}).ok());
  EXPECT_TRUE((*checkpoint)->Require("model.layers.0.mlp.gate.weight", {8, 64}).ok());

  absl::StatusOr<TensorView> missing = (*checkpoint)->Require("lm_head.weight", expected);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Message(missing.status()), "checkpoint in " + dir_.path() + " has no tensor 'lm_head.weight'");
}

TEST_F(CheckpointTest, ConcurrentReadersSeeTheSameTensors) {
  std::vector<TensorSpec> tensors;
  for (int i = 0; i < 64; ++i) tensors.push_back({"t" + std::to_string(i), "F32", {1}, F32Bytes({float(i)})});
  ASSERT_TRUE(WriteSafetensors(dir_.File("model.safetensors"), tensors));
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 100; ++round) {
        for (int i = 0; i < 64; ++i) {
          const TensorView* view = (*checkpoint)->Find("t" + std::to_string(i));
          float value = -1;
          if (view != nullptr) std::memcpy(&value, view->data(), 4);
          if (value != float(i)) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(MappedFileTest, MapsFilesAndReportsErrorsWithThePath) {
  TempDir dir;
  ASSERT_TRUE(testing::WriteFile(dir.File("data"), "hello"));
  ASSERT_TRUE(testing::WriteFile(dir.File("empty"), ""));
  absl::StatusOr<MappedFile> data = MappedFile::Open(dir.File("data"));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(std::string(data->bytes().begin(), data->bytes().end()), "hello");
  EXPECT_EQ(data->path(), dir.File("data"));
  MappedFile moved = *std::move(data);
  EXPECT_EQ(moved.size(), 5u);
  EXPECT_EQ(moved.bytes()[4], 'o');

  absl::StatusOr<MappedFile> empty = MappedFile::Open(dir.File("empty"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->bytes().empty());

  absl::StatusOr<MappedFile> missing = MappedFile::Open(dir.File("missing"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(missing.status()).find(dir.File("missing")), std::string::npos);
  EXPECT_NE(Message(missing.status()).find("No such file or directory"), std::string::npos);

  absl::StatusOr<MappedFile> directory = MappedFile::Open(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(Message(directory.status()).find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace ringmoe::io
