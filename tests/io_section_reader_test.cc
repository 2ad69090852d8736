// SectionPrefetcher and PlanSectionReads: sections of checkpoint tensors (odd offsets and sizes, bf16, f32
// and f16, several files) read from real temporary files, compared with a naive pread + convert; cyclic and
// out-of-order prefetch; the reads-in-flight bound; and each fault (missing, truncated, changed or replaced
// file, a read error, io_uring disabled).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "io/dtype.h"
#include "io/section_reader.h"
#include "io/uring_reader.h"
#include "tests/testing/scratch_dir.h"

namespace ringmoe::io {
namespace {

using testing::AlignedBuffer;

// Scratch directories of this test carry its name.
struct ScratchDir : testing::ScratchDir {
  explicit ScratchDir(const std::string& base) : testing::ScratchDir(base, "ringmoe_section_test") {}
};

bool WriteBytes(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  return ::close(fd) == 0 && ok;
}

// The section as a naive reader builds it: pread each tensor, convert to bf16, place it. Bytes no tensor
// covers keep `fill`.
std::vector<uint8_t> ExpectedSection(const std::vector<std::string>& contents, const SectionSpec& spec,
                                     uint8_t fill) {
  std::vector<uint8_t> section(spec.section_bytes, fill);
  for (const SectionTensor& tensor : spec.tensors) {
    const char* source = contents[tensor.file].data() + tensor.file_offset;
    uint8_t* destination = section.data() + tensor.section_offset;
    const size_t count = tensor.file_bytes / DTypeSize(tensor.dtype);
    for (size_t i = 0; i < count; ++i) {
      uint16_t bf16 = 0;
      if (tensor.dtype == DType::kBF16) {
        std::memcpy(&bf16, source + 2 * i, 2);
      } else if (tensor.dtype == DType::kF32) {
        float value;
        std::memcpy(&value, source + 4 * i, 4);
        bf16 = F32ToBF16(value);
      } else {
        uint16_t half;
        std::memcpy(&half, source + 2 * i, 2);
        bf16 = F32ToBF16(F16ToF32(half));
      }
      std::memcpy(destination + 2 * i, &bf16, 2);
    }
  }
  return section;
}

std::vector<uint8_t> Assemble(const std::vector<StagedPiece>& pieces, uint64_t section_bytes, uint8_t fill) {
  std::vector<uint8_t> section(section_bytes, fill);
  for (const StagedPiece& piece : pieces) {
    EXPECT_LE(piece.section_offset + piece.bytes, section_bytes);
    if (piece.section_offset + piece.bytes > section_bytes) continue;
    std::memcpy(section.data() + piece.section_offset, piece.host, piece.bytes);
  }
  return section;
}

// Random files and sections over them, with the awkward cases placed on purpose: tensors at odd offsets,
// neighbours sharing an alignment block, exact neighbours, far-apart tensors, a tensor at offset 0 and one
// ending at a file end that is not block aligned.
class SectionFixture {
 public:
  SectionFixture(const std::string& dir, int file_count, uint32_t seed) : rng_(seed) {
    for (int f = 0; f < file_count; ++f) {
      std::string bytes(1'500'000 + 977 * f + 13, '\0');  // Not a multiple of 4096.
      for (char& c : bytes) c = static_cast<char>(rng_());
      paths_.push_back(dir + "/shard-" + std::to_string(f) + ".safetensors");
      contents_.push_back(std::move(bytes));
      ok_ = ok_ && WriteBytes(paths_.back(), contents_.back());
    }
  }

  // A section of `tensor_count` tensors with mixed dtypes packed in the section with odd gaps.
  SectionSpec RandomSection(int tensor_count) {
    SectionSpec spec;
    uint64_t section_cursor = rng_() % 7;
    std::vector<uint64_t> file_cursor(contents_.size(), 0);
    for (int t = 0; t < tensor_count; ++t) {
      SectionTensor tensor;
      tensor.file = static_cast<int>(rng_() % contents_.size());
      const DType dtypes[] = {DType::kBF16, DType::kBF16, DType::kF32, DType::kF16};
      tensor.dtype = dtypes[rng_() % 4];
      const uint64_t element = DTypeSize(tensor.dtype);
      const uint64_t elements = 1 + rng_() % 20000;
      tensor.file_bytes = elements * element;
      const uint64_t size = contents_[tensor.file].size();
      switch (rng_() % 5) {
        case 0:  // Right after the previous tensor of this file (same or next block).
          tensor.file_offset = file_cursor[tensor.file];
          break;
        case 1:  // A few bytes later: shares an alignment block.
          tensor.file_offset = file_cursor[tensor.file] + 1 + rng_() % 100;
          break;
        case 2:  // Far away: its own extent.
          tensor.file_offset = rng_() % size;
          break;
        case 3:  // The file's tail, ending exactly at its (unaligned) end.
          tensor.file_offset = size - std::min(size, tensor.file_bytes);
          break;
        default:  // The file's start.
          tensor.file_offset = rng_() % 2 == 0 ? 0 : 4096 * (1 + rng_() % 8) + 3;
          break;
      }
      if (tensor.file_offset + tensor.file_bytes > size) tensor.file_offset = size - tensor.file_bytes;
      file_cursor[tensor.file] = tensor.file_offset + tensor.file_bytes;
      tensor.section_offset = section_cursor;
      section_cursor += elements * 2 + rng_() % 3;
      spec.tensors.push_back(tensor);
    }
    spec.section_bytes = section_cursor + rng_() % 5;
    return spec;
  }

  // Staging buffers for `sections`, each just large enough (rounded to the alignment).
  std::vector<std::span<uint8_t>> MakeBuffers(const std::vector<SectionSpec>& sections,
                                              const SectionReadOptions& options, int count) {
    absl::StatusOr<uint64_t> bound = StagingBytesBound(sections, options);
    EXPECT_TRUE(bound.ok()) << bound.status();
    const uint64_t bytes = std::max<uint64_t>(bound.value_or(0), options.alignment);
    std::vector<std::span<uint8_t>> spans;
    for (int b = 0; b < count; ++b) {
      memory_.emplace_back(static_cast<uint8_t*>(AllocateAligned(bytes, options.alignment)));
      spans.emplace_back(memory_.back().get(), bytes);
    }
    return spans;
  }

  bool ok() const { return ok_; }
  const std::vector<std::string>& paths() const { return paths_; }
  const std::vector<std::string>& contents() const { return contents_; }

 private:
  std::mt19937 rng_;
  bool ok_ = true;
  std::vector<std::string> paths_;
  std::vector<std::string> contents_;
  std::vector<AlignedBuffer> memory_;
};

// Acquires `section`, checks every byte against the naive reader, releases it.
void ExpectSectionBytes(SectionPrefetcher& prefetcher, const SectionFixture& fixture,
                        const std::vector<SectionSpec>& sections, int section) {
  absl::StatusOr<std::vector<StagedPiece>> pieces = prefetcher.Acquire(section);
  ASSERT_TRUE(pieces.ok()) << "section " << section << ": " << pieces.status();
  const std::vector<uint8_t> got = Assemble(*pieces, sections[section].section_bytes, 0xab);
  const std::vector<uint8_t> want = ExpectedSection(fixture.contents(), sections[section], 0xab);
  ASSERT_EQ(got.size(), want.size());
  const auto mismatch = std::mismatch(got.begin(), got.end(), want.begin());
  EXPECT_TRUE(mismatch.first == got.end())
      << "section " << section << " differs at section offset " << (mismatch.first - got.begin());
  prefetcher.Release(section);
}

// Where the temporary files live: $TMPDIR or /tmp (may be tmpfs: buffered fallback) and the build folder (on
// disk: O_DIRECT).
std::vector<std::string> ScratchBases() {
  const char* tmp = std::getenv("TMPDIR");
  return {tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", RINGMOE_BINARY_DIR};
}

class SectionPrefetcherTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<ScratchDir>(GetParam());
    ASSERT_FALSE(dir_->path().empty()) << "cannot create a directory under " << GetParam();
  }
  std::unique_ptr<ScratchDir> dir_;
};

INSTANTIATE_TEST_SUITE_P(Filesystems, SectionPrefetcherTest, ::testing::ValuesIn(ScratchBases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.index == 0 ? std::string("TempDir") : std::string("BuildDir");
                         });

TEST_P(SectionPrefetcherTest, EverySectionHasTheNaiveReadersBytesOverCycles) {
  SectionFixture fixture(dir_->path(), 3, 7);
  ASSERT_TRUE(fixture.ok());
  std::vector<SectionSpec> sections;
  for (int s = 0; s < 7; ++s) sections.push_back(fixture.RandomSection(3 + s * 3));
  SectionReadOptions options;
  options.max_read_bytes = 64 << 10;  // Many reads per section.
  options.queue_depth = 8;
  // Fewer buffers than sections: each cycle re-reads every section into reused buffers.
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher = SectionPrefetcher::Create(
      fixture.paths(), sections, fixture.MakeBuffers(sections, options, 3), options);
  ASSERT_TRUE(prefetcher.ok()) << prefetcher.status();
  for (int cycle = 0; cycle < 3; ++cycle) {
    for (int s = 0; s < 7; ++s) ExpectSectionBytes(**prefetcher, fixture, sections, s);
  }
  const SectionPrefetcher::Stats stats = (*prefetcher)->stats();
  RecordProperty("direct", stats.direct ? "yes" : "no");
  RecordProperty("io_uring", stats.uring ? "yes" : "no");
  // Every section at least once; at most once per acquisition plus the read-ahead (fewer when the reader
  // lags: it then evicts the section released last, the furthest ahead, and a section may survive a cycle).
  EXPECT_GE(stats.sections_read, 7u);
  EXPECT_LE(stats.sections_read, 3u * 7u + 3u);
  EXPECT_GT(stats.bytes_read, 0u);
  EXPECT_LE(stats.max_in_flight, options.queue_depth);
  EXPECT_GE(stats.max_in_flight, 1);
  if (GetParam() == RINGMOE_BINARY_DIR) {
    // The build folder is on a disk filesystem (ext4 here), which takes O_DIRECT.
    std::printf("build folder: direct=%d io_uring=%d\n", stats.direct, stats.uring);
  }
}

TEST_P(SectionPrefetcherTest, OutOfOrderAcquiresResynchroniseAndNeverReturnWrongBytes) {
  SectionFixture fixture(dir_->path(), 2, 11);
  ASSERT_TRUE(fixture.ok());
  std::vector<SectionSpec> sections;
  for (int s = 0; s < 6; ++s) sections.push_back(fixture.RandomSection(5));
  SectionReadOptions options;
  options.queue_depth = 4;
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher = SectionPrefetcher::Create(
      fixture.paths(), sections, fixture.MakeBuffers(sections, options, 2), options);
  ASSERT_TRUE(prefetcher.ok()) << prefetcher.status();
  for (int s : {0, 1, 4, 2, 2, 3, 5, 5, 0, 3, 1, 4, 5, 0, 1, 2}) {
    ExpectSectionBytes(**prefetcher, fixture, sections, s);
  }
  // Two held at once (all buffers), then a third: it would wait forever, so it is refused.
  ASSERT_TRUE((*prefetcher)->Acquire(3).ok());
  ASSERT_TRUE((*prefetcher)->Acquire(4).ok());
  absl::StatusOr<std::vector<StagedPiece>> third = (*prefetcher)->Acquire(0);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition) << third.status();
  (*prefetcher)->Release(3);
  (*prefetcher)->Release(4);
  ExpectSectionBytes(**prefetcher, fixture, sections, 0);
  EXPECT_EQ((*prefetcher)->Acquire(6).status().code(), absl::StatusCode::kInvalidArgument);
}

// The ring's pattern: section i+1 is acquired while i is still held (its copy to the GPU in flight), with
// random jumps; and a prefetcher destroyed while it is reading ahead.
TEST_P(SectionPrefetcherTest, HoldingTwoSectionsAtOnceWithJumpsKeepsEveryByteRight) {
  SectionFixture fixture(dir_->path(), 2, 13);
  ASSERT_TRUE(fixture.ok());
  std::vector<SectionSpec> sections;
  for (int s = 0; s < 5; ++s) sections.push_back(fixture.RandomSection(4));
  SectionReadOptions options;
  options.queue_depth = 16;
  options.max_read_bytes = 16 << 10;
  std::vector<std::span<uint8_t>> buffers = fixture.MakeBuffers(sections, options, 3);
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher =
      SectionPrefetcher::Create(fixture.paths(), sections, buffers, options);
  ASSERT_TRUE(prefetcher.ok()) << prefetcher.status();
  std::mt19937 rng(99);
  int held = -1;
  int next = 0;
  for (int step = 0; step < 60; ++step) {
    if (rng() % 8 == 0) next = static_cast<int>(rng() % 5);  // A jump.
    if (next == held) next = (next + 1) % 5;
    absl::StatusOr<std::vector<StagedPiece>> pieces = (*prefetcher)->Acquire(next);
    ASSERT_TRUE(pieces.ok()) << pieces.status();
    EXPECT_EQ(Assemble(*pieces, sections[next].section_bytes, 0),
              ExpectedSection(fixture.contents(), sections[next], 0))
        << "step " << step << ", section " << next;
    if (held >= 0) (*prefetcher)->Release(held);
    held = next;
    next = (next + 1) % 5;
  }
  prefetcher->reset();
  // Destroyed at once, while reading ahead: no read may land after the destructor returns.
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> short_lived =
      SectionPrefetcher::Create(fixture.paths(), sections, buffers, options);
  ASSERT_TRUE(short_lived.ok()) << short_lived.status();
  short_lived->reset();
}

TEST_P(SectionPrefetcherTest, ReadsInFlightStayWithinTheQueueDepth) {
  SectionFixture fixture(dir_->path(), 1, 3);
  ASSERT_TRUE(fixture.ok());
  // One section covering the whole file in 4 KiB reads: hundreds of reads for a depth of 4.
  const uint64_t size = fixture.contents()[0].size() / 2 * 2;
  SectionSpec whole;
  whole.tensors.push_back({0, 0, size, DType::kBF16, 0});
  whole.section_bytes = size;
  const std::vector<SectionSpec> sections = {whole};
  SectionReadOptions options;
  options.max_read_bytes = 4096;
  options.queue_depth = 4;
  absl::StatusOr<SectionReadPlan> plan = PlanSectionReads(whole, options);
  ASSERT_TRUE(plan.ok());
  EXPECT_GT(plan->reads.size(), 300u);
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher = SectionPrefetcher::Create(
      fixture.paths(), sections, fixture.MakeBuffers(sections, options, 1), options);
  ASSERT_TRUE(prefetcher.ok()) << prefetcher.status();
  ExpectSectionBytes(**prefetcher, fixture, sections, 0);
  const SectionPrefetcher::Stats stats = (*prefetcher)->stats();
  EXPECT_LE(stats.max_in_flight, 4);
  // io_uring fills the queue (the count is taken at submission); the pread fallback reads one at a time.
  EXPECT_EQ(stats.max_in_flight, stats.uring ? 4 : 1);
}

TEST_P(SectionPrefetcherTest, PreadFallbackGivesTheSameBytes) {
  SectionFixture fixture(dir_->path(), 2, 5);
  ASSERT_TRUE(fixture.ok());
  std::vector<SectionSpec> sections;
  for (int s = 0; s < 3; ++s) sections.push_back(fixture.RandomSection(8));
  SectionReadOptions options;
  ::setenv("RINGMOE_DISABLE_IO_URING", "1", 1);
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher = SectionPrefetcher::Create(
      fixture.paths(), sections, fixture.MakeBuffers(sections, options, 2), options);
  ::unsetenv("RINGMOE_DISABLE_IO_URING");
  ASSERT_TRUE(prefetcher.ok()) << prefetcher.status();
  for (int s = 0; s < 3; ++s) ExpectSectionBytes(**prefetcher, fixture, sections, s);
  EXPECT_FALSE((*prefetcher)->stats().uring);
  EXPECT_EQ((*prefetcher)->stats().max_in_flight, 1);
}

// Faults. Each uses one buffer and two sections: section 1 is read only once section 0 is released, so the
// file can be damaged in between.
class SectionFaultTest : public SectionPrefetcherTest {
 protected:
  // Section 1 ends at the file's end, or (middle) lies in the middle of the file.
  void MakePrefetcher(const SectionReadOptions& options = {}, bool middle = false) {
    fixture_ = std::make_unique<SectionFixture>(dir_->path(), 1, 21);
    ASSERT_TRUE(fixture_->ok());
    const uint64_t size = fixture_->contents()[0].size();
    SectionSpec head, tail;
    head.tensors.push_back({0, 1001, 40000, DType::kBF16, 0});
    head.section_bytes = 40000;
    tail.tensors.push_back({0, middle ? kMiddleOffset : size - 80000, 80000, DType::kF32, 0});
    tail.section_bytes = 40000;
    sections_ = {head, tail};
    absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher = SectionPrefetcher::Create(
        fixture_->paths(), sections_, fixture_->MakeBuffers(sections_, options, 1), options);
    ASSERT_TRUE(prefetcher.ok()) << prefetcher.status();
    prefetcher_ = *std::move(prefetcher);
    absl::StatusOr<std::vector<StagedPiece>> first = prefetcher_->Acquire(0);
    ASSERT_TRUE(first.ok()) << first.status();
  }
  // Releases section 0 so that section 1 is read, and returns what acquiring it gives.
  absl::Status ReadSectionOne() {
    prefetcher_->Release(0);
    return prefetcher_->Acquire(1).status();
  }
  void ExpectNamesFileAndOffset(const absl::Status& status) {
    EXPECT_NE(status.message().find(fixture_->paths()[0]), std::string::npos) << status;
    EXPECT_NE(status.message().find("offset"), std::string::npos) << status;
    // Later calls keep failing, with the same error.
    EXPECT_EQ(prefetcher_->Acquire(0).status(), status);
    EXPECT_EQ(prefetcher_->Acquire(1).status(), status);
  }

  static constexpr uint64_t kMiddleOffset = 700'001;
  std::unique_ptr<SectionFixture> fixture_;
  std::vector<SectionSpec> sections_;
  std::unique_ptr<SectionPrefetcher> prefetcher_;
};

INSTANTIATE_TEST_SUITE_P(Filesystems, SectionFaultTest, ::testing::ValuesIn(ScratchBases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.index == 0 ? std::string("TempDir") : std::string("BuildDir");
                         });

TEST_P(SectionFaultTest, FileTruncatedAfterCreateIsAnErrorNamingFileAndOffset) {
  MakePrefetcher();
  ASSERT_EQ(
      ::truncate(fixture_->paths()[0].c_str(), static_cast<off_t>(fixture_->contents()[0].size() - 5000)), 0);
  const absl::Status status = ReadSectionOne();
  EXPECT_TRUE(status.code() == absl::StatusCode::kOutOfRange || status.code() == absl::StatusCode::kDataLoss)
      << status;
  ExpectNamesFileAndOffset(status);
}

TEST_P(SectionFaultTest, ShortReadInsideTheFileIsOutOfRangeNamingFileAndOffset) {
  MakePrefetcher({}, /*middle=*/true);
  // The file now ends inside section 1's read, which lies wholly inside the file as it was opened.
  ASSERT_EQ(::truncate(fixture_->paths()[0].c_str(), static_cast<off_t>(kMiddleOffset + 20000)), 0);
  const absl::Status status = ReadSectionOne();
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_NE(status.message().find(std::to_string(kMiddleOffset + 20000)), std::string::npos) << status;
  ExpectNamesFileAndOffset(status);
}

TEST_P(SectionFaultTest, FileWithANewMtimeIsAnError) {
  MakePrefetcher();
  const timespec times[2] = {{0, UTIME_OMIT}, {1'000'000'000, 123}};  // Contents rewritten in place, say.
  ASSERT_EQ(::utimensat(AT_FDCWD, fixture_->paths()[0].c_str(), times, 0), 0);
  const absl::Status status = ReadSectionOne();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  ExpectNamesFileAndOffset(status);
}

TEST_P(SectionFaultTest, FileThatGrewIsAnError) {
  MakePrefetcher();
  const int fd = ::open(fixture_->paths()[0].c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "more", 4), 4);
  ::close(fd);
  const absl::Status status = ReadSectionOne();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  ExpectNamesFileAndOffset(status);
}

TEST_P(SectionFaultTest, FileReplacedByADirectoryIsAnError) {
  MakePrefetcher();
  ASSERT_TRUE(std::filesystem::remove(fixture_->paths()[0]));
  ASSERT_TRUE(std::filesystem::create_directory(fixture_->paths()[0]));
  const absl::Status status = ReadSectionOne();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find("replaced"), std::string::npos) << status;
  ExpectNamesFileAndOffset(status);
}

TEST_P(SectionFaultTest, ReadErrorIsDataLossNamingFileAndOffset) {
  SectionReadOptions options;
  options.read_fault_for_testing = [](int file, uint64_t offset, uint64_t) {
    return file == 0 && offset > 1'000'000 ? EIO : 0;  // Section 1's reads only.
  };
  MakePrefetcher(options);
  const absl::Status status = ReadSectionOne();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find(std::strerror(EIO)), std::string::npos) << status;
  ExpectNamesFileAndOffset(status);
}

TEST(SectionPrefetcherCreateTest, MissingFileAndTensorsPastTheEndAreErrorsNamingThem) {
  ScratchDir dir(RINGMOE_BINARY_DIR);
  ASSERT_FALSE(dir.path().empty());
  SectionFixture fixture(dir.path(), 1, 1);
  ASSERT_TRUE(fixture.ok());
  SectionReadOptions options;
  SectionSpec spec;
  spec.tensors.push_back({0, 10, 100, DType::kBF16, 0});
  spec.section_bytes = 100;
  std::vector<SectionSpec> sections = {spec};
  std::vector<std::span<uint8_t>> buffers = fixture.MakeBuffers(sections, options, 1);

  const std::string missing = dir.path() + "/missing.safetensors";
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> prefetcher =
      SectionPrefetcher::Create({missing}, sections, buffers, options);
  EXPECT_EQ(prefetcher.status().code(), absl::StatusCode::kNotFound) << prefetcher.status();
  EXPECT_NE(prefetcher.status().message().find(missing), std::string::npos);

  const uint64_t size = fixture.contents()[0].size();
  sections[0].tensors[0].file_offset = size - 50;  // 100 bytes from 50 before the end.
  prefetcher = SectionPrefetcher::Create(fixture.paths(), sections, buffers, options);
  EXPECT_EQ(prefetcher.status().code(), absl::StatusCode::kOutOfRange) << prefetcher.status();
  EXPECT_NE(prefetcher.status().message().find(fixture.paths()[0]), std::string::npos);
  EXPECT_NE(prefetcher.status().message().find(std::to_string(size - 50)), std::string::npos);

  sections[0].tensors[0].file_offset = 10;
  sections[0].tensors[0].file = 1;  // Only one file given.
  EXPECT_EQ(SectionPrefetcher::Create(fixture.paths(), sections, buffers, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  sections[0].tensors[0].file = 0;
  std::vector<std::span<uint8_t>> misaligned = {buffers[0].subspan(8)};
  EXPECT_EQ(SectionPrefetcher::Create(fixture.paths(), sections, misaligned, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SectionPrefetcher::Create(fixture.paths(), sections, {}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(SectionPrefetcher::Create(fixture.paths(), sections, buffers, options).ok());
}

TEST(PlanSectionReadsTest, MergesNeighboursAlignsSplitsAndPlacesConversionsAfterTheReads) {
  SectionReadOptions options;
  options.max_gap_bytes = 8192;
  options.max_read_bytes = 8192;
  SectionSpec spec;
  // File 0: two bf16 tensors sharing block 0 (exact neighbours in the file and in the section), an f32
  // tensor 3 blocks on (merged: a hole of 8192 <= 8192), one far away (its own extent). File 1: an f16.
  spec.tensors = {
      {0, 100, 1000, DType::kBF16, 0},
      {0, 1100, 2000, DType::kBF16, 1000},
      {0, 3 * 4096 + 6, 4000, DType::kF32, 3000},
      {0, 1 << 20, 10, DType::kBF16, 5000},
      {1, 5, 6, DType::kF16, 5010},
  };
  spec.section_bytes = 5016;
  absl::StatusOr<SectionReadPlan> plan = PlanSectionReads(spec, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // Extent [0, 16384) in reads of 8192, [1 MiB, 1 MiB + 4096), file 1 [0, 4096).
  ASSERT_EQ(plan->reads.size(), 4u);
  EXPECT_EQ(plan->reads[0].file_offset, 0u);
  EXPECT_EQ(plan->reads[0].length, 8192u);
  EXPECT_EQ(plan->reads[1].file_offset, 8192u);
  EXPECT_EQ(plan->reads[1].length, 8192u);
  EXPECT_EQ(plan->reads[1].staging_offset, 8192u);
  EXPECT_EQ(plan->reads[2].file_offset, uint64_t{1} << 20);
  EXPECT_EQ(plan->reads[2].staging_offset, 16384u);
  EXPECT_EQ(plan->reads[3].file, 1);
  EXPECT_EQ(plan->reads[3].staging_offset, 20480u);
  EXPECT_EQ(plan->read_bytes, 24576u);
  // Conversions after the read area, in place of nothing read.
  ASSERT_EQ(plan->conversions.size(), 2u);
  EXPECT_EQ(plan->conversions[0].dtype, DType::kF32);
  EXPECT_EQ(plan->conversions[0].source_staging_offset, 3u * 4096 + 6);
  EXPECT_EQ(plan->conversions[0].elements, 1000u);
  EXPECT_EQ(plan->conversions[0].destination_staging_offset, 24576u);
  EXPECT_EQ(plan->conversions[1].source_staging_offset, 20480u + 5);
  EXPECT_EQ(plan->conversions[1].destination_staging_offset, 24576u + 2048);  // 2000 bytes, 64-aligned.
  EXPECT_EQ(plan->staging_bytes, 28672u);
  // The two bf16 neighbours are one piece; four pieces in all.
  ASSERT_EQ(plan->pieces.size(), 4u);
  EXPECT_EQ(plan->pieces[0].staging_offset, 100u);
  EXPECT_EQ(plan->pieces[0].bytes, 3000u);
  EXPECT_EQ(plan->pieces[0].section_offset, 0u);

  const std::vector<SectionSpec> sections = {spec, SectionSpec{}};
  absl::StatusOr<uint64_t> bound = StagingBytesBound(sections, options);
  ASSERT_TRUE(bound.ok());
  EXPECT_EQ(*bound, 28672u);
}

TEST(PlanSectionReadsTest, RejectsBadTensorsAndOptions) {
  SectionReadOptions options;
  SectionSpec spec;
  spec.section_bytes = 100;
  spec.tensors = {{0, 0, 50, DType::kBF16, 0}};  // 25 elements: fine.
  EXPECT_TRUE(PlanSectionReads(spec, options).ok());
  spec.tensors = {{0, 0, 51, DType::kBF16, 0}};  // Not whole elements.
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  spec.tensors = {{0, 0, 8, DType::kI8, 0}};  // Not a float type.
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  spec.tensors = {{0, 0, 400, DType::kF32, 0}};  // 200 bf16 bytes do not fit 100.
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  spec.tensors = {{0, 0, 40, DType::kBF16, 0}, {0, 100, 40, DType::kBF16, 30}};  // Destinations overlap.
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  spec.tensors = {{-1, 0, 40, DType::kBF16, 0}};
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  spec.tensors = {};
  options.alignment = 1000;
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.alignment = 4096;
  options.max_read_bytes = 100;
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.max_read_bytes = 4096;
  options.queue_depth = 0;
  EXPECT_EQ(PlanSectionReads(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ringmoe::io
