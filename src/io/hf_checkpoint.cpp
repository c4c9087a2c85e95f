// Hugging Face model folders (or bare .safetensors files) as checkpoints.
#include "kintsugi/io/hf_checkpoint.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/io/atomic_file.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  return read_input_file(p, p.filename().string(), kMaxJsonFileBytes);
}

nlohmann::json read_json_object(const fs::path& p) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(p));
  } catch (const nlohmann::json::exception& e) {
    throw_input("{}: not valid JSON: {}", p.string(), e.what());
  }
  if (!j.is_object()) throw_input("{}: not a JSON object", p.string());
  return j;
}

bool is_passthrough(const std::string& n) {
  static const std::set<std::string> exact = {"special_tokens_map.json",
                                              "added_tokens.json",
                                              "generation_config.json",
                                              "vocab.json",
                                              "vocab.txt",
                                              "merges.txt",
                                              "chat_template.json",
                                              "chat_template.jinja",
                                              "preprocessor_config.json"};
  return exact.count(n) > 0 || n.rfind("tokenizer", 0) == 0;
}

// The entry of a tensor that `file` holds: open() has checked that it does.
const TensorInfo& held_tensor(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* t = file.find(name);
  if (!t) throw_runtime("{}: no tensor {}", file.path().string(), name);
  return *t;
}

}  // namespace

HfCheckpoint HfCheckpoint::open(const fs::path& path_in) {
  HfCheckpoint c;
  fs::path path = path_in.lexically_normal();
  if (!path.has_filename() && path.has_parent_path()) path = path.parent_path();  // "dir/"
  c.path_ = path;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw_input("{}: no such file or folder", path.string());

  if (!fs::is_directory(st)) {  // a file; SafetensorsFile::open refuses all but regular ones
    c.name_ = path.stem().string();
    c.files_.push_back(SafetensorsFile::open(path));
  } else if (fs::is_directory(st)) {
    c.name_ = path.filename().string();
    const fs::path index = path / "model.safetensors.index.json";
    const fs::path single = path / "model.safetensors";
    if (fs::exists(index)) {
      const nlohmann::json j = read_json_object(index);
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw_input("{}: no \"weight_map\" object", index.string());
      // Shards are opened in file-name order (files()[0] is the first shard).
      std::map<std::string, std::string> shard_of;  // tensor -> shard file
      std::map<std::string, size_t> shard_index;    // shard file -> index into files_
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string())
          throw_input("{}: weight_map: tensor {}: shard name is not a string", index.string(),
                      it.key());
        const std::string shard = it.value().get<std::string>();
        if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
          throw_input("{}: weight_map: tensor {}: shard {:?} is not a file name in the folder",
                      index.string(), it.key(), shard);
        shard_of.emplace(it.key(), shard);
        shard_index.emplace(shard, 0);
      }
      for (auto& [shard, fi] : shard_index) {
        const fs::path sp = path / shard;
        if (!fs::exists(sp)) {
          const auto user = std::find_if(shard_of.begin(), shard_of.end(),
                                         [&s = shard](const auto& e) { return e.second == s; });
          throw_input("{}: shard {} named by model.safetensors.index.json (tensor {}) is missing",
                      path.string(), shard, user->first);
        }
        fi = c.files_.size();
        c.files_.push_back(SafetensorsFile::open(sp));
      }
      std::vector<std::pair<std::string, size_t>> entries;
      for (const auto& [name, shard] : shard_of) entries.emplace_back(name, shard_index.at(shard));
      for (const auto& [name, fi] : entries) {
        if (!c.files_[fi]->find(name))
          throw_input(
              "{}: tensor {}: model.safetensors.index.json places it in {}, which does not hold it",
              path.string(), name, c.files_[fi]->path().filename().string());
      }
      std::sort(entries.begin(), entries.end());
      for (const auto& [name, fi] : entries) {
        c.names_.push_back(name);
        c.file_index_.push_back(fi);
      }
      std::set<std::string> listed(c.names_.begin(), c.names_.end());
      for (const auto& f : c.files_)
        for (const auto& t : f->tensors())
          if (!listed.count(t.name))
            spdlog::warn("{}: tensor {} is not in model.safetensors.index.json; ignored",
                         f->path().string(), t.name);
      if (j.contains("metadata") && j["metadata"].is_object() &&
          j["metadata"].contains("total_size")) {
        const auto& ts = j["metadata"]["total_size"];
        uint64_t sum = 0;
        for (size_t i = 0; i < c.names_.size(); ++i)
          sum += held_tensor(*c.files_[c.file_index_[i]], c.names_[i]).nbytes();
        if (ts.is_number_unsigned() && ts.get<uint64_t>() != sum)
          spdlog::warn("{}: metadata.total_size is {} but the tensors hold {} bytes",
                       index.string(), ts.get<uint64_t>(), sum);
      }
    } else if (fs::exists(single)) {
      c.files_.push_back(SafetensorsFile::open(single));
    } else {
      throw_input("{}: neither model.safetensors nor model.safetensors.index.json is in the folder",
                  path.string());
    }
    const fs::path cfg = path / "config.json";
    if (fs::exists(cfg)) c.config_ = read_json_object(cfg);
    for (const auto& e : fs::directory_iterator(path)) {
      const std::string n = e.path().filename().string();
      if (e.is_regular_file() && is_passthrough(n)) c.passthrough_.push_back(e.path());
    }
    std::sort(c.passthrough_.begin(), c.passthrough_.end());
  }

  if (c.names_.empty() && !c.files_.empty() && c.file_index_.empty()) {
    // A single file: every tensor it holds.
    for (const auto& t : c.files_[0]->tensors()) c.names_.push_back(t.name);
    std::sort(c.names_.begin(), c.names_.end());
    c.file_index_.assign(c.names_.size(), 0);
  }
  return c;
}

bool HfCheckpoint::has(const std::string& name) const {
  return std::binary_search(names_.begin(), names_.end(), name);
}

const SafetensorsFile& HfCheckpoint::file_of(const std::string& name) const {
  const auto it = std::lower_bound(names_.begin(), names_.end(), name);
  if (it == names_.end() || *it != name) throw_input("{}: no tensor {}", path_.string(), name);
  return *files_[file_index_[static_cast<size_t>(it - names_.begin())]];
}

const TensorInfo& HfCheckpoint::info(const std::string& name) const {
  return held_tensor(file_of(name), name);
}

const Metadata& HfCheckpoint::metadata() const {
  static const Metadata empty;
  return files_.empty() ? empty : files_[0]->metadata();
}

uint64_t HfCheckpoint::total_bytes() const {
  uint64_t sum = 0;
  for (const auto& n : names_) sum += info(n).nbytes();
  return sum;
}

HfFolderWriter::HfFolderWriter(fs::path dir, bool overwrite) : overwrite_(overwrite) {
  dir = dir.lexically_normal();
  if (!dir.has_filename() && dir.has_parent_path()) dir = dir.parent_path();
  dir_ = dir;
  std::error_code ec;
  const auto st = fs::symlink_status(dir_, ec);
  if (fs::exists(st)) {
    if (!overwrite_)
      throw_input("{}: output folder already exists (pass --overwrite to replace it)",
                  dir_.string());
    if (!fs::is_directory(fs::status(dir_, ec)))
      throw_input("{}: exists and is not a folder; --overwrite replaces a folder only",
                  dir_.string());
  }
  const fs::path parent = dir_.has_parent_path() ? dir_.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) {
    // A file in the way or a forbidden folder is the user's path: exit 2.
    if (is_path_errno(ec.value()))
      throw_input("{}: cannot create the output's folder: {}", parent.string(), ec.message());
    throw_runtime("{}: cannot create: {}", parent.string(), ec.message());
  }
  // A name no one else has: a leftover or a user's "<dir>.partial" is never touched.
  tmp_ = unique_dir_beside(dir_, "partial");
}

HfFolderWriter::~HfFolderWriter() {
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void HfFolderWriter::write_text(const std::string& file_name, const std::string& text) {
  write_file_synced(tmp_ / file_name, text);
}

void HfFolderWriter::copy_file(const fs::path& src) {
  std::error_code ec;
  fs::copy_file(src, tmp_ / src.filename(), fs::copy_options::overwrite_existing, ec);
  if (ec) throw_runtime("{}: cannot copy into {}: {}", src.string(), tmp_.string(), ec.message());
  fsync_path(tmp_ / src.filename(), false);
}

void HfFolderWriter::commit() {
  KS_CHECK(!committed_, "commit twice");
  std::error_code ec;
  if (!overwrite_ || !fs::exists(fs::symlink_status(dir_, ec))) {
    publish_new(tmp_, dir_);  // never over a folder that appeared meanwhile
    committed_ = true;
    return;
  }
  // The old folder goes to a fresh name of our own (renamed over the empty
  // folder mkdtemp made), the new one takes its place, then the old one is
  // removed. Should publishing fail, the old folder is put back.
  const fs::path old = unique_dir_beside(dir_, "old");
  if (::rename(dir_.c_str(), old.c_str()) != 0) {
    const int err = errno;
    fs::remove(old, ec);
    throw_runtime("{}: cannot move the old folder aside to {}: {}", dir_.string(), old.string(),
                  std::strerror(err));
  }
  try {
    publish_new(tmp_, dir_);
  } catch (...) {
    if (::rename(old.c_str(), dir_.c_str()) != 0)
      spdlog::error("{}: could not put the old folder back from {}", dir_.string(), old.string());
    throw;
  }
  committed_ = true;
  fs::remove_all(old, ec);
  if (ec) spdlog::warn("{}: could not remove the replaced folder: {}", old.string(), ec.message());
}

}  // namespace kintsugi
