#pragma once
// An independent, deliberately plain reference for the evaluator's forward pass:
// full (no cache) causal attention in double precision, written from the HF
// Llama/Qwen2 modeling code, with random weights for tiny configs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/pool/model_config.hpp"
#include "kintsugi/pool/tp_plan.hpp"

namespace kintsugi::test {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

using Weights = std::map<std::string, std::vector<float>>;

// A tiny Qwen2-style config: GQA (4 query heads, 2 KV heads), q/k/v biases, tied embeddings.
inline nlohmann::json tiny_config_json() {
  return {{"architectures", {"Qwen2ForCausalLM"}},
          {"vocab_size", 37},
          {"hidden_size", 16},
          {"intermediate_size", 24},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"max_position_embeddings", 128},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", true},
          {"hidden_act", "silu"},
          {"bos_token_id", 35},
          {"eos_token_id", 36}};
}

inline Weights random_weights(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Weights w;
  auto make = [&](const std::string& name, int64_t n, float scale, float offset = 0.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = offset + scale * u(rng);
    w[name] = v;
  };
  const int64_t D = c.hidden_size, I = c.intermediate_size, H = c.num_heads * c.head_dim,
                KV = c.num_kv_heads * c.head_dim;
  const float s = 1.0f / std::sqrt(static_cast<float>(D));
  make("model.embed_tokens.weight", c.vocab_size * D, 1.0f);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    make(p + "input_layernorm.weight", D, 0.2f, 1.0f);
    make(p + "post_attention_layernorm.weight", D, 0.2f, 1.0f);
    make(p + "self_attn.q_proj.weight", H * D, 2 * s);
    make(p + "self_attn.k_proj.weight", KV * D, 2 * s);
    make(p + "self_attn.v_proj.weight", KV * D, s);
    make(p + "self_attn.o_proj.weight", D * H, s);
    if (c.qkv_bias) {
      make(p + "self_attn.q_proj.bias", H, 0.3f);
      make(p + "self_attn.k_proj.bias", KV, 0.3f);
      make(p + "self_attn.v_proj.bias", KV, 0.3f);
    }
    if (c.o_bias) make(p + "self_attn.o_proj.bias", D, 0.3f);
    make(p + "mlp.gate_proj.weight", I * D, s);
    make(p + "mlp.up_proj.weight", I * D, s);
    make(p + "mlp.down_proj.weight", D * I, 1.0f / std::sqrt(static_cast<float>(I)));
  }
  make("model.norm.weight", D, 0.2f, 1.0f);
  if (!c.tie_word_embeddings) make("lm_head.weight", c.vocab_size * D, s);
  return w;
}

// log-softmax over the vocabulary at every position of `tokens` (rows of V).
inline std::vector<std::vector<double>> naive_log_probs(const ModelConfig& c, const Weights& w,
                                                        const std::vector<int32_t>& tokens) {
  const int64_t T = static_cast<int64_t>(tokens.size()), D = c.hidden_size, hd = c.head_dim,
                nh = c.num_heads, nkv = c.num_kv_heads, I = c.intermediate_size, V = c.vocab_size;
  auto W = [&](const std::string& n) -> const std::vector<float>& { return w.at(n); };
  // y[o] = sum_i W[o][i] x[i] (+ b[o])
  auto linear = [](const std::vector<float>& M, const std::vector<double>& x, int64_t out,
                   const std::vector<float>* b) {
    std::vector<double> y(static_cast<size_t>(out), 0.0);
    const int64_t in = static_cast<int64_t>(x.size());
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? static_cast<double>((*b)[static_cast<size_t>(o)]) : 0.0;
      for (int64_t i = 0; i < in; ++i)
        s += static_cast<double>(M[static_cast<size_t>(o * in + i)]) * x[static_cast<size_t>(i)];
      y[static_cast<size_t>(o)] = s;
    }
    return y;
  };
  auto rmsnorm = [&](const std::vector<double>& x, const std::vector<float>& g) {
    double ms = 0;
    for (double v : x) ms += v * v;
    ms /= static_cast<double>(x.size());
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      y[i] = static_cast<double>(g[i]) * x[i] / std::sqrt(ms + c.rms_norm_eps);
    return y;
  };
  // RoPE frequencies, from the HF formulas.
  std::vector<double> freq(static_cast<size_t>(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) {
    double f = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
    const auto& s = c.rope_scaling;
    if (s.kind == RopeScaling::Kind::Linear) f = f / s.factor;
    if (s.kind == RopeScaling::Kind::Llama3) {
      const double wl = 2 * M_PI / f;
      const double lo = s.original_max_position_embeddings / s.low_freq_factor;
      const double hi = s.original_max_position_embeddings / s.high_freq_factor;
      if (wl > lo) {
        f = f / s.factor;
      } else if (!(wl < hi)) {
        const double sm = (s.original_max_position_embeddings / wl - s.low_freq_factor) /
                          (s.high_freq_factor - s.low_freq_factor);
        f = (1 - sm) * f / s.factor + sm * f;
      }
    }
    freq[static_cast<size_t>(i)] = f;
  }
  auto rope = [&](std::vector<double>& v, int64_t heads, int64_t pos) {
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double a = static_cast<double>(pos) * freq[static_cast<size_t>(i)];
        double& x1 = v[static_cast<size_t>(h * hd + i)];
        double& x2 = v[static_cast<size_t>(h * hd + i + hd / 2)];
        const double n1 = x1 * std::cos(a) - x2 * std::sin(a);
        const double n2 = x2 * std::cos(a) + x1 * std::sin(a);
        x1 = n1;
        x2 = n2;
      }
  };
  std::vector<std::vector<double>> x(static_cast<size_t>(T));
  const auto& E = W("model.embed_tokens.weight");
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i)
      x[static_cast<size_t>(t)].push_back(
          static_cast<double>(E[static_cast<size_t>(tokens[static_cast<size_t>(t)] * D + i)]));
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::vector<float>* bq = c.qkv_bias ? &W(p + "self_attn.q_proj.bias") : nullptr;
    const std::vector<float>* bk = c.qkv_bias ? &W(p + "self_attn.k_proj.bias") : nullptr;
    const std::vector<float>* bv = c.qkv_bias ? &W(p + "self_attn.v_proj.bias") : nullptr;
    std::vector<std::vector<double>> q, k, v;
    for (int64_t t = 0; t < T; ++t) {
      auto h = rmsnorm(x[static_cast<size_t>(t)], W(p + "input_layernorm.weight"));
      q.push_back(linear(W(p + "self_attn.q_proj.weight"), h, nh * hd, bq));
      k.push_back(linear(W(p + "self_attn.k_proj.weight"), h, nkv * hd, bk));
      v.push_back(linear(W(p + "self_attn.v_proj.weight"), h, nkv * hd, bv));
      rope(q.back(), nh, t);
      rope(k.back(), nkv, t);
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> att(static_cast<size_t>(nh * hd), 0.0);
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / (nh / nkv);
        std::vector<double> sc;
        for (int64_t j = 0; j <= t; ++j) {
          if (c.sliding_window > 0 && t - j >= c.sliding_window) {
            sc.push_back(-kInf);
            continue;
          }
          double d = 0;
          for (int64_t i = 0; i < hd; ++i)
            d += q[static_cast<size_t>(t)][static_cast<size_t>(h * hd + i)] *
                 k[static_cast<size_t>(j)][static_cast<size_t>(g * hd + i)];
          sc.push_back(d / std::sqrt(static_cast<double>(hd)));
        }
        double mx = -kInf, sum = 0;
        for (double s : sc) mx = std::max(mx, s);
        for (double& s : sc) sum += (s = std::exp(s - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < hd; ++i)
            att[static_cast<size_t>(h * hd + i)] +=
                sc[static_cast<size_t>(j)] / sum *
                v[static_cast<size_t>(j)][static_cast<size_t>(g * hd + i)];
      }
      const std::vector<float>* bo = c.o_bias ? &W(p + "self_attn.o_proj.bias") : nullptr;
      auto o = linear(W(p + "self_attn.o_proj.weight"), att, D, bo);
      for (int64_t i = 0; i < D; ++i)
        x[static_cast<size_t>(t)][static_cast<size_t>(i)] += o[static_cast<size_t>(i)];
    }
    for (int64_t t = 0; t < T; ++t) {
      auto h = rmsnorm(x[static_cast<size_t>(t)], W(p + "post_attention_layernorm.weight"));
      auto gt = linear(W(p + "mlp.gate_proj.weight"), h, I, nullptr);
      auto up = linear(W(p + "mlp.up_proj.weight"), h, I, nullptr);
      for (int64_t i = 0; i < I; ++i) {
        const double gg = gt[static_cast<size_t>(i)];
        gt[static_cast<size_t>(i)] = gg / (1 + std::exp(-gg)) * up[static_cast<size_t>(i)];
      }
      auto d = linear(W(p + "mlp.down_proj.weight"), gt, D, nullptr);
      for (int64_t i = 0; i < D; ++i)
        x[static_cast<size_t>(t)][static_cast<size_t>(i)] += d[static_cast<size_t>(i)];
    }
  }
  const auto& head = c.tie_word_embeddings ? E : W("lm_head.weight");
  std::vector<std::vector<double>> out;
  for (int64_t t = 0; t < T; ++t) {
    auto h = rmsnorm(x[static_cast<size_t>(t)], W("model.norm.weight"));
    auto lg = linear(head, h, V, nullptr);
    double mx = -kInf, sum = 0;
    for (double z : lg) mx = std::max(mx, z);
    for (double z : lg) sum += std::exp(z - mx);
    for (double& z : lg) z = z - mx - std::log(sum);
    out.push_back(lg);
  }
  return out;
}

// The demo's byte-level tokenizer.json (<bos> added by the post-processor);
// the vocabulary is GPT-2's bytes_to_unicode, transcribed from the Python original.
inline nlohmann::json byte_level_tokenizer_json() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string ch;
    const int c = cs[i];
    if (c < 0x80)
      ch += static_cast<char>(c);
    else {
      ch += static_cast<char>(0xC0 | (c >> 6));
      ch += static_cast<char>(0x80 | (c & 0x3F));
    }
    vocab[ch] = bs[i];
  }
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 256}, {"content", "<bos>"}, {"special", true}},
        {{"id", 257}, {"content", "<eos>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {256}}, {"tokens", {"<bos>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
}

// x rounded to bf16.
inline float round_bf16(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

// Writes `w` (rounded to bf16) as an HF folder; returns the rounded weights.
inline Weights write_checkpoint(const std::filesystem::path& dir, const nlohmann::json& config,
                                Weights w, const std::string& skip = "") {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump();
  std::vector<TensorData> tensors;
  const ModelConfig c = ModelConfig::from_json(config, "cfg");
  const TpPlan plan(c, 1);
  for (const auto& t : plan.tensors()) {
    auto& v = w.at(t.name);
    for (auto& x : v) x = round_bf16(x);
    if (t.name == skip) continue;
    TensorData td;
    td.spec = {t.name, DType::BF16, t.shape};
    td.bytes.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t b = f32_to_bf16(v[i]);
      std::memcpy(td.bytes.data() + 2 * i, &b, 2);
    }
    tensors.push_back(std::move(td));
  }
  write_safetensors(dir / "model.safetensors", tensors);
  return w;
}

}  // namespace kintsugi::test
