#include "io/mapped_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "io/regular_file.h"

namespace ringmoe::io {
namespace {

absl::Status ErrnoError(int error, const char* what, const std::string& path) {
  std::string message = absl::StrCat(what, " '", path, "': ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  if (error == ENOMEM) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

// The mappings the SIGBUS handler knows: fixed slots of lock-free atomics, as a handler may read nothing
// else. A slot is free when its begin is 0; its path is written before begin is published (release).
constexpr int kMaxMappings = 1024;
struct MappingSlot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  char path[512];
};
MappingSlot mapping_slots[kMaxMappings];
std::mutex mapping_slots_mutex;  // registration only (never taken by the handler)

void WriteStderr(const char* text) {
  ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void OnBusError(int signal_number, siginfo_t* info, void*) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (MappingSlot& slot : mapping_slots) {
    const uintptr_t begin = slot.begin.load(std::memory_order_acquire);
    if (begin == 0 || address < begin || address >= slot.end.load(std::memory_order_relaxed)) continue;
    WriteStderr("\nringmoe: the model file ");
    WriteStderr(slot.path);
    WriteStderr(
        " was truncated or replaced in place while the job read it (a read past its new end); "
        "stopping. Results already written are kept: restore the model and rerun with --resume.\n");
    ::_exit(1);
  }
  // Not ours: the default action (a core dump), as if no handler were installed.
  ::signal(signal_number, SIG_DFL);
}

void InstallBusErrorHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_sigaction = OnBusError;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, nullptr);
  });
}

void RegisterMapping(const uint8_t* data, size_t size, const std::string& path) {
  std::lock_guard<std::mutex> lock(mapping_slots_mutex);
  for (MappingSlot& slot : mapping_slots) {
    if (slot.begin.load(std::memory_order_relaxed) != 0) continue;
    std::snprintf(slot.path, sizeof(slot.path), "%s", path.c_str());
    slot.end.store(reinterpret_cast<uintptr_t>(data) + size, std::memory_order_relaxed);
    slot.begin.store(reinterpret_cast<uintptr_t>(data), std::memory_order_release);
    return;
  }
  // More mappings than slots: this one faults as SIGBUS without the message; nothing else changes.
}

void UnregisterMapping(const uint8_t* data) {
  std::lock_guard<std::mutex> lock(mapping_slots_mutex);
  for (MappingSlot& slot : mapping_slots) {
    if (slot.begin.load(std::memory_order_relaxed) == reinterpret_cast<uintptr_t>(data)) {
      slot.begin.store(0, std::memory_order_release);
      return;
    }
  }
}

int64_t ModificationNanoseconds(const struct stat& info) {
  return static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
}

}  // namespace

absl::StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  // Only regular files: a FIFO would block the open, a device would map what it likes.
  absl::StatusOr<int> opened = OpenRegularFileForReading(path);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    return ErrnoError(error, "cannot stat", path);
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  const size_t size = static_cast<size_t>(info.st_size);
  if (size == 0) return MappedFile(path, nullptr, 0, fd, ModificationNanoseconds(info));
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error = errno;
  if (data == MAP_FAILED) {
    ::close(fd);
    return ErrnoError(error, "cannot mmap", path);
  }
  InstallBusErrorHandler();
  RegisterMapping(static_cast<const uint8_t*>(data), size, path);
  return MappedFile(path, static_cast<const uint8_t*>(data), size, fd, ModificationNanoseconds(info));
}

absl::Status MappedFile::CheckUnchanged() const {
  if (fd_ < 0) return absl::OkStatus();
  struct stat info;
  if (::fstat(fd_, &info) != 0) return ErrnoError(errno, "cannot stat", path_);
  if (static_cast<size_t>(info.st_size) != size_ || ModificationNanoseconds(info) != mtime_ns_) {
    return absl::DataLossError(absl::StrCat(
        "the model file ", path_, " changed while the job ran (", size_, " bytes when loaded, ", info.st_size,
        " now", ModificationNanoseconds(info) != mtime_ns_ ? ", modified since" : "",
        "): its weights can no longer be trusted; restore it and rerun (--resume keeps the results so far)"));
  }
  return absl::OkStatus();
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      mtime_ns_(other.mtime_ns_) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
    mtime_ns_ = other.mtime_ns_;
  }
  return *this;
}

MappedFile::~MappedFile() { Unmap(); }

void MappedFile::Unmap() {
  if (data_ != nullptr) {
    UnregisterMapping(data_);
    ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

void MappedFile::ReleaseResidentPages() const {
  // Advice only: a failure leaves the pages resident, which costs memory but not correctness.
  if (data_ != nullptr && size_ > 0) (void)::madvise(const_cast<uint8_t*>(data_), size_, MADV_DONTNEED);
}

void MappedFile::ReleaseResidentPages(const void* data, size_t bytes) const {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  assert(reinterpret_cast<const uint8_t*>(data) >= data_ &&
         reinterpret_cast<const uint8_t*>(data) + bytes <= data_ + size_);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace ringmoe::io
