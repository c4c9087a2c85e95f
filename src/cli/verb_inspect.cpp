// `kintsugi inspect PATH...`: one checkpoint's tensors, bytes, dtypes and
// metadata; several paths: a pool compatibility check listing every difference.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/pool/pool.hpp"

namespace kintsugi::cli {

namespace {

struct InspectOptions {
  std::vector<std::string> paths;
  bool json = false;
  bool tensors = false;
  bool fingerprint = false;
  bool full_hash = false;
};

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string fp(const HfCheckpoint& c, const InspectOptions& o) {
  return fingerprint(c, o.full_hash ? FingerprintMode::Full : FingerprintMode::Sampled);
}

void out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
}

int inspect_one(const InspectOptions& o) {
  const HfCheckpoint c = HfCheckpoint::open(o.paths[0]);
  if (o.json) {
    nlohmann::ordered_json j;
    auto& ts = j["tensors"] = nlohmann::ordered_json::array();
    for (const auto& n : c.tensor_names()) {
      const auto& t = c.info(n);
      ts.push_back({{"name", n},
                    {"dtype", std::string(dtype_name(t.dtype))},
                    {"shape", t.shape},
                    {"bytes", t.nbytes()}});
    }
    j["metadata"] = c.metadata();
    j["total_bytes"] = c.total_bytes();
    j["files"] = c.files().size();
    if (!c.config().is_null()) j["config"] = c.config();
    if (o.fingerprint) j["fingerprint"] = fp(c, o);
    out(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
    return kExitOk;
  }
  std::map<std::string, std::pair<uint64_t, uint64_t>> per_dtype;  // count, bytes
  for (const auto& n : c.tensor_names()) {
    const auto& t = c.info(n);
    auto& e = per_dtype[std::string(dtype_name(t.dtype))];
    ++e.first;
    e.second += t.nbytes();
  }
  std::string s = fmt::format("{}: {} tensors, {} ({} bytes) in {} file{}\n", c.path().string(),
                              c.tensor_names().size(), human_bytes(c.total_bytes()),
                              c.total_bytes(), c.files().size(), c.files().size() == 1 ? "" : "s");
  s += "dtypes:\n";
  for (const auto& [d, e] : per_dtype)
    s += fmt::format("  {:<8} {:>8} tensors  {:>12} bytes\n", d, e.first, e.second);
  s += "metadata:";
  if (c.metadata().empty()) s += " (none)";
  s += "\n";
  for (const auto& [k, v] : c.metadata()) s += fmt::format("  {}: {}\n", k, v);
  if (!c.config().is_null()) {
    s += "config.json:";
    for (const char* k : {"model_type", "architectures", "hidden_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size", "torch_dtype"})
      if (c.config().contains(k)) s += fmt::format(" {}={}", k, c.config()[k].dump());
    s += "\n";
  }
  if (!c.passthrough_files().empty()) {
    s += "other files:";
    for (const auto& p : c.passthrough_files()) s += " " + p.filename().string();
    s += "\n";
  }
  if (o.fingerprint) s += fmt::format("fingerprint: {}\n", fp(c, o));
  if (o.tensors) {
    s += "tensors:\n";
    for (const auto& n : c.tensor_names()) {
      const auto& t = c.info(n);
      s += fmt::format("  {}  {}  {}  {}\n", n, dtype_name(t.dtype), shape_text(t.shape),
                       t.nbytes());
    }
  }
  out(s);
  return kExitOk;
}

int inspect_pool(const InspectOptions& o) {
  std::vector<std::filesystem::path> paths(o.paths.begin(), o.paths.end());
  const Pool pool = Pool::open(paths);
  const auto diffs = pool.differences();
  if (o.json) {
    nlohmann::ordered_json j;
    auto& cs = j["checkpoints"] = nlohmann::ordered_json::array();
    for (const auto& c : pool.members()) {
      nlohmann::ordered_json e = {{"path", c.path().string()},
                                  {"name", c.name()},
                                  {"tensors", c.tensor_names().size()},
                                  {"total_bytes", c.total_bytes()}};
      if (o.fingerprint) e["fingerprint"] = fp(c, o);
      cs.push_back(e);
    }
    j["compatible"] = diffs.empty();
    auto& ds = j["differences"] = nlohmann::ordered_json::array();
    for (const auto& d : diffs)
      ds.push_back({{"checkpoint", d.checkpoint}, {"tensor", d.tensor}, {"what", d.what}});
    out(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
  } else {
    std::string s;
    for (const auto& c : pool.members()) {
      s += fmt::format("{}: {} tensors, {}", c.path().string(), c.tensor_names().size(),
                       human_bytes(c.total_bytes()));
      if (o.fingerprint) s += ", fingerprint " + fp(c, o);
      s += "\n";
    }
    if (diffs.empty()) {
      s += fmt::format("compatible: {} checkpoints, {} tensors each\n", pool.size(),
                       pool.tensor_names().size());
    } else {
      s += fmt::format("incompatible: {} difference{}\n", diffs.size(),
                       diffs.size() == 1 ? "" : "s");
      for (const auto& d : diffs) s += "  " + d.text() + "\n";
    }
    out(s);
  }
  std::fflush(stdout);
  if (!diffs.empty())
    throw_input("incompatible pool: {} difference{}; first: {}", diffs.size(),
                diffs.size() == 1 ? "" : "s", diffs[0].text());
  return kExitOk;
}

VerbRegistration inspect_verb{
    {"inspect", "Show a checkpoint's tensors, dtypes, bytes and metadata; check a pool", 10,
     [](CLI::App& sub) {
       auto o = std::make_shared<InspectOptions>();
       sub.add_option("paths", o->paths,
                      "A .safetensors file or an HF model folder; several: a pool")
           ->required();
       sub.add_flag("--json", o->json, "One JSON object on stdout");
       sub.add_flag("-t,--tensors", o->tensors, "List every tensor (text output)");
       sub.add_flag("--fingerprint", o->fingerprint,
                    "Add each checkpoint's fingerprint (sampled content hash)");
       sub.add_flag("--full-hash", o->full_hash, "Fingerprint every byte instead of samples");
       return std::function<int()>(
           [o] { return o->paths.size() == 1 ? inspect_one(*o) : inspect_pool(*o); });
     },
     Verb::Mpi::Never}};

}  // namespace

}  // namespace kintsugi::cli
