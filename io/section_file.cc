#include "io/section_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "io/uring_reader.h"

namespace ringmoe::io {
namespace {

constexpr absl::string_view kMagic = "ringmoe section file v1";
// Headers larger than this are refused as corrupt (a checkpoint of thousands of shards stays far below).
constexpr uint64_t kMaxHeaderBytes = 64 << 20;

uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

bool IsPowerOfTwo(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

std::string Hex(uint64_t value) { return absl::StrFormat("%016x", value); }

// The header's text, without its checksum line.
std::string HeaderBody(const SectionFileIdentity& identity, const StripedLayout& layout, uint64_t data_offset,
                       const std::string& set_id, int file) {
  std::string text = absl::StrCat(kMagic, "\n");
  absl::StrAppend(&text, "data_offset ", data_offset, "\n");
  absl::StrAppend(&text, "set ", set_id, "\n");
  absl::StrAppend(&text, "file ", file, " of ", layout.files, "\n");
  absl::StrAppend(&text, "stripe_bytes ", layout.stripe_bytes, "\n");
  absl::StrAppend(&text, "alignment ", layout.alignment, "\n");
  absl::StrAppend(&text, "content ", identity.content, "\n");
  absl::StrAppend(&text, "plan_hash ", Hex(identity.plan_hash), "\n");
  absl::StrAppend(&text, "model_dir ", identity.model_dir, "\n");
  absl::StrAppend(&text, "section_bytes ", absl::StrJoin(identity.section_bytes, ","), "\n");
  for (const SectionSourceFile& source : identity.sources) {
    absl::StrAppend(&text, "source ", source.size, " ", source.mtime_ns, " ", source.path, "\n");
  }
  return text;
}

std::string Header(const SectionFileIdentity& identity, const StripedLayout& layout, uint64_t data_offset,
                   const std::string& set_id, int file) {
  std::string body = HeaderBody(identity, layout, data_offset, set_id, file);
  absl::StrAppend(&body, "checksum ", Hex(StableHash64(body)), "\n");
  return body;
}

// What a header says, parsed.
struct ParsedHeader {
  uint64_t data_offset = 0;
  std::string set_id;
  std::string body;  // Everything before "checksum", to compare with the header this run would write.
};

absl::StatusOr<ParsedHeader> ParseHeader(const std::string& path, absl::string_view text) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("section file '", path, "' is corrupt: ", why));
  };
  const size_t end = text.find('\0');
  if (end != absl::string_view::npos) text = text.substr(0, end);
  if (text.substr(0, kMagic.size()) != kMagic) return corrupt("it does not start with a section file header");
  const size_t checksum_at = text.rfind("checksum ");
  if (checksum_at == absl::string_view::npos || checksum_at == 0 || text[checksum_at - 1] != '\n') {
    return corrupt("its header has no checksum line");
  }
  ParsedHeader header;
  header.body = std::string(text.substr(0, checksum_at));
  absl::string_view stated = text.substr(checksum_at + 9);
  if (!stated.empty() && stated.back() == '\n') stated.remove_suffix(1);
  if (stated != Hex(StableHash64(header.body))) return corrupt("its header's checksum does not match");
  for (absl::string_view line : absl::StrSplit(header.body, '\n')) {
    if (absl::ConsumePrefix(&line, "data_offset ")) {
      if (!absl::SimpleAtoi(line, &header.data_offset)) return corrupt("bad data_offset");
    } else if (absl::ConsumePrefix(&line, "set ")) {
      header.set_id = std::string(line);
    }
  }
  if (header.data_offset == 0 || header.data_offset > kMaxHeaderBytes) return corrupt("bad data_offset");
  return header;
}

// The first line where two headers differ, for the log ("what is stale").
std::string FirstDifference(absl::string_view expected, absl::string_view found) {
  std::vector<absl::string_view> a = absl::StrSplit(expected, '\n');
  std::vector<absl::string_view> b = absl::StrSplit(found, '\n');
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const absl::string_view want = i < a.size() ? a[i] : "(nothing)";
    const absl::string_view have = i < b.size() ? b[i] : "(nothing)";
    if (want != have) return absl::StrCat("'", have, "' where this run has '", want, "'");
  }
  return "no difference";
}

std::string ErrnoText(int error) { return std::strerror(error); }

// Reads `bytes` from the start of `fd` (buffered: the header is small, read once).
absl::StatusOr<std::string> ReadPrefix(int fd, const std::string& path, uint64_t bytes) {
  std::string text(bytes, '\0');
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd, text.data() + done, bytes - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      return absl::DataLossError(
          absl::StrCat("cannot read section file '", path, "' at offset ", done, ": ", ErrnoText(errno)));
    }
    if (got == 0) break;
    done += static_cast<uint64_t>(got);
  }
  text.resize(done);
  return text;
}

struct DirInfo {
  std::string path;
  struct stat info {};
};

absl::StatusOr<std::vector<DirInfo>> CheckDirs(std::span<const std::string> dirs,
                                               const std::string& model_dir) {
  if (dirs.empty()) return absl::InvalidArgumentError("no --ssd-dir given for the section files");
  struct stat model {};
  const bool have_model = !model_dir.empty() && ::stat(model_dir.c_str(), &model) == 0;
  std::error_code ignored;
  const std::filesystem::path model_real =
      have_model ? std::filesystem::weakly_canonical(model_dir, ignored) : std::filesystem::path();
  std::vector<DirInfo> out;
  for (const std::string& dir : dirs) {
    DirInfo info{dir};
    if (::stat(dir.c_str(), &info.info) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--ssd-dir '", dir, "': ", ErrnoText(errno)));
    }
    if (!S_ISDIR(info.info.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("--ssd-dir '", dir, "' is not a directory"));
    }
    if (have_model) {
      const std::filesystem::path real = std::filesystem::weakly_canonical(dir, ignored);
      const std::string model_prefix = model_real.string() + "/";
      if ((info.info.st_dev == model.st_dev && info.info.st_ino == model.st_ino) ||
          real.string().rfind(model_prefix, 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--ssd-dir '", dir, "' is inside the model's folder '", model_dir,
            "': section files are never written there (give a directory of its own on each drive)"));
      }
    }
    for (const DirInfo& earlier : out) {
      if (earlier.info.st_dev == info.info.st_dev && earlier.info.st_ino == info.info.st_ino) {
        return absl::InvalidArgumentError(
            absl::StrCat("--ssd-dir '", dir, "' and '", earlier.path, "' are the same directory"));
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::string RandomHex() {
  std::random_device device;
  const uint64_t value = (uint64_t{device()} << 32) ^ device() ^ static_cast<uint64_t>(::getpid());
  return Hex(value);
}

// Temporary files being written: removed unless committed.
struct TempFiles {
  std::vector<std::string> paths;
  std::vector<int> fds;
  ~TempFiles() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    for (const std::string& path : paths) ::unlink(path.c_str());
  }
};

bool IsDiskFull(int error) { return error == ENOSPC || error == EDQUOT || error == EFBIG; }

absl::Status WriteError(int error, const std::string& dir, const std::string& path, uint64_t offset,
                        uint64_t bytes, uint64_t needed) {
  if (IsDiskFull(error)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("--ssd-dir '", dir, "' is full (", ErrnoText(error), ") writing ", bytes,
                     " bytes at offset ", offset, " of the section file '", path, "', which needs ", needed,
                     " bytes there; nothing was kept: free space or give more --ssd-dir drives"));
  }
  return absl::DataLossError(absl::StrCat("cannot write ", bytes, " bytes at offset ", offset,
                                          " of the section file '", path, "': ", ErrnoText(error)));
}

absl::Status PwriteAll(int fd, const uint8_t* data, uint64_t bytes, uint64_t offset, int* error) {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t wrote = ::pwrite(fd, data + done, bytes - done, static_cast<off_t>(offset + done));
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) {
      *error = wrote < 0 ? errno : ENOSPC;
      return absl::UnknownError("write");
    }
    done += static_cast<uint64_t>(wrote);
  }
  return absl::OkStatus();
}

struct AlignedDeleter {
  void operator()(uint8_t* ptr) const { FreeAligned(ptr); }
};

// Writes stripes on one thread per file, so that every drive writes at once while the caller fills the next
// stripes. Each file has `depth` stripe buffers: Acquire waits for a free one, Submit queues it.
// Threading: Acquire, Submit and Finish from one thread (the caller's); the writers are internal.
class StripeWriters {
 public:
  StripeWriters(const std::vector<int>& fds, uint64_t stripe_bytes, uint64_t alignment, int depth,
                std::function<int(int, uint64_t, uint64_t)> fault)
      : fault_(std::move(fault)), files_(fds.size()) {
    for (size_t f = 0; f < fds.size(); ++f) {
      files_[f].fd = fds[f];
      for (int b = 0; b < depth; ++b) {
        auto* memory = static_cast<uint8_t*>(AllocateAligned(stripe_bytes, alignment));
        if (memory == nullptr) {
          allocated_ = false;
          continue;
        }
        owned_.emplace_back(memory);
        files_[f].free.push_back(memory);
      }
    }
    if (!allocated_) return;
    for (size_t f = 0; f < files_.size(); ++f) threads_.emplace_back([this, f] { Run(static_cast<int>(f)); });
  }
  ~StripeWriters() { (void)Finish(); }
  bool allocated() const { return allocated_; }

  // A free buffer of `file`'s, or nullptr once a write failed.
  uint8_t* Acquire(int file) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return failed_.error != 0 || !files_[file].free.empty(); });
    if (failed_.error != 0) return nullptr;
    uint8_t* buffer = files_[file].free.back();
    files_[file].free.pop_back();
    return buffer;
  }
  void Submit(int file, uint8_t* buffer, uint64_t offset, uint64_t length) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      files_[file].queue.push_back({buffer, offset, length});
    }
    work_.notify_all();
  }
  // Waits for every queued write; the first failure: its file, offset, length and errno (0: none).
  struct Failure {
    int error = 0;
    int file = 0;
    uint64_t offset = 0, length = 0;
  };
  Failure Finish() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    work_.notify_all();
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
    return failed_;
  }

 private:
  struct Job {
    uint8_t* buffer;
    uint64_t offset, length;
  };
  struct File {
    int fd = -1;
    std::vector<uint8_t*> free;
    std::deque<Job> queue;
  };

  void Run(int file) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      work_.wait(lock, [&] { return stop_ || failed_.error != 0 || !files_[file].queue.empty(); });
      if (failed_.error != 0 || files_[file].queue.empty()) return;  // Failed, or stopped with nothing left.
      const Job job = files_[file].queue.front();
      files_[file].queue.pop_front();
      const int fd = files_[file].fd;
      lock.unlock();
      int error = fault_ ? fault_(file, job.offset, job.length) : 0;
      if (error == 0) (void)PwriteAll(fd, job.buffer, job.length, job.offset, &error);
      lock.lock();
      files_[file].free.push_back(job.buffer);
      if (error != 0 && failed_.error == 0) failed_ = {error, file, job.offset, job.length};
      done_.notify_all();
      if (error != 0) work_.notify_all();
    }
  }

  std::function<int(int, uint64_t, uint64_t)> fault_;
  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::vector<File> files_;
  std::vector<std::unique_ptr<uint8_t, AlignedDeleter>> owned_;
  std::vector<std::thread> threads_;
  Failure failed_;
  bool stop_ = false;
  bool allocated_ = true;
};

absl::Status LayOut(const std::vector<DirInfo>& dirs, const std::vector<std::string>& finals,
                    const SectionFileIdentity& identity, const StripedLayout& layout, const SectionFill& fill,
                    const SectionFileOptions& options) {
  const std::string set_id = RandomHex();
  const int files = layout.files;
  std::vector<std::string> headers(files);
  uint64_t data_offset = layout.alignment;
  for (int pass = 0; pass < 2; ++pass) {  // The offset's digits are part of the header.
    for (int f = 0; f < files; ++f) {
      headers[f] = Header(identity, layout, data_offset, set_id, f);
      data_offset = std::max(data_offset, AlignUp(headers[f].size() + 1, layout.alignment));
    }
  }
  TempFiles temps;
  for (int f = 0; f < files; ++f) {
    const std::string temp = absl::StrCat(
        dirs[f].path, "/.", std::filesystem::path(finals[f]).filename().string(), ".tmp-", RandomHex());
    const int flags = O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC;
    int fd = ::open(temp.c_str(), flags | O_DIRECT, 0644);
    if (fd < 0 && errno == EINVAL) fd = ::open(temp.c_str(), flags, 0644);  // No O_DIRECT on this filesystem.
    if (fd < 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create a section file in --ssd-dir '", dirs[f].path, "': ", ErrnoText(errno)));
    }
    temps.paths.push_back(temp);
    temps.fds.push_back(fd);
    const uint64_t needed = data_offset + layout.file_data_bytes[f];
    // Reserve the space first: a disk too small fails here, before any writing. The fallocate system
    // call rather than posix_fallocate, which glibc emulates by writing every block where it is missing.
    if (::fallocate(fd, 0, 0, static_cast<off_t>(needed)) != 0) {
      const int error = errno;
      if (error != EOPNOTSUPP && error != ENOSYS && error != EINVAL) {
        return WriteError(error, dirs[f].path, temp, 0, needed, needed);
      }
    }
  }
  if (options.log) {
    options.log(absl::StrCat("laying out the SSD sections (", layout.logical_bytes, " bytes, ",
                             layout.section_bytes.size(), " sections) over ", files, " section file",
                             files > 1 ? "s" : "", " in ", layout.stripe_bytes,
                             "-byte stripes: ", absl::StrJoin(finals, ", ")));
  }
  const uint64_t stripes = (layout.logical_bytes + layout.stripe_bytes - 1) / layout.stripe_bytes;
  {
    StripeWriters writers(temps.fds, layout.stripe_bytes, layout.alignment, 2,
                          options.write_fault_for_testing);
    if (!writers.allocated()) return absl::ResourceExhaustedError("cannot allocate the stripe buffers");
    size_t section = 0;
    absl::Status filled;
    for (uint64_t k = 0; k < stripes && filled.ok(); ++k) {
      const int f = static_cast<int>(k % static_cast<uint64_t>(files));
      uint8_t* buffer = writers.Acquire(f);
      if (buffer == nullptr) break;  // A write failed: Finish says which.
      const uint64_t begin = k * layout.stripe_bytes;
      const uint64_t length = std::min(layout.stripe_bytes, layout.logical_bytes - begin);
      std::memset(buffer, 0, length);
      // Sections overlapping [begin, begin + length): from the first not yet behind.
      while (section < layout.section_bytes.size() &&
             layout.section_offsets[section] + layout.section_bytes[section] <= begin) {
        ++section;
      }
      for (size_t s = section;
           s < layout.section_bytes.size() && layout.section_offsets[s] < begin + length && filled.ok();
           ++s) {
        const uint64_t from = std::max(begin, layout.section_offsets[s]);
        const uint64_t to = std::min(begin + length, layout.section_offsets[s] + layout.section_bytes[s]);
        if (from >= to) continue;
        filled = fill(static_cast<int>(s), from - layout.section_offsets[s],
                      std::span<uint8_t>(buffer + (from - begin), to - from));
      }
      const uint64_t offset = data_offset + (k / static_cast<uint64_t>(files)) * layout.stripe_bytes;
      writers.Submit(f, buffer, offset, filled.ok() ? length : 0);
    }
    const StripeWriters::Failure failure = writers.Finish();
    if (!filled.ok()) return filled;
    if (failure.error != 0) {
      const int f = failure.file;
      return WriteError(failure.error, dirs[f].path, temps.paths[f], failure.offset, failure.length,
                        data_offset + layout.file_data_bytes[f]);
    }
  }
  std::unique_ptr<uint8_t, AlignedDeleter> buffer(
      static_cast<uint8_t*>(AllocateAligned(data_offset, layout.alignment)));
  if (buffer == nullptr) return absl::ResourceExhaustedError("cannot allocate the header buffer");
  for (int f = 0; f < files; ++f) {
    std::memset(buffer.get(), 0, data_offset);
    std::memcpy(buffer.get(), headers[f].data(), headers[f].size());
    int error = options.write_fault_for_testing ? options.write_fault_for_testing(f, 0, data_offset) : 0;
    if (error == 0) (void)PwriteAll(temps.fds[f], buffer.get(), data_offset, 0, &error);
    if (error == 0 && ::fdatasync(temps.fds[f]) != 0) error = errno;
    if (error != 0) {
      return WriteError(error, dirs[f].path, temps.paths[f], 0, data_offset,
                        data_offset + layout.file_data_bytes[f]);
    }
  }
  // Every file complete: give them their names (each rename replaces a stale file atomically).
  for (int f = 0; f < files; ++f) {
    ::close(temps.fds[f]);
    temps.fds[f] = -1;
    if (::rename(temps.paths[f].c_str(), finals[f].c_str()) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot rename '", temps.paths[f], "' to '", finals[f], "': ", ErrnoText(errno)));
    }
    temps.paths[f].clear();
    const int dir_fd = ::open(dirs[f].path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
  }
  std::erase(temps.paths, std::string());
  return absl::OkStatus();
}

}  // namespace

uint64_t StableHash64(std::string_view bytes, uint64_t seed) {
  uint64_t hash = seed;
  for (const char c : bytes) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

absl::StatusOr<std::vector<SectionSourceFile>> StatSourceFiles(std::span<const std::string> paths) {
  std::vector<SectionSourceFile> sources;
  for (const std::string& path : paths) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot stat '", path, "': ", ErrnoText(errno)));
    }
    sources.push_back({path, static_cast<uint64_t>(info.st_size),
                       int64_t{info.st_mtim.tv_sec} * 1000000000 + info.st_mtim.tv_nsec});
  }
  return sources;
}

absl::StatusOr<StripedLayout> MakeStripedLayout(std::span<const uint64_t> section_bytes, int files,
                                                const SectionFileOptions& options) {
  if (files < 1) return absl::InvalidArgumentError("section files need at least one directory");
  if (!IsPowerOfTwo(options.alignment) || options.alignment < 512) {
    return absl::InvalidArgumentError(
        absl::StrCat("section file alignment ", options.alignment, " is not a power of two of at least 512"));
  }
  if (options.stripe_bytes == 0 || options.stripe_bytes % options.alignment != 0 ||
      options.stripe_bytes > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("section file stripe of ", options.stripe_bytes,
                                                   " bytes is not a multiple of ", options.alignment,
                                                   " up to 1 GiB"));
  }
  StripedLayout layout;
  layout.files = files;
  layout.stripe_bytes = options.stripe_bytes;
  layout.alignment = options.alignment;
  uint64_t offset = 0;
  for (const uint64_t bytes : section_bytes) {
    if (bytes == 0 || bytes > (uint64_t{1} << 50)) {
      return absl::InvalidArgumentError(absl::StrCat("a section of ", bytes, " bytes cannot be laid out"));
    }
    layout.section_bytes.push_back(bytes);
    layout.section_offsets.push_back(offset);
    offset += AlignUp(bytes, options.alignment);
  }
  layout.logical_bytes = offset;
  layout.file_data_bytes.assign(files, 0);
  const uint64_t full = layout.logical_bytes / layout.stripe_bytes;
  const uint64_t rest = layout.logical_bytes % layout.stripe_bytes;
  const auto count = static_cast<uint64_t>(files);
  for (int f = 0; f < files; ++f) {
    const auto index = static_cast<uint64_t>(f);
    layout.file_data_bytes[f] = (full / count + (index < full % count ? 1 : 0)) * layout.stripe_bytes +
                                (index == full % count ? rest : 0);
  }
  return layout;
}

SectionReadPlan PlanStripedReads(const StripedLayout& layout, int section, uint64_t data_offset,
                                 uint64_t max_read_bytes) {
  SectionReadPlan plan;
  const uint64_t start = layout.section_offsets[section];
  const uint64_t end = start + AlignUp(layout.section_bytes[section], layout.alignment);
  const uint64_t max_read = std::max(layout.alignment, max_read_bytes / layout.alignment * layout.alignment);
  const auto count = static_cast<uint64_t>(layout.files);
  for (uint64_t pos = start; pos < end;) {
    const uint64_t stripe = pos / layout.stripe_bytes;
    const uint64_t stripe_end = std::min(end, (stripe + 1) * layout.stripe_bytes);
    const uint64_t length = std::min(stripe_end - pos, max_read);
    const uint64_t file_offset =
        data_offset + (stripe / count) * layout.stripe_bytes + (pos - stripe * layout.stripe_bytes);
    plan.reads.push_back({static_cast<int>(stripe % count), file_offset, length, pos - start});
    plan.read_bytes += length;
    pos += length;
  }
  plan.staging_bytes = end - start;
  plan.pieces.push_back({0, layout.section_bytes[section], 0});
  return plan;
}

std::vector<std::string> SectionFilePaths(std::span<const std::string> dirs, const std::string& model_dir) {
  std::error_code ignored;
  const std::string model = std::filesystem::weakly_canonical(model_dir, ignored).string();
  const std::string name = absl::StrCat("ringmoe-", Hex(StableHash64(model)).substr(0, 12), ".sections.");
  std::vector<std::string> paths;
  for (size_t f = 0; f < dirs.size(); ++f) paths.push_back(absl::StrCat(dirs[f], "/", name, f));
  return paths;
}

absl::StatusOr<SectionFileSet> OpenSectionFiles(std::span<const std::string> dirs,
                                                const SectionFileIdentity& identity,
                                                const SectionFileOptions& options, uint64_t max_read_bytes) {
  absl::StatusOr<StripedLayout> layout =
      MakeStripedLayout(identity.section_bytes, static_cast<int>(dirs.size()), options);
  if (!layout.ok()) return layout.status();
  SectionFileSet set;
  set.paths = SectionFilePaths(dirs, identity.model_dir);
  set.layout = *layout;
  std::string set_id;
  for (size_t f = 0; f < set.paths.size(); ++f) {
    const std::string& path = set.paths[f];
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0) {
      if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no section file '", path, "' yet"));
      return absl::PermissionDeniedError(absl::StrCat("cannot stat '", path, "': ", ErrnoText(errno)));
    }
    if (!S_ISREG(info.st_mode)) {
      return absl::DataLossError(absl::StrCat("section file '", path, "' is not a regular file"));
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      return absl::PermissionDeniedError(absl::StrCat("cannot open '", path, "': ", ErrnoText(errno)));
    absl::StatusOr<std::string> prefix = ReadPrefix(fd, path, options.alignment);
    absl::StatusOr<ParsedHeader> header =
        prefix.ok() ? ParseHeader(path, *prefix) : absl::StatusOr<ParsedHeader>(prefix.status());
    if (header.ok() && header->data_offset > prefix->size()) {
      prefix = ReadPrefix(fd, path, header->data_offset);
      header = prefix.ok() ? ParseHeader(path, *prefix) : absl::StatusOr<ParsedHeader>(prefix.status());
    }
    ::close(fd);
    if (!header.ok()) return header.status();
    const std::string expected =
        HeaderBody(identity, *layout, header->data_offset, header->set_id, static_cast<int>(f));
    if (header->body != expected) {
      return absl::FailedPreconditionError(absl::StrCat("section file '", path, "' is stale: it has ",
                                                        FirstDifference(expected, header->body)));
    }
    if (f == 0) {
      set_id = header->set_id;
      set.data_offset = header->data_offset;
    } else if (header->set_id != set_id || header->data_offset != set.data_offset) {
      return absl::DataLossError(absl::StrCat("section file '", path, "' belongs to another layout than '",
                                              set.paths[0], "' (set ", header->set_id, " vs ", set_id, ")"));
    }
    const uint64_t needed = header->data_offset + layout->file_data_bytes[f];
    if (static_cast<uint64_t>(info.st_size) != needed) {
      return absl::OutOfRangeError(absl::StrCat("section file '", path, "' is truncated or padded: it has ",
                                                info.st_size, " bytes, its layout ", needed));
    }
  }
  for (size_t s = 0; s < layout->section_bytes.size(); ++s) {
    set.plans.push_back(PlanStripedReads(*layout, static_cast<int>(s), set.data_offset, max_read_bytes));
  }
  return set;
}

absl::StatusOr<SectionFileSet> EnsureSectionFiles(std::span<const std::string> dirs,
                                                  const SectionFileIdentity& identity,
                                                  const SectionFill& fill, const SectionFileOptions& options,
                                                  uint64_t max_read_bytes) {
  absl::StatusOr<std::vector<DirInfo>> checked = CheckDirs(dirs, identity.model_dir);
  if (!checked.ok()) return checked.status();
  for (const SectionSourceFile& source : identity.sources) {
    if (source.path.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint file name with a newline: '", source.path, "'"));
    }
  }
  if (identity.content.find('\n') != std::string::npos ||
      identity.model_dir.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("section file identity with a newline");
  }
  absl::StatusOr<SectionFileSet> existing = OpenSectionFiles(dirs, identity, options, max_read_bytes);
  if (existing.ok()) return existing;
  const absl::StatusCode code = existing.status().code();
  if (code != absl::StatusCode::kNotFound && code != absl::StatusCode::kFailedPrecondition &&
      code != absl::StatusCode::kDataLoss && code != absl::StatusCode::kOutOfRange) {
    return existing.status();
  }
  if (code != absl::StatusCode::kNotFound && options.log) {
    options.log(absl::StrCat(existing.status().message(), "; rebuilding the section files"));
  }
  absl::StatusOr<StripedLayout> layout =
      MakeStripedLayout(identity.section_bytes, static_cast<int>(dirs.size()), options);
  if (!layout.ok()) return layout.status();
  const std::vector<std::string> finals = SectionFilePaths(dirs, identity.model_dir);
  if (absl::Status written = LayOut(*checked, finals, identity, *layout, fill, options); !written.ok()) {
    return written;
  }
  absl::StatusOr<SectionFileSet> set = OpenSectionFiles(dirs, identity, options, max_read_bytes);
  if (!set.ok()) {
    return absl::InternalError(
        absl::StrCat("the section files just laid out do not validate: ", set.status().message()));
  }
  set->laid_out = true;
  return set;
}

}  // namespace ringmoe::io
