#!/usr/bin/env python3
"""The PyTorch peer of `kintsugi bench eval` (issue #17): the same Llama-family
forward pass in fp32 on one thread, on the same checkpoint and prompts, timed
the same way: one batched prefill of every prompt (a KV cache per sequence),
then greedy decode steps of one token per sequence reading that cache.

  torch_eval_bench.py --checkpoint DIR --prompts FILE --decode N --repeats R
  torch_eval_bench.py --checkpoint DIR --prompts FILE --decode N --serve

FILE is a JSON list of token-id lists (all the same length), written by
`kintsugi bench eval`, which starts this script and reads its JSON answer from
stdout: tokens/s of prefill and decode (of the median repetition, as the bench
reports its own), and the greedy tokens and the last
prefill position's log-probabilities of the first repetition, which the bench
compares with its own so both sides are known to compute the same model.

With --serve (how the bench runs it) the script loads the model, warms up,
prints {"ready": true} and then runs one repetition for each line `repeat` on
its stdin, answering each at once with {"prefill_s": ..., "decode_s": ...}:
the bench alternates these with its own repetitions, so that both sides see
the same moments of a shared host. At the end of its input it prints the JSON
answer above, over the repetitions it ran.

The model is written here from Hugging Face's LlamaForCausalLM definition
(RMSNorm, rotate-half RoPE, grouped-query attention with a causal mask, SwiGLU
MLP), as lean as a user would write it: batched matrix products, no Python loop
over heads or tokens. Debian ships PyTorch without `transformers` or
`safetensors`, so the checkpoint is read with tools/torch_linear_merge.py's
reader.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_linear_merge import model_file, open_safetensors, tensor  # noqa: E402


def fail(msg):
    print(f"torch_eval_bench: {msg}", file=sys.stderr)
    sys.exit(1)


class Llama:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            c = json.load(f)
        if c.get("model_type") not in ("llama", "mistral", "qwen2"):
            fail(f"{folder}: model_type {c.get('model_type')} is not llama, mistral or qwen2")
        if c.get("rope_scaling"):
            fail(f"{folder}: rope_scaling is not implemented here")
        self.D = c["hidden_size"]
        self.H = c["num_attention_heads"]
        self.KV = c.get("num_key_value_heads", self.H)
        self.hd = c.get("head_dim") or self.D // self.H
        self.eps = c["rms_norm_eps"]
        self.layers = c["num_hidden_layers"]
        h, m, b = open_safetensors(model_file(folder))
        w = {n: tensor(h, m, b, n).to(torch.float32).clone() for n in h}
        self.w = w
        self.lm_head = w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") \
            else w["lm_head.weight"]
        half = self.hd // 2
        self.inv_freq = 1.0 / (c.get("rope_theta", 10000.0) **
                               (torch.arange(0, half, dtype=torch.float64) * 2 / self.hd))
        self.inv_freq = self.inv_freq.to(torch.float32)

    def norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.eps))

    def rope(self, x, pos):  # x: [B, heads, n, hd], pos: [n]
        ang = pos.to(torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        half = self.hd // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def linear(self, x, name):
        y = x @ self.w[name + ".weight"].t()
        bias = self.w.get(name + ".bias")
        return y + bias if bias is not None else y

    def forward(self, tokens, cache):
        """tokens: [B, n] appended after the cache's positions; returns the
        last position's logits [B, V]."""
        B, n = tokens.shape
        past = 0 if not cache else cache[0][0].shape[2]
        pos = torch.arange(past, past + n)
        x = self.w["model.embed_tokens.weight"][tokens]
        mask = None
        if n > 1:
            mask = torch.full((n, past + n), float("-inf")).triu(past + 1)
        for l in range(self.layers):
            p = f"model.layers.{l}."
            xn = self.norm(x, self.w[p + "input_layernorm.weight"])
            q = self.linear(xn, p + "self_attn.q_proj").view(B, n, self.H, self.hd).transpose(1, 2)
            k = self.linear(xn, p + "self_attn.k_proj").view(B, n, self.KV, self.hd).transpose(1, 2)
            v = self.linear(xn, p + "self_attn.v_proj").view(B, n, self.KV, self.hd).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if len(cache) > l:
                k = torch.cat([cache[l][0], k], dim=2)
                v = torch.cat([cache[l][1], v], dim=2)
                cache[l] = (k, v)
            else:
                cache.append((k, v))
            g = self.H // self.KV
            qg = q.reshape(B, self.KV, g * n, self.hd)  # the query heads sharing a KV head
            s = (qg @ k.transpose(-1, -2)).view(B, self.KV, g, n, -1) / math.sqrt(self.hd)
            if mask is not None:
                s = s + mask
            a = (torch.softmax(s, dim=-1).view(B, self.KV, g * n, -1) @ v)
            a = a.view(B, self.H, n, self.hd).transpose(1, 2).reshape(B, n, self.H * self.hd)
            x = x + self.linear(a, p + "self_attn.o_proj")
            xn = self.norm(x, self.w[p + "post_attention_layernorm.weight"])
            gate = self.linear(xn, p + "mlp.gate_proj")
            up = self.linear(xn, p + "mlp.up_proj")
            x = x + self.linear(torch.nn.functional.silu(gate) * up, p + "mlp.down_proj")
        last = self.norm(x[:, -1, :], self.w["model.norm.weight"])
        return last @ self.lm_head.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--decode", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--serve", action="store_true",
                    help="print a ready line, then run one repetition per 'repeat' line read "
                         "from stdin, answering each with its times; the summary at end of input")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(a.prompts) as f:
        prompts = torch.tensor(json.load(f), dtype=torch.int64)
    model = Llama(a.checkpoint)
    B, n = prompts.shape
    prefill_s, decode_s = [], []  # per repetition; the median one is reported, as the bench's
    first_run = {}  # the first repetition's greedy tokens and log-probabilities

    def repeat():
        record = not first_run
        cache = []
        t0 = time.perf_counter()
        logits = model.forward(prompts, cache)
        nxt = logits.argmax(-1)
        t1 = time.perf_counter()
        if record:  # outside the timed regions
            first_run["logprobs"] = torch.log_softmax(logits.to(torch.float64), -1).tolist()
            first_run["tokens"] = [nxt.tolist()]
        t1b = time.perf_counter()
        for _ in range(a.decode):
            nxt = model.forward(nxt[:, None], cache).argmax(-1)
            if record:
                first_run["tokens"].append(nxt.tolist())
        t2 = time.perf_counter()
        prefill_s.append(t1 - t0)
        decode_s.append(t2 - t1b)

    with torch.no_grad():
        model.forward(prompts[:, :2], [])  # warm-up: first-call allocations
        if a.serve:
            print(json.dumps({"ready": True}), flush=True)
            for line in iter(sys.stdin.readline, ""):
                if line.strip() != "repeat":
                    fail(f"--serve: expected a 'repeat' line, read {line.strip()!r}")
                repeat()
                print(json.dumps({"prefill_s": prefill_s[-1], "decode_s": decode_s[-1]}),
                      flush=True)
            if not prefill_s:
                fail("--serve: input ended before any 'repeat' line")
        else:
            for _ in range(a.repeats):
                repeat()
    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(),
               "prefill_tokens_per_s": B * n / statistics.median(prefill_s),
               "decode_tokens_per_s": B * a.decode / statistics.median(decode_s),
               "greedy_tokens": [list(r) for r in zip(*first_run["tokens"])],
               "prefill_logprobs": first_run["logprobs"]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
