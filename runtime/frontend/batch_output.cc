#include "runtime/frontend/batch_output.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "runtime/frontend/job_signals.h"

namespace ringmoe {
namespace {

// Debian's Abseil keeps its own absl::string_view, which does not convert from std::string_view.
absl::string_view Av(std::string_view text) { return absl::string_view(text.data(), text.size()); }

constexpr auto kSyncInterval = std::chrono::seconds(2);

std::string ErrnoText(int error) { return std::strerror(error); }

// The input line number at the end of a "batch_req_<run>_<line>" id, or -1.
int InputLineOfId(std::string_view id) {
  if (id.rfind("batch_req_", 0) != 0) return -1;
  const size_t underscore = id.rfind('_');
  int line = -1;
  const char* begin = id.data() + underscore + 1;
  const char* end = id.data() + id.size();
  auto [at, error] = std::from_chars(begin, end, line);
  if (error != std::errc() || at != end || begin == end || line < 1) return -1;
  return line;
}

bool IsBlank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// An output line's custom_id, and the input line number at the end of its "id" (-1 without one).
struct OutputLineIds {
  std::string custom_id;
  int input_line = -1;
};

// The ids of `line` when it is a JSON object with a string custom_id.
std::optional<OutputLineIds> ReadOutputLine(simdjson::dom::parser& parser, std::string_view line) {
  simdjson::dom::element root;
  if (parser.parse(line.data(), line.size()).get(root) != simdjson::SUCCESS) return std::nullopt;
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) return std::nullopt;
  std::string_view custom_id, id;
  if (object.at_key("custom_id").get_string().get(custom_id) != simdjson::SUCCESS) return std::nullopt;
  OutputLineIds ids{std::string(custom_id), -1};
  if (object.at_key("id").get_string().get(id) == simdjson::SUCCESS) ids.input_line = InputLineOfId(id);
  return ids;
}

// Feeds an output file's lines one at a time. A line that is not a JSON object with a string custom_id may
// only be the last one (a write a kill cut short); that is decided once the next line or the end arrives.
class FinishedLineScanner {
 public:
  explicit FinishedLineScanner(std::string_view path) : path_(path) {}

  // One complete line, without its newline; `end_offset` is the file offset just past its newline.
  absl::Status AddCompleteLine(std::string_view line, int64_t end_offset) {
    ++line_number_;
    if (bad_line_) return BadLineError();  // the bad line was not the last one
    if (IsBlank(line)) {
      finished_.complete_bytes = end_offset;
      return absl::OkStatus();
    }
    std::optional<OutputLineIds> read = ReadOutputLine(parser_, line);
    if (!read) {
      bad_line_ = line_number_;
      return absl::OkStatus();
    }
    finished_.lines.push_back(
        {FinishedIdHash(read->custom_id), end_offset - static_cast<int64_t>(line.size()) - 1});
    finished_.complete_bytes = end_offset;
    ++finished_.complete_lines;
    return absl::OkStatus();
  }

  // The end of the file, with the bytes after the last newline (a cut write when not empty).
  absl::StatusOr<FinishedLines> Finish(std::string_view trailing) {
    if (bad_line_ && !trailing.empty()) {
      ++line_number_;
      return BadLineError();
    }
    finished_.dropped_torn_line = bad_line_.has_value() || !trailing.empty();
    std::sort(finished_.lines.begin(), finished_.lines.end());
    finished_.lines.shrink_to_fit();
    return std::move(finished_);
  }

 private:
  absl::Status BadLineError() const {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(path_), " line ", *bad_line_,
        " is not a JSON object with a string custom_id, and more lines follow it: ",
        "the file is not an output of ringmoe run, so --resume cannot tell which requests it answers"));
  }

  std::string_view path_;
  simdjson::dom::parser parser_;
  FinishedLines finished_;
  int line_number_ = 0;
  std::optional<int> bad_line_;
};

// Reads the whole file behind `fd` through `scanner`, a block at a time (an output may be far larger than
// the memory one should spend on it).
absl::StatusOr<FinishedLines> ScanFile(int fd, const std::string& path) {
  FinishedLineScanner scanner(path);
  std::string pending;  // bytes of a line whose newline has not been read yet
  std::vector<char> block(size_t{1} << 20);
  int64_t offset = 0;  // file offset of pending's first byte
  while (true) {
    const ssize_t got =
        ::pread(fd, block.data(), block.size(), offset + static_cast<int64_t>(pending.size()));
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat("cannot read ", path, ": ", ErrnoText(errno)));
    }
    if (got == 0) break;
    pending.append(block.data(), static_cast<size_t>(got));
    size_t start = 0;
    for (size_t newline = pending.find('\n'); newline != std::string::npos;
         newline = pending.find('\n', start)) {
      const int64_t end_offset = offset + static_cast<int64_t>(newline) + 1;
      if (absl::Status status =
              scanner.AddCompleteLine(std::string_view(pending).substr(start, newline - start), end_offset);
          !status.ok()) {
        return status;
      }
      start = newline + 1;
    }
    offset += static_cast<int64_t>(start);
    pending.erase(0, start);
  }
  return scanner.Finish(pending);
}

}  // namespace

absl::StatusOr<FinishedLines> ScanFinishedLines(std::string_view text, std::string_view path) {
  FinishedLineScanner scanner(path);
  size_t start = 0;
  for (size_t newline = text.find('\n'); newline != std::string_view::npos;
       newline = text.find('\n', start)) {
    if (absl::Status status =
            scanner.AddCompleteLine(text.substr(start, newline - start), static_cast<int64_t>(newline) + 1);
        !status.ok()) {
      return status;
    }
    start = newline + 1;
  }
  return scanner.Finish(text.substr(start));
}

uint64_t FinishedIdHash(std::string_view custom_id) { return absl::Hash<std::string_view>{}(custom_id); }

OutputLineAt OutputLineInText(std::string_view text) {
  return [text](int64_t offset) -> absl::StatusOr<std::string> {
    if (offset < 0 || static_cast<size_t>(offset) > text.size()) return absl::OutOfRangeError("no such line");
    const std::string_view rest = text.substr(static_cast<size_t>(offset));
    return std::string(rest.substr(0, rest.find('\n')));
  };
}

absl::StatusOr<bool> IsAnswered(const FinishedLines& finished, const OutputLineAt& line_at,
                                std::string_view custom_id, int line_number, bool id_repeated) {
  const uint64_t hash = FinishedIdHash(custom_id);
  auto it = std::lower_bound(finished.lines.begin(), finished.lines.end(),
                             FinishedLines::Line{hash, std::numeric_limits<int64_t>::min()});
  thread_local simdjson::dom::parser parser;
  for (; it != finished.lines.end() && it->id_hash == hash; ++it) {
    // The hash matched: the line itself decides (another id with the same hash is no answer).
    absl::StatusOr<std::string> text = line_at(it->offset);
    if (!text.ok()) return text.status();
    std::optional<OutputLineIds> ids = ReadOutputLine(parser, *text);
    if (!ids || ids->custom_id != custom_id) continue;
    // A repeated custom_id: this line is answered when an output line names it, or names no line at all.
    if (!id_repeated || ids->input_line == line_number || ids->input_line < 0) return true;
  }
  return false;
}

absl::StatusOr<std::vector<bool>> AnsweredLines(const std::vector<BatchLine>& lines,
                                                const FinishedLines& finished, const OutputLineAt& line_at) {
  absl::flat_hash_map<std::string, int> lines_with_id;
  for (const BatchLine& line : lines) ++lines_with_id[line.custom_id];
  std::vector<bool> answered(lines.size(), false);
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StatusOr<bool> is_answered = IsAnswered(finished, line_at, lines[i].custom_id, lines[i].line_number,
                                                  lines_with_id[lines[i].custom_id] > 1);
    if (!is_answered.ok()) return is_answered.status();
    answered[i] = *is_answered;
  }
  return answered;
}

OutputLineAt BatchOutputFile::KeptLineReader() const {
  return [fd = fd_, limit = finished_.complete_bytes,
          path = path_](int64_t offset) -> absl::StatusOr<std::string> {
    std::string line;
    char block[4096];
    while (offset < limit) {
      const ssize_t got =
          ::pread(fd, block, static_cast<size_t>(std::min<int64_t>(sizeof(block), limit - offset)), offset);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        return absl::DataLossError(absl::StrCat("cannot read back the output ", path, ": ",
                                                got < 0 ? ErrnoText(errno) : std::string("it is shorter")));
      }
      const std::string_view piece(block, static_cast<size_t>(got));
      const size_t newline = piece.find('\n');
      line.append(piece.substr(0, newline));
      if (newline != std::string_view::npos) break;
      offset += got;
    }
    return line;
  };
}

absl::StatusOr<bool> BatchOutputFile::IsAnswered(std::string_view custom_id, int line_number,
                                                 bool id_repeated) const {
  if (finished_.lines.empty()) return false;
  return ringmoe::IsAnswered(finished_, KeptLineReader(), custom_id, line_number, id_repeated);
}

absl::StatusOr<std::unique_ptr<BatchOutputFile>> BatchOutputFile::Open(const std::string& path,
                                                                       const std::string& input_path,
                                                                       ExistingOutput mode) {
  // No O_TRUNC: whatever the file holds stays until BeginWriting, once every check has passed.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the output ", path, ": ", ErrnoText(errno)));
  }
  auto fail = [fd](absl::Status status) {
    ::close(fd);
    return status;
  };
  struct stat output_stat, input_stat;
  if (::fstat(fd, &output_stat) != 0) {
    return fail(absl::InternalError(absl::StrCat("cannot stat the output ", path, ": ", ErrnoText(errno))));
  }
  // stat follows symlinks and a hard link shares the inode, so any second name of the input is caught.
  if (::stat(input_path.c_str(), &input_stat) == 0 && input_stat.st_dev == output_stat.st_dev &&
      input_stat.st_ino == output_stat.st_ino) {
    return fail(absl::InvalidArgumentError(absl::StrCat("--output ", path, " is the input file ", input_path,
                                                        " (the same file under another name or link): the "
                                                        "results would overwrite the requests")));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return fail(absl::UnavailableError(absl::StrCat(
          "the output ", path, " is locked by another process (another ringmoe run writing it?); ",
          "two jobs cannot write one output")));
    }
    return fail(absl::InternalError(absl::StrCat("cannot lock the output ", path, ": ", ErrnoText(errno))));
  }
  // Its size now that it is ours: a writer that held the lock until a moment ago may have grown it.
  if (::fstat(fd, &output_stat) != 0) {
    return fail(absl::InternalError(absl::StrCat("cannot stat the output ", path, ": ", ErrnoText(errno))));
  }
  const bool regular_file = S_ISREG(output_stat.st_mode);
  const int64_t size = regular_file ? static_cast<int64_t>(output_stat.st_size) : 0;
  FinishedLines finished;
  int64_t keep_bytes = 0;
  switch (mode) {
    case ExistingOutput::kRefuse:
      if (size > 0) {
        return fail(absl::AlreadyExistsError(
            absl::StrCat("the output ", path, " already holds ", size,
                         " bytes; pass --resume to run only the requests it ",
                         "does not answer yet and append their results, or --overwrite to replace it")));
      }
      break;
    case ExistingOutput::kResume:
      if (size > 0) {
        absl::StatusOr<FinishedLines> scanned = ScanFile(fd, path);
        if (!scanned.ok()) return fail(scanned.status());
        finished = std::move(*scanned);
        keep_bytes = finished.complete_bytes;
      }
      break;
    case ExistingOutput::kOverwrite:
      break;
  }
  return std::unique_ptr<BatchOutputFile>(
      new BatchOutputFile(fd, path, regular_file, keep_bytes, std::move(finished)));
}

BatchOutputFile::BatchOutputFile(int fd, std::string path, bool regular_file, int64_t keep_bytes,
                                 FinishedLines finished)
    : fd_(fd),
      path_(std::move(path)),
      regular_file_(regular_file),
      keep_bytes_(keep_bytes),
      finished_(std::move(finished)) {}

BatchOutputFile::~BatchOutputFile() {
  (void)Close();
  ::close(fd_);  // also releases the lock
}

absl::Status BatchOutputFile::BeginWriting() {
  if (regular_file_ && ::ftruncate(fd_, keep_bytes_) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot cut the output ", path_, " to ", keep_bytes_, " bytes: ", ErrnoText(errno)));
  }
  if (regular_file_) syncer_ = std::thread([this] { SyncLoop(); });
  return absl::OkStatus();
}

void BatchOutputFile::RecordError(absl::Status status) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_.ok()) error_ = std::move(status);
}

void BatchOutputFile::Append(std::string_view line) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_.ok()) return;
  }
  std::string whole;
  whole.reserve(line.size() + 1);
  whole.append(line);
  whole.push_back('\n');
  // One write(2) for the whole line: O_APPEND puts it at the end in one piece. A regular file takes it all at
  // once unless the disk fills or a fatal signal arrives, so the loop only finishes a short write.
  // The guard keeps a second SIGINT/SIGTERM from ending the process inside this write (job_signals.h).
  OutputWriteGuard guard;
  size_t written = 0;
  while (written < whole.size()) {
    const ssize_t wrote = ::write(fd_, whole.data() + written, whole.size() - written);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      // A disk that filled mid-line leaves part of it: cut it off again (O_APPEND left the offset at its
      // end), so the file still ends with a whole line.
      if (written > 0 && regular_file_) {
        const off_t end = ::lseek(fd_, 0, SEEK_CUR);
        if (end >= static_cast<off_t>(written)) (void)!::ftruncate(fd_, end - static_cast<off_t>(written));
      }
      RecordError(
          absl::DataLossError(absl::StrCat("writing the output ", path_, " failed after ", appended_lines_,
                                           " lines of this run: ", ErrnoText(error))));
      return;
    }
    written += static_cast<size_t>(wrote);
  }
  ++appended_lines_;
  unsynced_.store(true, std::memory_order_release);
}

absl::Status BatchOutputFile::error() {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void BatchOutputFile::SyncLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_syncing_) {
    wake_syncer_.wait_for(lock, kSyncInterval, [this] { return stop_syncing_; });
    if (!unsynced_.exchange(false, std::memory_order_acq_rel)) continue;
    lock.unlock();  // the scheduler thread's writes must not wait for the disk
    const bool synced = ::fdatasync(fd_) == 0;
    const int error = errno;
    lock.lock();
    if (!synced && error_.ok()) {
      error_ = absl::DataLossError(absl::StrCat("syncing the output ", path_, " failed: ", ErrnoText(error)));
    }
  }
}

absl::Status BatchOutputFile::Close() {
  if (closed_) return absl::OkStatus();
  closed_ = true;
  if (syncer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_syncing_ = true;
    }
    wake_syncer_.notify_all();
    syncer_.join();
  }
  if (regular_file_ && ::fdatasync(fd_) != 0) {
    RecordError(
        absl::DataLossError(absl::StrCat("syncing the output ", path_, " failed: ", ErrnoText(errno))));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

}  // namespace ringmoe
