// Section files (--ssd-dir): SSD sections laid out once, striped over 1, 2 and 3 directories, read back
// through SectionPrefetcher::CreateFromPlans byte-identical to the same sections read from the "checkpoint"
// file itself (SectionPrefetcher::Create); reuse, a stale identity rebuilt, truncated and corrupt files
// named, a full disk (a write fault and a real RLIMIT_FSIZE in a child) leaving no file behind, and the
// directories refused (the model's folder, the same one twice).
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "io/section_file.h"
#include "io/section_reader.h"
#include "io/uring_reader.h"
#include "tests/testing/scratch_dir.h"

namespace ringmoe::io {
namespace {

using testing::AlignedBuffer;

// Scratch directories of this test carry its name.
struct ScratchDir : testing::ScratchDir {
  explicit ScratchDir(const std::string& base) : testing::ScratchDir(base, "ringmoe_section_file_test") {}
};

// $TMPDIR (or /tmp; may be tmpfs, where reads fall back to buffered) and the build folder (on disk:
// O_DIRECT).
std::vector<std::string> ScratchBases() {
  const char* tmp = std::getenv("TMPDIR");
  return {tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", RINGMOE_BINARY_DIR};
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// A model folder with one "checkpoint" file of random bytes, and sections of bf16 tensors at odd offsets in
// it: what the safetensors path reads, and what the section files must hold byte for byte.
class Fixture {
 public:
  explicit Fixture(const std::string& base, int sections = 5, uint32_t seed = 3) : root_(base) {
    model_dir_ = root_.path() + "/model";
    std::filesystem::create_directory(model_dir_);
    checkpoint_ = model_dir_ + "/model.safetensors";
    std::mt19937 random(seed);
    bytes_.resize(3 << 20);
    for (char& c : bytes_) c = static_cast<char>(random());
    const int fd = ::open(checkpoint_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    ok_ = fd >= 0 && ::write(fd, bytes_.data(), bytes_.size()) == static_cast<ssize_t>(bytes_.size());
    if (fd >= 0) ::close(fd);
    for (int s = 0; s < sections; ++s) {
      SectionSpec spec;
      uint64_t section_offset = 0;
      const int tensors = 2 + s;
      for (int t = 0; t < tensors; ++t) {
        const uint64_t elements = 1000 + random() % 30000;
        const uint64_t file_offset = 2 * (random() % ((bytes_.size() - 2 * elements) / 2));
        spec.tensors.push_back(
            {0, file_offset + 1 - 1 + (t % 2), 2 * elements, DType::kBF16, section_offset});
        section_offset += 2 * elements + 2 * (random() % 50);  // Holes the section keeps as zeros.
      }
      spec.section_bytes = section_offset + 6;  // Not a multiple of anything.
      specs_.push_back(spec);
    }
  }
  bool ok() const { return ok_ && !root_.path().empty(); }
  const std::string& model_dir() const { return model_dir_; }
  const std::string& checkpoint() const { return checkpoint_; }
  const std::vector<SectionSpec>& specs() const { return specs_; }

  // The section's bytes in ring layout: each tensor at its section offset, zeros elsewhere.
  std::vector<uint8_t> Expected(int section) const {
    const SectionSpec& spec = specs_[section];
    std::vector<uint8_t> out(spec.section_bytes, 0);
    for (const SectionTensor& tensor : spec.tensors) {
      std::memcpy(out.data() + tensor.section_offset, bytes_.data() + tensor.file_offset, tensor.file_bytes);
    }
    return out;
  }
  SectionFill Fill() const {
    return [this](int section, uint64_t offset, std::span<uint8_t> out) {
      const std::vector<uint8_t> whole = Expected(section);
      if (offset + out.size() > whole.size()) return absl::InternalError("fill past the section");
      std::memcpy(out.data(), whole.data() + offset, out.size());
      ++fills_;
      return absl::OkStatus();
    };
  }
  SectionFileIdentity Identity() const {
    SectionFileIdentity identity;
    identity.model_dir = model_dir_;
    const std::vector<std::string> paths = {checkpoint_};
    identity.sources = *StatSourceFiles(paths);
    identity.content = "bf16";
    identity.plan_hash = 42;
    for (const SectionSpec& spec : specs_) identity.section_bytes.push_back(spec.section_bytes);
    return identity;
  }
  int fills() const { return fills_; }

 private:
  ScratchDir root_;
  std::string model_dir_, checkpoint_;
  std::string bytes_;
  std::vector<SectionSpec> specs_;
  bool ok_ = false;
  mutable int fills_ = 0;
};

std::vector<std::span<uint8_t>> Buffers(std::vector<AlignedBuffer>* owned, int count, uint64_t bytes) {
  std::vector<std::span<uint8_t>> spans;
  for (int i = 0; i < count; ++i) {
    owned->emplace_back(static_cast<uint8_t*>(AllocateAligned(bytes, 4096)));
    std::memset(owned->back().get(), 0xAB, bytes);
    spans.emplace_back(owned->back().get(), bytes);
  }
  return spans;
}

// Every section through `prefetcher`, assembled from its pieces.
std::vector<uint8_t> Assemble(SectionPrefetcher& prefetcher, int section, uint64_t bytes) {
  std::vector<uint8_t> out(bytes, 0);
  absl::StatusOr<std::vector<StagedPiece>> pieces = prefetcher.Acquire(section);
  EXPECT_TRUE(pieces.ok()) << pieces.status();
  if (!pieces.ok()) return out;
  for (const StagedPiece& piece : *pieces) {
    std::memcpy(out.data() + piece.section_offset, piece.host, piece.bytes);
  }
  prefetcher.Release(section);
  return out;
}

TEST(StripedLayoutTest, SectionsAlignedStripesRoundRobinEveryByteReadOnce) {
  const std::vector<uint64_t> sections = {100000, 4096, 1, 300001};
  SectionFileOptions options;
  options.stripe_bytes = 16384;
  for (int files = 1; files <= 4; ++files) {
    absl::StatusOr<StripedLayout> layout = MakeStripedLayout(sections, files, options);
    ASSERT_TRUE(layout.ok()) << layout.status();
    uint64_t total = 0;
    for (uint64_t bytes : layout->file_data_bytes) total += bytes;
    EXPECT_EQ(total, layout->logical_bytes);
    for (size_t s = 0; s < sections.size(); ++s) {
      EXPECT_EQ(layout->section_offsets[s] % 4096, 0u);
      const SectionReadPlan plan = PlanStripedReads(*layout, static_cast<int>(s), 8192, 4 << 20);
      uint64_t covered = 0;
      std::set<int> drives;
      for (size_t r = 0; r < plan.reads.size(); ++r) {
        const PlannedRead& read = plan.reads[r];
        EXPECT_EQ(read.staging_offset, covered);  // Contiguous in staging, in logical order.
        EXPECT_EQ(read.file_offset % 4096, 0u);
        EXPECT_LE(read.length, options.stripe_bytes);
        EXPECT_LE(read.file_offset + read.length, 8192 + layout->file_data_bytes[read.file]);
        // Each read is one stripe (or part of one): logical stripe k lives in file k % files.
        const uint64_t logical = layout->section_offsets[s] + read.staging_offset;
        EXPECT_EQ(read.file, static_cast<int>((logical / options.stripe_bytes) % files));
        drives.insert(read.file);
        covered += read.length;
      }
      EXPECT_EQ(covered, plan.staging_bytes);
      EXPECT_GE(plan.staging_bytes, sections[s]);
      // A section of many stripes is read from every drive.
      if (sections[s] >= static_cast<uint64_t>(files) * 2 * options.stripe_bytes) {
        EXPECT_EQ(drives.size(), static_cast<size_t>(files));
      }
    }
  }
  options.stripe_bytes = 5000;
  EXPECT_FALSE(MakeStripedLayout(sections, 2, options).ok());
  options.stripe_bytes = 8192;
  EXPECT_FALSE(MakeStripedLayout(sections, 0, options).ok());
}

class SectionFileTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

INSTANTIATE_TEST_SUITE_P(Drives, SectionFileTest,
                         ::testing::Combine(::testing::ValuesIn(ScratchBases()), ::testing::Values(1, 2, 3)),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, int>>& info) {
                           return std::string(std::get<0>(info.param) == RINGMOE_BINARY_DIR ? "BuildDir"
                                                                                            : "TempDir") +
                                  std::to_string(std::get<1>(info.param)) + "Dirs";
                         });

TEST_P(SectionFileTest, LaidOutOnceReadBackByteIdenticalToTheCheckpointsBytes) {
  const auto& [base, dirs] = GetParam();
  Fixture fixture(base);
  ASSERT_TRUE(fixture.ok());
  std::vector<std::unique_ptr<ScratchDir>> owned;
  std::vector<std::string> paths;
  for (int d = 0; d < dirs; ++d) {
    owned.push_back(std::make_unique<ScratchDir>(base));
    paths.push_back(owned.back()->path());
  }
  SectionFileOptions options;
  options.stripe_bytes = 8192;  // Many stripes per section: every drive holds some of each.
  std::vector<std::string> log;
  options.log = [&log](std::string_view line) { log.emplace_back(line); };
  absl::StatusOr<SectionFileSet> set = EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->laid_out);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_TRUE(absl::StrContains(log[0], "laying out")) << log[0];
  for (int d = 0; d < dirs; ++d) {
    EXPECT_EQ(Names(paths[d]).size(), 1u) << "a temporary file was left in " << paths[d];
    EXPECT_TRUE(absl::StartsWith(std::filesystem::path(set->paths[d]).filename().string(), "ringmoe-"));
  }
  // Nothing was written into the model's folder.
  EXPECT_EQ(Names(fixture.model_dir()), std::vector<std::string>{"model.safetensors"});

  SectionReadOptions read_options;
  read_options.queue_depth = 4 * dirs;
  uint64_t staging = 0;
  for (const SectionReadPlan& plan : set->plans) staging = std::max(staging, plan.staging_bytes);
  std::vector<AlignedBuffer> memory;
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> from_files =
      SectionPrefetcher::CreateFromPlans(set->paths, set->plans, Buffers(&memory, 2, staging), read_options);
  ASSERT_TRUE(from_files.ok()) << from_files.status();
  const std::vector<std::string> checkpoint = {fixture.checkpoint()};
  const uint64_t checkpoint_staging = *StagingBytesBound(fixture.specs(), read_options);
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> from_checkpoint = SectionPrefetcher::Create(
      checkpoint, fixture.specs(), Buffers(&memory, 2, checkpoint_staging), read_options);
  ASSERT_TRUE(from_checkpoint.ok()) << from_checkpoint.status();
  for (int cycle = 0; cycle < 2; ++cycle) {
    for (size_t s = 0; s < fixture.specs().size(); ++s) {
      const uint64_t bytes = fixture.specs()[s].section_bytes;
      const std::vector<uint8_t> striped = Assemble(**from_files, static_cast<int>(s), bytes);
      const std::vector<uint8_t> direct = Assemble(**from_checkpoint, static_cast<int>(s), bytes);
      EXPECT_TRUE(striped == direct) << "section " << s << " differs from the checkpoint's bytes";
      EXPECT_TRUE(striped == fixture.Expected(static_cast<int>(s))) << "section " << s;
    }
  }
  const SectionPrefetcher::Stats stats = (*from_files)->stats();
  EXPECT_LE(stats.max_in_flight, read_options.queue_depth);
  // Reads of several drives go out together: more than one in flight whenever there is more than one drive.
  if (dirs > 1 && stats.uring) EXPECT_GT(stats.max_in_flight, 1);

  // A later run reuses the files: nothing is filled or written again.
  log.clear();
  const int fills = fixture.fills();
  absl::StatusOr<SectionFileSet> again =
      EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->laid_out);
  EXPECT_EQ(fixture.fills(), fills);
  EXPECT_TRUE(log.empty());
}

TEST_P(SectionFileTest, AStaleIdentityIsRebuiltWithALogLineSayingWhat) {
  const auto& [base, dirs] = GetParam();
  Fixture fixture(base);
  ASSERT_TRUE(fixture.ok());
  std::vector<std::unique_ptr<ScratchDir>> owned;
  std::vector<std::string> paths;
  for (int d = 0; d < dirs; ++d) {
    owned.push_back(std::make_unique<ScratchDir>(base));
    paths.push_back(owned.back()->path());
  }
  SectionFileOptions options;
  options.stripe_bytes = 8192;
  std::vector<std::string> log;
  options.log = [&log](std::string_view line) { log.emplace_back(line); };
  ASSERT_TRUE(EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options).ok());

  // The checkpoint changes (its mtime), then the plan, then the content type, then the stripe.
  struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 5}};
  ASSERT_EQ(::utimensat(AT_FDCWD, fixture.checkpoint().c_str(), times, 0), 0);
  SectionFileIdentity identity = fixture.Identity();
  for (int change = 0; change < 4; ++change) {
    if (change == 1) identity.plan_hash = 43;
    if (change == 2) identity.content = "bf16 via fp8 blocks";
    if (change == 3) options.stripe_bytes = 16384;
    log.clear();
    EXPECT_TRUE(absl::IsFailedPrecondition(OpenSectionFiles(paths, identity, options).status()));
    absl::StatusOr<SectionFileSet> set = EnsureSectionFiles(paths, identity, fixture.Fill(), options);
    ASSERT_TRUE(set.ok()) << set.status();
    EXPECT_TRUE(set->laid_out) << "change " << change;
    ASSERT_GE(log.size(), 1u);
    EXPECT_TRUE(absl::StrContains(log[0], "is stale")) << log[0];
    EXPECT_TRUE(absl::StrContains(log[0], set->paths[0])) << log[0];
    EXPECT_TRUE(OpenSectionFiles(paths, identity, options).ok());
  }
  // Fewer directories than the layout had: the remaining file says it is stale.
  if (dirs > 1) {
    std::vector<std::string> fewer(paths.begin(), paths.end() - 1);
    EXPECT_TRUE(absl::IsFailedPrecondition(OpenSectionFiles(fewer, identity, options).status()));
  }
}

TEST_P(SectionFileTest, TruncatedOrCorruptFilesAreNamedAndRebuilt) {
  const auto& [base, dirs] = GetParam();
  Fixture fixture(base);
  ASSERT_TRUE(fixture.ok());
  std::vector<std::unique_ptr<ScratchDir>> owned;
  std::vector<std::string> paths;
  for (int d = 0; d < dirs; ++d) {
    owned.push_back(std::make_unique<ScratchDir>(base));
    paths.push_back(owned.back()->path());
  }
  SectionFileOptions options;
  options.stripe_bytes = 8192;
  std::vector<std::string> log;
  options.log = [&log](std::string_view line) { log.emplace_back(line); };
  const SectionFileIdentity identity = fixture.Identity();
  absl::StatusOr<SectionFileSet> set = EnsureSectionFiles(paths, identity, fixture.Fill(), options);
  ASSERT_TRUE(set.ok()) << set.status();
  const std::string last = set->paths.back();

  // Truncated: named at open, by the reader too, and rebuilt.
  const auto size = std::filesystem::file_size(last);
  std::filesystem::resize_file(last, size - 4096);
  absl::Status status = OpenSectionFiles(paths, identity, options).status();
  EXPECT_TRUE(absl::IsOutOfRange(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), last)) << status;
  std::vector<AlignedBuffer> memory;
  uint64_t staging = 0;
  for (const SectionReadPlan& plan : set->plans) staging = std::max(staging, plan.staging_bytes);
  absl::StatusOr<std::unique_ptr<SectionPrefetcher>> reader =
      SectionPrefetcher::CreateFromPlans(set->paths, set->plans, Buffers(&memory, 2, staging), {});
  ASSERT_FALSE(reader.ok());
  EXPECT_TRUE(absl::StrContains(reader.status().message(), last)) << reader.status();
  EXPECT_TRUE(absl::StrContains(reader.status().message(), "truncated")) << reader.status();
  log.clear();
  set = EnsureSectionFiles(paths, identity, fixture.Fill(), options);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->laid_out);
  ASSERT_FALSE(log.empty());
  EXPECT_TRUE(absl::StrContains(log[0], last)) << log[0];

  // A header byte flipped: corrupt, named.
  {
    const int fd = ::open(last.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "X", 1, 30), 1);
    ::close(fd);
  }
  status = OpenSectionFiles(paths, identity, options).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), last)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "corrupt")) << status;
  set = EnsureSectionFiles(paths, identity, fixture.Fill(), options);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->laid_out);

  // Truncated while a reader has it open: the read of that section fails naming the file.
  reader = SectionPrefetcher::CreateFromPlans(set->paths, set->plans, Buffers(&memory, 1, staging), {});
  ASSERT_TRUE(reader.ok()) << reader.status();
  // Let the reader finish section 0 (and stall: one buffer), then cut the last file short.
  (void)Assemble(**reader, 0, fixture.specs()[0].section_bytes);
  std::filesystem::resize_file(last, set->data_offset);
  bool failed = false;
  for (int round = 0; round < 2 && !failed; ++round) {
    for (size_t s = 0; s < fixture.specs().size() && !failed; ++s) {
      absl::StatusOr<std::vector<StagedPiece>> pieces = (*reader)->Acquire(static_cast<int>(s));
      if (!pieces.ok()) {
        failed = true;
        EXPECT_TRUE(absl::StrContains(pieces.status().message(), last)) << pieces.status();
      } else {
        (*reader)->Release(static_cast<int>(s));
      }
    }
  }
  EXPECT_TRUE(failed || dirs > fixture.specs().size()) << "no read noticed the truncation";
}

TEST(SectionFileDiskFullTest, AWriteFaultIsAClearErrorAndLeavesNoFile) {
  Fixture fixture(RINGMOE_BINARY_DIR);
  ASSERT_TRUE(fixture.ok());
  ScratchDir a(RINGMOE_BINARY_DIR), b(RINGMOE_BINARY_DIR);
  const std::vector<std::string> paths = {a.path(), b.path()};
  SectionFileOptions options;
  options.stripe_bytes = 8192;
  std::atomic<int> writes = 0;  // The writers of the two directories run on threads of their own.
  options.write_fault_for_testing = [&writes](int dir, uint64_t, uint64_t) {
    return dir == 1 && ++writes == 3 ? ENOSPC : 0;
  };
  absl::StatusOr<SectionFileSet> set = EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options);
  ASSERT_FALSE(set.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(set.status())) << set.status();
  EXPECT_TRUE(absl::StrContains(set.status().message(), b.path())) << set.status();
  EXPECT_TRUE(absl::StrContains(set.status().message(), "full")) << set.status();
  EXPECT_TRUE(Names(a.path()).empty());
  EXPECT_TRUE(Names(b.path()).empty());
  // A stale valid set stays what it was: a later good run lays the files out.
  options.write_fault_for_testing = nullptr;
  EXPECT_TRUE(EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options).ok());
}

TEST(SectionFileDiskFullTest, AFillErrorIsReturnedAndLeavesNoFile) {
  Fixture fixture(RINGMOE_BINARY_DIR);
  ASSERT_TRUE(fixture.ok());
  ScratchDir a(RINGMOE_BINARY_DIR), b(RINGMOE_BINARY_DIR), c(RINGMOE_BINARY_DIR);
  const std::vector<std::string> paths = {a.path(), b.path(), c.path()};
  SectionFileOptions options;
  options.stripe_bytes = 8192;
  const SectionFill good = fixture.Fill();
  const SectionFill failing = [&good](int section, uint64_t offset, std::span<uint8_t> out) {
    if (section == 3) return absl::DataLossError("checkpoint tensor unreadable");
    return good(section, offset, out);
  };
  absl::Status status = EnsureSectionFiles(paths, fixture.Identity(), failing, options).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "unreadable")) << status;
  for (const std::string& path : paths) EXPECT_TRUE(Names(path).empty()) << path;
}

// The kernel's own "file too large" (RLIMIT_FSIZE, as a quota or a full disk would refuse): in a child
// process, so the limit does not outlive the case.
TEST(SectionFileDiskFullTest, ARealFileSizeLimitFailsCleanlyInAChild) {
  Fixture fixture(RINGMOE_BINARY_DIR);
  ASSERT_TRUE(fixture.ok());
  ScratchDir dir(RINGMOE_BINARY_DIR);
  const std::vector<std::string> paths = {dir.path()};
  const SectionFileIdentity identity = fixture.Identity();
  const SectionFill fill = fixture.Fill();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {64 << 10, 64 << 10};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    SectionFileOptions options;
    options.stripe_bytes = 8192;
    absl::StatusOr<SectionFileSet> set = EnsureSectionFiles(paths, identity, fill, options);
    const bool named = !set.ok() && absl::IsResourceExhausted(set.status()) &&
                       absl::StrContains(set.status().message(), dir.path());
    ::_exit(set.ok() ? 1 : named ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the layout succeeded past the limit; 2: a different error";
  EXPECT_TRUE(Names(dir.path()).empty()) << "a partial file was left behind";
}

TEST(SectionFileDirsTest, TheModelsFolderAndRepeatedOrMissingDirectoriesAreRefused) {
  Fixture fixture(RINGMOE_BINARY_DIR);
  ASSERT_TRUE(fixture.ok());
  SectionFileOptions options;
  std::vector<std::string> paths = {fixture.model_dir()};
  absl::Status status = EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "model")) << status;
  std::filesystem::create_directory(fixture.model_dir() + "/cache");
  paths = {fixture.model_dir() + "/cache"};
  EXPECT_TRUE(absl::IsInvalidArgument(
      EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options).status()));
  ScratchDir dir(RINGMOE_BINARY_DIR);
  paths = {dir.path(), dir.path() + "/."};
  status = EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "same directory")) << status;
  paths = {dir.path() + "/missing"};
  EXPECT_TRUE(absl::IsInvalidArgument(
      EnsureSectionFiles(paths, fixture.Identity(), fixture.Fill(), options).status()));
  EXPECT_EQ(fixture.fills(), 0);
}

}  // namespace
}  // namespace ringmoe::io
