#include "io/section_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "io/uring_reader.h"

namespace ringmoe::io {
namespace {

constexpr uint64_t kBf16Bytes = 2;
// Converted tensors start at this alignment inside the conversion area (vector loads, GPU copy granularity).
constexpr uint64_t kConversionAlignment = 64;
constexpr int kMaxQueueDepth = 4096;
// Elements converted per chunk when an f32/f16 source is not 4-byte aligned in staging.
constexpr size_t kConversionChunk = 16384;

uint64_t AlignDown(uint64_t value, uint64_t alignment) { return value & ~(alignment - 1); }
// Callers check for overflow first (values stay far below 2^63 after validation).
uint64_t AlignUp(uint64_t value, uint64_t alignment) { return (value + alignment - 1) & ~(alignment - 1); }

bool IsPowerOfTwo(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

absl::Status ValidateOptions(const SectionReadOptions& options) {
  if (!IsPowerOfTwo(options.alignment) || options.alignment < 512) {
    return absl::InvalidArgumentError(
        absl::StrCat("section read alignment ", options.alignment, " is not a power of two of at least 512"));
  }
  if (options.max_read_bytes < options.alignment || options.max_read_bytes > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("section max_read_bytes ", options.max_read_bytes,
                                                   " is outside [alignment ", options.alignment, ", 1 GiB]"));
  }
  if (options.queue_depth < 1 || options.queue_depth > kMaxQueueDepth) {
    return absl::InvalidArgumentError(absl::StrCat("section read queue depth ", options.queue_depth,
                                                   " is outside [1, ", kMaxQueueDepth, "]"));
  }
  return absl::OkStatus();
}

// A tensor's place in the plan while it is being made.
struct TensorRange {
  size_t tensor = 0;
  uint64_t start = 0;  // Aligned down.
  uint64_t end = 0;    // Aligned up.
};

}  // namespace

absl::StatusOr<SectionReadPlan> PlanSectionReads(const SectionSpec& spec, const SectionReadOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  const uint64_t alignment = options.alignment;
  // Offsets up to 2^62 leave room for every rounding and sum below without overflow checks at each step.
  constexpr uint64_t kMaxOffset = uint64_t{1} << 62;
  if (spec.section_bytes > kMaxOffset) {
    return absl::InvalidArgumentError(absl::StrCat("section of ", spec.section_bytes, " bytes is too large"));
  }

  std::vector<uint64_t> out_bytes(spec.tensors.size());
  std::vector<TensorRange> ranges;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const SectionTensor& tensor = spec.tensors[i];
    const std::string what =
        absl::StrCat("section tensor ", i, " (file ", tensor.file, ", offset ", tensor.file_offset, ")");
    if (tensor.file < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative file index"));
    if (tensor.dtype != DType::kBF16 && tensor.dtype != DType::kF32 && tensor.dtype != DType::kF16) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": dtype ", std::string(DTypeName(tensor.dtype)), " cannot be staged as bf16"));
    }
    const uint64_t element_bytes = DTypeSize(tensor.dtype);
    if (tensor.file_bytes % element_bytes != 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", tensor.file_bytes,
                                                     " bytes is not a whole number of ",
                                                     std::string(DTypeName(tensor.dtype)), " elements"));
    }
    if (tensor.file_offset > kMaxOffset || tensor.file_bytes > kMaxOffset ||
        tensor.section_offset > kMaxOffset) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": offsets or sizes overflow"));
    }
    out_bytes[i] = tensor.file_bytes / element_bytes * kBf16Bytes;
    if (tensor.section_offset + out_bytes[i] > spec.section_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": its ", out_bytes[i], " bf16 bytes at section offset ", tensor.section_offset,
                       " end past the section's ", spec.section_bytes, " bytes"));
    }
    if (tensor.file_bytes == 0) continue;
    ranges.push_back({i, AlignDown(tensor.file_offset, alignment),
                      AlignUp(tensor.file_offset + tensor.file_bytes, alignment)});
  }

  // Destinations must not overlap: two tensors writing the same section bytes is a caller's bug.
  std::vector<size_t> by_destination;
  for (const TensorRange& range : ranges) by_destination.push_back(range.tensor);
  std::sort(by_destination.begin(), by_destination.end(), [&](size_t a, size_t b) {
    return spec.tensors[a].section_offset < spec.tensors[b].section_offset;
  });
  for (size_t k = 1; k < by_destination.size(); ++k) {
    const size_t previous = by_destination[k - 1];
    const size_t current = by_destination[k];
    if (spec.tensors[previous].section_offset + out_bytes[previous] > spec.tensors[current].section_offset) {
      return absl::InvalidArgumentError(absl::StrCat("section tensors ", previous, " and ", current,
                                                     " overlap in the section at offset ",
                                                     spec.tensors[current].section_offset));
    }
  }

  // Merge the aligned ranges of each file into extents; each extent is contiguous in staging.
  std::sort(ranges.begin(), ranges.end(), [&](const TensorRange& a, const TensorRange& b) {
    const int file_a = spec.tensors[a.tensor].file, file_b = spec.tensors[b.tensor].file;
    return file_a != file_b ? file_a < file_b : a.start < b.start;
  });
  SectionReadPlan plan;
  std::vector<uint64_t> staging_of_tensor(spec.tensors.size(), 0);
  const uint64_t max_read = AlignDown(options.max_read_bytes, alignment);
  uint64_t staging = 0;
  size_t first = 0;
  while (first < ranges.size()) {
    const int file = spec.tensors[ranges[first].tensor].file;
    const uint64_t extent_start = ranges[first].start;
    uint64_t extent_end = ranges[first].end;
    size_t last = first + 1;
    while (last < ranges.size() && spec.tensors[ranges[last].tensor].file == file &&
           ranges[last].start <= extent_end + options.max_gap_bytes) {
      extent_end = std::max(extent_end, ranges[last].end);
      ++last;
    }
    for (size_t k = first; k < last; ++k) {
      const size_t tensor = ranges[k].tensor;
      staging_of_tensor[tensor] = staging + (spec.tensors[tensor].file_offset - extent_start);
    }
    for (uint64_t offset = extent_start; offset < extent_end; offset += max_read) {
      const uint64_t length = std::min(max_read, extent_end - offset);
      plan.reads.push_back({file, offset, length, staging + (offset - extent_start)});
      plan.read_bytes += length;
    }
    staging += extent_end - extent_start;
    first = last;
  }

  // The conversion area follows the read area; converted tensors in the order they were given.
  uint64_t conversion = staging;
  for (const TensorRange& range : ranges) {
    const SectionTensor& tensor = spec.tensors[range.tensor];
    if (tensor.dtype == DType::kBF16) continue;
    const uint64_t destination = AlignUp(conversion, kConversionAlignment);
    plan.conversions.push_back({tensor.dtype, staging_of_tensor[range.tensor],
                                tensor.file_bytes / DTypeSize(tensor.dtype), destination});
    staging_of_tensor[range.tensor] = destination;
    conversion = destination + out_bytes[range.tensor];
  }
  plan.staging_bytes = AlignUp(conversion, alignment);

  for (const TensorRange& range : ranges) {
    plan.pieces.push_back({staging_of_tensor[range.tensor], out_bytes[range.tensor],
                           spec.tensors[range.tensor].section_offset});
  }
  std::sort(plan.pieces.begin(), plan.pieces.end(), [](const PlannedPiece& a, const PlannedPiece& b) {
    return a.staging_offset != b.staging_offset ? a.staging_offset < b.staging_offset
                                                : a.section_offset < b.section_offset;
  });
  std::vector<PlannedPiece> merged;
  for (const PlannedPiece& piece : plan.pieces) {
    if (!merged.empty() && merged.back().staging_offset + merged.back().bytes == piece.staging_offset &&
        merged.back().section_offset + merged.back().bytes == piece.section_offset) {
      merged.back().bytes += piece.bytes;
    } else {
      merged.push_back(piece);
    }
  }
  plan.pieces = std::move(merged);
  return plan;
}

absl::StatusOr<uint64_t> StagingBytesBound(std::span<const SectionSpec> sections,
                                           const SectionReadOptions& options) {
  uint64_t bound = 0;
  for (size_t i = 0; i < sections.size(); ++i) {
    absl::StatusOr<SectionReadPlan> plan = PlanSectionReads(sections[i], options);
    if (!plan.ok())
      return absl::Status(plan.status().code(), absl::StrCat("section ", i, ": ", plan.status().message()));
    bound = std::max(bound, plan->staging_bytes);
  }
  return bound;
}

namespace {

// A checkpoint file as it was when the prefetcher opened it.
struct OpenFile {
  std::string path;
  int fd = -1;
  bool direct = false;
  struct stat opened {};
};

bool SameTime(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

// Adds the file's name to a reader error, keeping its code class: the end of the file is OutOfRange,
// anything else DataLoss (the bytes could not be read).
absl::Status NameFile(const absl::Status& status, const std::string& path) {
  const std::string message = absl::StrCat("'", path, "': ", status.message());
  return status.code() == absl::StatusCode::kOutOfRange ? absl::OutOfRangeError(message)
                                                        : absl::DataLossError(message);
}

void ConvertToBf16(const PlannedConversion& conversion, uint8_t* base) {
  const uint8_t* source = base + conversion.source_staging_offset;
  auto* destination = reinterpret_cast<uint16_t*>(base + conversion.destination_staging_offset);
  if (conversion.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(source) % alignof(float) == 0) {
    ConvertF32ToBF16(reinterpret_cast<const float*>(source), destination, conversion.elements);
    return;
  }
  // Unaligned f32, or f16: through a small aligned f32 buffer.
  std::vector<float> chunk(std::min<uint64_t>(conversion.elements, kConversionChunk));
  const size_t element_bytes = DTypeSize(conversion.dtype);
  for (uint64_t done = 0; done < conversion.elements; done += chunk.size()) {
    const size_t count = std::min<uint64_t>(chunk.size(), conversion.elements - done);
    // ConvertToF32 supports F32 and F16 from any alignment; the dtype was checked when planning.
    ConvertToF32(conversion.dtype, source + done * element_bytes, chunk.data(), count).IgnoreError();
    ConvertF32ToBF16(chunk.data(), destination + done, count);
  }
}

}  // namespace

struct SectionPrefetcher::State {
  enum class BufferState { kFree, kReading, kReady, kAcquired };
  struct Buffer {
    std::span<uint8_t> memory;
    BufferState state = BufferState::kFree;
    int section = -1;  // Meaningful unless kFree.
  };

  SectionReadOptions options;
  std::vector<OpenFile> files;
  std::vector<SectionReadPlan> plans;
  UringReader reader;  // Used by the reader thread only.
  std::thread thread;

  mutable std::mutex mutex;
  std::condition_variable reader_wakeup;    // Work may be available, or stop.
  std::condition_variable consumer_wakeup;  // A section finished reading, or an error.
  std::vector<Buffer> buffers;
  int consumer_next = 0;  // The section the consumer is expected to acquire next.
  bool stop = false;
  absl::Status error;
  Stats stats;

  explicit State(UringReader uring) : reader(std::move(uring)) {}
  ~State() {
    for (OpenFile& file : files) {
      if (file.fd >= 0) ::close(file.fd);
    }
  }

  int SectionCount() const { return static_cast<int>(plans.size()); }
  // How far ahead of the consumer `section` is in the cyclic order (0 = the next one it will acquire).
  int Distance(int section) const {
    const int n = SectionCount();
    return ((section - consumer_next) % n + n) % n;
  }
  int FindBuffer(int section) const {
    for (size_t b = 0; b < buffers.size(); ++b) {
      if (buffers[b].state != BufferState::kFree && buffers[b].section == section) return static_cast<int>(b);
    }
    return -1;
  }

  // Under the lock: the buffer and section to read next, or false when there is nothing to do now. The
  // nearest section (in cyclic order from the consumer) not staged goes into a free buffer, or replaces a
  // staged, unacquired section further ahead; nothing is read past a section that has no buffer.
  bool ChooseWork(int* buffer, int* section) const {
    const int n = SectionCount();
    for (int d = 0; d < n; ++d) {
      const int candidate = (consumer_next + d) % n;
      if (FindBuffer(candidate) >= 0) continue;
      int victim = -1;
      int victim_distance = d;
      for (size_t b = 0; b < buffers.size(); ++b) {
        if (buffers[b].state == BufferState::kFree) {
          victim = static_cast<int>(b);
          break;
        }
        if (buffers[b].state == BufferState::kReady && Distance(buffers[b].section) > victim_distance) {
          victim = static_cast<int>(b);
          victim_distance = Distance(buffers[b].section);
        }
      }
      if (victim < 0) return false;
      *buffer = victim;
      *section = candidate;
      return true;
    }
    return false;
  }

  void ReaderLoop() {
    std::unique_lock<std::mutex> lock(mutex);
    while (true) {
      int buffer = -1, section = -1;
      reader_wakeup.wait(lock, [&] { return stop || ChooseWork(&buffer, &section); });
      if (stop) return;
      buffers[buffer].state = BufferState::kReading;
      buffers[buffer].section = section;
      const std::span<uint8_t> memory = buffers[buffer].memory;
      lock.unlock();
      double read_seconds = 0;
      const absl::Status status = ReadSection(section, memory, &read_seconds);
      lock.lock();
      stats.read_seconds += read_seconds;
      stats.bytes_read += status.ok() ? plans[section].read_bytes : 0;
      stats.max_in_flight = std::max(stats.max_in_flight, reader.max_in_flight());
      if (!status.ok()) {
        buffers[buffer].state = BufferState::kFree;
        error = status;
        consumer_wakeup.notify_all();
        return;  // Every later Acquire returns the error; nothing more is read.
      }
      ++stats.sections_read;
      buffers[buffer].state = BufferState::kReady;
      consumer_wakeup.notify_all();
    }
  }

  // On the reader thread, without the lock: the section's reads, the file checks, the conversions. The reads
  // of every file the section touches go out together (ReadRange::fd), so that a section striped over
  // several drives keeps all of them busy at once.
  absl::Status ReadSection(int section, std::span<uint8_t> memory, double* read_seconds) {
    const SectionReadPlan& plan = plans[section];
    std::vector<ReadRange> inside, tail;
    std::vector<int> inside_file, tail_file;
    // Per file touched: the lowest and highest offsets read (for fadvise and the change check).
    std::vector<std::pair<uint64_t, uint64_t>> touched(files.size(), {UINT64_MAX, 0});
    for (const PlannedRead& read : plan.reads) {
      const OpenFile& file = files[read.file];
      if (options.read_fault_for_testing) {
        if (const int fault = options.read_fault_for_testing(read.file, read.file_offset, read.length)) {
          return absl::DataLossError(absl::StrCat("'", file.path, "': read of ", read.length,
                                                  " bytes at file offset ", read.file_offset,
                                                  " failed: ", std::strerror(fault)));
        }
      }
      // Only the read that covers the file's last block may run past its end (zero-filled there).
      const bool past_end = read.file_offset + read.length > static_cast<uint64_t>(file.opened.st_size);
      (past_end ? tail : inside)
          .push_back({read.file_offset, read.length, memory.data() + read.staging_offset, file.fd});
      (past_end ? tail_file : inside_file).push_back(read.file);
      touched[read.file].first = std::min(touched[read.file].first, read.file_offset);
      touched[read.file].second = std::max(touched[read.file].second, read.file_offset + read.length);
    }
    const auto start = std::chrono::steady_clock::now();
    size_t failed = 0;
    absl::Status status = reader.ReadRanges(-1, inside, AtEof::kError, &failed);
    const std::vector<int>* failed_files = &inside_file;
    if (status.ok()) {
      status = reader.ReadRanges(-1, tail, AtEof::kZeroFill, &failed);
      failed_files = &tail_file;
    }
    *read_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!status.ok()) {
      const std::string path =
          failed < failed_files->size() ? files[(*failed_files)[failed]].path : std::string("a section file");
      return NameFile(status, path);
    }
    for (size_t f = 0; f < files.size(); ++f) {
      const auto [begin, end] = touched[f];
      if (begin > end) continue;  // Not read for this section.
      if (!files[f].direct) {
        // Buffered fallback: do not let the SSD tier fill the page cache with a model that does not fit.
        ::posix_fadvise(files[f].fd, static_cast<off_t>(begin), static_cast<off_t>(end - begin),
                        POSIX_FADV_DONTNEED);
      }
      // After the reads: bytes read from a file that changed meanwhile (a zero-filled tail after a
      // truncation, say) are never handed out.
      if (absl::Status unchanged = CheckUnchanged(files[f], section, begin, end); !unchanged.ok()) {
        return unchanged;
      }
    }
    for (const PlannedConversion& conversion : plan.conversions) ConvertToBf16(conversion, memory.data());
    return absl::OkStatus();
  }

  // The file still has the size and mtime it had at Create, and its path still names it.
  absl::Status CheckUnchanged(const OpenFile& file, int section, uint64_t begin, uint64_t end) const {
    const uint64_t data_end = std::min<uint64_t>(end, static_cast<uint64_t>(file.opened.st_size));
    struct stat now {};
    if (::fstat(file.fd, &now) != 0) {
      return absl::DataLossError(absl::StrCat("'", file.path, "': cannot stat it after reading section ",
                                              section, " at offset ", begin, ": ", std::strerror(errno)));
    }
    if (static_cast<uint64_t>(now.st_size) < data_end) {
      return absl::OutOfRangeError(absl::StrCat("'", file.path, "' now ends at offset ", now.st_size,
                                                " (it had ", file.opened.st_size,
                                                " bytes when opened): section ", section,
                                                " reads its bytes at offsets [", begin, ", ", data_end, ")"));
    }
    if (now.st_size != file.opened.st_size || !SameTime(now.st_mtim, file.opened.st_mtim)) {
      return absl::DataLossError(absl::StrCat(
          "'", file.path, "' changed since it was opened (size ", file.opened.st_size, " -> ", now.st_size,
          " bytes, mtime ", file.opened.st_mtim.tv_sec, ".", file.opened.st_mtim.tv_nsec, " -> ",
          now.st_mtim.tv_sec, ".", now.st_mtim.tv_nsec, "): section ", section, "'s bytes at offsets [",
          begin, ", ", data_end, ") are refused"));
    }
    struct stat named {};
    if (::stat(file.path.c_str(), &named) != 0) {
      return absl::DataLossError(absl::StrCat("'", file.path, "' is gone (", std::strerror(errno),
                                              ") since it was opened: section ", section,
                                              "'s bytes at offset ", begin, " are refused"));
    }
    if (named.st_dev != file.opened.st_dev || named.st_ino != file.opened.st_ino) {
      return absl::DataLossError(absl::StrCat("'", file.path, "' was replaced since it was opened",
                                              S_ISREG(named.st_mode) ? "" : " (now not a regular file)",
                                              ": section ", section, "'s bytes at offset ", begin,
                                              " are refused"));
    }
    return absl::OkStatus();
  }
};

SectionPrefetcher::SectionPrefetcher(std::unique_ptr<State> state) : state_(std::move(state)) {}

SectionPrefetcher::~SectionPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->reader_wakeup.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

absl::StatusOr<std::unique_ptr<SectionPrefetcher>> SectionPrefetcher::Create(
    std::vector<std::string> files, std::vector<SectionSpec> sections,
    std::vector<std::span<uint8_t>> staging_buffers, const SectionReadOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  std::vector<SectionReadPlan> plans;
  for (size_t s = 0; s < sections.size(); ++s) {
    absl::StatusOr<SectionReadPlan> plan = PlanSectionReads(sections[s], options);
    if (!plan.ok()) {
      return absl::Status(plan.status().code(), absl::StrCat("section ", s, ": ", plan.status().message()));
    }
    for (size_t t = 0; t < sections[s].tensors.size(); ++t) {
      if (sections[s].tensors[t].file >= static_cast<int>(files.size())) {
        return absl::InvalidArgumentError(absl::StrCat("section ", s, " tensor ", t, " names file ",
                                                       sections[s].tensors[t].file, " of ", files.size()));
      }
    }
    plans.push_back(*std::move(plan));
  }
  // Every tensor inside its file: checked once the files are open, naming the tensor.
  auto check_extents = [&sections](const std::vector<std::string>& paths,
                                   const std::vector<uint64_t>& sizes) -> absl::Status {
    for (size_t s = 0; s < sections.size(); ++s) {
      for (size_t t = 0; t < sections[s].tensors.size(); ++t) {
        const SectionTensor& tensor = sections[s].tensors[t];
        if (tensor.file_offset + tensor.file_bytes > sizes[tensor.file]) {
          return absl::OutOfRangeError(absl::StrCat(
              "'", paths[tensor.file], "' (", sizes[tensor.file], " bytes) ends before section ", s,
              " tensor ", t, " at offset ", tensor.file_offset, " (", tensor.file_bytes, " bytes)"));
        }
      }
    }
    return absl::OkStatus();
  };
  return Start(std::move(files), std::move(plans), std::move(staging_buffers), options, check_extents);
}

absl::StatusOr<std::unique_ptr<SectionPrefetcher>> SectionPrefetcher::CreateFromPlans(
    std::vector<std::string> files, std::vector<SectionReadPlan> plans,
    std::vector<std::span<uint8_t>> staging_buffers, const SectionReadOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  for (size_t s = 0; s < plans.size(); ++s) {
    const SectionReadPlan& plan = plans[s];
    for (const PlannedRead& read : plan.reads) {
      if (read.file < 0 || read.file >= static_cast<int>(files.size()) ||
          read.file_offset % options.alignment || read.length % options.alignment || read.length == 0 ||
          read.length > options.max_read_bytes || read.staging_offset % options.alignment ||
          read.staging_offset + read.length > plan.staging_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "section ", s, ": read of ", read.length, " bytes at offset ", read.file_offset, " of file ",
            read.file, " is unaligned, too long or outside the ", plan.staging_bytes, " staging bytes"));
      }
    }
    if (!plan.conversions.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("section ", s, ": planned reads convert nothing"));
    }
    for (const PlannedPiece& piece : plan.pieces) {
      if (piece.staging_offset + piece.bytes > plan.staging_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("section ", s, ": a piece of ", piece.bytes, " bytes ends past the staging bytes"));
      }
    }
  }
  // Every read inside its file: a section file shorter than its layout is truncated. (The plans move into
  // Start, so the furthest read of each file is kept here.)
  struct Furthest {
    uint64_t end = 0;
    size_t section = 0;
    PlannedRead read;
  };
  std::vector<Furthest> furthest(files.size());
  for (size_t s = 0; s < plans.size(); ++s) {
    for (const PlannedRead& read : plans[s].reads) {
      if (read.file_offset + read.length > furthest[read.file].end) {
        furthest[read.file] = {read.file_offset + read.length, s, read};
      }
    }
  }
  auto check_extents = [furthest](const std::vector<std::string>& paths,
                                  const std::vector<uint64_t>& sizes) -> absl::Status {
    for (size_t f = 0; f < paths.size(); ++f) {
      if (furthest[f].end > sizes[f]) {
        return absl::OutOfRangeError(absl::StrCat(
            "'", paths[f], "' (", sizes[f], " bytes) is truncated: section ", furthest[f].section, " reads ",
            furthest[f].read.length, " bytes at offset ", furthest[f].read.file_offset));
      }
    }
    return absl::OkStatus();
  };
  return Start(std::move(files), std::move(plans), std::move(staging_buffers), options, check_extents);
}

absl::StatusOr<std::unique_ptr<SectionPrefetcher>> SectionPrefetcher::Start(
    std::vector<std::string> files, std::vector<SectionReadPlan> plans,
    std::vector<std::span<uint8_t>> staging_buffers, const SectionReadOptions& options,
    const std::function<absl::Status(const std::vector<std::string>&, const std::vector<uint64_t>&)>&
        check_extents) {
  uint64_t staging_needed = 0;
  for (const SectionReadPlan& plan : plans) staging_needed = std::max(staging_needed, plan.staging_bytes);
  if (staging_buffers.empty()) return absl::InvalidArgumentError("SectionPrefetcher needs a staging buffer");
  for (size_t b = 0; b < staging_buffers.size(); ++b) {
    const std::span<uint8_t> buffer = staging_buffers[b];
    if (reinterpret_cast<uintptr_t>(buffer.data()) % options.alignment != 0 ||
        buffer.size() < staging_needed) {
      return absl::InvalidArgumentError(absl::StrCat("staging buffer ", b, " (", buffer.size(),
                                                     " bytes) must be aligned to ", options.alignment,
                                                     " and hold at least ", staging_needed, " bytes"));
    }
  }

  absl::StatusOr<UringReader> reader = UringReader::Create(options.queue_depth);
  if (!reader.ok()) return reader.status();
  auto state = std::make_unique<State>(*std::move(reader));
  state->options = options;
  state->plans = std::move(plans);
  state->stats.uring = state->reader.uses_io_uring();
  std::vector<uint64_t> sizes;
  for (const std::string& path : files) {
    OpenFile file;
    file.path = path;
    absl::StatusOr<int> fd = OpenForDirectRead(path, &file.direct);
    if (!fd.ok()) return fd.status();
    file.fd = *fd;
    state->files.push_back(file);  // Closed by ~State from here on.
    if (::fstat(file.fd, &state->files.back().opened) != 0) {
      return absl::InternalError(absl::StrCat("cannot stat '", path, "': ", std::strerror(errno)));
    }
    if (!S_ISREG(state->files.back().opened.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
    }
    sizes.push_back(static_cast<uint64_t>(state->files.back().opened.st_size));
    state->stats.direct = state->stats.direct && file.direct;
  }
  if (absl::Status extents = check_extents(files, sizes); !extents.ok()) return extents;
  for (std::span<uint8_t> buffer : staging_buffers) state->buffers.push_back({buffer});

  std::unique_ptr<SectionPrefetcher> prefetcher(new SectionPrefetcher(std::move(state)));
  State* raw = prefetcher->state_.get();
  prefetcher->state_->thread = std::thread([raw] { raw->ReaderLoop(); });
  return prefetcher;
}

absl::StatusOr<std::vector<StagedPiece>> SectionPrefetcher::Acquire(int section) {
  State& state = *state_;
  std::unique_lock<std::mutex> lock(state.mutex);
  if (!state.error.ok()) return state.error;
  if (section < 0 || section >= state.SectionCount()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Acquire(", section, ") outside the ", state.SectionCount(), " sections"));
  }
  int buffer = state.FindBuffer(section);
  if (buffer < 0) {
    const bool all_held = std::all_of(state.buffers.begin(), state.buffers.end(), [](const State::Buffer& b) {
      return b.state == State::BufferState::kAcquired;
    });
    if (all_held) {
      return absl::FailedPreconditionError(absl::StrCat("Acquire(", section, ") while all ",
                                                        state.buffers.size(),
                                                        " staging buffers are acquired: Release one first"));
    }
    state.consumer_next = section;  // Read it next: out of order, or the reader fell behind.
    state.reader_wakeup.notify_all();
  }
  const auto start = std::chrono::steady_clock::now();
  state.consumer_wakeup.wait(lock, [&] {
    buffer = state.FindBuffer(section);
    return !state.error.ok() || (buffer >= 0 && state.buffers[buffer].state != State::BufferState::kReading);
  });
  state.stats.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!state.error.ok()) return state.error;

  state.buffers[buffer].state = State::BufferState::kAcquired;
  state.consumer_next = (section + 1) % state.SectionCount();
  state.reader_wakeup.notify_all();
  const uint8_t* base = state.buffers[buffer].memory.data();
  std::vector<StagedPiece> pieces;
  for (const PlannedPiece& piece : state.plans[section].pieces) {
    pieces.push_back({base + piece.staging_offset, piece.bytes, piece.section_offset});
  }
  return pieces;
}

void SectionPrefetcher::Release(int section) {
  State& state = *state_;
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    const int buffer = state.FindBuffer(section);
    if (buffer < 0 || state.buffers[buffer].state != State::BufferState::kAcquired) return;
    // Still staged: acquiring it again before the buffer is reused costs no read (all sections may fit).
    state.buffers[buffer].state = State::BufferState::kReady;
  }
  state.reader_wakeup.notify_all();
}

SectionPrefetcher::Stats SectionPrefetcher::stats() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->stats;
}

int SectionPrefetcher::section_count() const { return state_->SectionCount(); }

uint64_t SectionPrefetcher::staging_bytes_needed() const {
  uint64_t needed = 0;
  for (const SectionReadPlan& plan : state_->plans) needed = std::max(needed, plan.staging_bytes);
  return needed;
}

}  // namespace ringmoe::io
