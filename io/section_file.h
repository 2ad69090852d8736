// The SSD tier's section files (--ssd-dir): the SSD sections' bytes laid out once per model and plan, exactly
// as the ring consumes them (the packed layout, bf16 or FP8 blocks), striped over one file per directory (one
// directory per drive) so that every drive reads its share of every section at once.
//
// Layout. The sections follow each other in a logical byte space, each starting on `alignment` (4 KiB) and
// padded to it. That space is cut into stripes of stripe_bytes; stripe k lives in file k % D at
// data_offset + (k / D) * stripe_bytes, D being the number of directories. A section of a few hundred MiB
// thus spreads evenly over every drive, and the reads of one section (io::SectionPrefetcher::CreateFromPlans)
// keep all of them busy.
//
// Header (the first data_offset bytes of each file, text): the format version, a random set id shared by the
// files of one layout, the file's index, the stripe size, the content (dtype), the plan's section hash and
// sizes, every source checkpoint file's size and mtime, and a checksum of the header. A later run reuses the
// files when the identity matches; anything else (stale identity, corrupt or truncated file, files of two
// layouts) is rebuilt, with a log line saying why.
//
// Writing: to a temporary name in the same directory (O_CREAT | O_EXCL | O_NOFOLLOW, O_DIRECT where the
// filesystem allows it), space reserved first with fallocate, data then header, fdatasync, then
// renamed over the final name. A full disk is a ResourceExhausted error naming the directory; the temporary
// files are removed, so no partial file ever carries a valid name. Never written into the model's folder.
//
// Threading: free functions, no shared state; the fill callback runs on the caller's thread, the writes on
// one thread per directory (every drive writes while the next stripes are filled).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/section_reader.h"

namespace ringmoe::io {

// A stable 64-bit hash (FNV-1a), the same on every run and machine: for the plan's section list.
uint64_t StableHash64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ULL);

// A checkpoint file the sections' bytes come from, as it was when they were laid out.
struct SectionSourceFile {
  std::string path;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
// The sources' sizes and mtimes as they are now (NotFound naming a missing one).
absl::StatusOr<std::vector<SectionSourceFile>> StatSourceFiles(std::span<const std::string> paths);

// What the section files hold: a later run reuses them only when all of it matches.
struct SectionFileIdentity {
  std::string model_dir;                   // The checkpoint's folder: never written into; names the files.
  std::vector<SectionSourceFile> sources;  // Every checkpoint file the bytes come from.
  std::string content;                     // How the bytes were made, e.g. "bf16" or "bf16 via fp8 blocks".
  uint64_t plan_hash = 0;                  // The plan's SSD section list (layers, parts, experts).
  std::vector<uint64_t> section_bytes;     // Each section's bytes, in ring order.
};

struct SectionFileOptions {
  uint64_t stripe_bytes = 4 << 20;  // A multiple of alignment: the reads the drives were probed at.
  uint64_t alignment = 4096;        // Every section starts on it; reads and writes are multiples of it.
  // Called with a line when files are laid out or rebuilt (why), may be empty.
  std::function<void(std::string_view)> log;
  // Tests only: called before each write with (directory index, file offset, bytes); a nonzero errno makes
  // that write fail as if the kernel had returned it (ENOSPC: a full disk).
  std::function<int(int dir, uint64_t offset, uint64_t bytes)> write_fault_for_testing;
};

// Where the sections lie: pure, testable.
struct StripedLayout {
  int files = 0;
  uint64_t stripe_bytes = 0;
  uint64_t alignment = 0;
  std::vector<uint64_t> section_bytes;
  std::vector<uint64_t> section_offsets;  // Logical offsets, each a multiple of alignment.
  uint64_t logical_bytes = 0;             // A multiple of alignment.
  std::vector<uint64_t> file_data_bytes;  // Data bytes in each file (after its header).
};
absl::StatusOr<StripedLayout> MakeStripedLayout(std::span<const uint64_t> section_bytes, int files,
                                                const SectionFileOptions& options);
// Section `section`'s reads (file = index of the file, offsets past `data_offset`), in logical order, so
// consecutive reads go to different drives; one piece, the whole section, at staging offset 0.
SectionReadPlan PlanStripedReads(const StripedLayout& layout, int section, uint64_t data_offset,
                                 uint64_t max_read_bytes);

// A validated set of section files: open it with SectionPrefetcher::CreateFromPlans(paths, plans, ...).
struct SectionFileSet {
  std::vector<std::string> paths;  // One per directory, in the directories' order.
  std::vector<SectionReadPlan> plans;
  StripedLayout layout;
  uint64_t data_offset = 0;
  bool laid_out = false;  // Written by this call (false: reused).
};

// The section files' names in `dirs` for the model (one per directory).
std::vector<std::string> SectionFilePaths(std::span<const std::string> dirs, const std::string& model_dir);

// Checks the existing files against `identity`: NotFound (a file missing), FailedPrecondition (stale: the
// identity or the directories differ, saying what), DataLoss (corrupt header, a link, files of two layouts)
// or OutOfRange (truncated), each naming the file.
absl::StatusOr<SectionFileSet> OpenSectionFiles(std::span<const std::string> dirs,
                                                const SectionFileIdentity& identity,
                                                const SectionFileOptions& options,
                                                uint64_t max_read_bytes = 4 << 20);

// Fills bytes [offset, offset + out.size()) of section `section` (in ring layout).
using SectionFill = std::function<absl::Status(int section, uint64_t offset, std::span<uint8_t> out)>;

// Reuses valid files, else lays them out with `fill` (logging why) and validates what it wrote. Errors: a
// directory that is missing, not a directory, listed twice or the model's folder (InvalidArgument); a full
// disk (ResourceExhausted naming the directory); a write error (DataLoss naming the file); fill's errors.
absl::StatusOr<SectionFileSet> EnsureSectionFiles(std::span<const std::string> dirs,
                                                  const SectionFileIdentity& identity,
                                                  const SectionFill& fill, const SectionFileOptions& options,
                                                  uint64_t max_read_bytes = 4 << 20);

}  // namespace ringmoe::io
