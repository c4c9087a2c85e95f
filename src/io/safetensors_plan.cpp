// Laying out safetensors files before any byte is written: header text,
// offsets, shard assignment and the sharded index.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/safetensors.hpp"

namespace kintsugi {

const TensorInfo* SafetensorsLayout::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsLayout plan_safetensors(const std::vector<TensorSpec>& specs, const Metadata& metadata) {
  SafetensorsLayout out;
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = h["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  std::set<std::string, std::less<>> seen;
  uint64_t pos = 0;
  for (const auto& s : specs) {
    if (s.name == "__metadata__") throw_input("tensor name __metadata__ is reserved by the format");
    if (!seen.insert(s.name).second) throw_input("tensor {}: listed twice in one file", s.name);
    TensorInfo t;
    t.name = s.name;
    t.dtype = s.dtype;
    t.shape = s.shape;
    uint64_t n = dtype_size(s.dtype);
    for (auto d : s.shape) {
      if (d < 0) throw_input("tensor {}: negative dimension {}", s.name, d);
      const auto ud = static_cast<uint64_t>(d);
      if (ud != 0 && n > UINT64_MAX / ud) throw_input("tensor {}: too many bytes", s.name);
      n *= ud;
    }
    if (pos > UINT64_MAX - n) throw_input("tensor {}: file would exceed 2^64 bytes", s.name);
    t.begin = pos;
    t.end = pos + n;
    pos = t.end;
    h[s.name] = {{"dtype", std::string(dtype_name(s.dtype))},
                 {"shape", s.shape},
                 {"data_offsets", {t.begin, t.end}}};
    out.tensors.push_back(std::move(t));
  }
  out.header = h.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  out.header.append((8 - out.header.size() % 8) % 8, ' ');
  out.data_offset = 8 + out.header.size();
  out.file_size = out.data_offset + pos;
  return out;
}

std::string ShardedPlan::index_json() const {
  if (file_names.size() <= 1) return {};
  nlohmann::json j;
  j["metadata"] = {{"total_size", total_size}};
  auto& wm = j["weight_map"] = nlohmann::json::object();
  for (const auto& [name, shard] : shard_of) wm[name] = file_names[shard];
  return j.dump(2) + "\n";
}

ShardedPlan plan_sharded(const std::vector<TensorSpec>& specs, const Metadata& metadata,
                         uint64_t max_shard_bytes) {
  if (max_shard_bytes == 0) throw_input("maximum shard size must be positive");
  std::vector<std::vector<TensorSpec>> groups;
  uint64_t in_group = 0;
  ShardedPlan plan;
  for (const auto& s : specs) {
    uint64_t n = dtype_size(s.dtype);
    for (auto d : s.shape)
      n *= static_cast<uint64_t>(d < 0 ? 0 : d);  // validated by the plan below
    if (groups.empty() || (in_group > 0 && in_group + n > max_shard_bytes)) {
      groups.emplace_back();
      in_group = 0;
    }
    groups.back().push_back(s);
    in_group += n;
    plan.total_size += n;
  }
  if (groups.empty()) groups.emplace_back();
  const size_t k = groups.size();
  for (size_t i = 0; i < k; ++i) {
    plan.file_names.push_back(k == 1 ? std::string("model.safetensors")
                                     : fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, k));
    plan.layouts.push_back(plan_safetensors(groups[i], metadata));
    for (const auto& s : groups[i])
      if (!plan.shard_of.emplace(s.name, i).second)
        throw_input("tensor {}: listed twice in one checkpoint", s.name);
  }
  return plan;
}

uint64_t parse_byte_size(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string num(text.substr(0, i));
  std::string unit(text.substr(i));
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "KB")
    mult = 1e3;
  else if (unit == "MB")
    mult = 1e6;
  else if (unit == "GB")
    mult = 1e9;
  else if (unit == "TB")
    mult = 1e12;
  else if (unit == "KIB")
    mult = 1024.0;
  else if (unit == "MIB")
    mult = 1024.0 * 1024;
  else if (unit == "GIB")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "TIB")
    mult = 1024.0 * 1024 * 1024 * 1024;
  if (num.find_first_of("0123456789") == std::string::npos || mult == 0 ||
      std::count(num.begin(), num.end(), '.') > 1)
    throw_input(
        "size {:?}: expected a number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, "
        "TiB)",
        std::string(text));
  const double v = std::stod(num) * mult;
  if (!(v < 1.8e19)) throw_input("size {:?}: too large", std::string(text));
  return static_cast<uint64_t>(std::llround(v));
}

}  // namespace kintsugi
