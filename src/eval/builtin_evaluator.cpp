#include "kintsugi/eval/builtin_evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/eval/metrics.hpp"
#include "kintsugi/model/transformer.hpp"

namespace kintsugi {

namespace {

struct Ctx {
  Transformer& model;
  const Tokenizer& tok;
  // What encode(text, true) puts before the text (the tokenizer's BOS rule),
  // and lm-eval's prefix_token_id for a context that would otherwise be empty.
  std::vector<int32_t> prefix;
  int32_t empty_prefix;
  std::vector<int32_t> eos;  // generation stops on any of them
  size_t batch;
  // A context's ids, as lm-eval's tok_encode: the tokenizer's prefix, then the
  // text's ids; [prefix_token_id] when that is empty.
  // An example's tokens must fit the model (config.json's
  // max_position_embeddings): checked before anything is allocated for them.
  void check_length(const EvalTask& t, size_t example, size_t tokens) const {
    const auto max = static_cast<size_t>(model.config().max_position_embeddings);
    if (tokens > max)
      throw_input("{}: example {}: {} tokens, more than the model's max_position_embeddings ({})",
                  t.file.string(), example, tokens, max);
  }
  std::vector<int32_t> context(const std::string& text) const {
    std::vector<int32_t> ids = prefix;
    const auto t = tok.encode(text, false);
    ids.insert(ids.end(), t.begin(), t.end());
    if (ids.empty()) ids.push_back(empty_prefix);
    return ids;
  }
  // lm-eval's _encode_pair: trailing whitespace of the context moves to the
  // continuation; the continuation's ids are those of context + continuation
  // after as many ids as the context alone has.
  std::pair<std::vector<int32_t>, std::vector<int32_t>> pair(std::string ctx,
                                                             std::string cont) const {
    const size_t n = rstrip_python(ctx).size();
    cont = ctx.substr(n) + cont;
    ctx.resize(n);
    std::vector<int32_t> c = context(ctx);
    std::vector<int32_t> whole = prefix;
    const auto w = tok.encode(ctx + cont, false);
    whole.insert(whole.end(), w.begin(), w.end());
    // An empty context stands for [prefix_token_id]; its continuation is all of `cont`.
    const size_t skip = prefix.empty() && ctx.empty() ? 0 : c.size();
    std::vector<int32_t> rest;
    if (whole.size() > skip) rest.assign(whole.begin() + static_cast<ptrdiff_t>(skip), whole.end());
    return {std::move(c), std::move(rest)};
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
  size_t acc = 0, acc_norm = 0, invalid = 0;
  for (size_t a = 0; a < ex.size(); a += c.batch) {
    const size_t b = std::min(ex.size(), a + c.batch);
    const size_t n = b - a;
    // 1. Prefill every context once; its last position predicts each choice's first token.
    std::vector<std::vector<int32_t>> ctx_tokens(n);
    std::vector<std::vector<std::vector<int32_t>>> choice_tokens(n);
    std::vector<std::shared_ptr<SeqCache>> caches(n);
    std::vector<ForwardRequest> reqs(n);
    for (size_t e = 0; e < n; ++e) {
      for (size_t ci = 0; ci < ex[a + e].choices.size(); ++ci) {
        auto [ctx_ids, cont_ids] = c.pair(ex[a + e].context, ex[a + e].choices[ci]);
        if (cont_ids.empty())
          throw_input("{}: example {}: choice {} has no tokens after the context", t.file.string(),
                      a + e, ci);
        c.check_length(t, a + e, ctx_ids.size() + cont_ids.size());
        if (ci == 0) ctx_tokens[e] = std::move(ctx_ids);
        choice_tokens[e].push_back(std::move(cont_ids));
      }
      caches[e] = std::make_shared<SeqCache>(c.model.new_cache());
      reqs[e] = {caches[e].get(), ctx_tokens[e], {static_cast<int32_t>(ctx_tokens[e].size() - 1)}};
    }
    c.model.forward(reqs);
    std::vector<int32_t> rows, targets;
    std::vector<std::vector<double>> ll(n);
    for (size_t e = 0; e < n; ++e) {
      ll[e].assign(ex[a + e].choices.size(), 0.0);
      for (const auto& ids : choice_tokens[e]) {
        rows.push_back(static_cast<int32_t>(e));
        targets.push_back(ids[0]);
      }
    }
    std::vector<double> lp(targets.size());
    c.model.log_probs(rows, targets, lp);
    for (size_t e = 0, k = 0; e < n; ++e)
      for (size_t ci = 0; ci < ll[e].size(); ++ci) ll[e][ci] = lp[k++];
    // 2. The remaining tokens of each choice, continuing the shared context cache.
    struct Cont {
      size_t e, ci;
      std::vector<int32_t> in, out;
    };
    std::vector<Cont> conts;
    for (size_t e = 0; e < n; ++e)
      for (size_t ci = 0; ci < ll[e].size(); ++ci) {
        const auto& ids = choice_tokens[e][ci];
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
      c.model.forward(cr);
      std::vector<double> clp(tg.size());
      c.model.log_probs({}, tg, clp);
      size_t off = 0;
      for (size_t k = ca; k < cb; ++k) {
        double s = 0;
        for (size_t i = 0; i < conts[k].out.size(); ++i) s += clp[off + i];
        off += conts[k].out.size();
        ll[conts[k].e][conts[k].ci] += s;
      }
    }
    for (size_t e = 0; e < n; ++e) {
      // A NaN log-likelihood (NaN or infinite weights) makes the task's
      // accuracy NaN: an argmax over NaNs would pass for a real score.
      const bool nan_here =
          std::any_of(ll[e].begin(), ll[e].end(), [](double v) { return std::isnan(v); });
      invalid += nan_here ? 1 : 0;
      const ChoiceScore s = score_choice(ll[e], ex[a + e].choices, ex[a + e].label);
      acc += s.acc;
      acc_norm += s.acc_norm;
      const bool correct = t.config.primary_metric() == "acc_norm" ? s.acc_norm : s.acc;
      res.examples.value.push_back(nan_here ? std::nan("") : correct ? 1.0 : 0.0);
      if (keep) {
        nlohmann::json j = base_sample(t, a + e);
        j["loglikelihoods"] = ll[e];
        j["label"] = ex[a + e].label;
        j["pred"] = s.pred;
        j["pred_norm"] = s.pred_norm;
        j["correct"] = correct;
        res.samples.push_back(std::move(j));
      }
    }
  }
  const double m = static_cast<double>(ex.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  res.metrics["acc"] = invalid ? nan : static_cast<double>(acc) / m;
  res.metrics["acc_norm"] = invalid ? nan : static_cast<double>(acc_norm) / m;
  res.metrics["acc_stderr"] = binomial_standard_error(res.metrics["acc"], ex.size());
  res.metrics["acc_norm_stderr"] = binomial_standard_error(res.metrics["acc_norm"], ex.size());
}

void run_perplexity(Ctx& c, const EvalTask& t, TaskResult& res, bool keep) {
  const auto& ex = t.examples;
  double nll_total = 0;
  size_t bytes_total = 0, words_total = 0;
  for (size_t a = 0; a < ex.size(); a += c.batch) {
    const size_t b = std::min(ex.size(), a + c.batch);
    std::vector<std::vector<int32_t>> toks(b - a);
    std::vector<SeqCache> caches;
    caches.reserve(b - a);
    std::vector<ForwardRequest> reqs;
    std::vector<int32_t> targets;
    std::vector<size_t> scored(b - a);
    for (size_t e = a; e < b; ++e) {
      // lm-eval's loglikelihood_rolling: the text after an empty context.
      auto [ctx_ids, text_ids] = c.pair("", ex[e].text);
      if (text_ids.empty())
        throw_input("{}: example {}: the text has no tokens", t.file.string(), e);
      c.check_length(t, e, ctx_ids.size() + text_ids.size());
      scored[e - a] = text_ids.size();
      toks[e - a] = std::move(ctx_ids);
      toks[e - a].insert(toks[e - a].end(), text_ids.begin(), text_ids.end());
      const auto& tk = toks[e - a];
      caches.push_back(c.model.new_cache());
      std::vector<int32_t> at(tk.size() - 1);
      std::iota(at.begin(), at.end(), 0);
      // The last token predicts nothing we score: feed all but it; score the text's tokens.
      reqs.push_back(
          {&caches.back(), std::span<const int32_t>(tk).first(tk.size() - 1),
           std::vector<int32_t>(at.end() - static_cast<ptrdiff_t>(scored[e - a]), at.end())});
      targets.insert(targets.end(), tk.end() - static_cast<ptrdiff_t>(scored[e - a]), tk.end());
    }
    c.model.forward(reqs);
    std::vector<double> lp(targets.size());
    c.model.log_probs({}, targets, lp);
    size_t off = 0;
    for (size_t e = a; e < b; ++e) {
      const size_t nt = scored[e - a];
      const size_t nb = ex[e].text.size();
      const size_t nw = count_words(ex[e].text);
      double nll = 0;
      for (size_t i = 0; i < nt; ++i) nll -= lp[off + i];
      nll_total += nll;
      bytes_total += nb;
      words_total += nw;
      res.examples.value.push_back(nll);
      res.examples.weight.push_back(
          static_cast<double>(t.config.primary_metric() == "word_perplexity" ? nw : nb));
      if (keep) {
        nlohmann::json j = base_sample(t, e);
        j["nll"] = nll;
        j["bytes"] = nb;
        j["words"] = nw;
        j["bits_per_byte"] = bits_per_byte(nll, nb);
        const auto& tk = toks[e - a];
        j["tokens"] = std::vector<int32_t>(tk.end() - static_cast<ptrdiff_t>(nt), tk.end());
        j["logprobs"] = std::vector<double>(lp.begin() + static_cast<ptrdiff_t>(off),
                                            lp.begin() + static_cast<ptrdiff_t>(off + nt));
        j["correct"] = nullptr;
        res.samples.push_back(std::move(j));
      }
      off += nt;
    }
  }
  res.metrics["bits_per_byte"] = bits_per_byte(nll_total, bytes_total);
  res.metrics["byte_perplexity"] = std::exp(nll_total / static_cast<double>(bytes_total));
  res.metrics["word_perplexity"] = std::exp(nll_total / static_cast<double>(words_total));
}

void run_generate(Ctx& c, const EvalTask& t, TaskResult& res, bool keep) {
  const auto& ex = t.examples;
  const auto& cfg = t.config;
  const auto re = compile_task_regex(cfg.regex, cfg.name);
  size_t correct = 0;
  for (size_t a = 0; a < ex.size(); a += c.batch) {
    const size_t b = std::min(ex.size(), a + c.batch);
    const size_t n = b - a;
    std::vector<std::vector<int32_t>> ctx(n), out(n);
    std::vector<SeqCache> caches;
    caches.reserve(n);
    std::vector<ForwardRequest> reqs;
    for (size_t e = 0; e < n; ++e) {
      ctx[e] = c.context(ex[a + e].context);
      c.check_length(t, a + e, ctx[e].size());
      caches.push_back(c.model.new_cache());
      reqs.push_back({&caches.back(), ctx[e], {static_cast<int32_t>(ctx[e].size() - 1)}});
    }
    std::vector<size_t> active(n);
    std::iota(active.begin(), active.end(), 0);
    std::vector<int32_t> next(n);
    std::vector<int32_t> step_tok(n);
    c.model.forward(reqs);
    c.model.argmax(next);
    while (true) {
      std::vector<size_t> still;
      for (size_t k = 0; k < active.size(); ++k) {
        const size_t e = active[k];
        const int32_t tk = next[k];
        if (cfg.max_new_tokens == 0 || std::find(c.eos.begin(), c.eos.end(), tk) != c.eos.end())
          continue;
        out[e].push_back(tk);
        if (out[e].size() >= cfg.max_new_tokens || has_stop(c.tok.decode(out[e], true), cfg.stop))
          continue;
        still.push_back(e);
      }
      if (still.empty()) break;
      active = still;
      reqs.clear();
      for (size_t e : active)
        reqs.push_back({&caches[e], std::span<const int32_t>(&out[e].back(), 1), {0}});
      c.model.forward(reqs);
      next.resize(active.size());
      c.model.argmax(next);
    }
    for (size_t e = 0; e < n; ++e) {
      const std::string output = cut_at_stop(c.tok.decode(out[e], true), cfg.stop);
      const bool ok = exact_match(output, ex[a + e].target, re, cfg.ignore_case);
      correct += ok;
      res.examples.value.push_back(ok ? 1.0 : 0.0);
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
                                       const Tokenizer& tokenizer, std::span<const EvalTask> tasks,
                                       const EvalOptions& options) {
  const ModelConfig& mc = shard.config();
  if (tokenizer.vocab_size() > mc.vocab_size)
    throw_input("the tokenizer has {} ids but the model's vocab_size is {}", tokenizer.vocab_size(),
                mc.vocab_size);
  // lm-eval's prefix_token_id: the tokenizer's BOS, else its EOS; then the model's.
  int32_t empty_prefix = -1;
  for (const int64_t id :
       {static_cast<int64_t>(tokenizer.bos_id().value_or(-1)),
        static_cast<int64_t>(tokenizer.eos_id().value_or(-1)), mc.bos_token_id, mc.eos_token_id})
    if (empty_prefix < 0 && id >= 0) empty_prefix = static_cast<int32_t>(id);
  if (empty_prefix < 0)
    throw_input("neither the tokenizer nor config.json names a bos or eos token");
  std::vector<int32_t> eos = options.eos_ids;
  if (eos.empty() && mc.eos_token_id >= 0) eos.push_back(static_cast<int32_t>(mc.eos_token_id));
  if (eos.empty() && tokenizer.eos_id()) eos.push_back(*tokenizer.eos_id());
  Transformer model(shard, group);
  Ctx c{model,        tokenizer,      tokenizer.prefix_ids(),
        empty_prefix, std::move(eos), std::max<size_t>(1, options.batch_size)};
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
    if (!transform_of_metric(r.metric, r.examples.transform))
      throw_input("task {}: metric '{}' has no per-example form", t.config.name, r.metric);
    if (!r.metrics.count(r.metric + "_stderr"))
      r.metrics[r.metric + "_stderr"] = standard_error(r.examples);
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace kintsugi
