#include "io/uring_reader.h"

#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ringmoe::io {
namespace {

constexpr int kMaxQueueDepth = 4096;
// io_uring read lengths are 32-bit; larger ranges are read in pieces of this size (aligned for O_DIRECT).
constexpr size_t kMaxPiece = size_t{1} << 30;
// EAGAIN/EINTR completions are retried, but not forever.
constexpr int kMaxTransientRetries = 10000;

// One read in flight: bytes [pos, pos + length) of ranges[range].
struct Piece {
  size_t range = 0;
  uint64_t pos = 0;
  uint32_t length = 0;
};

// Hands out the pieces still to read: retries (remainders of short reads) first, then fresh pieces in order.
class PieceQueue {
 public:
  explicit PieceQueue(std::span<const ReadRange> ranges) : ranges_(ranges) {}

  bool Next(Piece* piece) {
    if (!retries_.empty()) {
      *piece = retries_.front();
      retries_.pop_front();
      return true;
    }
    while (next_range_ < ranges_.size()) {
      const ReadRange& range = ranges_[next_range_];
      if (next_pos_ >= range.length) {
        ++next_range_;
        next_pos_ = 0;
        continue;
      }
      const size_t length = std::min<size_t>(range.length - next_pos_, kMaxPiece);
      *piece = Piece{next_range_, next_pos_, static_cast<uint32_t>(length)};
      next_pos_ += length;
      return true;
    }
    return false;
  }
  void Retry(const Piece& piece) { retries_.push_front(piece); }
  void Clear() {
    retries_.clear();
    next_range_ = ranges_.size();
  }

 private:
  std::span<const ReadRange> ranges_;
  std::deque<Piece> retries_;
  size_t next_range_ = 0;
  uint64_t next_pos_ = 0;
};

int RangeFd(int fd, const ReadRange& range) { return range.fd >= 0 ? range.fd : fd; }

absl::Status ValidateRanges(int fd, std::span<const ReadRange> ranges) {
  for (const ReadRange& range : ranges) {
    if (RangeFd(fd, range) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("ReadRanges: invalid file descriptor ", fd,
                                                     " for the range at offset ", range.offset));
    }
    if (range.length > 0 && range.dst == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("ReadRanges: range at offset ", range.offset, " has no destination buffer"));
    }
    if (range.offset + range.length < range.offset) {
      return absl::InvalidArgumentError(absl::StrCat("ReadRanges: range at offset ", range.offset, " of ",
                                                     range.length, " bytes overflows"));
    }
  }
  return absl::OkStatus();
}

uint8_t* Destination(const ReadRange& range, uint64_t pos) { return static_cast<uint8_t*>(range.dst) + pos; }

absl::Status ReadError(int error, const ReadRange& range, const Piece& piece) {
  return absl::InternalError(absl::StrCat("read of ", piece.length, " bytes at file offset ",
                                          range.offset + piece.pos, " failed: ", std::strerror(error)));
}

// What to do once `piece` returned `got` bytes (0 <= got <= piece.length): retry the rest, zero-fill it at
// the end of the file, or fail. A short read is the end of the file only if fstat says so; otherwise
// (signals, O_DIRECT splitting) the remainder is simply read again.
absl::Status HandleShortRead(int fd, const ReadRange& range, const Piece& piece, uint32_t got, AtEof at_eof,
                             PieceQueue& queue) {
  if (got == piece.length) return absl::OkStatus();
  const Piece rest{piece.range, piece.pos + got, piece.length - got};
  struct stat info;
  const bool at_end =
      got == 0 || (::fstat(fd, &info) == 0 && static_cast<uint64_t>(info.st_size) <= range.offset + rest.pos);
  if (!at_end) {
    queue.Retry(rest);
    return absl::OkStatus();
  }
  if (at_eof == AtEof::kZeroFill) {
    std::memset(Destination(range, rest.pos), 0, rest.length);
    return absl::OkStatus();
  }
  return absl::OutOfRangeError(absl::StrCat("file ends at offset ", range.offset + rest.pos,
                                            ", inside the range [", range.offset, ", ",
                                            range.offset + range.length, ")"));
}

// The fallback when io_uring is unavailable: one range at a time with pread, same semantics.
absl::Status PreadRange(int fd, const ReadRange& range, AtEof at_eof) {
  uint64_t pos = 0;
  int transient_retries = 0;
  while (pos < range.length) {
    const size_t want = std::min<uint64_t>(range.length - pos, kMaxPiece);
    const ssize_t got = ::pread(fd, Destination(range, pos), want, static_cast<off_t>(range.offset + pos));
    if (got < 0) {
      const int error = errno;
      if ((error == EINTR || error == EAGAIN) && ++transient_retries <= kMaxTransientRetries) continue;
      return ReadError(error, range, Piece{0, pos, static_cast<uint32_t>(want)});
    }
    pos += static_cast<uint64_t>(got);
    if (static_cast<size_t>(got) == want) continue;
    struct stat info;
    const bool at_end =
        got == 0 || (::fstat(fd, &info) == 0 && static_cast<uint64_t>(info.st_size) <= range.offset + pos);
    if (!at_end) continue;
    if (at_eof == AtEof::kError) {
      return absl::OutOfRangeError(absl::StrCat("file ends at offset ", range.offset + pos,
                                                ", inside the range [", range.offset, ", ",
                                                range.offset + range.length, ")"));
    }
    std::memset(Destination(range, pos), 0, range.length - pos);
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

struct UringReader::Ring {
  io_uring ring;
  bool initialized = false;
  bool use_pread = false;  // io_uring unavailable (or disabled): read with pread instead.
  // Set when the submission queue may hold stale entries; the reader then refuses further work.
  bool broken = false;
  ~Ring() {
    if (initialized) io_uring_queue_exit(&ring);
  }
};

UringReader::UringReader(std::unique_ptr<Ring> ring, int queue_depth)
    : ring_(std::move(ring)), queue_depth_(queue_depth) {}
UringReader::UringReader(UringReader&& other) noexcept = default;
UringReader& UringReader::operator=(UringReader&& other) noexcept = default;
UringReader::~UringReader() = default;

bool UringReader::uses_io_uring() const { return ring_ != nullptr && !ring_->use_pread; }

absl::StatusOr<UringReader> UringReader::Create(int queue_depth) {
  if (queue_depth < 1 || queue_depth > kMaxQueueDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("io_uring queue depth ", queue_depth, " is outside [1, ", kMaxQueueDepth, "]"));
  }
  auto ring = std::make_unique<Ring>();
  const char* disable = std::getenv("RINGMOE_DISABLE_IO_URING");
  if (disable != nullptr && *disable != '\0' && std::string_view(disable) != "0") {
    ring->use_pread = true;
    return UringReader(std::move(ring), queue_depth);
  }
  const int rc = io_uring_queue_init(static_cast<unsigned>(queue_depth), &ring->ring, 0);
  if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES) {
    // Kernels built without io_uring and container seccomp profiles that block it: still read, slower.
    ring->use_pread = true;
    return UringReader(std::move(ring), queue_depth);
  }
  if (rc < 0) {
    const std::string message =
        absl::StrCat("io_uring_queue_init(", queue_depth, ") failed: ", std::strerror(-rc));
    return rc == -ENOMEM ? absl::ResourceExhaustedError(message) : absl::UnavailableError(message);
  }
  ring->initialized = true;
  return UringReader(std::move(ring), queue_depth);
}

absl::Status UringReader::ReadRanges(int fd, std::span<const ReadRange> ranges, AtEof at_eof,
                                     size_t* failed_range) {
  if (ring_ == nullptr) return absl::FailedPreconditionError("ReadRanges on a moved-from UringReader");
  if (ring_->broken)
    return absl::FailedPreconditionError("ReadRanges on a UringReader whose ring failed earlier");
  if (absl::Status status = ValidateRanges(fd, ranges); !status.ok()) return status;
  if (ring_->use_pread) {
    if (!ranges.empty()) max_in_flight_ = std::max(max_in_flight_, 1);
    for (size_t i = 0; i < ranges.size(); ++i) {
      if (absl::Status status = PreadRange(RangeFd(fd, ranges[i]), ranges[i], at_eof); !status.ok()) {
        if (failed_range != nullptr) *failed_range = i;
        return status;
      }
    }
    return absl::OkStatus();
  }
  io_uring* ring = &ring_->ring;

  PieceQueue queue(ranges);
  std::vector<Piece> slots(static_cast<size_t>(queue_depth_));
  std::vector<uint32_t> free_slots(slots.size());
  for (size_t i = 0; i < free_slots.size(); ++i)
    free_slots[i] = static_cast<uint32_t>(free_slots.size() - 1 - i);
  int in_flight = 0;
  int transient_retries = 0;
  absl::Status first_error;
  auto fail = [&](absl::Status status, size_t range = SIZE_MAX) {
    if (first_error.ok()) {
      first_error = std::move(status);
      if (failed_range != nullptr && range != SIZE_MAX) *failed_range = range;
    }
    queue.Clear();  // Stop issuing; the reads in flight are still waited for below.
  };

  while (true) {
    Piece piece;
    while (in_flight < queue_depth_ && queue.Next(&piece)) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) {  // Cannot happen with in_flight < entries, but never lose a piece.
        queue.Retry(piece);
        break;
      }
      const uint32_t slot = free_slots.back();
      free_slots.pop_back();
      slots[slot] = piece;
      const ReadRange& range = ranges[piece.range];
      io_uring_prep_read(sqe, RangeFd(fd, range), Destination(range, piece.pos), piece.length,
                         range.offset + piece.pos);
      io_uring_sqe_set_data64(sqe, slot);
      ++in_flight;
    }
    max_in_flight_ = std::max(max_in_flight_, in_flight);
    if (in_flight == 0) break;

    const int submitted = io_uring_submit_and_wait(ring, 1);
    if (submitted == -EINTR) continue;  // Entries not yet taken stay queued; submit again.
    if (submitted == -EAGAIN || submitted == -EBUSY) {
      // The kernel is short of resources: waiting here could block forever if nothing was submitted yet.
      if (++transient_retries > kMaxTransientRetries) {
        ring_->broken = true;
        fail(absl::ResourceExhaustedError(
            absl::StrCat("io_uring_submit keeps failing: ", std::strerror(-submitted))));
        in_flight -= static_cast<int>(io_uring_sq_ready(ring));
        if (in_flight <= 0) break;
      } else {
        ::sched_yield();
        continue;
      }
    } else if (submitted < 0) {
      // Unsubmitted entries would point at the caller's buffers after we return: retire the ring.
      ring_->broken = true;
      fail(absl::InternalError(absl::StrCat("io_uring_submit failed: ", std::strerror(-submitted))));
      in_flight -= static_cast<int>(io_uring_sq_ready(ring));
      if (in_flight <= 0) break;
    }
    io_uring_cqe* cqe = nullptr;
    const int wait = io_uring_wait_cqe(ring, &cqe);
    if (wait == -EINTR || wait == -EAGAIN) continue;
    if (wait < 0) {
      // Cannot happen with a valid ring; reads may still be in flight, so the ring is retired.
      ring_->broken = true;
      fail(absl::InternalError(absl::StrCat("io_uring_wait_cqe failed: ", std::strerror(-wait))));
      break;
    }
    unsigned head;
    unsigned reaped = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++reaped;
      const auto slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      const Piece done = slots[slot];
      free_slots.push_back(slot);
      --in_flight;
      const int result = cqe->res;
      const ReadRange& range = ranges[done.range];
      if (!first_error.ok()) continue;  // Draining after an error.
      if (result == -EINTR || result == -EAGAIN) {
        if (++transient_retries > kMaxTransientRetries) {
          fail(ReadError(-result, range, done), done.range);
        } else {
          queue.Retry(done);
        }
      } else if (result < 0) {
        fail(ReadError(-result, range, done), done.range);
      } else if (absl::Status status = HandleShortRead(RangeFd(fd, range), range, done,
                                                       static_cast<uint32_t>(result), at_eof, queue);
                 !status.ok()) {
        fail(std::move(status), done.range);
      }
    }
    io_uring_cq_advance(ring, reaped);
  }
  return first_error;
}

absl::StatusOr<int> OpenForDirectRead(const std::string& path, bool* direct) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  *direct = fd >= 0;
  if (fd < 0 && errno == EINVAL) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // No O_DIRECT here.
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot open '", path, "' for reading: ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::InternalError(message);
  }
  return fd;
}

void* AllocateAligned(size_t bytes, size_t alignment) {
  if (bytes == 0 || alignment == 0 || (alignment & (alignment - 1)) != 0) return nullptr;
  alignment = std::max(alignment, sizeof(void*));
  const size_t rounded = (bytes + alignment - 1) & ~(alignment - 1);
  if (rounded < bytes) return nullptr;
  void* ptr = nullptr;
  return ::posix_memalign(&ptr, alignment, rounded) == 0 ? ptr : nullptr;
}

void FreeAligned(void* ptr) { std::free(ptr); }

absl::StatusOr<double> MeasureReadBandwidth(const std::string& path, int queue_depth, size_t block_bytes,
                                            size_t total_bytes, bool* direct_out) {
  if (block_bytes == 0 || block_bytes % 4096 != 0 || block_bytes > kMaxPiece) {
    return absl::InvalidArgumentError(absl::StrCat("bandwidth probe block size ", block_bytes,
                                                   " must be a multiple of 4096 up to ", kMaxPiece));
  }
  absl::StatusOr<UringReader> reader = UringReader::Create(queue_depth);
  if (!reader.ok()) return reader.status();
  bool direct = false;
  absl::StatusOr<int> fd = OpenForDirectRead(path, &direct);
  if (!fd.ok()) return fd.status();
  if (direct_out != nullptr) *direct_out = direct;
  struct stat info;
  if (::fstat(*fd, &info) != 0) {
    const int error = errno;
    ::close(*fd);
    return absl::InternalError(absl::StrCat("cannot stat '", path, "': ", std::strerror(error)));
  }
  const size_t blocks = std::min<size_t>(total_bytes, static_cast<size_t>(info.st_size)) / block_bytes;
  if (blocks == 0) {
    ::close(*fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' (", info.st_size,
                                                   " bytes) is too small to measure ", "with blocks of ",
                                                   block_bytes, " bytes and a total of ", total_bytes));
  }
  // The data is discarded, so reads in flight may share buffers: queue_depth blocks of memory suffice.
  const size_t buffers = std::min<size_t>(blocks, static_cast<size_t>(queue_depth));
  auto* memory = static_cast<uint8_t*>(AllocateAligned(buffers * block_bytes));
  if (memory == nullptr) {
    ::close(*fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", buffers * block_bytes, " bytes of buffers"));
  }
  // Fault the buffers in now: at depth 32 with 4 MiB blocks that is 128 MiB of first touches, which would
  // otherwise be timed as reading (and more so the deeper the queue).
  std::memset(memory, 0, buffers * block_bytes);
  std::vector<ReadRange> ranges(blocks);
  for (size_t i = 0; i < blocks; ++i)
    ranges[i] = {i * block_bytes, block_bytes, memory + (i % buffers) * block_bytes};

  // Untimed warm-up (the ring's first submission, the kernel's io workers): one block from the last one.
  absl::Status status = reader->ReadRanges(*fd, {&ranges.back(), 1});
  // Best effort: without O_DIRECT we would otherwise measure the page cache.
  if (!direct) ::posix_fadvise(*fd, 0, 0, POSIX_FADV_DONTNEED);

  const auto start = std::chrono::steady_clock::now();
  if (status.ok()) status = reader->ReadRanges(*fd, ranges);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  FreeAligned(memory);
  ::close(*fd);
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return static_cast<double>(blocks * block_bytes) / std::max(seconds, 1e-9) / 1e9;
}

}  // namespace ringmoe::io
