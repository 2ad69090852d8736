#include "runtime/frontend/batch_reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/regular_file.h"

namespace ringmoe {
namespace {

constexpr size_t kReadBlockBytes = size_t{1} << 20;

bool IsBlank(std::string_view line) { return line.find_first_not_of(" \t\r\f\v") == std::string_view::npos; }

uint64_t IdHash(std::string_view custom_id) { return absl::Hash<std::string_view>{}(custom_id); }

struct FileState {
  int64_t size_bytes = 0;
  int64_t modified_ns = 0;
};

absl::StatusOr<FileState> StatOpened(int fd, const std::string& path) {
  struct stat status;
  if (::fstat(fd, &status) != 0) {
    return absl::DataLossError(absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  return FileState{static_cast<int64_t>(status.st_size),
                   static_cast<int64_t>(status.st_mtim.tv_sec) * 1000000000 + status.st_mtim.tv_nsec};
}

absl::Status ReadError(const std::string& path, const BatchLineStream& stream) {
  return absl::DataLossError(absl::StrCat("error reading ", path, " after line ", stream.line_number(), ": ",
                                          std::strerror(stream.read_errno())));
}

// Closes a descriptor when it goes out of scope.
struct ClosedAtExit {
  int fd;
  ~ClosedAtExit() { ::close(fd); }
};

}  // namespace

ReadBytes ReadFromDescriptor(int fd) {
  return [fd](char* buffer, size_t size) -> int64_t {
    for (;;) {
      const ssize_t got = ::read(fd, buffer, size);
      if (got >= 0 || errno != EINTR) return got;
    }
  };
}

BatchLineStream::BatchLineStream(ReadBytes read) : read_(std::move(read)), buffer_(kReadBlockBytes, '\0') {}

bool BatchLineStream::Refill() {
  if (read_errno_ != 0) return false;
  const int64_t got = read_(buffer_.data(), buffer_.size());
  if (got < 0) {
    read_errno_ = errno != 0 ? errno : EIO;
    return false;
  }
  filled_ = static_cast<size_t>(got);
  position_ = 0;
  return filled_ > 0;
}

bool BatchLineStream::NextPhysicalLine(size_t* length) {
  text_.clear();
  *length = 0;
  bool saw_bytes = false;
  for (;;) {
    if (position_ == filled_ && !Refill()) return saw_bytes && read_errno_ == 0;
    saw_bytes = true;
    const char* start = buffer_.data() + position_;
    const size_t available = filled_ - position_;
    const void* newline = std::memchr(start, '\n', available);
    const size_t take = newline ? static_cast<size_t>(static_cast<const char*>(newline) - start) : available;
    // A line longer than the limit is never held whole: only its length is counted.
    if (*length + take <= kMaxBatchLineBytes) {
      text_.append(start, take);
    } else {
      text_.clear();
      text_.shrink_to_fit();
    }
    *length += take;
    position_ += take;
    if (newline) {
      ++position_;
      return true;
    }
  }
}

bool BatchLineStream::Next(BatchLine* line, bool* custom_id_known) {
  size_t length = 0;
  while (NextPhysicalLine(&length)) {
    ++line_number_;
    std::string_view view = text_;
    if (line_number_ == 1 && view.substr(0, 3) == "\xEF\xBB\xBF") view.remove_prefix(3);  // UTF-8 BOM
    if (!view.empty() && view.back() == '\r') view.remove_suffix(1);
    if (length > kMaxBatchLineBytes) {
      *line = BatchLine();
      line->line_number = line_number_;
      line->custom_id = absl::StrCat("line-", line_number_);
      line->request = absl::InvalidArgumentError(
          absl::StrCat("line ", line_number_, ": ", length, " bytes is longer than the ", kMaxBatchLineBytes,
                       "-byte limit for one line"));
      *custom_id_known = false;
      // The limit's worth of buffer is given back: the next line starts small again.
      if (text_.capacity() > kReadBlockBytes) std::string().swap(text_);
      return true;
    }
    if (IsBlank(view)) continue;
    *line = ParseBatchLine(view, line_number_, custom_id_known);
    if (text_.capacity() > kReadBlockBytes) std::string().swap(text_);
    return true;
  }
  return false;
}

absl::StatusOr<CustomIdScan> ScanCustomIds(const std::string& path) {
  absl::StatusOr<int> fd = io::OpenRegularFileForReading(path);
  if (!fd.ok()) return fd.status();
  ClosedAtExit closer{*fd};
  CustomIdScan scan;
  absl::StatusOr<FileState> state = StatOpened(*fd, path);
  if (!state.ok()) return state.status();
  scan.size_bytes = state->size_bytes;
  scan.modified_ns = state->modified_ns;

  // First pass: the hash of every line's custom_id (the fallback "line-<N>" too, since a later run's --resume
  // matches by it); a hash seen before marks a candidate. Only the hashes are held.
  absl::flat_hash_set<uint64_t> candidates;
  {
    absl::flat_hash_set<uint64_t> seen;
    BatchLineStream stream(ReadFromDescriptor(*fd));
    BatchLine line;
    bool known = false;
    while (stream.Next(&line, &known)) {
      ++scan.non_blank_lines;
      const uint64_t hash = IdHash(line.custom_id);
      if (!seen.insert(hash).second) candidates.insert(hash);
    }
    if (stream.read_error()) return ReadError(path, stream);
  }
  if (candidates.empty()) return scan;

  // Second pass, only when hashes repeat: the exact ids of the candidates' lines, in file order (a hash
  // collision between two different ids is then no duplicate).
  if (::lseek(*fd, 0, SEEK_SET) != 0) {
    return absl::DataLossError(absl::StrCat("cannot reread ", path, ": ", std::strerror(errno)));
  }
  struct Site {
    int line_number;
    bool known;
  };
  absl::flat_hash_map<std::string, std::vector<Site>> sites;
  BatchLineStream stream(ReadFromDescriptor(*fd));
  BatchLine line;
  bool known = false;
  int64_t lines = 0;
  while (stream.Next(&line, &known)) {
    ++lines;
    if (candidates.contains(IdHash(line.custom_id)))
      sites[line.custom_id].push_back({line.line_number, known});
  }
  if (stream.read_error()) return ReadError(path, stream);
  if (lines != scan.non_blank_lines) {
    return absl::FailedPreconditionError(absl::StrCat(path, " changed while it was read (",
                                                      scan.non_blank_lines, " lines, then ", lines, ")"));
  }
  for (const auto& [id, id_sites] : sites) {
    if (id_sites.size() < 2) continue;
    int first_known = 0;
    for (const Site& site : id_sites) {
      scan.repeated_id_lines.insert(site.line_number);
      if (!site.known) continue;
      if (first_known == 0) {
        first_known = site.line_number;
      } else {
        scan.first_line_of_duplicate.emplace(site.line_number, first_known);
      }
    }
  }
  return scan;
}

absl::StatusOr<std::unique_ptr<BatchFileReader>> BatchFileReader::Open(const std::string& path,
                                                                       const CustomIdScan& scan) {
  absl::StatusOr<int> fd = io::OpenRegularFileForReading(path);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<FileState> state = StatOpened(*fd, path);
  if (!state.ok() || state->size_bytes != scan.size_bytes || state->modified_ns != scan.modified_ns) {
    ::close(*fd);
    if (!state.ok()) return state.status();
    return absl::FailedPreconditionError(absl::StrCat(
        "the input ", path, " changed after it was first read (", scan.size_bytes, " bytes, now ",
        state->size_bytes, "); a job reads its input again as it runs, so leave it unchanged"));
  }
  return std::unique_ptr<BatchFileReader>(new BatchFileReader(*fd, path, scan));
}

BatchFileReader::BatchFileReader(int fd, std::string path, const CustomIdScan& scan)
    : fd_(fd), path_(std::move(path)), scan_(scan), stream_(ReadFromDescriptor(fd)) {}

BatchFileReader::~BatchFileReader() { ::close(fd_); }

bool BatchFileReader::Next(BatchLine* line, int64_t* index) {
  if (!status_.ok()) return false;
  bool known = false;
  if (!stream_.Next(line, &known)) {
    if (stream_.read_error()) {
      status_ = ReadError(path_, stream_);
    } else if (index_ != scan_.non_blank_lines) {
      status_ = absl::FailedPreconditionError(
          absl::StrCat("the input ", path_, " changed while the job ran: it had ", scan_.non_blank_lines,
                       " request lines and now has ", index_,
                       "; a job reads its input again as it runs, so "
                       "leave it unchanged"));
    }
    return false;
  }
  if (index_ >= scan_.non_blank_lines) {
    status_ = absl::FailedPreconditionError(
        absl::StrCat("the input ", path_, " changed while the job ran: it had ", scan_.non_blank_lines,
                     " request lines and now has more; a job reads its input again as it runs, so leave it "
                     "unchanged"));
    return false;
  }
  if (known && line->request.ok()) {
    if (auto it = scan_.first_line_of_duplicate.find(line->line_number);
        it != scan_.first_line_of_duplicate.end())
      line->request = DuplicateIdError(*line, it->second);
  }
  *index = index_++;
  return true;
}

}  // namespace ringmoe
