#!/usr/bin/python3
"""Reference per-token log-probabilities of real-vocabulary models, in float64.

For each model folder (as written by tools/make_real_models.py, or any
Llama/Mistral/Qwen2 HF folder with bf16 safetensors) and each text of
--texts (JSON: {"texts": [...]}), the text is tokenized by Hugging Face's own
tokenizer -- the official Node binding, npm `tokenizers` (found under
--node-modules), `encode(text, null, {addSpecialTokens: true})` on the
folder's tokenizer.json -- and scored by an independent float64 PyTorch
forward pass written after Hugging Face's modelling code
(transformers' modeling_llama / modeling_mistral / modeling_qwen2):
RMSNorm, rotate-half RoPE with inv_freq = 1 / theta^(2i/d) (and `linear` or
`llama3` rope scaling), grouped-query attention with repeat_kv (query head h
uses KV head h // (H / KV)), Mistral's sliding window (position i attends to
j when 0 <= i - j < sliding_window), Qwen2's q/k/v biases, SwiGLU, tied or
untied lm_head. rope_theta is read from config.json's `rope_parameters`
(transformers >= 5) or from `rope_theta`/`rope_scaling` (transformers 4).

Writes --out:
  {"dtype": "float64", "models": [{"folder": ABS, "sequences":
     [{"text": i, "ids": [...], "logprobs": [log p(ids[t] | ids[:t]) for t >= 1],
       "argmax": [argmax_v p(v | ids[:t+1]) for t >= 0]}]}]}

The texts file may list text indices under "lm_eval_prefix": for those, when
the tokenizer adds no special token in front of the text (encode with and
without special tokens agree at the start, as for Qwen), lm-evaluation-harness's
prefix_token_id is prepended: tokenizer_config.json's bos_token, else its
eos_token (what lm-eval puts before an empty context, e.g. in
loglikelihood_rolling, so that every token of the text is scored).

  /usr/bin/python3 tools/real_models_reference.py --texts test/real_models/texts.json \\
      --node-modules tools/hf-reference/node_modules --out ref.json FOLDER...
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pool import read_safetensors  # noqa: E402

TOKENIZE_JS = r"""
const {Tokenizer} = require('tokenizers');
const fs = require('fs');
(async () => {
  const job = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = [];
  for (const path of job.tokenizers) {
    const t = Tokenizer.fromFile(path);
    const ids = [];
    for (const text of job.texts) {
      const e = await t.encode(text, null, {addSpecialTokens: true});
      const plain = await t.encode(text, null, {addSpecialTokens: false});
      ids.push([Array.from(e.getIds()), Array.from(plain.getIds()), t.tokenToId(job.prefix[out.length] || '')]);
    }
    out.push(ids);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def hf_tokenize(node_modules, tokenizer_paths, texts):
    """ids[k][i]: text i encoded by tokenizer k (HF tokenizers' Node binding)."""
    if not os.path.isdir(os.path.join(node_modules, "tokenizers")):
        sys.exit(f"real_models_reference.py: {node_modules}/tokenizers is missing "
                 "(npm install tokenizers@0.23.2 there)")
    env = dict(os.environ, NODE_PATH=os.path.abspath(node_modules))
    prefix = []
    for path in tokenizer_paths:
        cfg_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
        cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
        tok = cfg.get("bos_token") or cfg.get("eos_token")
        prefix.append(tok.get("content") if isinstance(tok, dict) else tok)
    r = subprocess.run(["node", "-e", TOKENIZE_JS],
                       input=json.dumps({"tokenizers": tokenizer_paths, "texts": texts, "prefix": prefix}),
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"real_models_reference.py: node failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout)


# ----------------------------------------------------------------------------
# Config and weights
# ----------------------------------------------------------------------------


class Arch:
    def __init__(self, c, origin):
        a = c["architectures"][0]
        if a not in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
            raise ValueError(f"{origin}: architecture {a} not handled by the reference")
        self.arch = a
        self.V, self.D, self.I = c["vocab_size"], c["hidden_size"], c["intermediate_size"]
        self.L, self.H = c["num_hidden_layers"], c["num_attention_heads"]
        self.KV = c.get("num_key_value_heads") or self.H
        self.hd = c.get("head_dim") or self.D // self.H
        self.eps = c["rms_norm_eps"]
        self.tied = c.get("tie_word_embeddings", False)
        assert c.get("hidden_act", "silu") == "silu", origin
        self.qkv_bias = a == "Qwen2ForCausalLM" or c.get("attention_bias", False)
        self.o_bias = a == "LlamaForCausalLM" and c.get("attention_bias", False)
        self.window = None
        if a == "MistralForCausalLM":
            self.window = c.get("sliding_window")
        if a == "Qwen2ForCausalLM":
            assert not c.get("use_sliding_window", False), origin
            assert all(t == "full_attention" for t in c.get("layer_types") or []), origin
        # RoPE: transformers >= 5 keeps theta and the scaling in rope_parameters.
        rp = c.get("rope_parameters")
        if rp is not None:
            self.theta = rp["rope_theta"]
            scaling = rp
        else:
            self.theta = c.get("rope_theta", 10000.0)
            scaling = c.get("rope_scaling") or {"rope_type": "default"}
        self.rope_type = scaling.get("rope_type", scaling.get("type", "default"))
        self.scaling = scaling
        if self.rope_type not in ("default", "linear", "llama3"):
            raise ValueError(f"{origin}: rope type {self.rope_type} not handled by the reference")

    def inv_freq(self):
        d = self.hd
        inv = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        s = self.scaling
        if self.rope_type == "linear":
            inv = inv / s["factor"]
        elif self.rope_type == "llama3":  # transformers' _compute_llama3_parameters
            factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
            old = s["original_max_position_embeddings"]
            lo_wl, hi_wl = old / lo, old / hi
            wl = 2 * math.pi / inv
            out = torch.where(wl > lo_wl, inv / factor, inv)
            smooth = (old / wl - lo) / (hi - lo)
            smoothed = (1 - smooth) * out / factor + smooth * out
            medium = ~(wl < hi_wl) & ~(wl > lo_wl)
            inv = torch.where(medium, smoothed, out)
        return inv


def load_weights(folder):
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for f in files:
        for n, t in read_safetensors(os.path.join(folder, f)).items():
            w[n] = t.to(torch.float64)
    return w


# ----------------------------------------------------------------------------
# The forward pass (float64, one sequence)
# ----------------------------------------------------------------------------


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def token_logprobs(a, w, ids):
    T = len(ids)
    ids_t = torch.tensor(ids, dtype=torch.int64)
    x = w["model.embed_tokens.weight"][ids_t]  # [T, D]
    pos = torch.arange(T, dtype=torch.float64)
    fr = torch.outer(pos, a.inv_freq())
    emb = torch.cat((fr, fr), dim=-1)
    cos, sin = emb.cos()[None], emb.sin()[None]  # [1, T, hd]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if a.window:
        allowed &= (i - j) < a.window
    mask = torch.zeros(T, T, dtype=torch.float64).masked_fill(~allowed, float("-inf"))
    for layer in range(a.L):
        p = f"model.layers.{layer}."

        def lin(name, inp, bias):
            y = inp @ w[p + name + ".weight"].T
            return y + w[p + name + ".bias"] if bias else y

        h = rms_norm(x, w[p + "input_layernorm.weight"], a.eps)
        q = lin("self_attn.q_proj", h, a.qkv_bias).view(T, a.H, a.hd).transpose(0, 1)
        k = lin("self_attn.k_proj", h, a.qkv_bias).view(T, a.KV, a.hd).transpose(0, 1)
        v = lin("self_attn.v_proj", h, a.qkv_bias).view(T, a.KV, a.hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = a.H // a.KV
        k = k.repeat_interleave(rep, dim=0)  # repeat_kv: head h uses KV head h // rep
        v = v.repeat_interleave(rep, dim=0)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(a.hd) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, a.H * a.hd)
        x = x + lin("self_attn.o_proj", o, a.o_bias)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], a.eps)
        g = lin("mlp.gate_proj", h, False)
        u = lin("mlp.up_proj", h, False)
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(g) * u, False)
    x = rms_norm(x, w["model.norm.weight"], a.eps)
    head = w["model.embed_tokens.weight"] if a.tied else w["lm_head.weight"]
    # log_softmax = logits - logsumexp, in float64, a block of rows at a time:
    # [T, V] float64 is tens of MB for Qwen2's 152k tokens, which glibc maps
    # and unmaps per allocation, and its page faults were most of the time.
    # The exponentials by numpy, in place (torch 1.13's float64 exp is scalar).
    lps, argmax, spread = [], [], 0.0
    for r0 in range(0, T, ROWS):
        logits = x[r0:r0 + ROWS] @ head.T  # [rows, V]
        top, best = logits.max(-1)
        spread = max(spread, float((top - logits.mean(-1)).max()))
        nxt = ids_t[r0 + 1:r0 + 1 + ROWS]  # the next token of each row (none after the last)
        picked = logits[:len(nxt)].gather(1, nxt[:, None])[:, 0]
        shifted = logits.sub_(top[:, None]).numpy()
        numpy.exp(shifted, out=shifted)
        lse = top + torch.from_numpy(numpy.log(shifted.sum(-1)))
        lps += (picked - lse[:len(nxt)]).tolist()
        argmax += best.tolist()
    return lps, argmax, spread


# Rows of logits per block: 8 x 152k float64 = 9.7 MB, under glibc's 32 MB
# threshold for mapping an allocation of its own.
ROWS = 8


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", required=True, help='JSON file {"texts": [...]}')
    ap.add_argument("--node-modules", required=True, help="a node_modules folder holding npm `tokenizers`")
    ap.add_argument("--out", required=True)
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = json.load(open(args.texts))
    texts = data["texts"]
    with_prefix = set(data.get("lm_eval_prefix", []))
    folders = [os.path.abspath(f) for f in args.folders]
    tok_paths = sorted({os.path.join(f, "tokenizer.json") for f in folders})
    all_ids = dict(zip(tok_paths, hf_tokenize(args.node_modules, tok_paths, texts)))
    models = []
    for f in folders:
        config = json.load(open(os.path.join(f, "config.json")))
        a = Arch(config, os.path.join(f, "config.json"))
        w = load_weights(f)
        seqs, n_tok, lp_sum, spread = [], 0, 0.0, 0.0
        for ti, (ids, plain, prefix_id) in enumerate(all_ids[os.path.join(f, "tokenizer.json")]):
            if ti in with_prefix and ids[:1] == plain[:1]:
                if prefix_id is None:
                    raise ValueError(f"{f}: the tokenizer adds no BOS and names no bos/eos token")
                ids = [prefix_id] + ids
            if len(ids) < 2:
                raise ValueError(f"text {ti}: {len(ids)} tokens, need 2")
            if max(ids) >= a.V:
                raise ValueError(f"{f}: text {ti}: token id {max(ids)} >= vocab_size {a.V}")
            lps, argmax, gap = token_logprobs(a, w, ids)
            seqs.append({"text": ti, "ids": ids, "logprobs": lps, "argmax": argmax})
            n_tok += len(lps)
            lp_sum += sum(lps)
            spread = max(spread, gap)
        models.append({"folder": f, "sequences": seqs})
        print(f"{f}: {len(seqs)} texts, {n_tok} scored tokens, mean log-prob {lp_sum / n_tok:.3f} "
              f"(uniform: {-math.log(a.V):.3f}), largest max-mean logit gap {spread:.1f} nats", file=sys.stderr)
    with open(args.out, "w") as fo:
        json.dump({"dtype": "float64", "texts": args.texts, "models": models}, fo)


if __name__ == "__main__":
    main()
