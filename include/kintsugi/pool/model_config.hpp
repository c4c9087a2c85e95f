#pragma once
// The architecture of a Llama-family decoder, read from an HF config.json:
// LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM. Anything the
// built-in evaluator cannot run exactly (another architecture, an activation
// other than SiLU, an unknown rope_scaling type, MLP biases, ...) is an
// InputError naming the file and the option.
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace kintsugi {

// The architectures (config.json's `architectures`) kintsugi reads: decoders
// whose layers are the tensors model.layers.N.* and whose other tensors are
// the embeddings, the final norm and lm_head. The merge planner maps layers
// (slices, gradients) only for these.
inline constexpr std::array<std::string_view, 3> kSupportedArchitectures = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};

bool is_supported_architecture(std::string_view architecture);

// "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM", for messages.
std::string supported_architectures_text();

struct RopeScaling {
  enum class Kind { None, Linear, Llama3 };
  Kind kind = Kind::None;
  double factor = 1.0;
  // llama3 only
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192.0;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;       // Qwen2, or Llama's attention_bias
  bool o_bias = false;         // Llama's attention_bias
  int64_t sliding_window = 0;  // Mistral; 0 = full attention
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }

  // `origin` names the config file in errors.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
};

}  // namespace kintsugi
