#!/usr/bin/python3
"""kintsugi eval, optimize and report on real-vocabulary models (ctest real_models).

  check_eval.py texts --out DIR
      writes DIR/eval_texts.json: test/real_models/texts.json's texts, then for
      each example of choice.jsonl the context and context + choice (after
      lm-eval's move of the context's trailing whitespace), then the contexts
      of generate.jsonl -- for tools/real_models_reference.py, with
      "lm_eval_prefix" naming the texts lm-eval scores after an empty context.
  check_eval.py check --out DIR --kintsugi BIN --reference REF FAMILY...
      for each family (folders DIR/FAMILY/base, ft1, ft2): kintsugi eval of
      base on a perplexity task (the texts), a choice task and generate tasks,
      tokenized by kintsugi itself, against the reference (HF's token ids,
      PyTorch float64 log-probs, lm-eval's formulas, HF's decode); then
      kintsugi optimize (tiny budget) and report on the first family's pool.

Checks (each failure exits 1 with a message):
  perplexity: the scored token ids equal HF's ids after the first (BOS or
    lm-eval's prefix_token_id); each token's log-prob within 1e-3 of PyTorch's;
    bits_per_byte, byte_perplexity, word_perplexity equal lm-eval's formulas
    (words = len(re.split(r"\\s+", text))) over the reference log-probs, to 1e-4
    relative;
  choice: each choice's log-likelihood within 1e-3 of the sum of the
    reference log-probs of its continuation tokens (lm-eval's _encode_pair);
  generate: with max_new_tokens 1, the output equals HF's decode (skipping
    special tokens) of PyTorch's argmax token; with those decoded
    strings as stop strings, every output is cut to ""; with a copy of the
    model whose generation_config.json lists the argmax tokens as EOS ids, every
    output is "" (stopped at EOS before any token).
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-3


def fail(msg):
    sys.exit(f"real_models eval: FAIL: {msg}")


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def move_space(ctx, cont):
    """lm-eval's _encode_pair: trailing whitespace of the context moves to the continuation."""
    n = len(ctx) - len(ctx.rstrip())
    return (ctx[:-n], ctx[-n:] + cont) if n else (ctx, cont)


def layout():
    texts = json.load(open(os.path.join(HERE, "texts.json"), encoding="utf-8"))["texts"]
    out, index = list(texts), {"ppl": list(range(len(texts))), "choice": [], "gen": []}
    # Texts lm-eval scores after an empty context: [prefix_token_id] in front.
    prefixed = list(range(len(texts)))
    for ex in jsonl(os.path.join(HERE, "choice.jsonl")):
        entry = {"ctx": None, "whole": []}
        for ch in ex["choices"]:
            ctx, cont = move_space(ex["context"], ch)
            if ctx and entry["ctx"] is None:
                entry["ctx"] = len(out)
                out.append(ctx)
            entry["whole"].append(len(out))
            if not ctx:
                prefixed.append(len(out))
            out.append(ctx + cont)
        index["choice"].append(entry)
    for ex in jsonl(os.path.join(HERE, "generate.jsonl")):
        index["gen"].append(len(out))
        out.append(ex["context"])
    return texts, out, index, prefixed


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def hf_decode(node_modules, tokenizer_json, ids):
    js = r"""
const {Tokenizer} = require('tokenizers');
const job = JSON.parse(require('fs').readFileSync(0, 'utf8'));
(async () => {
  const t = Tokenizer.fromFile(job.path);
  const out = [];
  for (const id of job.ids) out.push(await t.decode([id], true));
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""
    env = dict(os.environ, NODE_PATH=os.path.abspath(node_modules))
    return json.loads(run(["node", "-e", js], input=json.dumps({"path": tokenizer_json, "ids": ids}), env=env))


def write_job(path, pool, tasks, budget=2):
    lines = ["pool:", "  checkpoints:"] + [f"    - {p}" for p in pool]
    lines.append("tasks:")
    for t in tasks:
        lines.append("  - " + json.dumps(t))
    lines += ["evaluator:", "  batch_size: 4",
              "search: {method: cmaes, parameterization: simplex, budget: %d, sigma0: 0.3, seed: 1}" % budget,
              "objective: {kind: mean}", "parallel: {tensor_parallel: 1}",
              "output: {state: state.h5, dir: out}"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def eval_samples(kintsugi, job, checkpoint, workdir):
    samples = os.path.join(workdir, "samples.jsonl")
    out = run([kintsugi, "eval", job, "--checkpoint", checkpoint, "--json", "--samples", samples])
    metrics = json.loads(out.strip().splitlines()[-1])["results"][0]["tasks"]
    by_task = {}
    for s in jsonl(samples):
        by_task.setdefault(s["task"], []).append(s)
    return metrics, by_task


def check_family(args, fam, seqs, texts, index):
    base = os.path.join(args.out, fam, "base")
    work = os.path.join(args.out, "eval", fam)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "ppl.search.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    shutil.copyfile(os.path.join(HERE, "choice.jsonl"), os.path.join(work, "ch.search.jsonl"))
    shutil.copyfile(os.path.join(HERE, "generate.jsonl"), os.path.join(work, "gen.search.jsonl"))
    # The reference's first greedy token after each generate context, decoded by HF.
    first = [seqs[i]["argmax"][-1] for i in index["gen"]]
    first_text = hf_decode(args.node_modules, os.path.join(base, "tokenizer.json"), first)
    stops = sorted({t for t in first_text if t})
    if len(stops) != len(first_text):
        fail(f"{fam}: a first generated token decodes to the empty string; choose other contexts")
    tasks = [
        {"name": "ppl", "file": "ppl.{split}.jsonl", "kind": "perplexity", "metric": "bits_per_byte"},
        {"name": "ch", "file": "ch.{split}.jsonl", "kind": "choice", "metric": "acc_norm"},
        {"name": "gen1", "file": "gen.{split}.jsonl", "kind": "generate", "metric": "exact_match",
         "max_new_tokens": 1, "stop": ["\u0007"]},
        {"name": "genstop", "file": "gen.{split}.jsonl", "kind": "generate", "metric": "exact_match",
         "max_new_tokens": 6, "stop": stops},
    ]
    pool = [os.path.join(args.out, fam, n) for n in ("base", "ft1", "ft2")]
    job = os.path.join(work, "job.yaml")
    write_job(job, pool, tasks)
    metrics, samples = eval_samples(args.kintsugi, job, base, work)

    # Perplexity: ids, per-token log-probs, lm-eval's aggregate formulas.
    worst, nll, nbytes, nwords = 0.0, 0.0, 0, 0
    for s, ti in zip(samples["ppl"], index["ppl"]):
        ref = seqs[ti]
        if s["tokens"] != ref["ids"][1:]:
            fail(f"{fam}: text {ti}: kintsugi's token ids differ from HF's ({len(s['tokens'])} vs {len(ref['ids']) - 1})")
        for a, b in zip(s["logprobs"], ref["logprobs"]):
            worst = max(worst, abs(a - b))
        nll -= sum(ref["logprobs"])
        nbytes += len(texts[ti].encode("utf-8"))
        words = len(re.split(r"\s+", texts[ti]))
        nwords += words
        if s["words"] != words:
            fail(f"{fam}: text {ti}: {s['words']} words, Python's re.split counts {words}")
    if worst > TOL:
        fail(f"{fam}: perplexity log-probs differ from PyTorch by up to {worst:.3g}")
    expect = {"bits_per_byte": nll / math.log(2) / nbytes, "byte_perplexity": math.exp(nll / nbytes),
              "word_perplexity": math.exp(nll / nwords)}
    for k, v in expect.items():
        got = metrics["ppl"][k]
        if abs(got - v) > 1e-4 * abs(v):
            fail(f"{fam}: {k} {got} vs lm-eval's formula on the reference {v}")

    # Choice: continuation log-likelihoods (lm-eval's _encode_pair over HF's ids).
    worst_ch = 0.0
    for s, entry in zip(samples["ch"], index["choice"]):
        n_ctx = len(seqs[entry["ctx"]]["ids"]) if entry["ctx"] is not None else 1
        for ci, wi in enumerate(entry["whole"]):
            whole = seqs[wi]
            if entry["ctx"] is not None and whole["ids"][:n_ctx] != seqs[entry["ctx"]]["ids"]:
                fail(f"{fam}: choice example {s['index']}: the context's ids are not a prefix of the whole's")
            ref = sum(whole["logprobs"][n_ctx - 1:])
            worst_ch = max(worst_ch, abs(s["loglikelihoods"][ci] - ref))
    if worst_ch > TOL:
        fail(f"{fam}: choice log-likelihoods differ from PyTorch by up to {worst_ch:.3g}")

    # Generate: decoded text of the greedy token; stop strings on decoded text.
    for s, want in zip(samples["gen1"], first_text):
        if s["output"] != want:
            fail(f"{fam}: generate {s['index']}: output {s['output']!r}, HF decodes the argmax to {want!r}")
    for s in samples["genstop"]:
        if s["output"] != "":
            fail(f"{fam}: generate {s['index']}: output {s['output']!r} not cut at its stop string")

    # EOS from generation_config.json (a list): a copy whose EOS ids are the argmax tokens.
    eos_dir = os.path.join(work, "base-eos")
    shutil.rmtree(eos_dir, ignore_errors=True)
    shutil.copytree(base, eos_dir)
    gc_path = os.path.join(eos_dir, "generation_config.json")
    gc = json.load(open(gc_path))
    orig = gc.get("eos_token_id")
    gc["eos_token_id"] = ([orig] if isinstance(orig, int) else list(orig or [])) + sorted(set(first))
    json.dump(gc, open(gc_path, "w"))
    write_job(job, pool, [dict(tasks[3], name="geneos", stop=["\u0007"])])
    _, samples = eval_samples(args.kintsugi, job, eos_dir, work)
    for s in samples["geneos"]:
        if s["output"] != "":
            fail(f"{fam}: generate {s['index']}: output {s['output']!r} past an EOS id of generation_config.json")
    print(f"{fam}: kintsugi eval vs PyTorch: max |d log-prob| {worst:.2e} over {sum(len(seqs[i]['logprobs']) for i in index['ppl'])} "
          f"tokens, choice log-likelihoods {worst_ch:.2e}; generate decoded, stop strings and EOS list ok; "
          f"bits_per_byte {metrics['ppl']['bits_per_byte']:.4f}")


def check_optimize(args, fam, seqs):
    work = os.path.join(args.out, "eval", fam)
    job = os.path.join(work, "search.yaml")
    pool = [os.path.join(args.out, fam, n) for n in ("base", "ft1", "ft2")]
    for split in ("search", "test"):
        shutil.copyfile(os.path.join(HERE, "choice.jsonl"), os.path.join(work, f"ch.{split}.jsonl"))
        with open(os.path.join(work, f"ppl.{split}.jsonl"), "w", encoding="utf-8") as f:
            for t in json.load(open(os.path.join(HERE, "texts.json"), encoding="utf-8"))["texts"][:4]:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    write_job(job, pool, [
        {"name": "ppl", "file": "ppl.{split}.jsonl", "kind": "perplexity", "metric": "bits_per_byte"},
        {"name": "ch", "file": "ch.{split}.jsonl", "kind": "choice", "metric": "acc"}], budget=3)
    shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
    for f in ("state.h5",):
        if os.path.exists(os.path.join(work, f)):
            os.remove(os.path.join(work, f))
    run([args.kintsugi, "optimize", job], cwd=work)
    report = json.loads(run([args.kintsugi, "report", os.path.join(work, "state.h5"), "--json"], cwd=work))
    # The base checkpoint's search score on ppl: lm-eval's bits_per_byte over the reference.
    texts = json.load(open(os.path.join(HERE, "texts.json"), encoding="utf-8"))["texts"][:4]
    nll = -sum(sum(seqs[i]["logprobs"]) for i in range(len(texts)))
    want = nll / math.log(2) / sum(len(t.encode("utf-8")) for t in texts)
    base = [c for c in report.get("checkpoints", []) if c["name"] == "base"]
    if not base or abs(base[0]["scores"]["ppl"]["search"] - want) > 1e-4 * want:
        fail(f"{fam}: report's base ppl score {base[0]['scores']['ppl'] if base else None}, reference {want}")
    if "best" not in report or len(report["best"]["weights"]) != 3:
        fail(f"{fam}: kintsugi report has no optimized merge of the 3 checkpoints")
    print(f"{fam}: kintsugi optimize (budget 3, pool base+ft1+ft2) and report ok "
          f"(base bits_per_byte {want:.4f} as the reference)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["texts", "check"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kintsugi")
    ap.add_argument("--reference")
    ap.add_argument("--node-modules")
    ap.add_argument("families", nargs="*")
    args = ap.parse_intermixed_args()
    args.out = os.path.abspath(args.out)
    if args.kintsugi:
        args.kintsugi = os.path.abspath(args.kintsugi)
    texts, all_texts, index, prefixed = layout()
    if args.mode == "texts":
        with open(os.path.join(args.out, "eval_texts.json"), "w", encoding="utf-8") as f:
            json.dump({"texts": all_texts, "lm_eval_prefix": prefixed}, f, ensure_ascii=False)
        return
    ref = json.load(open(args.reference))
    by_folder = {m["folder"]: m["sequences"] for m in ref["models"]}
    seqs = {f: by_folder[os.path.join(args.out, f, "base")] for f in args.families}
    for fam in args.families:
        check_family(args, fam, seqs[fam], texts, index)
    check_optimize(args, args.families[0], seqs[args.families[0]])


if __name__ == "__main__":
    main()
