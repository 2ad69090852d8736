// The output file of `ringmoe run`, written so that an interrupted job loses nothing it finished.
//
// Each result line is appended the moment its request is final (completion order, matched to its request by
// custom_id as in OpenAI's batch output), with one write(2) of the whole line and its newline: a kill, even
// kill -9, leaves complete lines and at most a cut last line, never a torn line in the middle. A background
// thread calls fdatasync at least every 2 seconds while lines arrive, and Close syncs the rest, so a crash of
// the machine loses at most the last 2 seconds.
//
// Before anything is written, Open decides what to do with what the file already holds:
//   kRefuse     a non-empty file is an error: nothing is overwritten by accident;
//   kResume     its lines are kept (a cut last line is dropped) and IsAnswered says which requests they
//               answer, so the job runs only the rest and appends;
//   kOverwrite  it is emptied, but only in BeginWriting, once the job is ready to run.
// The file is locked (flock) for the life of the object, so two jobs never write one output, and it may not
// be the job's input file (through symlinks and hard links alike).
//
// Threading: Append and Close from one thread at a time (the engine's scheduler thread, then the caller);
// error() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {

enum class ExistingOutput { kRefuse, kResume, kOverwrite };

// What the complete lines of an existing output answer, held compactly (16 bytes a line, whatever the ids'
// length): the 64-bit hash of each line's custom_id and where the line starts. A lookup reads the few lines
// whose hash matches back from the output, so a hash collision never counts as an answer.
struct FinishedLines {
  struct Line {
    uint64_t id_hash;
    int64_t offset;  // where the line starts in the output
    bool operator<(const Line& other) const {
      return id_hash != other.id_hash ? id_hash < other.id_hash : offset < other.offset;
    }
  };
  std::vector<Line> lines;     // sorted
  int64_t complete_bytes = 0;  // The file's bytes up to the end of its last complete line.
  int complete_lines = 0;
  bool dropped_torn_line = false;  // A last line without a newline or not JSON: cut off before appending.
};

// The hash FinishedLines keeps of a custom_id.
uint64_t FinishedIdHash(std::string_view custom_id);

// Reads back the output line that starts at `offset` (without its newline).
using OutputLineAt = std::function<absl::StatusOr<std::string>(int64_t offset)>;
// The line reader for an output held in memory (`text` must outlive it).
OutputLineAt OutputLineInText(std::string_view text);

// Reads the lines of an output file's text. The last line is dropped when it has no newline or is not valid
// JSON (a write cut short by a kill); any other line that is not a JSON object with a string custom_id is an
// error naming `path` and the line, since the file is then not an output this program wrote.
absl::StatusOr<FinishedLines> ScanFinishedLines(std::string_view text, std::string_view path);

// Whether the input line `line_number` with `custom_id` already has an answer in `finished`. A custom_id
// answers its input line; a custom_id that the input repeats (`id_repeated`: the later lines are duplicate
// errors) is matched by the input line number at the end of the output line's "id" as well
// ("batch_req_<run>_<line>"; an id without one matches any line), so the first line's result and the
// duplicates' error lines are told apart. Fails only when the output cannot be read back.
absl::StatusOr<bool> IsAnswered(const FinishedLines& finished, const OutputLineAt& line_at,
                                std::string_view custom_id, int line_number, bool id_repeated);

// IsAnswered for each of `lines`, a custom_id counted as repeated when `lines` holds it more than once.
absl::StatusOr<std::vector<bool>> AnsweredLines(const std::vector<BatchLine>& lines,
                                                const FinishedLines& finished, const OutputLineAt& line_at);

class BatchOutputFile {
 public:
  // Opens (creating when missing) `path` for appending and locks it. Fails, with nothing changed in the
  // file, when it cannot be opened (FailedPrecondition), when it is `input_path` (InvalidArgument), when
  // another process holds its lock (Unavailable), when `mode` is kRefuse and it is not empty (AlreadyExists,
  // naming --resume and --overwrite), or when kResume finds lines this program did not write
  // (InvalidArgument).
  static absl::StatusOr<std::unique_ptr<BatchOutputFile>> Open(const std::string& path,
                                                               const std::string& input_path,
                                                               ExistingOutput mode);
  ~BatchOutputFile();

  BatchOutputFile(const BatchOutputFile&) = delete;
  BatchOutputFile& operator=(const BatchOutputFile&) = delete;

  // The lines kept from before (empty unless kResume).
  const FinishedLines& finished() const { return finished_; }
  // Reads those lines back (for IsAnswered). Valid for the life of this object, before and after
  // BeginWriting; thread-compatible (pread).
  OutputLineAt KeptLineReader() const;
  // IsAnswered over this file's kept lines.
  absl::StatusOr<bool> IsAnswered(std::string_view custom_id, int line_number, bool id_repeated) const;
  const std::string& path() const { return path_; }

  // Cuts the file to what is kept (nothing for kOverwrite, the complete lines for kResume) and starts the
  // periodic sync. Called once the job is about to produce its first line, so a job that fails to start
  // leaves the file as it was.
  absl::Status BeginWriting();
  // Appends `line` and a newline with one write(2). The first failure (the OS's reason in its message) is
  // kept, later lines are dropped, and error() and Close return it; a line the failure cut is cut off again,
  // so the file always ends with a whole line. The caller stops the job when error() is set.
  void Append(std::string_view line);
  // The first error of any write or of the periodic sync so far. Any thread.
  absl::Status error();
  int64_t appended_lines() const { return appended_lines_; }
  // Stops the periodic sync, syncs what is left and returns the first error of any write or sync.
  absl::Status Close();

 private:
  BatchOutputFile(int fd, std::string path, bool regular_file, int64_t keep_bytes, FinishedLines finished);
  void SyncLoop();
  void RecordError(absl::Status status);

  int fd_;
  std::string path_;
  bool regular_file_;  // False for a pipe or a terminal (--output /dev/stdout): nothing to cut or sync.
  int64_t keep_bytes_;
  FinishedLines finished_;
  int64_t appended_lines_ = 0;
  bool closed_ = false;

  std::mutex mutex_;  // Guards error_ and stop_syncing_.
  std::condition_variable wake_syncer_;
  bool stop_syncing_ = false;
  absl::Status error_;
  std::atomic<bool> unsynced_{false};
  std::thread syncer_;
};

}  // namespace ringmoe
