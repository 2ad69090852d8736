// UringReader reading a real temporary file in many ranges at several queue depths, buffered and O_DIRECT.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/uring_reader.h"
#include "tests/testing/safetensors_writer.h"

namespace ringmoe::io {
namespace {

using testing::TempDir;

// A file of pseudo-random bytes whose size is deliberately not a multiple of 4096.
class UringReaderTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    std::mt19937 rng(42);
    contents_.resize(3 * 1024 * 1024 + 1234);
    for (char& c : contents_) c = static_cast<char>(rng());
    path_ = dir_.File("data.bin");
    ASSERT_TRUE(testing::WriteFile(path_, contents_));
  }

  TempDir dir_;
  std::string contents_;
  std::string path_;
};

TEST_P(UringReaderTest, ReadsManyUnalignedRangesBuffered) {
  const int queue_depth = GetParam();
  absl::StatusOr<UringReader> reader = UringReader::Create(queue_depth);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->queue_depth(), queue_depth);
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);

  // Ranges of odd sizes and offsets, out of order, overlapping each other, one empty, more than the depth.
  std::mt19937 rng(queue_depth);
  std::vector<ReadRange> ranges;
  std::vector<std::vector<uint8_t>> buffers;
  for (int i = 0; i < 100; ++i) {
    const uint64_t offset = rng() % contents_.size();
    const size_t length = i == 7 ? 0 : std::min<size_t>(1 + rng() % 200000, contents_.size() - offset);
    buffers.emplace_back(length + 1, 0xee);  // One guard byte that must stay untouched.
    ranges.push_back({offset, length, buffers.back().data()});
  }
  ASSERT_TRUE(reader->ReadRanges(fd, ranges).ok());
  for (size_t i = 0; i < ranges.size(); ++i) {
    ASSERT_EQ(std::memcmp(buffers[i].data(), contents_.data() + ranges[i].offset, ranges[i].length), 0)
        << "range " << i << " at offset " << ranges[i].offset;
    EXPECT_EQ(buffers[i].back(), 0xee) << "range " << i << " wrote past its end";
  }
  // The reader is reusable.
  std::vector<uint8_t> whole(contents_.size());
  const ReadRange all{0, whole.size(), whole.data()};
  ASSERT_TRUE(reader->ReadRanges(fd, {&all, 1}).ok());
  EXPECT_EQ(std::memcmp(whole.data(), contents_.data(), whole.size()), 0);
  ::close(fd);
}

TEST_P(UringReaderTest, ReadsAlignedBlocksWithDirectIo) {
  bool direct = false;
  absl::StatusOr<int> fd = OpenForDirectRead(path_, &direct);
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::StatusOr<UringReader> reader = UringReader::Create(GetParam());
  ASSERT_TRUE(reader.ok()) << reader.status();

  // Every 4 KiB-aligned block of the file, in reverse order, into one aligned buffer; the last block runs
  // past the end of the file and must be zero-filled.
  constexpr size_t kBlock = 64 * 1024;
  const size_t blocks = (contents_.size() + kBlock - 1) / kBlock;
  auto* buffer = static_cast<uint8_t*>(AllocateAligned(blocks * kBlock));
  ASSERT_NE(buffer, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer) % 4096, 0u);
  std::memset(buffer, 0xee, blocks * kBlock);
  std::vector<ReadRange> ranges;
  for (size_t i = blocks; i-- > 0;) ranges.push_back({i * kBlock, kBlock, buffer + i * kBlock});
  const absl::Status status = reader->ReadRanges(*fd, ranges, AtEof::kZeroFill);
  ASSERT_TRUE(status.ok()) << status << " (direct=" << direct << ")";
  EXPECT_EQ(std::memcmp(buffer, contents_.data(), contents_.size()), 0);
  for (size_t i = contents_.size(); i < blocks * kBlock; ++i) ASSERT_EQ(buffer[i], 0) << "byte " << i;
  FreeAligned(buffer);
  ::close(*fd);
}

INSTANTIATE_TEST_SUITE_P(QueueDepths, UringReaderTest, ::testing::Values(1, 2, 8, 64));

// The pread fallback (used where io_uring is blocked) must behave exactly like the io_uring path.
TEST(UringReaderFallbackTest, PreadFallbackReadsTheSameBytes) {
  TempDir dir;
  const std::string path = dir.File("data");
  std::string contents(300000, '\0');
  std::mt19937 rng(3);
  for (char& c : contents) c = static_cast<char>(rng());
  ASSERT_TRUE(testing::WriteFile(path, contents));
  ::setenv("RINGMOE_DISABLE_IO_URING", "1", 1);
  absl::StatusOr<UringReader> reader = UringReader::Create(8);
  ::unsetenv("RINGMOE_DISABLE_IO_URING");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_FALSE(reader->uses_io_uring());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<char> a(1000), b(123457), tail(100, 'q');
  const std::vector<ReadRange> ranges = {{5, a.size(), a.data()}, {100000, b.size(), b.data()}};
  ASSERT_TRUE(reader->ReadRanges(fd, ranges).ok());
  EXPECT_EQ(std::string(a.begin(), a.end()), contents.substr(5, a.size()));
  EXPECT_EQ(std::string(b.begin(), b.end()), contents.substr(100000, b.size()));
  const ReadRange past_end{contents.size() - 40, tail.size(), tail.data()};
  const absl::Status status = reader->ReadRanges(fd, {&past_end, 1});
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_NE(status.message().find("file ends at offset 300000"), std::string::npos) << status;
  ASSERT_TRUE(reader->ReadRanges(fd, {&past_end, 1}, AtEof::kZeroFill).ok());
  EXPECT_EQ(std::string(tail.begin(), tail.begin() + 40), contents.substr(contents.size() - 40));
  EXPECT_EQ(std::string(tail.begin() + 40, tail.end()), std::string(60, '\0'));
  ::close(fd);

  absl::StatusOr<UringReader> uring = UringReader::Create(8);
  ASSERT_TRUE(uring.ok());
  RecordProperty("io_uring_available", uring->uses_io_uring() ? "yes" : "no");
}

TEST(UringReaderErrorsTest, ReadingPastTheEndIsAnErrorNamingTheOffset) {
  TempDir dir;
  const std::string path = dir.File("small");
  ASSERT_TRUE(testing::WriteFile(path, std::string(1000, 'x')));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::StatusOr<UringReader> reader = UringReader::Create(4);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<char> buffer(600, 'q');
  const ReadRange range{500, 600, buffer.data()};
  const absl::Status status = reader->ReadRanges(fd, {&range, 1});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(status.message().find("file ends at offset 1000"), std::string::npos) << status;

  std::fill(buffer.begin(), buffer.end(), 'q');
  ASSERT_TRUE(reader->ReadRanges(fd, {&range, 1}, AtEof::kZeroFill).ok());
  EXPECT_EQ(std::string(buffer.data(), 500), std::string(500, 'x'));
  EXPECT_EQ(std::string(buffer.data() + 500, 100), std::string(100, '\0'));
  ::close(fd);
}

TEST(UringReaderErrorsTest, KernelErrorsNameTheOffsetAndBadArgumentsAreRejected) {
  TempDir dir;
  absl::StatusOr<UringReader> reader = UringReader::Create(2);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const int dir_fd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dir_fd, 0);
  char buffer[16];
  const ReadRange range{4096, sizeof(buffer), buffer};
  const absl::Status status = reader->ReadRanges(dir_fd, {&range, 1});  // EISDIR from the kernel.
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("offset 4096"), std::string::npos) << status;
  ::close(dir_fd);

  EXPECT_FALSE(reader->ReadRanges(-1, {&range, 1}).ok());
  const ReadRange no_buffer{0, 16, nullptr};
  EXPECT_FALSE(reader->ReadRanges(0, {&no_buffer, 1}).ok());
  EXPECT_FALSE(UringReader::Create(0).ok());
  EXPECT_FALSE(UringReader::Create(100000).ok());
}

TEST(UringReaderErrorsTest, OpenForDirectReadNamesAMissingFile) {
  bool direct = true;
  absl::StatusOr<int> fd = OpenForDirectRead("/nonexistent/ringmoe/file", &direct);
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(fd.status().message().find("/nonexistent/ringmoe/file"), std::string::npos) << fd.status();
}

TEST(AllocateAlignedTest, AlignsAndRejectsNonsense) {
  void* p = AllocateAligned(100, 65536);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 65536, 0u);
  FreeAligned(p);
  EXPECT_EQ(AllocateAligned(0), nullptr);
  EXPECT_EQ(AllocateAligned(100, 3000), nullptr);
}

TEST(MeasureReadBandwidthTest, ReturnsAPositiveFiniteRateAndRejectsBadBlocks) {
  TempDir dir;
  const std::string path = dir.File("probe");
  ASSERT_TRUE(testing::WriteFile(path, std::string(4 << 20, 'p')));
  absl::StatusOr<double> gbps = MeasureReadBandwidth(path, 8, 256 * 1024, 64 << 20);
  ASSERT_TRUE(gbps.ok()) << gbps.status();
  EXPECT_GT(*gbps, 0.0);
  EXPECT_TRUE(std::isfinite(*gbps));
  EXPECT_FALSE(MeasureReadBandwidth(path, 8, 1000, 1 << 20).ok());
  EXPECT_FALSE(MeasureReadBandwidth(path, 8, 8 << 20, 64 << 20).ok());  // Smaller than one block.
  EXPECT_FALSE(MeasureReadBandwidth(dir.File("missing"), 8, 4096, 1 << 20).ok());
}

}  // namespace
}  // namespace ringmoe::io
