// UringReader: the SSD tier's reader. Reads many byte ranges of one file with io_uring, keeping up to
// queue_depth reads in flight, which is what NVMe drives need to reach their bandwidth. Used by the planner's
// bandwidth probe and by the weight ring.
//
// Threading: one thread uses an instance at a time (the submission and completion queues are not locked).
// Give each reading thread its own UringReader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::io {

struct ReadRange {
  uint64_t offset = 0;  // In the file. With O_DIRECT: a multiple of the logical block size (4096 is safe).
  size_t length = 0;    // With O_DIRECT: a multiple of the block size too.
  void* dst = nullptr;  // With O_DIRECT: aligned (see AllocateAligned).
  int fd = -1;          // >= 0: read this file instead of ReadRanges' fd (one ring reading several drives).
};

// What ReadRanges does when the file ends before a range does.
enum class AtEof {
  kError,     // An OutOfRange error naming the offset.
  kZeroFill,  // Fill the rest of the range with zeros: for O_DIRECT reads of a block-rounded file tail.
};

class UringReader {
 public:
  // queue_depth: reads in flight at most, 1..4096. Falls back to pread (see uses_io_uring()) rather than fail
  // where io_uring is unavailable.
  static absl::StatusOr<UringReader> Create(int queue_depth);

  UringReader(UringReader&& other) noexcept;
  UringReader& operator=(UringReader&& other) noexcept;
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;
  ~UringReader();

  // Reads every range of `fd` into its dst and returns when all have finished. Short reads are resubmitted
  // for the remainder; EINTR/EAGAIN are retried. On an error, the reads already in flight are waited for (so
  // no buffer is written after return) and the first error is returned, naming the offset; *failed_range,
  // when given, receives the index of the range it concerns, when it concerns one (so that callers reading
  // several files through ReadRange::fd can name the file). `fd` may be -1 when every range names its own.
  absl::Status ReadRanges(int fd, std::span<const ReadRange> ranges, AtEof at_eof = AtEof::kError,
                          size_t* failed_range = nullptr);

  int queue_depth() const { return queue_depth_; }
  // The most reads this reader has had in flight at once since it was made (1 on the pread fallback once it
  // has read anything): lets callers check, rather than assume, that the depth bound held.
  int max_in_flight() const { return max_in_flight_; }
  // False when io_uring is unavailable (kernel without it, a container seccomp profile that blocks it) or
  // disabled with the environment variable RINGMOE_DISABLE_IO_URING=1: ReadRanges then reads one range at a
  // time with pread, with the same results, at lower bandwidth on NVMe.
  bool uses_io_uring() const;

 private:
  struct Ring;
  UringReader(std::unique_ptr<Ring> ring, int queue_depth);

  std::unique_ptr<Ring> ring_;
  int queue_depth_ = 0;
  int max_in_flight_ = 0;
};

// Opens `path` read-only with O_DIRECT, falling back to buffered reads when the filesystem refuses O_DIRECT
// (tmpfs, some overlay filesystems). *direct says which one happened. The caller closes the descriptor.
absl::StatusOr<int> OpenForDirectRead(const std::string& path, bool* direct);

// Memory for O_DIRECT buffers: `bytes` rounded up to `alignment` (a power of two). nullptr on failure or when
// bytes is 0. Release with FreeAligned.
void* AllocateAligned(size_t bytes, size_t alignment = 4096);
void FreeAligned(void* ptr);

// Reads up to `total_bytes` of `path` (from its start, at most the file's size rounded down to block_bytes)
// in blocks of `block_bytes` with `queue_depth` in flight, and returns GB/s (1e9 bytes per second). Uses
// O_DIRECT when the filesystem allows it (*direct, when given, says whether it did); otherwise first asks
// the kernel to drop the file's cached pages so the number is not a page-cache number (best effort; buffered
// reads at depth > 1 defeat the kernel's readahead, so their rate falls with depth where the drive's would
// not). The buffers are faulted in and the ring started before the clock starts.
absl::StatusOr<double> MeasureReadBandwidth(const std::string& path, int queue_depth, size_t block_bytes,
                                            size_t total_bytes, bool* direct = nullptr);

}  // namespace ringmoe::io
