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
//   kResume     its lines are kept (a cut last line is dropped) and FinishedLines says which requests they
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

// What the complete lines of an existing output answer.
struct FinishedLines {
  // custom_id -> the input line number of each output line with that custom_id, read from its "id"
  // ("batch_req_<run>_<line>"); -1 when the id is not of that form.
  absl::flat_hash_map<std::string, std::vector<int>> input_lines_of_id;
  int64_t complete_bytes = 0;  // The file's bytes up to the end of its last complete line.
  int complete_lines = 0;
  bool dropped_torn_line = false;  // A last line without a newline or not JSON: cut off before appending.
};

// Reads the lines of an output file's text. The last line is dropped when it has no newline or is not valid
// JSON (a write cut short by a kill); any other line that is not a JSON object with a string custom_id is an
// error naming `path` and the line, since the file is then not an output this program wrote.
absl::StatusOr<FinishedLines> ScanFinishedLines(std::string_view text, std::string_view path);

// Which of `lines` already have an answer in `finished`. A custom_id answers its input line; a custom_id that
// the input repeats (the later lines are duplicate errors) is matched by input line number as well, so the
// first line's result and the duplicates' error lines are told apart.
std::vector<bool> AnsweredLines(const std::vector<BatchLine>& lines, const FinishedLines& finished);

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
