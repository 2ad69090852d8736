#include "runtime/tokenizer/file_reader.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "io/regular_file.h"

namespace ringmoe::tokenizer_internal {
namespace {

constexpr size_t kSpareBytes = 128;
constexpr size_t kMaxInflatedBytes = size_t{2} << 30;

absl::StatusOr<std::string> ReadRaw(const std::string& path) {
  // Only a regular file: a FIFO would block the open forever, a device would never end.
  absl::StatusOr<int> fd = io::OpenRegularFileForReading(path);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<FILE, int (*)(FILE*)> file(::fdopen(*fd, "rb"), &std::fclose);
  if (file == nullptr) {
    const int error = errno;
    ::close(*fd);
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(error)));
  }
  std::string data;
  // Spare capacity past the end lets a JSON parser that reads ahead (simdjson) use the buffer without a copy.
  if (std::fseek(file.get(), 0, SEEK_END) == 0) {
    const long size = std::ftell(file.get());
    if (size > 0) data.reserve(static_cast<size_t>(size) + kSpareBytes);
    std::fseek(file.get(), 0, SEEK_SET);
  }
  char buffer[1 << 16];
  size_t count;
  while ((count = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) data.append(buffer, count);
  if (std::ferror(file.get())) return absl::DataLossError(absl::StrCat("read error on ", path));
  return data;
}

absl::StatusOr<std::string> Inflate(const std::string& compressed, const std::string& path) {
  z_stream stream;
  std::memset(&stream, 0, sizeof(stream));
  if (inflateInit2(&stream, 15 + 32) != Z_OK) return absl::InternalError("zlib inflateInit2 failed");
  std::string out;
  // The gzip trailer holds the uncompressed size modulo 2^32: a good first guess for the buffer.
  size_t guess = compressed.size() * 4;
  if (compressed.size() >= 4) {
    uint32_t isize;
    std::memcpy(&isize, compressed.data() + compressed.size() - 4, 4);
    // Trust it only within deflate's maximum ratio (about 1032:1): a corrupt trailer must not allocate
    // gigabytes.
    if (isize > 0 && isize <= compressed.size() * 1032) guess = isize;
  }
  out.reserve(guess + 1 + kSpareBytes);
  out.resize(guess + 1);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  size_t produced = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (produced == out.size()) {
      // A tokenizer.json is tens of MB; a gzip bomb must not take the machine's memory.
      if (out.size() >= kMaxInflatedBytes) {
        inflateEnd(&stream);
        return absl::InvalidArgumentError(
            absl::StrCat(path, " inflates to more than ", kMaxInflatedBytes, " bytes: refused"));
      }
      out.resize(std::min(out.size() * 2, kMaxInflatedBytes));
    }
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    stream.avail_out = static_cast<uInt>(out.size() - produced);
    rc = inflate(&stream, Z_NO_FLUSH);
    produced = out.size() - stream.avail_out;
    if (rc == Z_STREAM_END && stream.avail_in > 0) {
      // Concatenated gzip members: continue with the next one.
      if (inflateReset(&stream) != Z_OK) break;
      rc = Z_OK;
      continue;
    }
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&stream);
      return absl::DataLossError(absl::StrCat("corrupt gzip data in ", path, " (zlib error ", rc, ")"));
    }
    if (rc == Z_OK && stream.avail_in == 0 && stream.avail_out > 0) {
      inflateEnd(&stream);
      return absl::DataLossError(absl::StrCat("truncated gzip data in ", path));
    }
  }
  inflateEnd(&stream);
  out.resize(produced);
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFileMaybeGzip(const std::string& path) {
  absl::StatusOr<std::string> raw = ReadRaw(path);
  if (!raw.ok()) return raw.status();
  if (raw->size() >= 2 && static_cast<uint8_t>((*raw)[0]) == 0x1F &&
      static_cast<uint8_t>((*raw)[1]) == 0x8B) {
    return Inflate(*raw, path);
  }
  return raw;
}

}  // namespace ringmoe::tokenizer_internal
