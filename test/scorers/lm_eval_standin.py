#!/usr/bin/env python3
"""A stand-in for `lm_eval` (lm-evaluation-harness 0.4.x) for CPU tests.

It takes lm_eval's command line, scores the model by running
`kintsugi eval JOB --checkpoint DIR --split SPLIT --json` (kintsugi's builtin
evaluator on the job's tasks), and writes the scores in lm_eval's results
layout:

    OUTPUT_PATH/<sanitized model name>/results_<timestamp>.json

so that `evaluator.kind: command` with `results: lm_eval` can be tested
without lm-eval, vLLM or a GPU. Python 3 standard library only.

    lm_eval_standin.py --model vllm --model_args pretrained=DIR,dtype=float32 \
        --tasks add,rev --output_path OUT [--seed N] [--batch_size auto] \
        --kintsugi BIN --job JOB.yaml --split search

--kintsugi/--job/--split are the stand-in's own options: JOB must use the
builtin evaluator (it is the stand-in's scoring job, not the job being
searched), and the task names in --tasks must be JOB's task names. Every
metric kintsugi reports for a task is written as "<metric>,none" with
"<metric>_stderr,none": "N/A" (kintsugi computes no standard errors; lm-eval
writes "N/A" where it has none, see calculate_aggregate_metric below).
--group NAME additionally files the tasks under an lm-eval group NAME (an
unweighted mean, to exercise readers that must skip group rows).

Where each part of the layout comes from, in EleutherAI/lm-evaluation-harness
(read at the commits named, all in the 0.4.x line):
  - file path: lm_eval/loggers/evaluation_tracker.py,
    EvaluationTracker.save_results_aggregated (034ab03): OUTPUT_PATH /
    model_name_sanitized / f"results_{date_id}.json" with
    date_id = datetime.now().isoformat().replace(":", "-"); an OUTPUT_PATH
    ending in ".json" gives OUTPUT_PATH's folder / f"{stem}_{date_id}.json".
    The text is json.dumps(results, indent=2, ensure_ascii=False).
  - model name: same file, GeneralConfigTracker._get_model_name: the value
    after the first of "peft=", "delta=", "pretrained=", "model=", "path=",
    "engine=" found in model_args, up to the next comma;
    lm_eval/utils.py sanitize_model_name (003e585):
    re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name).
  - "results", "groups", "group_subtasks", "configs", "versions", "n-shot",
    "higher_is_better", "n-samples": lm_eval/evaluator.py evaluate()
    (5b321a1), results_dict; "groups" only when there are groups.
  - per task in "results": lm_eval/evaluator_utils.py consolidate_results and
    prepare_print_tasks (0064c3a): "alias" first, then per metric
    "<metric>,<filter>" followed by "<metric>_stderr,<filter>" ("N/A" when no
    stderr is computed: TaskOutput.calculate_aggregate_metric); "samples" is
    removed before writing.
  - "config", "git_hash", "date": lm_eval/evaluator.py simple_evaluate
    (5b321a1); "pretty_env_info", "transformers_version", "lm_eval_version",
    "upper_git_hash": lm_eval/loggers/utils.py add_env_info;
    "tokenizer_*", "eot_token_id", "max_length": add_tokenizer_info.
  - "task_hashes" and the GeneralConfigTracker fields ("model_source",
    "model_name", "model_name_sanitized", "system_instruction", ...,
    "total_evaluation_time_seconds"): save_results_aggregated, which adds them
    last ("task_hashes" is {} without --log_samples).
Exit status: 0 on success; 1 with a message on stderr when scoring fails;
2 for bad arguments (argparse).
"""

import argparse
import datetime
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

# The lm-eval release line whose layout this file follows ("+standin" marks it
# as not lm-eval itself).
LM_EVAL_VERSION = "0.4.8+standin"
# Metrics where lower is better (lm-eval's task YAMLs: perplexities,
# bits_per_byte); every other metric is higher-is-better.
LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")


def die(msg):
    print(f"lm_eval_standin: {msg}", file=sys.stderr)
    sys.exit(1)


def model_name_from_args(model_args):
    """GeneralConfigTracker._get_model_name."""
    for prefix in ("peft=", "delta=", "pretrained=", "model=", "path=", "engine="):
        if prefix in model_args:
            return model_args.split(prefix)[1].split(",")[0]
    return ""


def sanitize_model_name(name):
    """lm_eval/utils.py sanitize_model_name."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def parse_model_args(s):
    """lm_eval/utils.py simple_parse_args_string, without the type guessing."""
    out = {}
    for arg in (a for a in (s or "").strip().split(",") if a):
        k, _, v = arg.partition("=")
        out[k] = v
    return out


def run_kintsugi_eval(bin_, job, model_dir, split):
    """(scores {task: {metric: value}}, examples {task: count}) from kintsugi eval."""
    with tempfile.TemporaryDirectory(prefix="lm_eval_standin.") as tmp:
        samples = os.path.join(tmp, "samples.jsonl")
        cmd = [bin_, "-q", "eval", job, "--checkpoint", model_dir, "--split", split, "--json",
               "--samples", samples]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            die(f"cannot run {bin_}: {e}")
        sys.stderr.write(p.stderr)
        if p.returncode != 0:
            die(f"`{' '.join(cmd)}` exited with {p.returncode}")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        if not lines:
            die("kintsugi eval printed nothing on stdout")
        try:
            doc = json.loads(lines[-1])
            scores = doc["results"][0]["tasks"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            die(f"kintsugi eval's last line is not its JSON summary ({e!r}): {lines[-1][:200]}")
        counts = {}
        try:
            with open(samples, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        t = json.loads(line)["task"]
                        counts[t] = counts.get(t, 0) + 1
        except (OSError, ValueError, KeyError) as e:
            die(f"cannot read kintsugi eval's samples: {e!r}")
    return scores, counts


def count_parameters(model_dir):
    """Parameters in the folder's safetensors files (for config.model_num_parameters)."""
    total = 0
    for name in sorted(os.listdir(model_dir)):
        if not name.endswith(".safetensors"):
            continue
        try:
            with open(os.path.join(model_dir, name), "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
        except (OSError, ValueError, struct.error):
            return None
        for k, v in header.items():
            if k != "__metadata__":
                p = 1
                for d in v["shape"]:
                    p *= d
                total += p
    return total


def tokenizer_info(model_dir):
    """add_tokenizer_info's keys, read from tokenizer_config.json / tokenizer.json."""
    def load(name):
        try:
            with open(os.path.join(model_dir, name), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    tcfg, tok, cfg = load("tokenizer_config.json"), load("tokenizer.json"), load("config.json")
    vocab = dict((tok.get("model") or {}).get("vocab") or {}) if isinstance(
        (tok.get("model") or {}).get("vocab"), dict) else {}
    for t in tok.get("added_tokens") or []:
        vocab[t.get("content")] = t.get("id")

    def token(key):
        v = tcfg.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return [v, str(vocab.get(v)) if v is not None else "None"]

    eos = token("eos_token")
    max_length = 2048  # lm-eval's HFLM default when the config names no length
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(cfg.get(attr), int):
            max_length = cfg[attr]
            break
    return {
        "tokenizer_pad_token": token("pad_token"),
        "tokenizer_eos_token": eos,
        "tokenizer_bos_token": token("bos_token"),
        "eot_token_id": int(eos[1]) if eos[1].isdigit() else None,
        "max_length": max_length,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", "-m", default="hf")
    ap.add_argument("--model_args", "-a", default="")
    ap.add_argument("--tasks", "-t", required=True)
    ap.add_argument("--output_path", "-o", required=True)
    ap.add_argument("--seed", "-s", default="0,1234,1234,1234")
    ap.add_argument("--batch_size", "-b", default="1")
    ap.add_argument("--device", default=None)
    ap.add_argument("--num_fewshot", "-f", type=int, default=None)
    ap.add_argument("--kintsugi", required=True, help="kintsugi binary (stand-in option)")
    ap.add_argument("--job", required=True, help="job file with the builtin evaluator (stand-in option)")
    ap.add_argument("--split", default="search", help="split to score (stand-in option)")
    ap.add_argument("--group", default=None, help="file the tasks under this lm-eval group (stand-in option)")
    args = ap.parse_args()

    start_date = time.time()
    start_time = time.perf_counter()
    model_name = model_name_from_args(args.model_args)
    model_dir = parse_model_args(args.model_args).get("pretrained") or model_name
    if not model_dir or not os.path.isdir(model_dir):
        die(f"--model_args names no model folder (pretrained=DIR): {args.model_args!r}")
    tasks = [t for t in args.tasks.split(",") if t]
    if not tasks:
        die("--tasks names no task")
    # --seed: one integer for all four seeds, or four comma-separated values
    # (lm_eval/__main__.py, _int_or_none_list_arg_type).
    seeds = args.seed.split(",")
    if len(seeds) == 1:
        seeds = seeds * 4
    if len(seeds) != 4:
        die(f"--seed takes 1 or 4 values, got {args.seed!r}")
    seeds = [None if s == "None" else int(s) for s in seeds]

    scores, counts = run_kintsugi_eval(args.kintsugi, args.job, model_dir, args.split)
    missing = [t for t in tasks if t not in scores]
    if missing:
        # lm-eval stops before evaluating when a task name is unknown.
        die(f"Tasks not found: {', '.join(missing)} (kintsugi eval scored {', '.join(sorted(scores))})")

    n_shot = args.num_fewshot if args.num_fewshot is not None else 0
    results, configs, versions, nshot, hib, nsamples = {}, {}, {}, {}, {}, {}
    for t in tasks:
        metrics = scores[t]
        row = {"alias": t}
        for m, v in metrics.items():
            row[f"{m},none"] = v
            row[f"{m}_stderr,none"] = "N/A"
        results[t] = row
        hib[t] = {m: m not in LOWER_IS_BETTER for m in metrics}
        versions[t] = 1.0
        nshot[t] = n_shot
        n = counts.get(t, 0)
        nsamples[t] = {"original": n, "effective": n}
        configs[t] = {
            "task": t,
            "dataset_path": args.job,
            "test_split": args.split,
            "num_fewshot": n_shot,
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": hib[t][m]}
                            for m in metrics],
            "output_type": "generate_until" if "exact_match" in metrics else "multiple_choice",
            "repeats": 1,
            "should_decontaminate": False,
            "metadata": {"version": 1.0, "kintsugi_standin": True},
        }

    results_dict = {}
    groups = {}
    if args.group:
        g = args.group
        grow = {"alias": g}
        names = sorted({m for t in tasks for m in scores[t]})
        for m in names:
            vals = [scores[t][m] for t in tasks if m in scores[t]]
            grow[f"{m},none"] = sum(vals) / len(vals)
            grow[f"{m}_stderr,none"] = "N/A"
        groups[g] = grow
        # prepare_print_tasks: the group row comes first, its tasks indented.
        results_dict["results"] = {g: grow, **{t: dict(results[t], alias=" - " + t) for t in tasks}}
        results_dict["groups"] = groups
        results_dict["group_subtasks"] = {g: list(tasks)}
        hib[g] = {m: m not in LOWER_IS_BETTER for m in names}
        nshot[g] = n_shot
        versions[g] = 1.0
    else:
        results_dict["results"] = results
        results_dict["group_subtasks"] = {t: [] for t in reversed(tasks)}
    results_dict["configs"] = dict(sorted(configs.items()))
    results_dict["versions"] = dict(sorted(versions.items()))
    results_dict["n-shot"] = dict(sorted(nshot.items()))
    results_dict["higher_is_better"] = dict(sorted(hib.items()))
    results_dict["n-samples"] = nsamples

    config = {"model": args.model, "model_args": args.model_args}
    if args.model == "hf":  # HFLM.get_model_info
        config.update({
            "model_num_parameters": count_parameters(model_dir),
            "model_dtype": "torch." + parse_model_args(args.model_args).get("dtype", "float32"),
            "model_revision": "main",
            "model_sha": "",
        })
    config.update({
        "batch_size": args.batch_size,
        "batch_sizes": [],
        "device": args.device,
        "use_cache": None,
        "limit": None,
        "bootstrap_iters": 100000,
        "gen_kwargs": None,
        "random_seed": seeds[0],
        "numpy_seed": seeds[1],
        "torch_seed": seeds[2],
        "fewshot_seed": seeds[3],
    })
    results_dict["config"] = config
    results_dict["git_hash"] = None
    results_dict["date"] = start_date
    results_dict.update({
        "pretty_env_info": "kintsugi lm_eval stand-in (test/scorers/lm_eval_standin.py); no torch",
        "transformers_version": "N/A",
        "lm_eval_version": LM_EVAL_VERSION,
        "upper_git_hash": None,
    })
    results_dict.update(tokenizer_info(model_dir))
    end_time = time.perf_counter()
    results_dict.update({
        "task_hashes": {},
        "model_source": args.model,
        "model_name": model_name,
        "model_name_sanitized": sanitize_model_name(model_name),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": None,
        "chat_template_sha": None,
        "start_time": start_time,
        "end_time": end_time,
        "total_evaluation_time_seconds": str(end_time - start_time),
    })

    dumped = json.dumps(results_dict, indent=2, ensure_ascii=False)
    date_id = datetime.datetime.now().isoformat().replace(":", "-")
    out = args.output_path
    try:
        if out.endswith(".json"):
            parent = os.path.dirname(out) or "."
            os.makedirs(parent, exist_ok=True)
            stem = os.path.basename(out)[: -len(".json")]
            path = os.path.join(parent, f"{stem}_{date_id}.json")
        else:
            folder = os.path.join(out, sanitize_model_name(model_name))
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"results_{date_id}.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(dumped)
    except OSError as e:
        die(f"cannot write the results: {e}")
    # lm-eval prints a table of the results; one line per task is enough here.
    for t in tasks:
        print(f"{t}: " + ", ".join(f"{m}={v}" for m, v in scores[t].items()))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
