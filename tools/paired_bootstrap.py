#!/usr/bin/env python3
"""An independent implementation of kintsugi's standard errors and paired
bootstrap intervals (include/kintsugi/eval/uncertainty.hpp), in plain Python
(no numpy), written from that header's definition: the tests hold the C++ code
to it on fixed per-example results.

  paired_bootstrap.py INPUT.json

INPUT: {"a": [TASK, ...], "b": [TASK, ...], "coefficients": [c_k, ...],
        "higher_is_better": [bool, ...], "resamples": R, "seed": S}
with TASK = {"transform": "mean" | "bits_per_byte" | "exp",
             "value": [...], "weight": [...] (optional)}.
Prints {"difference", "low", "high", "stderr_a": [per task], "stderr_b": [...]}.
"""
import json
import math
import sys

M32 = 0xFFFFFFFF


def philox4x32_10(c, k0, k1):
    """Random123's Philox4x32 with 10 rounds (Salmon et al., SC'11)."""
    c = list(c)
    for _ in range(10):
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        hi0, lo0 = p0 >> 32, p0 & M32
        hi1, lo1 = p1 >> 32, p1 & M32
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c


def indices(seed, r, task, n):
    k0, k1 = seed & M32, (seed >> 32) & M32
    out = []
    for i in range(0, n, 4):
        block = philox4x32_10([i // 4, r, 0x626F6F74, task], k0, k1)
        for j in range(4):
            if i + j < n:
                out.append((block[j] * n) >> 32)
    return out


def metric(task, idx):
    num = den = 0.0
    w = task.get("weight") or []
    for i in idx:
        num += task["value"][i]
        den += w[i] if w else 1.0
    ratio = num / den
    t = task["transform"]
    if t == "mean":
        return ratio
    if t == "bits_per_byte":
        return ratio / math.log(2)
    if t == "exp":
        return math.exp(ratio)
    raise ValueError(f"unknown transform {t}")


def standard_error(task, resamples, seed):
    n = len(task["value"])
    if n < 2:
        return None
    binary = task["transform"] == "mean" and not task.get("weight") and all(
        v in (0.0, 1.0) for v in task["value"])
    if binary:
        p = metric(task, range(n))
        return math.sqrt(p * (1 - p) / n)
    s = s2 = 0.0
    for r in range(resamples):
        v = metric(task, indices(seed, r, 0, n))
        s += v
        s2 += v * v
    mean = s / resamples
    return math.sqrt(max(0.0, (s2 - resamples * mean * mean) / (resamples - 1)))


def paired(a, b, coef, up, resamples, seed):
    csum = sum(coef)

    def diff(k, idx):
        d = metric(a[k], idx) - metric(b[k], idx)
        return coef[k] * (d if up[k] else -d) / csum

    difference = 0.0
    for k in range(len(a)):
        difference += diff(k, range(len(a[k]["value"])))
    d = [0.0] * resamples
    for k in range(len(a)):
        if coef[k] == 0:
            continue
        n = len(a[k]["value"])
        for r in range(resamples):
            d[r] += diff(k, indices(seed, r, k, n))
    d.sort()
    lo = math.floor(0.025 * resamples)
    hi = math.ceil(0.975 * resamples) - 1
    snap = lambda x: 0.0 if abs(x) < 1e-12 else x  # rounding of equal sums is 0
    return snap(difference), snap(d[lo]), snap(d[hi])


def main():
    with open(sys.argv[1]) as f:
        x = json.load(f)
    R, seed = x["resamples"], x["seed"]
    diff, lo, hi = paired(x["a"], x["b"], x["coefficients"], x["higher_is_better"], R, seed)
    json.dump({"difference": diff, "low": lo, "high": hi,
               "stderr_a": [standard_error(t, R, seed) for t in x["a"]],
               "stderr_b": [standard_error(t, R, seed) for t in x["b"]]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
