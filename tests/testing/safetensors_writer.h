// Test helpers that write safetensors files (valid ones, and ones whose header lies) into a temporary
// directory. Header-only so that any test can include it: #include "tests/testing/safetensors_writer.h".
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "io/dtype.h"
#include "nlohmann/json.hpp"

namespace ringmoe::testing {

// One tensor to write. `dtype` is the safetensors spelling ("F32", "BF16", ...); `bytes` is the raw data.
struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/ringmoe_test_XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code error;
    if (!path_.empty()) std::filesystem::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty when the directory could not be created.
  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

inline bool WriteFile(const std::string& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  return static_cast<bool>(out);
}

// Raw bytes of a vector of trivially copyable values (e.g. floats, or uint16_t BF16 bit patterns).
template <typename T>
std::vector<uint8_t> RawBytes(const std::vector<T>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

inline std::vector<uint8_t> F32Bytes(const std::vector<float>& values) { return RawBytes(values); }
inline std::vector<uint8_t> BF16Bytes(const std::vector<float>& values) {
  std::vector<uint16_t> bits;
  for (const float value : values) bits.push_back(io::F32ToBF16(value));
  return RawBytes(bits);
}
inline std::vector<uint8_t> F16Bytes(const std::vector<float>& values) {
  std::vector<uint16_t> bits;
  for (const float value : values) bits.push_back(io::F32ToF16(value));
  return RawBytes(bits);
}

// The JSON header for `tensors` packed back to back in order (what safetensors writers produce).
inline std::string SafetensorsHeaderJson(const std::vector<TensorSpec>& tensors,
                                         const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& tensor : tensors) {
    header[tensor.name] = {{"dtype", tensor.dtype},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  return header.dump();
}

// A whole file: 8-byte little-endian length, `header_json` padded with spaces to a multiple of 8 (as the
// reference writer does), then `data`. Use it directly to write headers that lie.
inline std::string SafetensorsFileWithHeader(std::string_view header_json, std::string_view data) {
  std::string header(header_json);
  while (header.size() % 8 != 0) header.push_back(' ');
  std::string file(8, '\0');
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  file += header;
  file.append(data.data(), data.size());
  return file;
}

// A valid file holding `tensors`.
inline std::string SafetensorsFile(const std::vector<TensorSpec>& tensors,
                                   const std::map<std::string, std::string>& metadata = {}) {
  std::string data;
  for (const TensorSpec& tensor : tensors) data.append(tensor.bytes.begin(), tensor.bytes.end());
  return SafetensorsFileWithHeader(SafetensorsHeaderJson(tensors, metadata), data);
}

inline bool WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  return WriteFile(path, SafetensorsFile(tensors, metadata));
}

// model.safetensors.index.json for a sharded checkpoint: tensor name -> shard file name.
inline bool WriteSafetensorsIndex(const std::string& path,
                                  const std::map<std::string, std::string>& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  return WriteFile(path, index.dump(2));
}

}  // namespace ringmoe::testing
