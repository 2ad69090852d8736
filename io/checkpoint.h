// Checkpoint: every tensor of a safetensors model directory, memory-mapped and validated at Open.
//
// Accepted layouts, in order of preference:
//   1. model.safetensors.index.json naming shards in "weight_map" (the index is checked against the shards);
//   2. a single model.safetensors;
//   3. any number of *.safetensors files without an index (merged; a tensor in two files is an error).
//
// Threading: immutable after Open; every method may be called from any number of threads at once. The views
// it hands out point into the mapped files and stay valid as long as the Checkpoint lives.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "io/dtype.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace ringmoe::io {

// One tensor's metadata and its bytes inside a mapped file. Cheap to copy.
class TensorView {
 public:
  TensorView() = default;
  TensorView(const TensorEntry* entry, const uint8_t* data, const std::string* file, const std::string* path,
             uint64_t file_offset)
      : entry_(entry), data_(data), file_(file), path_(path), file_offset_(file_offset) {}

  const TensorEntry& entry() const { return *entry_; }
  const std::string& name() const { return entry_->name; }
  DType dtype() const { return entry_->dtype; }
  std::span<const int64_t> shape() const { return entry_->shape; }
  int64_t numel() const { return entry_->numel(); }
  // The tensor's bytes (unaligned in general: safetensors only promises the offsets the writer chose).
  const uint8_t* data() const { return data_; }
  size_t nbytes() const { return static_cast<size_t>(entry_->nbytes()); }
  // The shard's file name relative to the checkpoint directory, e.g. "model-00001-of-00003.safetensors".
  const std::string& file() const { return *file_; }
  // The shard's full path, and the tensor's byte offset in it: what the SSD tier's direct reads need.
  const std::string& path() const { return *path_; }
  uint64_t file_offset() const { return file_offset_; }

 private:
  const TensorEntry* entry_ = nullptr;
  const uint8_t* data_ = nullptr;
  const std::string* file_ = nullptr;
  const std::string* path_ = nullptr;
  uint64_t file_offset_ = 0;
};

class Checkpoint {
 public:
  // Opens the safetensors files of `model_dir` (see the layouts above). Errors name the directory or the file
  // (and tensor) at fault: missing directory, no safetensors files, unparsable index, missing shard, a shard
  // that is truncated or whose header lies, a tensor the index places in a shard that lacks it, a tensor in
  // two shards.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);

  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  // nullptr when absent. The pointer lives as long as the Checkpoint.
  const TensorView* Find(std::string_view name) const;
  // The tensor, checked against the shape config.json implies. Errors read
  //   "tensor 'x' (in model-00001-of-00003.safetensors) has shape [8, 64] but config.json implies [16, 64]"
  //   "checkpoint in DIR has no tensor 'lm_head.weight'"
  absl::StatusOr<TensorView> Require(std::string_view name, std::span<const int64_t> expected_shape) const;
  absl::StatusOr<TensorView> Require(std::string_view name,
                                     std::initializer_list<int64_t> expected_shape) const {
    return Require(name, std::span<const int64_t>(expected_shape.begin(), expected_shape.size()));
  }

  // Every tensor name, sorted.
  std::vector<std::string> Names() const;
  size_t num_tensors() const { return views_.size(); }
  // Sum of all tensors' bytes.
  int64_t total_bytes() const { return total_bytes_; }
  // MappedFile::ReleaseResidentPages for every shard: after the weights were copied elsewhere.
  void ReleaseResidentPages() const;
  // The same for the whole pages inside [data, data + bytes) when that range lies in a shard's mapping; a
  // no-op otherwise (a converted copy in ordinary memory must never be dropped).
  void ReleaseResidentPages(const void* data, int64_t bytes) const;
  // MappedFile::CheckUnchanged for every shard: DataLoss naming the first file that changed since Open.
  absl::Status CheckUnchanged() const;
  const std::string& dir() const { return dir_; }
  // Full paths of the files that were opened, sorted.
  std::vector<std::string> ShardPaths() const;

 private:
  struct Shard {
    std::string file;  // Relative to dir_.
    std::string path;
    MappedFile mapped;
    SafetensorsHeader header;
  };

  Checkpoint() = default;
  absl::Status AddShard(const std::string& file);
  absl::Status BuildIndex();

  std::string dir_;
  std::vector<std::unique_ptr<Shard>> shards_;  // unique_ptr: views point into shards.
  absl::flat_hash_map<std::string, TensorView> views_;
  int64_t total_bytes_ = 0;
};

}  // namespace ringmoe::io
