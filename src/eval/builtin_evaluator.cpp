#include "kintsugi/eval/builtin_evaluator.hpp"

#include <algorithm>
#include <memory>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/eval/metrics.hpp"
#include "kintsugi/model/transformer.hpp"

namespace kintsugi {

namespace {

struct Ctx {
  Transformer& model;
  const ByteTokenizer& tok;
  int32_t bos, eos;
  size_t batch;
  std::vector<int32_t> with_bos(const std::string& text) const {
    std::vector<int32_t> ids{bos};
    const auto b = tok.encode(text);
    ids.insert(ids.end(), b.begin(), b.end());
    return ids;
  }
};

nlohmann::json base_sample(const EvalTask& t, size_t i) {
  nlohmann::json j;
  j["task"] = t.config.name;
  j["index"] = i;
  if (!t.examples[i].id.empty()) j["id"] = t.examples[i].id;
  return j;
}

void run_choice(Ctx& c, const EvalTask& t, TaskResult& res, bool keep) {
  const auto& ex = t.examples;
  size_t acc = 0, acc_norm = 0;
  std::vector<float> logits;
  for (size_t a = 0; a < ex.size(); a += c.batch) {
    const size_t b = std::min(ex.size(), a + c.batch);
    const size_t n = b - a;
    // 1. Prefill every context once; its last position predicts each choice's first byte.
    std::vector<std::vector<int32_t>> ctx_tokens(n);
    std::vector<std::shared_ptr<SeqCache>> caches(n);
    std::vector<ForwardRequest> reqs(n);
    for (size_t e = 0; e < n; ++e) {
      ctx_tokens[e] = c.with_bos(ex[a + e].context);
      caches[e] = std::make_shared<SeqCache>(c.model.new_cache());
      reqs[e] = {caches[e].get(), ctx_tokens[e], {static_cast<int32_t>(ctx_tokens[e].size() - 1)}};
    }
    c.model.forward(reqs, logits);
    std::vector<int32_t> rows, targets;
    std::vector<std::vector<double>> ll(n);
    for (size_t e = 0; e < n; ++e) {
      ll[e].assign(ex[a + e].choices.size(), 0.0);
      for (const auto& ch : ex[a + e].choices) {
        rows.push_back(static_cast<int32_t>(e));
        targets.push_back(static_cast<unsigned char>(ch[0]));
      }
    }
    std::vector<double> lp(targets.size());
    c.model.log_probs(logits.data(), n, rows, targets, lp);
    for (size_t e = 0, k = 0; e < n; ++e)
      for (size_t ci = 0; ci < ll[e].size(); ++ci) ll[e][ci] = lp[k++];
    // 2. The remaining bytes of each choice, continuing the shared context cache.
    struct Cont {
      size_t e, ci;
      std::vector<int32_t> in, out;
    };
    std::vector<Cont> conts;
    for (size_t e = 0; e < n; ++e)
      for (size_t ci = 0; ci < ll[e].size(); ++ci) {
        const auto ids = c.tok.encode(ex[a + e].choices[ci]);
        if (ids.size() < 2) continue;
        conts.push_back({e, ci, {ids.begin(), ids.end() - 1}, {ids.begin() + 1, ids.end()}});
      }
    for (size_t ca = 0; ca < conts.size(); ca += c.batch) {
      const size_t cb = std::min(conts.size(), ca + c.batch);
      std::vector<SeqCache> cc;
      cc.reserve(cb - ca);
      std::vector<ForwardRequest> cr;
      std::vector<int32_t> tg;
      for (size_t k = ca; k < cb; ++k) {
        cc.push_back(c.model.continue_from(caches[conts[k].e], caches[conts[k].e]->own_len));
        std::vector<int32_t> at(conts[k].in.size());
        std::iota(at.begin(), at.end(), 0);
        cr.push_back({&cc.back(), conts[k].in, std::move(at)});
        tg.insert(tg.end(), conts[k].out.begin(), conts[k].out.end());
      }
      c.model.forward(cr, logits);
      std::vector<double> clp(tg.size());
      c.model.log_probs(logits.data(), tg.size(), {}, tg, clp);
      size_t off = 0;
      for (size_t k = ca; k < cb; ++k) {
        double s = 0;
        for (size_t i = 0; i < conts[k].out.size(); ++i) s += clp[off + i];
        off += conts[k].out.size();
        ll[conts[k].e][conts[k].ci] += s;
      }
    }
    for (size_t e = 0; e < n; ++e) {
      const ChoiceScore s = score_choice(ll[e], ex[a + e].choices, ex[a + e].label);
      acc += s.acc;
      acc_norm += s.acc_norm;
      if (keep) {
        nlohmann::json j = base_sample(t, a + e);
        j["loglikelihoods"] = ll[e];
        j["label"] = ex[a + e].label;
        j["pred"] = s.pred;
        j["pred_norm"] = s.pred_norm;
        j["correct"] = t.config.primary_metric() == "acc_norm" ? s.acc_norm : s.acc;
        res.samples.push_back(std::move(j));
      }
    }
  }
  const double m = static_cast<double>(ex.size());
  res.metrics["acc"] = static_cast<double>(acc) / m;
  res.metrics["acc_norm"] = static_cast<double>(acc_norm) / m;
}

void run_perplexity(Ctx& c, const EvalTask& t, TaskResult& res, bool keep) {
  const auto& ex = t.examples;
  double nll_total = 0;
  size_t bytes_total = 0;
  std::vector<float> logits;
  for (size_t a = 0; a < ex.size(); a += c.batch) {
    const size_t b = std::min(ex.size(), a + c.batch);
    std::vector<std::vector<int32_t>> toks(b - a);
    std::vector<SeqCache> caches;
    caches.reserve(b - a);
    std::vector<ForwardRequest> reqs;
    std::vector<int32_t> targets;
    for (size_t e = a; e < b; ++e) {
      toks[e - a] = c.with_bos(ex[e].text);
      const auto& tk = toks[e - a];
      caches.push_back(c.model.new_cache());
      std::vector<int32_t> at(tk.size() - 1);
      std::iota(at.begin(), at.end(), 0);
      // The last byte predicts nothing we score: feed all but it.
      reqs.push_back(
          {&caches.back(), std::span<const int32_t>(tk).first(tk.size() - 1), std::move(at)});
      targets.insert(targets.end(), tk.begin() + 1, tk.end());
    }
    c.model.forward(reqs, logits);
    std::vector<double> lp(targets.size());
    c.model.log_probs(logits.data(), targets.size(), {}, targets, lp);
    size_t off = 0;
    for (size_t e = a; e < b; ++e) {
      const size_t nb = ex[e].text.size();
      double nll = 0;
      for (size_t i = 0; i < nb; ++i) nll -= lp[off + i];
      off += nb;
      nll_total += nll;
      bytes_total += nb;
      if (keep) {
        nlohmann::json j = base_sample(t, e);
        j["nll"] = nll;
        j["bytes"] = nb;
        j["bits_per_byte"] = bits_per_byte(nll, nb);
        j["correct"] = nullptr;
        res.samples.push_back(std::move(j));
      }
    }
  }
  res.metrics["bits_per_byte"] = bits_per_byte(nll_total, bytes_total);
}

void run_generate(Ctx& c, const EvalTask& t, TaskResult& res, bool keep) {
  const auto& ex = t.examples;
  const auto& cfg = t.config;
  const auto re = compile_task_regex(cfg.regex, cfg.name);
  size_t correct = 0;
  std::vector<float> logits;
  for (size_t a = 0; a < ex.size(); a += c.batch) {
    const size_t b = std::min(ex.size(), a + c.batch);
    const size_t n = b - a;
    std::vector<std::vector<int32_t>> ctx(n), out(n);
    std::vector<SeqCache> caches;
    caches.reserve(n);
    std::vector<ForwardRequest> reqs;
    for (size_t e = 0; e < n; ++e) {
      ctx[e] = c.with_bos(ex[a + e].context);
      caches.push_back(c.model.new_cache());
      reqs.push_back({&caches.back(), ctx[e], {static_cast<int32_t>(ctx[e].size() - 1)}});
    }
    std::vector<size_t> active(n);
    std::iota(active.begin(), active.end(), 0);
    std::vector<int32_t> next(n);
    std::vector<int32_t> step_tok(n);
    c.model.forward(reqs, logits);
    c.model.argmax(logits.data(), n, next);
    while (true) {
      std::vector<size_t> still;
      for (size_t k = 0; k < active.size(); ++k) {
        const size_t e = active[k];
        const int32_t tk = next[k];
        if (tk == c.eos || cfg.max_new_tokens == 0) continue;
        out[e].push_back(tk);
        if (out[e].size() >= cfg.max_new_tokens || has_stop(c.tok.decode(out[e]), cfg.stop))
          continue;
        still.push_back(e);
      }
      if (still.empty()) break;
      active = still;
      reqs.clear();
      for (size_t e : active)
        reqs.push_back({&caches[e], std::span<const int32_t>(&out[e].back(), 1), {0}});
      c.model.forward(reqs, logits);
      next.resize(active.size());
      c.model.argmax(logits.data(), active.size(), next);
    }
    for (size_t e = 0; e < n; ++e) {
      const std::string output = cut_at_stop(c.tok.decode(out[e]), cfg.stop);
      const bool ok = exact_match(output, ex[a + e].target, re, cfg.ignore_case);
      correct += ok;
      if (keep) {
        nlohmann::json j = base_sample(t, a + e);
        j["output"] = output;
        j["answer"] = extract_answer(output, re, cfg.ignore_case);
        j["target"] = ex[a + e].target;
        j["correct"] = ok;
        res.samples.push_back(std::move(j));
      }
    }
  }
  res.metrics["exact_match"] = static_cast<double>(correct) / static_cast<double>(ex.size());
}

}  // namespace

std::vector<TaskResult> evaluate_model(MPI_Comm group, const ModelShard& shard,
                                       const ByteTokenizer& tokenizer,
                                       std::span<const EvalTask> tasks,
                                       const EvalOptions& options) {
  const ModelConfig& mc = shard.config();
  if (tokenizer.vocab_size() > mc.vocab_size)
    throw_input("the tokenizer has {} ids but the model's vocab_size is {}", tokenizer.vocab_size(),
                mc.vocab_size);
  int32_t bos = static_cast<int32_t>(mc.bos_token_id);
  if (bos < 0) bos = tokenizer.special_id("<bos>");
  if (bos < 0) throw_input("the model has no bos_token_id and the tokenizer no <bos> token");
  int32_t eos = static_cast<int32_t>(mc.eos_token_id);
  if (eos < 0) eos = tokenizer.special_id("<eos>");
  Transformer model(shard, group);
  Ctx c{model, tokenizer, bos, eos, std::max<size_t>(1, options.batch_size)};
  std::vector<TaskResult> results;
  for (const auto& t : tasks) {
    TaskResult r;
    r.task = t.config.name;
    r.metric = t.config.primary_metric();
    switch (t.config.kind) {
      case TaskKind::Generate:
        run_generate(c, t, r, options.keep_samples);
        break;
      case TaskKind::Choice:
        run_choice(c, t, r, options.keep_samples);
        break;
      case TaskKind::Perplexity:
        run_perplexity(c, t, r, options.keep_samples);
        break;
    }
    auto it = r.metrics.find(r.metric);
    if (it == r.metrics.end())
      throw_input("task {}: metric '{}' is not computed for kind {}", t.config.name, r.metric,
                  task_kind_name(t.config.kind));
    r.score = it->second;
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace kintsugi
