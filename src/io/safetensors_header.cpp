// Parsing and validating a safetensors header, as strictly as the reference
// implementation (huggingface/safetensors) and a little more: duplicate keys
// are refused (nlohmann::json would silently keep the last one, so a parser
// callback watches every object's keys).
#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/io/utf8.hpp"

namespace kintsugi {

namespace {

using nlohmann::json;

// A name as it appears in an error: JSON-quoted, so control characters and
// newlines cannot break the one-line message.
std::string q(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Finds the first duplicated key, as a SAX pass of its own over the text.
// (nlohmann's parse-with-callback, which this replaced, scans the whole parent
// object at the end of every child object: quadratic in the number of
// tensors, 20 s for 40,000 of them.) Linear: one hash set per open object.
struct DuplicateWatch : nlohmann::json_sax<json> {
  struct Level {
    std::unordered_set<std::string> keys;
    std::string last_key;
  };
  std::vector<Level> stack;
  bool found = false;
  std::string dup;     // the duplicated key
  std::string parent;  // the top-level key it sits under ("" at the top level)
  size_t depth = 0;    // 1: top level

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    stack.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    auto& top = stack.back();
    if (!top.keys.insert(k).second && !found) {
      found = true;
      dup = k;
      depth = stack.size();
      parent = stack.size() >= 2 ? stack[0].last_key : std::string();
    }
    top.last_key = k;
    return !found;  // the first duplicate is all the message needs
  }
  bool end_object() override {
    stack.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // the DOM parse reports it
  }
};

uint64_t checked_u64(const json& v, const std::string& origin, const std::string& tensor,
                     const char* field) {
  if (!v.is_number_unsigned())
    throw_input("{}: tensor {}: {} holds {}, not a non-negative integer", origin, q(tensor), field,
                v.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 40));
  return v.get<uint64_t>();
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (auto d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

ParsedHeader parse_safetensors_header(std::string_view text, uint64_t data_size,
                                      const std::string& origin) {
  if (const auto bad = first_invalid_utf8(text))
    throw_input("{}: header is not valid UTF-8 (bad byte at header offset {})", origin, *bad);

  // Like the reference, the header must start with '{' (no BOM, no leading
  // whitespace). nlohmann::json would also skip a BOM and stop at a NUL byte
  // as if the input ended there; raw NULs are never valid JSON, so refuse them.
  if (!text.empty() && text[0] != '{')
    throw_input("{}: header is not a JSON object (it must start with '{{')", origin);
  if (const auto nul = text.find('\0'); nul != std::string_view::npos)
    throw_input("{}: header is not valid JSON: NUL byte at header offset {}", origin, nul);

  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/true,
                      /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    throw_input("{}: header is not valid JSON: {}", origin, e.what());
  }
  if (!doc.is_object()) throw_input("{}: header is not a JSON object", origin);
  DuplicateWatch watch;  // valid JSON: this pass only looks for repeated keys
  json::sax_parse(text.begin(), text.end(), &watch, nlohmann::detail::input_format_t::json,
                  /*strict=*/true, /*ignore_comments=*/false);
  if (watch.found) {
    if (watch.depth == 1) {
      if (watch.dup == "__metadata__")
        throw_input("{}: header has two __metadata__ entries", origin);
      throw_input("{}: tensor {}: duplicate tensor name in header", origin, q(watch.dup));
    }
    if (watch.parent == "__metadata__")
      throw_input("{}: __metadata__: duplicate key {}", origin, q(watch.dup));
    throw_input("{}: tensor {}: duplicate key {} in its entry", origin, q(watch.parent),
                q(watch.dup));
  }

  ParsedHeader out;
  out.tensors.reserve(doc.size());
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) throw_input("{}: __metadata__ is not an object of strings", origin);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw_input("{}: __metadata__: value of {} is not a string", origin, q(m.key()));
        out.metadata.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) throw_input("{}: tensor {}: entry is not an object", origin, q(name));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field))
        throw_input("{}: tensor {}: entry has no \"{}\"", origin, q(name), field);

    TensorInfo t;
    t.name = name;
    const json& dt = v["dtype"];
    if (!dt.is_string()) throw_input("{}: tensor {}: dtype is not a string", origin, q(name));
    const auto d = dtype_from_name(dt.get_ref<const std::string&>());
    if (!d)
      throw_input("{}: tensor {}: unknown dtype {}", origin, q(name),
                  q(dt.get_ref<const std::string&>()));
    t.dtype = *d;

    const json& sh = v["shape"];
    if (!sh.is_array()) throw_input("{}: tensor {}: shape is not an array", origin, q(name));
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : sh) {
      const uint64_t n = checked_u64(dim, origin, name, "shape");
      if (n > static_cast<uint64_t>(INT64_MAX))
        throw_input("{}: tensor {}: shape dimension {} is too large", origin, q(name), n);
      t.shape.push_back(static_cast<int64_t>(n));
      if (n != 0 && numel > UINT64_MAX / n) overflow = true;
      if (!overflow) numel *= n;
    }
    // A zero dimension makes the product 0 whatever else overflowed.
    if (overflow && std::find(t.shape.begin(), t.shape.end(), 0) == t.shape.end())
      throw_input("{}: tensor {}: shape {} has more elements than fit in 64 bits", origin, q(name),
                  shape_text(t.shape));
    if (overflow) numel = 0;
    const uint64_t esize = dtype_size(t.dtype);
    if (numel > UINT64_MAX / esize)
      throw_input("{}: tensor {}: shape {} of {} needs more bytes than fit in 64 bits", origin,
                  q(name), shape_text(t.shape), dtype_name(t.dtype));
    const uint64_t need = numel * esize;

    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2)
      throw_input("{}: tensor {}: data_offsets is not a [begin, end] pair", origin, q(name));
    t.begin = checked_u64(off[0], origin, name, "data_offsets");
    t.end = checked_u64(off[1], origin, name, "data_offsets");
    if (t.end < t.begin)
      throw_input("{}: tensor {}: data_offsets [{}, {}] end before they begin", origin, q(name),
                  t.begin, t.end);
    if (t.end > data_size)
      throw_input(
          "{}: tensor {}: data_offsets [{}, {}] run past the end of the data buffer ({} bytes)",
          origin, q(name), t.begin, t.end, data_size);
    if (t.end - t.begin != need)
      throw_input("{}: tensor {}: data_offsets [{}, {}] hold {} bytes but {} {} needs {}", origin,
                  q(name), t.begin, t.end, t.end - t.begin, dtype_name(t.dtype),
                  shape_text(t.shape), need);
    out.tensors.push_back(std::move(t));
  }

  // The tensors must tile the buffer: sorted by offset, each begins where the
  // previous one ends, the first at 0, the last at the buffer's end.
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : out.tensors) {
    if (t.begin > pos) {
      if (!prev)
        throw_input(
            "{}: tensor {}: data begins at {}, leaving a gap of {} bytes at the buffer's start",
            origin, q(t.name), t.begin, t.begin);
      throw_input("{}: tensor {}: data begins at {}, leaving a gap of {} bytes after tensor {}",
                  origin, q(t.name), t.begin, t.begin - pos, q(prev->name));
    }
    if (t.begin < pos)
      throw_input("{}: tensor {}: data [{}, {}] overlaps tensor {} (which ends at {})", origin,
                  q(t.name), t.begin, t.end, q(prev->name), pos);
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size)
    throw_input(
        "{}: {} trailing bytes after the last tensor (the data buffer is {} bytes, tensors end at "
        "{})",
        origin, data_size - pos, data_size, pos);
  return out;
}

}  // namespace kintsugi
