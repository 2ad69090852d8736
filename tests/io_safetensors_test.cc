// ParseSafetensorsHeader against valid files and against every kind of lying header. Every error must name
// the file and, when a tensor is at fault, the tensor.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "tests/testing/safetensors_writer.h"

namespace ringmoe::io {
namespace {

using testing::SafetensorsFile;
using testing::SafetensorsFileWithHeader;
using testing::TensorSpec;

constexpr char kLabel[] = "shard-under-test.safetensors";

std::span<const uint8_t> AsBytes(const std::string& file) {
  return {reinterpret_cast<const uint8_t*>(file.data()), file.size()};
}

absl::StatusOr<std::vector<TensorEntry>> Parse(const std::string& file) {
  return ParseSafetensorsHeader(AsBytes(file), kLabel);
}

// A header with one tensor entry `entry_json` named `name`, and `data_bytes` bytes of data.
std::string FileWithEntry(const std::string& name, const std::string& entry_json, size_t data_bytes = 64) {
  return SafetensorsFileWithHeader("{\"" + name + "\":" + entry_json + "}", std::string(data_bytes, '\x5a'));
}

// Expects `file` to be rejected with a message naming the file, `tensor` (when not empty) and `detail`.
void ExpectRejected(const std::string& file, const std::string& tensor, const std::string& detail) {
  absl::StatusOr<std::vector<TensorEntry>> parsed = Parse(file);
  ASSERT_FALSE(parsed.ok()) << "accepted a header that should fail with: " << detail;
  const std::string message(parsed.status().message());
  EXPECT_NE(message.find(kLabel), std::string::npos) << message;
  if (!tensor.empty()) {
    EXPECT_NE(message.find("'" + tensor + "'"), std::string::npos) << message;
  }
  EXPECT_NE(message.find(detail), std::string::npos) << message;
}

TEST(SafetensorsHeaderTest, ParsesAValidFileInDataOrder) {
  const std::string file = SafetensorsFile({{"b.weight", "BF16", {2, 3}, std::vector<uint8_t>(12, 1)},
                                            {"a.bias", "F32", {3}, std::vector<uint8_t>(12, 2)},
                                            {"c.empty", "F16", {0, 4}, {}}},
                                           {{"format", "pt"}});
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsFile(AsBytes(file), kLabel);
  ASSERT_TRUE(header.ok()) << header.status();
  ASSERT_EQ(header->tensors.size(), 3u);
  EXPECT_EQ(header->tensors[0].name, "b.weight");
  EXPECT_EQ(header->tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(header->tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(header->tensors[0].begin, 0u);
  EXPECT_EQ(header->tensors[0].end, 12u);
  EXPECT_EQ(header->tensors[1].name, "a.bias");
  EXPECT_EQ(header->tensors[1].begin, 12u);
  EXPECT_EQ(header->tensors[1].numel(), 3);
  EXPECT_EQ(header->tensors[2].name, "c.empty");
  EXPECT_EQ(header->tensors[2].nbytes(), 0u);
  EXPECT_EQ(header->metadata.at("format"), "pt");
  EXPECT_EQ(header->data_size, 24u);
  EXPECT_EQ(header->data_begin + header->data_size, file.size());
  EXPECT_EQ(header->data_begin % 8, 0u);
}

TEST(SafetensorsHeaderTest, EmptyHeaderAndScalarsAreValid) {
  absl::StatusOr<std::vector<TensorEntry>> empty = Parse(SafetensorsFileWithHeader("{}", ""));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  absl::StatusOr<std::vector<TensorEntry>> scalar =
      Parse(FileWithEntry("s", R"({"dtype":"F32","shape":[],"data_offsets":[0,4]})", 4));
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_EQ((*scalar)[0].numel(), 1);
}

TEST(SafetensorsHeaderTest, GapsBetweenTensorsAreAllowed) {
  const std::string file = SafetensorsFileWithHeader(
      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[10,14]}})",
      std::string(16, '\0'));
  absl::StatusOr<std::vector<TensorEntry>> parsed = Parse(file);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->size(), 2u);
}

TEST(SafetensorsHeaderTest, FileShorterThanTheLengthField) {
  ExpectRejected(std::string(5, '\0'), "", "too short");
}

TEST(SafetensorsHeaderTest, HeaderLengthPastTheEndOfTheFile) {
  std::string file = SafetensorsFileWithHeader("{}", "");
  file[0] = 64;  // Claims a 64-byte header in a 16-byte file.
  ExpectRejected(file, "", "runs past the end of the file");
}

TEST(SafetensorsHeaderTest, HeaderLengthAboveTheSaneCap) {
  std::string file = SafetensorsFileWithHeader("{}", "");
  const uint64_t huge = kMaxSafetensorsHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((huge >> (8 * i)) & 0xff);
  ExpectRejected(file, "", "exceeds the limit");
}

TEST(SafetensorsHeaderTest, HeaderIsNotJson) {
  ExpectRejected(SafetensorsFileWithHeader("{\"a\": {\"dtype\": ", ""), "", "not valid JSON");
  ExpectRejected(SafetensorsFileWithHeader("\xff\xfe garbage", ""), "", "not valid JSON");
}

TEST(SafetensorsHeaderTest, HeaderIsNotAnObject) {
  ExpectRejected(SafetensorsFileWithHeader("[1, 2, 3]", ""), "", "not a JSON object");
}

TEST(SafetensorsHeaderTest, DeeplyNestedHeaderIsRejectedBeforeParsing) {
  ExpectRejected(SafetensorsFileWithHeader(std::string(100000, '['), ""), "", "nests deeper");
}

TEST(SafetensorsHeaderTest, EntryIsNotAnObject) {
  ExpectRejected(FileWithEntry("w", "[1, 2]"), "w", "not a JSON object");
}

TEST(SafetensorsHeaderTest, MissingDType) {
  ExpectRejected(FileWithEntry("w", R"({"shape":[4],"data_offsets":[0,16]})"), "w", "missing \"dtype\"");
}

TEST(SafetensorsHeaderTest, DTypeIsNotAString) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":7,"shape":[4],"data_offsets":[0,16]})"), "w", "not a string");
}

TEST(SafetensorsHeaderTest, UnknownDType) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F31","shape":[4],"data_offsets":[0,16]})"), "w", "F31");
}

TEST(SafetensorsHeaderTest, MissingShape) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","data_offsets":[0,16]})"), "w", "missing \"shape\"");
}

TEST(SafetensorsHeaderTest, ShapeIsNotAnArray) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":"4","data_offsets":[0,16]})"), "w",
                 "not an array");
}

TEST(SafetensorsHeaderTest, NegativeDimension) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})"), "w",
                 "-4 is not a non-negative integer");
}

TEST(SafetensorsHeaderTest, FractionalDimension) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4.0],"data_offsets":[0,16]})"), "w",
                 "not a non-negative integer");
}

TEST(SafetensorsHeaderTest, AbsurdDimension) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"U8","shape":[1, 4398046511105],"data_offsets":[0,16]})"),
                 "w", "absurdly large");
}

TEST(SafetensorsHeaderTest, DimensionBeyondUint64IsNotAnInteger) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,16]})"),
                 "w", "a JSON number is not a non-negative integer");
  ExpectRejected(FileWithEntry("w", R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,16]})"),
                 "w", "18446744073709551615 is absurdly large");
}

TEST(SafetensorsHeaderTest, TooManyDimensions) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],)"
                                    R"("data_offsets":[0,1]})"),
                 "w", "17 dimensions");
}

TEST(SafetensorsHeaderTest, ElementCountOverflow) {
  // Each dimension is within the limit; the product (2^120) is not.
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[1099511627776,1099511627776,1099511627776],)"
                                    R"("data_offsets":[0,16]})"),
                 "w", "more elements than can be stored");
  // The element count fits but the byte count (numel * 8) does not.
  ExpectRejected(
      FileWithEntry("w", R"({"dtype":"F64","shape":[1099511627776,4194304],"data_offsets":[0,16]})"), "w",
      "more elements than can be stored");
}

TEST(SafetensorsHeaderTest, MissingDataOffsets) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4]})"), "w", "missing \"data_offsets\"");
}

TEST(SafetensorsHeaderTest, DataOffsetsNotTwoElements) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16,32]})"), "w",
                 "not [begin, end]");
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4],"data_offsets":{"a":0}})"), "w",
                 "not [begin, end]");
}

TEST(SafetensorsHeaderTest, DataOffsetsNotIntegers) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4],"data_offsets":[0,"16"]})"), "w",
                 "not two non-negative integers");
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4],"data_offsets":[-16,0]})"), "w",
                 "not two non-negative integers");
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16.5]})"), "w",
                 "not two non-negative integers");
}

TEST(SafetensorsHeaderTest, DataOffsetsDescending) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[4],"data_offsets":[16,0]})"), "w",
                 "not ascending");
}

TEST(SafetensorsHeaderTest, EndBeyondTheDataRegion) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"F32","shape":[32],"data_offsets":[0,128]})", 64), "w",
                 "past the end of the data region (64 bytes)");
}

TEST(SafetensorsHeaderTest, ByteCountDisagreesWithShapeAndDType) {
  ExpectRejected(FileWithEntry("w", R"({"dtype":"BF16","shape":[4],"data_offsets":[0,16]})"), "w",
                 "span 16 bytes but BF16 [4] needs 8");
}

TEST(SafetensorsHeaderTest, OverlappingTensors) {
  const std::string file =
      SafetensorsFileWithHeader(R"({"first":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                                R"("second":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                                std::string(16, '\0'));
  ExpectRejected(file, "second", "overlaps tensor 'first'");
}

TEST(SafetensorsHeaderTest, TensorNestedInsideAnotherOverlaps) {
  const std::string file =
      SafetensorsFileWithHeader(R"({"outer":{"dtype":"U8","shape":[12],"data_offsets":[0,12]},)"
                                R"("inner":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                                R"("after":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
                                std::string(16, '\0'));
  ExpectRejected(file, "inner", "overlaps tensor 'outer'");
}

TEST(SafetensorsHeaderTest, DuplicateTensorName) {
  const std::string file =
      SafetensorsFileWithHeader(R"({"twice":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                R"("twice":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                                std::string(8, '\0'));
  ExpectRejected(file, "twice", "appears twice");
}

TEST(SafetensorsHeaderTest, MetadataMustBeAnObjectOfStrings) {
  ExpectRejected(SafetensorsFileWithHeader(R"({"__metadata__":[1]})", ""), "", "\"__metadata__\" is");
  ExpectRejected(SafetensorsFileWithHeader(R"({"__metadata__":{"format":"pt","step":3}})", ""), "step",
                 "not a string");
}

TEST(SafetensorsHeaderTest, MetadataIsNotATensor) {
  absl::StatusOr<std::vector<TensorEntry>> parsed =
      Parse(SafetensorsFileWithHeader(R"({"__metadata__":{"format":"pt"}})", ""));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->empty());
}

TEST(SafetensorsHeaderTest, HostileTensorNamesAreQuotedPrintablyAndShortened) {
  const std::string name = "bad\\u0001" + std::string(1000, 'x');
  absl::StatusOr<std::vector<TensorEntry>> parsed = Parse(FileWithEntry(name, "5"));
  ASSERT_FALSE(parsed.ok());
  const std::string message(parsed.status().message());
  EXPECT_NE(message.find("bad\\x01xxx"), std::string::npos) << message;
  EXPECT_LT(message.size(), 400u);
}

}  // namespace
}  // namespace ringmoe::io
