#!/usr/bin/env python3
"""Writes unit_fixtures.json: small hand-built tokenizer.json files, one per
component combination, for test/unit/test_tokenizer_components.cpp. The ids and
decodes that test expects come from Hugging Face's tokenizers, not from
kintsugi: tools/hf-reference/unit_expectations.js prints them.
Usage: python3 test/data/tokenizer/make_unit_fixtures.py
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]

chars = list("abcdefghijklmnopqrstuvwxyz") + list("0123456789") + [" ", ".", ",", "!", "?", "-", "'", "é", "▁", "Ġ"]
def vocab_with(extra):
    v = {}
    for c in chars: v[c] = len(v)
    for e in extra:
        if e not in v: v[e] = len(v)
    return v

F = {}
# 1: word-level pre-tokenization, subword prefix/suffix, unk, lowercase + NFD + strip
v = {"[UNK]": 0}
for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'":
    v[c] = len(v)
    v["##" + c] = len(v)
    v[c + "</w>"] = len(v)
    v["##" + c + "</w>"] = len(v)
merges1 = ["h ##e", "he ##l", "hel ##l", "hell ##o</w>", "w ##o", "wo ##r", "wor ##l", "worl ##d</w>", "t ##h", "th ##e</w>"]
for m in merges1:
    a, b = m.split(" ")
    j = a + b[2:]
    if j not in v: v[j] = len(v)
F["wordpiece_like_bpe"] = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True}]},
    "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
    "decoder": {"type": "Fuse"},
    "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>", "fuse_unk": False, "byte_fallback": False, "vocab": v, "merges": merges1}}
F["wordpiece_like_bpe_fused"] = json.loads(json.dumps(F["wordpiece_like_bpe"]))
F["wordpiece_like_bpe_fused"]["model"]["fuse_unk"] = True
F["wordpiece_like_bpe_fused"]["pre_tokenizer"] = {"type": "WhitespaceSplit"}

# 2: SentencePiece-like: Metaspace (first), byte fallback, added tokens with options, NFKC, regex Replace
v = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256): v["<0x%02X>" % b] = len(v)
for c in "▁abcdefghijklmnopqrstuvwxyz.,!": v[c] = len(v)
merges2 = [["▁", "h"], ["▁h", "e"], ["l", "l"], ["▁he", "ll"], ["▁hell", "o"], ["▁", "w"], ["o", "r"], ["▁w", "or"], ["▁wor", "l"], ["▁worl", "d"]]
for a, b in merges2:
    if a + b not in v: v[a + b] = len(v)
F["sentencepiece_like"] = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [
        {"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 2, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": len(v), "content": "<mask>", "single_word": False, "lstrip": True, "rstrip": True, "normalized": False, "special": True},
        {"id": len(v) + 1, "content": "cat", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
        {"id": len(v) + 2, "content": "DOG", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
        {"id": len(v) + 3, "content": "<tag>", "single_word": False, "lstrip": False, "rstrip": True, "normalized": False, "special": False},
    ],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "#"}, {"type": "Lowercase"}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
    "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
    "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": v, "merges": merges2}}
F["sentencepiece_always_nosplit"] = json.loads(json.dumps(F["sentencepiece_like"]))
F["sentencepiece_always_nosplit"]["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
F["sentencepiece_always_nosplit"]["normalizer"] = {"type": "NFD"}
F["sentencepiece_always_nosplit"]["decoder"] = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 1}]}
# Metaspace "first" after a normalizer that moves the start (HF's alignments)
F["sentencepiece_first_strip"] = json.loads(json.dumps(F["sentencepiece_like"]))
F["sentencepiece_first_strip"]["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True, "strip_right": False}, {"type": "Replace", "pattern": {"String": "ab"}, "content": "#"}]}
F["sentencepiece_never"] = json.loads(json.dumps(F["sentencepiece_like"]))
F["sentencepiece_never"]["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": True}
F["sentencepiece_never"]["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Prepend", "prepend": "▁"}]}
F["sentencepiece_never"]["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": True}

# 3: split behaviours over a char vocab where merges would cross piece boundaries
v = vocab_with(["ab", "abc", "b.", "1 2", "12", "123", "a-", "-b", " a", "a ", "..", "c1"])
merges3 = ["a b", "ab c", "b .", "1 2", "12 3", "a -", "- b", "Ġ a", "  a", "a  ", ". .", "c 1"]
merges3 = [m for m in merges3 if all(p in v for p in m.split(" ", 1)) and m.replace(" ", "", 1) in v]
def split_fx(pre):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": pre, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": v, "merges": [m.split(" ", 1) for m in merges3]}}
for beh in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
    F["split_" + beh] = split_fx({"type": "Split", "pattern": {"String": "."}, "behavior": beh, "invert": False})
F["split_regex_invert"] = split_fx({"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": True})
F["split_regex_removed_invert"] = split_fx({"type": "Split", "pattern": {"Regex": "[a-c]+"}, "behavior": "Removed", "invert": True})
F["digits_individual"] = split_fx({"type": "Digits", "individual_digits": True})
F["digits_contiguous"] = split_fx({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, {"type": "Punctuation", "behavior": "Isolated"}]})
F["punctuation_next"] = split_fx({"type": "Punctuation", "behavior": "MergedWithNext"})
F["whitespace"] = split_fx({"type": "Whitespace"})
# An empty string pattern (HF: matches between every character); a literal with regex syntax in it
F["split_empty_string"] = split_fx({"type": "Split", "pattern": {"String": ""}, "behavior": "Removed", "invert": False})
F["split_literal_escapes"] = split_fx({"type": "Split", "pattern": {"String": "\\E.*"}, "behavior": "Isolated", "invert": False})

# 4: ByteLevel with prefix space and regex, ignore_merges, template in a Sequence, ByteLevel decoder
v = {}
for b in range(256):
    pass
F_bl = json.load(open(ROOT / "examples/demo/pool/base/tokenizer.json"))
bv = dict(F_bl["model"]["vocab"])
def add(t):
    if t not in bv: bv[t] = len(bv) + 100
bl_merges = [["Ġ", "h"], ["Ġh", "e"], ["l", "l"], ["Ġhe", "ll"], ["Ġhell", "o"], ["Ġ", "Ġ"], ["1", "2"], ["12", "3"], ["w", "o"], ["wo", "r"]]
for a, b in bl_merges: add(a + b)
add("Ġworld")  # reachable only through ignore_merges
F["bytelevel_prefix"] = {"version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 256, "content": "<bos>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
                     {"id": 257, "content": "<eos>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<bos>": {"id": "<bos>", "ids": [256], "tokens": ["<bos>"]}, "<eos>": {"id": "<eos>", "ids": [257], "tokens": ["<eos>"]}}}]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True, "vocab": bv, "merges": [" ".join(m) for m in bl_merges]}}
F["bytelevel_noregex_merges"] = json.loads(json.dumps(F["bytelevel_prefix"]))
F["bytelevel_noregex_merges"]["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
F["bytelevel_noregex_merges"]["model"]["ignore_merges"] = False

json.dump(F, open(HERE / "unit_fixtures.json", "w"), ensure_ascii=False, indent=None)
print(f"{len(F)} fixtures", file=sys.stderr)

