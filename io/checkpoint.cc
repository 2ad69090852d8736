#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/status_macros.h"
#include "nlohmann/json.hpp"

namespace ringmoe::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr size_t kMaxIndexBytes = 256ull << 20;

bool IsFile(const std::string& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);  // Follows symlinks (the Hugging Face cache is all symlinks).
}

// Shard names come from the index: keep them inside the model directory.
bool IsPlainRelativePath(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  for (const fs::path& part : fs::path(name)) {
    if (part == "..") return false;
  }
  return true;
}

// The shard files an index names, checked: weight_map must be an object of shard-name strings.
absl::StatusOr<std::map<std::string, std::string>> ReadIndex(const std::string& index_path) {
  absl::StatusOr<MappedFile> mapped = MappedFile::Open(index_path);
  if (!mapped.ok()) return mapped.status();
  if (mapped->size() > kMaxIndexBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": ", mapped->size(), " bytes is too large for an index"));
  }
  const std::span<const uint8_t> bytes = mapped->bytes();
  const Json root = Json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON"));
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  const auto weight_map = root.find("weight_map");
  if (weight_map == root.end()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing \"weight_map\""));
  }
  if (!weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": \"weight_map\" is a JSON ", weight_map->type_name(), ", not an object"));
  }
  std::map<std::string, std::string> tensor_to_shard;
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": \"weight_map\" entry for tensor '",
                                                     tensor, "' is a JSON ", shard.type_name(),
                                                     ", not a file name"));
    }
    const std::string& file = shard.get_ref<const std::string&>();
    if (!IsPlainRelativePath(file)) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", tensor, "' is placed in '",
                                                     file,
                                                     "', which is not a file inside the model directory"));
    }
    tensor_to_shard.emplace(tensor, file);
  }
  if (tensor_to_shard.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": \"weight_map\" names no tensors"));
  }
  return tensor_to_shard;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  std::error_code error;
  const fs::file_status dir_status = fs::status(model_dir, error);
  if (!fs::exists(dir_status)) {
    return absl::NotFoundError(absl::StrCat("model directory '", model_dir, "' does not exist"));
  }
  if (!fs::is_directory(dir_status)) {
    return absl::InvalidArgumentError(absl::StrCat("model path '", model_dir, "' is not a directory"));
  }
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->dir_ = model_dir;

  const std::string index_path = absl::StrCat(model_dir, "/", kIndexFile);
  if (IsFile(index_path)) {
    absl::StatusOr<std::map<std::string, std::string>> tensor_to_shard = ReadIndex(index_path);
    if (!tensor_to_shard.ok()) return tensor_to_shard.status();
    std::set<std::string> shard_files;
    for (const auto& [tensor, file] : *tensor_to_shard) shard_files.insert(file);
    for (const std::string& file : shard_files) {
      if (absl::Status status = checkpoint->AddShard(file); !status.ok()) {
        return absl::Status(status.code(),
                            absl::StrCat(status.message(), " (a shard named by ", index_path, ")"));
      }
    }
    if (absl::Status status = checkpoint->BuildIndex(); !status.ok()) return status;
    for (const auto& [tensor, file] : *tensor_to_shard) {
      const TensorView* view = checkpoint->Find(tensor);
      if (view == nullptr || view->file() != file) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, " says tensor '", tensor, "' is in ", file, ", but ",
                         view == nullptr ? absl::StrCat(file, " has no such tensor")
                                         : absl::StrCat("it is in ", view->file())));
      }
    }
    return checkpoint;
  }

  std::vector<std::string> files;
  if (IsFile(absl::StrCat(model_dir, "/", kSingleFile))) {
    files.emplace_back(kSingleFile);
  } else {
    for (fs::directory_iterator it(model_dir, error), end; !error && it != end; it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (absl::EndsWith(name, ".safetensors") && IsFile(it->path().string())) files.push_back(name);
    }
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot list model directory '", model_dir, "': ", error.message()));
    }
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("model directory '", model_dir, "' has no ", kSingleFile, ", no ",
                                            kIndexFile, " and no other *.safetensors file"));
  }
  for (const std::string& file : files) {
    if (absl::Status status = checkpoint->AddShard(file); !status.ok()) return status;
  }
  if (absl::Status status = checkpoint->BuildIndex(); !status.ok()) return status;
  return checkpoint;
}

absl::Status Checkpoint::AddShard(const std::string& file) {
  auto shard = std::make_unique<Shard>();
  shard->file = file;
  shard->path = absl::StrCat(dir_, "/", file);
  RINGMOE_ASSIGN_OR_RETURN(shard->mapped, MappedFile::Open(shard->path));
  RINGMOE_ASSIGN_OR_RETURN(shard->header, ParseSafetensorsFile(shard->mapped.bytes(), shard->path));
  shards_.push_back(std::move(shard));
  return absl::OkStatus();
}

absl::Status Checkpoint::BuildIndex() {
  for (const std::unique_ptr<Shard>& shard : shards_) {
    const uint8_t* base = shard->mapped.bytes().data();
    for (const TensorEntry& entry : shard->header.tensors) {
      const uint64_t file_offset = shard->header.data_begin + entry.begin;
      const TensorView view(&entry, base + file_offset, &shard->file, &shard->path, file_offset);
      const auto [it, inserted] = views_.try_emplace(entry.name, view);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("checkpoint in ", dir_, ": tensor '", entry.name,
                                                       "' appears in both ", it->second.file(), " and ",
                                                       shard->file));
      }
      total_bytes_ += static_cast<int64_t>(entry.nbytes());
    }
  }
  return absl::OkStatus();
}

const TensorView* Checkpoint::Find(std::string_view name) const {
  const auto it = views_.find(absl::string_view(name.data(), name.size()));
  return it == views_.end() ? nullptr : &it->second;
}

absl::StatusOr<TensorView> Checkpoint::Require(std::string_view name,
                                               std::span<const int64_t> expected_shape) const {
  const TensorView* view = Find(name);
  if (view == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint in ", dir_, " has no tensor '", std::string(name), "'"));
  }
  if (!std::equal(view->shape().begin(), view->shape().end(), expected_shape.begin(), expected_shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", view->name(), "' (in ", view->file(),
                                                   ") has shape ", FormatShape(view->shape()),
                                                   " but config.json implies ", FormatShape(expected_shape)));
  }
  return *view;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(views_.size());
  for (const auto& [name, view] : views_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status Checkpoint::CheckUnchanged() const {
  for (const std::unique_ptr<Shard>& shard : shards_) {
    if (absl::Status status = shard->mapped.CheckUnchanged(); !status.ok()) return status;
  }
  return absl::OkStatus();
}

void Checkpoint::ReleaseResidentPages() const {
  for (const std::unique_ptr<Shard>& shard : shards_) shard->mapped.ReleaseResidentPages();
}

void Checkpoint::ReleaseResidentPages(const void* data, int64_t bytes) const {
  const uint8_t* begin = static_cast<const uint8_t*>(data);
  for (const std::unique_ptr<Shard>& shard : shards_) {
    std::span<const uint8_t> mapped = shard->mapped.bytes();
    if (begin >= mapped.data() && begin + bytes <= mapped.data() + mapped.size()) {
      shard->mapped.ReleaseResidentPages(data, static_cast<size_t>(bytes));
      return;
    }
  }
}

std::vector<std::string> Checkpoint::ShardPaths() const {
  std::vector<std::string> paths;
  for (const std::unique_ptr<Shard>& shard : shards_) paths.push_back(shard->path);
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace ringmoe::io
