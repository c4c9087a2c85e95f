#include "kintsugi/state/record_io.hpp"

#include <set>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace {

void check_key(const h5::Loc& loc, const std::string& key, std::set<std::string>& seen) {
  if (key.empty() || key == "." || key.find('/') != std::string::npos)
    throw_runtime("{}: {}: record key \"{}\" cannot name an HDF5 dataset", loc.file, loc.path, key);
  if (!seen.insert(key).second)
    throw_runtime("{}: {}: record key \"{}\" is used by two kinds of value", loc.file, loc.path,
                  key);
}

}  // namespace

void write_record(const h5::Loc& parent, const std::string& name, const Record& r) {
  h5::Id g = h5::create_group(parent, name);
  const h5::Loc loc{g.get(), parent.file, parent.child(name)};
  std::set<std::string> seen;
  for (const auto& [k, v] : r.reals) {
    check_key(loc, k, seen);
    h5::write_f64(loc, k, v, {v.size()});
  }
  for (const auto& [k, v] : r.ints) {
    check_key(loc, k, seen);
    h5::write_i64(loc, k, v, {v.size()});
  }
  for (const auto& [k, v] : r.strings) {
    check_key(loc, k, seen);
    h5::write_string(loc, k, v);
  }
}

Record read_record(const h5::Loc& parent, const std::string& name) {
  h5::Id g = h5::open_group(parent, name);
  const h5::Loc loc{g.get(), parent.file, parent.child(name)};
  Record r;
  for (const std::string& key : h5::member_names(loc)) {
    const h5::Info info = h5::dataset_info(loc, key);
    if (info.dims.size() > 1)
      throw_input("{}: {}: a record entry must have at most one dimension", loc.file,
                  loc.child(key));
    switch (info.kind) {
      case h5::Kind::Float:
        r.reals[key] = h5::read_f64(loc, key, -1);
        break;
      case h5::Kind::Integer:
        r.ints[key] = h5::read_i64(loc, key, -1);
        break;
      case h5::Kind::String: {
        std::vector<std::string> s = h5::read_strings(loc, key);
        if (s.size() != 1)
          throw_input("{}: {}: a record string entry must hold one string, not {}", loc.file,
                      loc.child(key), s.size());
        r.strings[key] = std::move(s[0]);
        break;
      }
      case h5::Kind::Other:
        throw_input("{}: {}: unsupported type for a record entry", loc.file, loc.child(key));
    }
  }
  return r;
}

}  // namespace kintsugi
