#pragma once
// A checkpoint as users bring it: a Hugging Face model folder (config.json,
// model.safetensors or model.safetensors.index.json with its shards, tokenizer
// files) or a single .safetensors file.
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kintsugi/io/safetensors.hpp"

namespace kintsugi {

class HfCheckpoint {
 public:
  // Throws InputError naming the folder/file on anything missing or malformed
  // (a shard missing, a tensor missing from the shard the index names, ...).
  static HfCheckpoint open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  // Folder name (or file stem): how reports name this checkpoint.
  const std::string& name() const { return name_; }
  // All tensors, sorted by name.
  const std::vector<std::string>& tensor_names() const { return names_; }
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;          // throws InputError if absent
  const SafetensorsFile& file_of(const std::string& name) const;  // the shard holding it
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }
  // config.json (null when the checkpoint is a bare file or has none).
  const nlohmann::json& config() const { return config_; }
  // Metadata of the first file.
  const Metadata& metadata() const;
  // Small files to carry into a merged output: tokenizer*, special_tokens_map,
  // generation_config.json, vocab/merges files (not config.json, not weights).
  const std::vector<std::filesystem::path>& passthrough_files() const { return passthrough_; }
  uint64_t total_bytes() const;

 private:
  std::filesystem::path path_;
  std::string name_;
  std::vector<std::string> names_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::vector<size_t> file_index_;  // parallel to names_
  nlohmann::json config_;
  std::vector<std::filesystem::path> passthrough_;
};

// Writes an HF folder atomically: everything goes to a temporary folder
// "<dir>.partial-XXXXXX" that this writer creates (mkdtemp: a fresh, unique
// name beside `dir`; other MPI ranks learn it from temp_dir(), broadcast), and
// the folder is renamed to `dir` when complete. `dir` must not exist yet
// unless `overwrite` (then it must be a folder: it is moved to a fresh
// "<dir>.old-XXXXXX", replaced, and removed). Nothing else is ever removed:
// not a "<dir>.partial" or "<dir>.old" of someone else's, not a leftover of an
// interrupted run. Used by merge and export.
class HfFolderWriter {
 public:
  HfFolderWriter(std::filesystem::path dir, bool overwrite);
  ~HfFolderWriter();  // removes the temporary folder when not committed
  HfFolderWriter(const HfFolderWriter&) = delete;
  HfFolderWriter& operator=(const HfFolderWriter&) = delete;
  const std::filesystem::path& temp_dir() const { return tmp_; }
  void write_text(const std::string& file_name, const std::string& text);
  void copy_file(const std::filesystem::path& src);  // into the folder, same name
  void commit();  // rename temp_dir -> dir (the old dir, if overwriting, is removed)

 private:
  std::filesystem::path dir_, tmp_;
  bool overwrite_;
  bool committed_ = false;
};

}  // namespace kintsugi
