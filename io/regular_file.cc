#include "io/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringmoe::io {
namespace {

// Debian's Abseil has its own absl::string_view, which does not convert from std::string_view.
absl::string_view Av(std::string_view text) { return absl::string_view(text.data(), text.size()); }

absl::Status ErrnoError(int error, std::string_view what, const std::string& path) {
  std::string message = absl::StrCat(Av(what), " ", path, ": ", std::strerror(error));
  if (error == ENOENT || error == ENOTDIR) return absl::NotFoundError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

absl::Status NotRegular(const std::string& path, unsigned mode) {
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is ", Av(FileKindName(mode)), ", not a regular file: refused (it could block or never end)"));
}

}  // namespace

std::string_view FileKindName(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

absl::StatusOr<int> OpenRegularFileForReading(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return ErrnoError(errno, "cannot open", path);
  if (!S_ISREG(info.st_mode)) return NotRegular(path, info.st_mode);
  // O_NONBLOCK: should a FIFO have taken the file's place since the stat, the open still returns at once.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoError(errno, "cannot open", path);
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const int error = errno;
    const unsigned mode = info.st_mode;
    ::close(fd);
    return S_ISREG(mode) ? ErrnoError(error, "cannot stat", path) : NotRegular(path, mode);
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes) {
  absl::StatusOr<int> fd = OpenRegularFileForReading(path);
  if (!fd.ok()) return fd.status();
  struct stat info;
  if (::fstat(*fd, &info) != 0) {
    const int error = errno;
    ::close(*fd);
    return ErrnoError(error, "cannot stat", path);
  }
  if (info.st_size > max_bytes) {
    ::close(*fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is ", info.st_size, " bytes; more than the ",
                                                   max_bytes, " such a file may have"));
  }
  std::string text;
  text.resize(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (true) {
    if (done == text.size()) {
      // The file may have grown since fstat: read on, within the limit.
      if (static_cast<int64_t>(text.size()) >= max_bytes) {
        char probe;
        const ssize_t more = ::read(*fd, &probe, 1);
        ::close(*fd);
        if (more > 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, " grew past the ", max_bytes, " bytes such a file may have"));
        }
        return text;
      }
      text.resize(std::min<size_t>(static_cast<size_t>(max_bytes), text.size() + 65536));
    }
    const ssize_t got = ::read(*fd, text.data() + done, text.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      ::close(*fd);
      return ErrnoError(error, "cannot read", path);
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  ::close(*fd);
  text.resize(done);
  return text;
}

absl::Status CheckJsonNesting(std::string_view json, int max_depth, std::string_view source) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat(Av(source), ": JSON nested deeper than ", max_depth, " levels (at byte ", i, ")"));
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return absl::OkStatus();
}

}  // namespace ringmoe::io
