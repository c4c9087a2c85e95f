#include "kintsugi/pool/model_config.hpp"

#include <optional>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"

namespace kintsugi {

namespace {

int64_t get_int(const nlohmann::json& j, const std::string& origin, const char* key,
                std::optional<int64_t> def = std::nullopt) {
  if (!j.contains(key) || j[key].is_null()) {
    if (def) return *def;
    throw_input("{}: missing key '{}'", origin, key);
  }
  const auto& v = j[key];
  if (!v.is_number_integer()) throw_input("{}: key '{}' must be an integer", origin, key);
  const int64_t x = v.get<int64_t>();
  return x;
}

double get_real(const nlohmann::json& j, const std::string& origin, const char* key, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number()) throw_input("{}: key '{}' must be a number", origin, key);
  return j[key].get<double>();
}

bool get_bool(const nlohmann::json& j, const std::string& origin, const char* key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) throw_input("{}: key '{}' must be true or false", origin, key);
  return j[key].get<bool>();
}

std::string get_string(const nlohmann::json& j, const std::string& origin, const char* key,
                       const char* def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_string()) throw_input("{}: key '{}' must be a string", origin, key);
  return j[key].get<std::string>();
}

int64_t first_token_id(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return -1;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
  return -1;
}

}  // namespace

bool is_supported_architecture(std::string_view architecture) {
  for (auto a : kSupportedArchitectures)
    if (a == architecture) return true;
  return false;
}

std::string supported_architectures_text() {
  std::string out;
  for (auto a : kSupportedArchitectures) {
    if (!out.empty()) out += ", ";
    out += a;
  }
  return out;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& origin) try {
  if (!j.is_object()) throw_input("{}: not a JSON object (config.json expected)", origin);
  ModelConfig c;
  if (!j.contains("architectures") || !j["architectures"].is_array() ||
      j["architectures"].size() != 1 || !j["architectures"][0].is_string())
    throw_input("{}: 'architectures' must list exactly one architecture", origin);
  c.architecture = j["architectures"][0].get<std::string>();
  const bool llama = c.architecture == "LlamaForCausalLM";
  const bool qwen2 = c.architecture == "Qwen2ForCausalLM";
  if (!is_supported_architecture(c.architecture))
    throw_input("{}: architecture '{}' is not supported by the built-in evaluator ({})", origin,
                c.architecture, supported_architectures_text());

  c.vocab_size = get_int(j, origin, "vocab_size");
  c.hidden_size = get_int(j, origin, "hidden_size");
  c.intermediate_size = get_int(j, origin, "intermediate_size");
  c.num_layers = get_int(j, origin, "num_hidden_layers");
  c.num_heads = get_int(j, origin, "num_attention_heads");
  c.num_kv_heads = get_int(j, origin, "num_key_value_heads", c.num_heads);
  for (auto [key, v] : {std::pair{"vocab_size", c.vocab_size},
                        {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size},
                        {"num_hidden_layers", c.num_layers},
                        {"num_attention_heads", c.num_heads},
                        {"num_key_value_heads", c.num_kv_heads}})
    if (v <= 0 || v > (int64_t{1} << 31)) throw_input("{}: key '{}' must be positive", origin, key);
  if (c.hidden_size % c.num_heads != 0 && !j.contains("head_dim"))
    throw_input("{}: hidden_size {} is not a multiple of num_attention_heads {}", origin,
                c.hidden_size, c.num_heads);
  c.head_dim = get_int(j, origin, "head_dim", c.hidden_size / c.num_heads);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    throw_input("{}: head_dim {} must be positive and even (RoPE)", origin, c.head_dim);
  if (c.num_heads % c.num_kv_heads != 0)
    throw_input("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", origin,
                c.num_heads, c.num_kv_heads);
  c.max_position_embeddings = get_int(j, origin, "max_position_embeddings", 4096);
  c.rms_norm_eps = get_real(j, origin, "rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0)) throw_input("{}: rms_norm_eps must be positive", origin);
  // RoPE: transformers >= 5 writes `rope_parameters` (rope_type, rope_theta and
  // the scaling keys); earlier versions `rope_theta` and `rope_scaling`.
  const bool has_params = j.contains("rope_parameters") && !j["rope_parameters"].is_null();
  const bool has_scaling = j.contains("rope_scaling") && !j["rope_scaling"].is_null();
  const nlohmann::json* rope = has_scaling ? &j["rope_scaling"] : nullptr;
  std::string rope_key = "rope_scaling";
  if (has_params) {
    const auto& rp = j["rope_parameters"];
    if (!rp.is_object() || !rp.contains("rope_theta"))
      throw_input("{}: rope_parameters must be an object with 'rope_theta'", origin);
    c.rope_theta = get_real(rp, origin + ": rope_parameters", "rope_theta", 0);
    if (j.contains("rope_theta") && !j["rope_theta"].is_null() &&
        get_real(j, origin, "rope_theta", 0) != c.rope_theta)
      throw_input("{}: rope_theta and rope_parameters.rope_theta disagree", origin);
    if (has_scaling) {  // both: every rope_scaling entry must agree with rope_parameters
      if (!rope->is_object()) throw_input("{}: rope_scaling must be an object", origin);
      for (const auto& [k, v] : rope->items()) {
        const std::string pk = k == "type" ? "rope_type" : k;
        if (!rp.contains(pk) || rp[pk] != v)
          throw_input("{}: rope_scaling.{} disagrees with rope_parameters", origin, k);
      }
    }
    rope = &rp;
    rope_key = "rope_parameters";
  } else {
    c.rope_theta = get_real(j, origin, "rope_theta", 10000.0);
  }
  if (!(c.rope_theta > 1)) throw_input("{}: rope_theta must be > 1", origin);
  c.tie_word_embeddings = get_bool(j, origin, "tie_word_embeddings", false);

  const std::string act = get_string(j, origin, "hidden_act", "silu");
  if (act != "silu") throw_input("{}: hidden_act '{}' is not supported (only silu)", origin, act);
  if (get_bool(j, origin, "mlp_bias", false))
    throw_input("{}: mlp_bias: true is not supported", origin);
  if (qwen2) {
    c.qkv_bias = true;
    if (get_bool(j, origin, "use_sliding_window", false))
      throw_input("{}: use_sliding_window: true is not supported", origin);
    if (j.contains("layer_types") && j["layer_types"].is_array())  // transformers >= 5
      for (const auto& t : j["layer_types"])
        if (t != "full_attention")
          throw_input("{}: layer_types: only full_attention layers are supported", origin);
  } else if (llama) {
    c.qkv_bias = c.o_bias = get_bool(j, origin, "attention_bias", false);
  } else {
    c.sliding_window = get_int(j, origin, "sliding_window", 0);
    if (c.sliding_window < 0) throw_input("{}: sliding_window must be >= 0", origin);
  }

  if (rope) {
    const auto& rs = *rope;
    if (!rs.is_object()) throw_input("{}: {} must be an object", origin, rope_key);
    std::string type;
    if (rs.contains("rope_type") && rs["rope_type"].is_string())
      type = rs["rope_type"].get<std::string>();
    else if (rs.contains("type") && rs["type"].is_string())
      type = rs["type"].get<std::string>();
    else
      throw_input("{}: {} has no 'rope_type'", origin, rope_key);
    RopeScaling& s = c.rope_scaling;
    if (type == "default") {
      s.kind = RopeScaling::Kind::None;
    } else if (type == "linear" || type == "llama3") {
      s.kind = type == "linear" ? RopeScaling::Kind::Linear : RopeScaling::Kind::Llama3;
      s.factor = get_real(rs, origin + ": " + rope_key, "factor", -1);
      if (!(s.factor > 0)) throw_input("{}: {}.factor must be positive", origin, rope_key);
      if (s.kind == RopeScaling::Kind::Llama3) {
        s.low_freq_factor = get_real(rs, origin, "low_freq_factor", 1.0);
        s.high_freq_factor = get_real(rs, origin, "high_freq_factor", 4.0);
        s.original_max_position_embeddings =
            get_real(rs, origin, "original_max_position_embeddings", 8192.0);
        if (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0) ||
            !(s.original_max_position_embeddings > 0))
          throw_input(
              "{}: {} llama3: need 0 < low_freq_factor < high_freq_factor "
              "and original_max_position_embeddings > 0",
              origin, rope_key);
      }
    } else {
      throw_input("{}: {} type '{}' is not supported (linear, llama3)", origin, rope_key, type);
    }
  }
  c.bos_token_id = first_token_id(j, "bos_token_id");
  c.eos_token_id = first_token_id(j, "eos_token_id");
  if (c.bos_token_id >= c.vocab_size || c.eos_token_id >= c.vocab_size)
    throw_input("{}: bos/eos token id outside the vocabulary of {}", origin, c.vocab_size);
  return c;
} catch (const nlohmann::json::exception& e) {
  // Every key above is type-checked; this is the net for any that is not.
  throw_input("{}: wrong JSON type: {}", origin, json_problem(e.what()));
}

}  // namespace kintsugi
