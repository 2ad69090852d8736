// The SSD tier's section reader: routed-expert sections that do not fit in pinned DRAM are read every step
// straight from the safetensors checkpoint files (aligned superset ranges, O_DIRECT, io_uring) into staging
// buffers the caller owns (and pins), ahead of use, in the ring's cyclic order.
//
// Why the checkpoint files rather than a section file laid out once: a section's tensors (one layer's
// experts) sit next to each other in the shards, so merging neighbouring ranges gives reads of a few MiB,
// which is what the drive needs, without writing a second copy of a model that already does not fit in
// memory.
//
// PlanSectionReads is pure (testable without files); SectionPrefetcher runs the plans on a reader thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "io/dtype.h"

namespace ringmoe::io {

// One tensor of a section: bytes in a checkpoint file and where its bf16 bytes land in the packed section.
struct SectionTensor {
  int file = 0;                 // Index into SectionPrefetcher's file list.
  uint64_t file_offset = 0;     // Absolute offset of the tensor's data in the file (any alignment).
  uint64_t file_bytes = 0;      // Bytes in the file (elements * source dtype size).
  DType dtype = DType::kBF16;   // kBF16 served in place from staging; kF32/kF16 converted to bf16.
  uint64_t section_offset = 0;  // Destination offset of its bf16 bytes in the section.
};

struct SectionSpec {
  std::vector<SectionTensor> tensors;
  uint64_t section_bytes = 0;
};

// A piece of a staged section: host bytes (inside the staging buffer) and where they land in the section.
// Tensors contiguous both in staging and in the section come back as one piece (fewer copies to the GPU).
struct StagedPiece {
  const void* host = nullptr;
  uint64_t bytes = 0;
  uint64_t section_offset = 0;
};

struct SectionReadOptions {
  uint64_t alignment = 4096;  // O_DIRECT block: a power of two, at least 512.
  uint64_t max_gap_bytes =
      64 << 10;  // Merge neighbouring tensors' ranges when the hole between is at most this.
  uint64_t max_read_bytes = 4 << 20;  // Split merged ranges into reads of at most this (reads in flight).
  int queue_depth = 32;
  // Tests only: called on the reader thread before each read with (file index, file offset, bytes); a
  // nonzero errno makes that read fail as if the kernel had returned it.
  std::function<int(int file, uint64_t offset, uint64_t bytes)> read_fault_for_testing;
};

// One aligned read: bytes [file_offset, file_offset + length) of `file` into staging at staging_offset.
struct PlannedRead {
  int file = 0;
  uint64_t file_offset = 0;  // A multiple of the alignment.
  uint64_t length = 0;       // A multiple of the alignment, at most max_read_bytes.
  uint64_t staging_offset = 0;
};
// An f32 or f16 tensor converted to bf16 after the reads: from its bytes in the read area to the
// conversion area (after the read area).
struct PlannedConversion {
  DType dtype = DType::kF32;
  uint64_t source_staging_offset = 0;
  uint64_t elements = 0;
  uint64_t destination_staging_offset = 0;
};
// Bytes of staging that land at section_offset in the section.
struct PlannedPiece {
  uint64_t staging_offset = 0;
  uint64_t bytes = 0;
  uint64_t section_offset = 0;
};

// Pure planning, testable: aligned superset reads per file, the staging layout, and where each tensor ends
// up.
struct SectionReadPlan {
  std::vector<PlannedRead> reads;  // Sorted by (file, file_offset); staging offsets increase along them.
  std::vector<PlannedConversion> conversions;
  std::vector<PlannedPiece> pieces;  // Sorted by staging offset, merged where contiguous on both sides.
  uint64_t read_bytes = 0;           // Sum of the reads' lengths: what the drive delivers per section.
  uint64_t staging_bytes = 0;        // Read area plus conversion area, a multiple of the alignment.
};

// Errors (InvalidArgument, naming the tensor): a dtype other than BF16/F32/F16, file_bytes not a whole number
// of elements, a destination outside section_bytes or overlapping another, a negative file index, offsets
// that overflow, nonsensical options.
absl::StatusOr<SectionReadPlan> PlanSectionReads(const SectionSpec& spec, const SectionReadOptions& options);

// The staging bytes one buffer needs to hold any of `sections` (the largest plan's staging_bytes): the
// caller sizes its pinned staging buffers from it.
absl::StatusOr<uint64_t> StagingBytesBound(std::span<const SectionSpec> sections,
                                           const SectionReadOptions& options);

// Reads sections ahead, in a cyclic order, into caller-owned staging buffers (pinned by the caller; aligned
// to options.alignment, each at least StagingBytesBound). A reader thread owns a UringReader and the files.
//
// Threading: Acquire, Release and the destructor from one consumer thread; stats() from any thread. The
// reader thread is internal; it reads one section at a time with up to queue_depth reads in flight.
//
// Files are checked after every section read (size, mtime, device and inode as at Create): bytes handed out
// always come from the files as they were when the prefetcher was made.
class SectionPrefetcher {
 public:
  // Opens every file (O_DIRECT where the filesystem allows it) and checks that every tensor lies inside its
  // file (OutOfRange naming file, section, tensor and offset); a missing file is NotFound naming it. Starts
  // reading sections 0, 1, ... into the buffers.
  static absl::StatusOr<std::unique_ptr<SectionPrefetcher>> Create(
      std::vector<std::string> files, std::vector<SectionSpec> sections,
      std::vector<std::span<uint8_t>> staging_buffers, const SectionReadOptions& options);
  // The same over read plans made elsewhere (io/section_file.h: a section file striped over several drives):
  // each read aligned to options.alignment and at most max_read_bytes, inside its file (OutOfRange naming the
  // file when it is shorter: a truncated file), no conversions. A section's reads of different files go out
  // together, so every drive it is striped over reads at once.
  static absl::StatusOr<std::unique_ptr<SectionPrefetcher>> CreateFromPlans(
      std::vector<std::string> files, std::vector<SectionReadPlan> plans,
      std::vector<std::span<uint8_t>> staging_buffers, const SectionReadOptions& options);
  ~SectionPrefetcher();  // Stops the thread after the read in flight, if any, has finished.

  SectionPrefetcher(const SectionPrefetcher&) = delete;
  SectionPrefetcher& operator=(const SectionPrefetcher&) = delete;

  // Blocks until `section` is staged (reading it next if it is not already staged or being read), then
  // returns its pieces: bf16 tensors point into staging in place, converted ones into the conversion area of
  // the staging buffer. The pointers stay valid until Release(section). Sections are expected in cyclic order
  // 0,1,...,n-1,0,...; the reader keeps reading ahead into free buffers in that order; an out-of-order
  // Acquire moves the order to continue after `section` (staged sections further ahead may be dropped).
  // Errors: a read error (DataLoss), a short read or truncated file (OutOfRange), a file changed since Create
  // (DataLoss), each naming the file and the offset; after one, every later call returns it. Acquiring while
  // every buffer is acquired and not released is FailedPrecondition (it could never finish).
  absl::StatusOr<std::vector<StagedPiece>> Acquire(int section);
  // The consumer is done with the section's staging buffer (its GPU copies completed); it may be reused.
  // Releasing a section that is not acquired does nothing.
  void Release(int section);

  struct Stats {
    uint64_t bytes_read = 0;  // From the files, alignment padding and merged holes included.
    double read_seconds = 0;  // The reader thread inside reads (conversions excluded).
    double wait_seconds = 0;  // Acquire blocked waiting for a section.
    int max_in_flight = 0;    // Most reads in flight at once, as the UringReader counted them.
    bool direct = true;       // Every file opened with O_DIRECT (false: the filesystem refused it).
    bool uring = true;        // io_uring in use (false: the pread fallback).
    uint64_t sections_read = 0;
  };
  Stats stats() const;  // Thread-safe.

  int section_count() const;
  uint64_t staging_bytes_needed() const;

 private:
  struct State;
  explicit SectionPrefetcher(std::unique_ptr<State> state);
  static absl::StatusOr<std::unique_ptr<SectionPrefetcher>> Start(
      std::vector<std::string> files, std::vector<SectionReadPlan> plans,
      std::vector<std::span<uint8_t>> staging_buffers, const SectionReadOptions& options,
      const std::function<absl::Status(const std::vector<std::string>&, const std::vector<uint64_t>&)>&
          check_extents);
  std::unique_ptr<State> state_;
};

}  // namespace ringmoe::io
