#!/usr/bin/env python3
"""Independent references for kintsugi's della, della_linear, dare_linear,
dare_ties and sce (stdlib only).

Written from mergekit's published definitions (sparsify.della_magprune,
sparsify.bernoulli, sparsify.rescaled_masked_tensor,
generalized_task_arithmetic, merge_methods/sce.py) and from kintsugi's
documented choices where mergekit leaves things open (docs/merge.md): ties in
|delta| ranked by element index, DELLA's and DARE's coin flips from
Philox4x32-10 (Salmon et al. 2011) at counter = element index, whole-tensor
sums exact and rounded once. Not derived from kintsugi's code. fp32 is
emulated exactly: each operation in double, then rounded to fp32 (double has
more than 2 * 24 + 2 bits, so that is the correctly rounded fp32 result).

make WORK:      pools WORK/bf16 and WORK/f32 (base, m1, m2, m3), recipes
               WORK/CASE.yaml; prints one line per case: CASE and the rank counts
               to run it with (1, or 1,2,3 for the cases whose bytes are compared
               across rank counts)
check WORK:    every case's WORK/out-CASE-1 against the reference (fp32 bit for
               bit, bf16 within 1 ulp), then the statistical check of dl_stats@f32
               (no reference RNG): keep rate per rank band against DELLA's
               probabilities, and every survivor rescaled by the L1 factor of the
               mask observed
"""
import math, os, random, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import (write_safetensors, read_safetensors, f32, f32_bits, bf16_bits,  # noqa: E402
                        from_bf16, rounder, ulps_bf16, write_pool, make_runs,
                        pool_values, read_values_folder as read_folder)

SEED = 7  # kintsugi merge --seed

# ---- the counter-based generator (Philox4x32-10, Random123's constants) ----
M32 = 0xFFFFFFFF

def philox(ctr, k0, k1):
    c = list(ctr)
    for _ in range(10):
        p0 = 0xD2511F53 * c[0]; p1 = 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c[3] ^ k1) & M32, p0 & M32]
        k0 = (k0 + 0x9E3779B9) & M32; k1 = (k1 + 0xBB67AE85) & M32
    return c

def splitmix(x):
    M = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)

def seed_key(seed, name):
    h = 0xCBF29CE484222325  # FNV-1a, 64 bits
    for ch in name.encode():
        h = ((h ^ ch) * 0x100000001B3) & ((1 << 64) - 1)
    return splitmix(h ^ splitmix(seed))

def uniforms(key, model, n):
    """u[j] in [0, 1), 24 bits: word j % 4 of the block at counter (j / 4, model)."""
    out = []
    for blk in range((n + 3) // 4):
        r = philox([blk & M32, blk >> 32, model, 0], key & M32, key >> 32)
        out += [(w >> 8) * 2.0 ** -24 for w in r]
    return out[:n]

# ---- pools and cases ----
SHAPES = [('model.embed_tokens.weight', [24, 50]),
          ('model.layers.0.mlp.up_proj.weight', [300, 7]),
          ('model.layers.0.input_layernorm.weight', [37]),
          ('model.layers.1.self_attn.q_proj.weight', [700]),
          ('model.layers.1.mlp.down_proj.weight', [5, 1]),     # rows of one element
          ('lm_head.weight', [2, 513])]

def make_pool(d, dtype):
    """base, m1..m3. In the embedding the deltas are small multiples of 1/64
    (many equal magnitudes and some zeros: the tie order matters); elsewhere
    they are Gaussian."""
    rnd = rounder(dtype)
    rng = random.Random(31 if dtype == 'BF16' else 32)
    models = {m: [] for m in ('base', 'm1', 'm2', 'm3')}
    for name, shape in SHAPES:
        n = math.prod(shape)
        base = [rnd(rng.gauss(0, 0.05)) for _ in range(n)]
        models['base'].append((name, shape, base))
        for k, m in enumerate(('m1', 'm2', 'm3')):
            if 'embed' in name:
                vals = [rnd(b + rng.randint(-3, 3) / 64.0) for b in base]
            else:
                vals = [rnd(b + rng.gauss(0.002 * (k - 1), 0.02 * (k + 1))) for b in base]
            models[m].append((name, shape, vals))
    write_pool(d, dtype, models)

# Each case: method, models [(name, {per-model parameters})], global parameters, extra lines.
CASES = {
    # della: TIES consensus, normalize and rescale on by default; m3 at density 1 (unchanged).
    'della_three': ('della', [('m1', {'weight': 1.0, 'density': 0.5, 'epsilon': 0.2}),
                              ('m2', {'weight': 0.6, 'density': 0.3}),
                              ('m3', {'weight': 0.4, 'density': 1.0})], {}, ''),
    # della: no rescale, no normalize, lambda, epsilon as a global default; density 0 drops m2.
    'della_plain': ('della', [('m1', {'weight': 0.9, 'density': 0.7}),
                              ('m2', {'weight': -0.3, 'density': 0.0}),
                              ('m3', {'weight': 0.5, 'density': 0.4, 'epsilon': 0.0})],
                    {'normalize': False, 'rescale': False, 'lambda': 1.5, 'epsilon': 0.25},
                    'out_dtype: float32\n'),
    'dl_two': ('della_linear', [('m1', {'weight': 0.7, 'density': 0.6, 'epsilon': 0.3}),
                                ('m2', {'weight': 0.5, 'density': 0.2, 'epsilon': 0.1})],
               {'lambda': 0.8, 'int8_mask': True}, ''),
    'dl_norm': ('della_linear', [('m1', {'weight': 0.2, 'density': 0.9, 'epsilon': 0.05}),
                                 ('m3', {'weight': 0.6, 'density': 0.45})],
                {'normalize': True}, ''),
    # One model, for the statistical check (also checked against the reference).
    'dl_stats': ('della_linear', [('m1', {'weight': 1.0, 'density': 0.5, 'epsilon': 0.4})], {}, ''),
    # dare_*: mergekit's bernoulli masks, survivors L1-rescaled (rescale, on by
    # default: sum |delta| / sum |kept delta|, not 1 / density); m3 at density 1
    # is kept whole and not rescaled, density 0 drops a model.
    'dare_lin': ('dare_linear', [('m1', {'weight': 0.8, 'density': 0.4}),
                                 ('m2', {'weight': 0.5, 'density': 0.7}),
                                 ('m3', {'weight': 0.3, 'density': 1.0})], {}, ''),
    'dare_ties': ('dare_ties', [('m1', {'weight': 1.0, 'density': 0.5}),
                                ('m2', {'weight': -0.4, 'density': 0.3}),
                                ('m3', {'weight': 0.6, 'density': 0.0})],
                  {'normalize': True, 'lambda': 0.9}, 'out_dtype: float32\n'),
    'dare_plain': ('dare_linear', [('m1', {'weight': 1.0, 'density': 0.6}),
                                   ('m2', {'weight': 0.5, 'density': 0.2})], {'rescale': False}, ''),
    'sce_all': ('sce', [('m1', {}), ('m2', {}), ('m3', {})], {}, ''),
    'sce_topk': ('sce', [('m1', {}), ('m2', {}), ('m3', {})], {'select_topk': 0.3},
                 'out_dtype: float32\n'),
    'sce_two': ('sce', [('m1', {}), ('m3', {})], {'select_topk': 0.75, 'int8_mask': False}, ''),
    # One task vector: its variance is 0 everywhere, so select_topk < 1 keeps nothing.
    'sce_one': ('sce', [('m2', {})], {'select_topk': 0.5}, ''),
}

# The cases run and the rank counts each runs with (mpirun costs most of
# this test's time: the byte comparison across 1, 2 and 3 ranks runs on the
# cases that exercise every cross-rank path: rows and tie runs split between
# ranks, the exact L1 and mean-square sums, the variance top-k).
RUNS = [('della_three@bf16', '1,2,3'), ('dl_two@f32', '1,2,3'),
        ('sce_topk@bf16', '1,2,3'), ('sce_two@f32', '1,2,3'),
        ('della_plain@f32', '1'), ('della_three@f32', '1'), ('della_plain@bf16', '1'),
        ('dl_two@bf16', '1'),
        ('dl_norm@bf16', '1'), ('dl_norm@f32', '1'), ('dl_stats@f32', '1'),
        ('sce_all@bf16', '1'), ('sce_all@f32', '1'), ('sce_topk@f32', '1'),
        ('sce_one@f32', '1'), ('dare_lin@bf16', '1'), ('dare_lin@f32', '1'),
        ('dare_ties@bf16', '1'), ('dare_ties@f32', '1'), ('dare_plain@f32', '1')]

def fmt(v):
    return ('true' if v else 'false') if isinstance(v, bool) else repr(v)

def recipe_text(case, pool):
    method, models, params, extra = CASES[case]
    lines = ['merge_method: %s' % method, 'base_model: %s/base' % pool, 'models:',
             '  - model: %s/base' % pool]
    for m, p in models:
        lines.append('  - model: %s/%s' % (pool, m))
        if p:
            lines.append('    parameters: {%s}' % ', '.join('%s: %s' % (k, fmt(v)) for k, v in p.items()))
    if params:
        lines.append('parameters: {%s}' % ', '.join('%s: %s' % (k, fmt(v)) for k, v in params.items()))
    return '\n'.join(lines) + '\n' + extra

# ---- the definitions ----
def row_ranks(delta, L):
    """0-based ascending rank of |delta| within each row of L; equal magnitudes:
    the lower index ranks higher."""
    ranks = [0] * len(delta)
    for r0 in range(0, len(delta), L):
        order = sorted(range(r0, r0 + L), key=lambda j: (f32_bits(abs(delta[j])), -j))
        for p, j in enumerate(order): ranks[j] = p
    return ranks

def della_probs(delta, L, density, epsilon):
    """della_magprune's keep probability per entry: (density - epsilon) +
    rank_norm * 2 * epsilon in fp32, rank_norm = rank / (L - 1)."""
    low, e = f32(density - epsilon), f32(epsilon)
    out = []
    for p in row_ranks(delta, L):
        rn = f32(p / (L - 1)) if L > 1 else 0.5
        out.append(f32(low + f32(f32(rn * 2) * e)))
    return out

def l1_scale(delta, keep):
    """mergekit's rescaled_masked_tensor (L1): sum |delta| / sum |kept delta|,
    each sum exact, rounded once to double, then to fp32; no rescale below 1e-7."""
    before = f32(math.fsum(abs(v) for v in delta))
    after = f32(math.fsum(abs(v) for v, k in zip(delta, keep) if k))
    if before < f32(1e-7) or after < f32(1e-7): return 1.0
    return f32(before / after)

def della_sparsify(name, model_index, delta, L, density, epsilon, rescale):
    if density >= 1: return list(delta)
    if density <= 0: return [0.0] * len(delta)
    probs = della_probs(delta, L, density, epsilon)
    u = uniforms(seed_key(SEED, name), model_index, len(delta))
    keep = [uj < pj for uj, pj in zip(u, probs)]
    scale = l1_scale(delta, keep) if rescale else 1.0
    return [f32(v * scale) if k else 0.0 for v, k in zip(delta, keep)]

def dare_sparsify(name, model_index, delta, density, rescale):
    """sparsify.bernoulli: each entry kept with probability density (the coin
    flips from the same generator as DELLA's), survivors L1-rescaled."""
    if density >= 1: return list(delta)
    u = uniforms(seed_key(SEED, name), model_index, len(delta))
    keep = [uj < f32(density) for uj in u]
    scale = l1_scale(delta, keep) if rescale else 1.0
    return [f32(v * scale) if k else 0.0 for v, k in zip(delta, keep)]

def della(name, base, xs, L, params, gparams, method):
    """generalized_task_arithmetic with della_magprune (della*) or bernoulli
    (dare_*) sparsification; TIES's consensus for della and dare_ties."""
    get = lambda p, k, dflt: p.get(k, gparams.get(k, dflt))
    consensus = method in ('della', 'dare_ties')
    normalize = gparams.get('normalize', method == 'della')
    rescale = gparams.get('rescale', True)
    lam = gparams.get('lambda', 1.0)
    weights = [f32(p['weight']) for p in params]
    wd = []
    for i, (x, p) in enumerate(zip(xs, params)):
        delta = [f32(a - b) for a, b in zip(x, base)]
        if method.startswith('dare'):
            kept = dare_sparsify(name, i, delta, get(p, 'density', 1.0), rescale)
        else:
            kept = della_sparsify(name, i, delta, L, get(p, 'density', 1.0),
                                  get(p, 'epsilon', 0.15), rescale)
        wd.append([f32(weights[i] * v) for v in kept])
    wsum = 0.0
    for w in weights: wsum = f32(wsum + w)
    out = []
    for j in range(len(base)):
        if consensus:
            s = 0.0
            for r in wd: s = f32(s + r[j])
            maj = 1 if s >= 0 else -1
            mixed = div = 0.0
            for r, w in zip(wd, weights):
                if (r[j] > 0) - (r[j] < 0) == maj:
                    mixed = f32(mixed + r[j]); div = f32(div + w)
            if div == 0: div = 1.0
        else:
            mixed = 0.0
            for r in wd: mixed = f32(mixed + r[j])
            div = 1.0 if abs(wsum) < 1e-8 else wsum
        if normalize: mixed = f32(mixed / div)
        if lam != 1: mixed = f32(mixed * f32(lam))
        out.append(f32(base[j] + mixed))
    return out

def variance(ds):
    """torch.var(unbiased=False) in a fixed fp32 order: mean first, then the squares."""
    n = len(ds)
    mean = 0.0
    for v in ds: mean = f32(mean + v)
    mean = f32(mean / n)
    acc = 0.0
    for v in ds:
        t = f32(v - mean); acc = f32(acc + f32(t * t))
    return f32(acc / n)

def sce(base, xs, topk):
    n, N = len(base), len(xs)
    tvs = [[f32(a - b) for a, b in zip(x, base)] for x in xs]
    if topk < 1:
        var = [variance([tv[j] for tv in tvs]) for j in range(n)]
        nonzero = sum(1 for v in var if v != 0)
        k = int(f32(f32(float(nonzero)) * f32(topk))) if topk > 0 else 0  # fp32, as torch
        order = sorted(range(n), key=lambda j: (-var[j], j))  # largest first, lowest index first
        sel = set(order[:k])
        tvs = [[v if j in sel else 0.0 for j, v in enumerate(tv)] for tv in tvs]
    # sce_weight: mean of squares (exact sum, rounded once), normalized in fp32.
    ms = [f32(math.fsum(v * v for v in tv) / n) for tv in tvs]
    wsum = 0.0
    for m in ms: wsum = f32(wsum + m)
    w = [f32(1.0 / N)] * N if abs(wsum) < 1e-6 else [f32(m / wsum) for m in ms]
    out = []
    for j in range(n):
        s = 0.0
        for tv in tvs: s = f32(s + tv[j])
        maj = 1 if s >= 0 else -1
        m = div = 0.0
        for tv, wi in zip(tvs, w):
            e = wi if (tv[j] > 0) - (tv[j] < 0) == maj else 0.0
            m = f32(m + f32(tv[j] * e)); div = f32(div + e)
        div = max(div, f32(1e-6))
        out.append(f32(base[j] + f32(m / div)))
    return out

def shapes():
    return dict(SHAPES)

def check(work, case_at, out):
    case, pool = case_at.split('@')
    method, models, params, extra = CASES[case]
    base = pool_values(work, pool, 'base')
    ins = [pool_values(work, pool, m) for m, _ in models]
    got, got_dt = read_folder(out)
    assert sorted(got) == sorted(base), 'tensor names differ'
    worst = 0
    for name in sorted(got):
        shape = shapes()[name]
        L = shape[-1] if len(shape) >= 2 else math.prod(shape)
        xs = [x[name] for x in ins]
        if method == 'sce':
            ref = sce(base[name], xs, params.get('select_topk', 1.0))
        else:
            ref = della(name, base[name], xs, L, [p for _, p in models], params, method)
        rnd = rounder(got_dt[name])
        for j, (g, r) in enumerate(zip(got[name], ref)):
            r = rnd(r)
            if got_dt[name] == 'F32':
                if not (f32_bits(g) == f32_bits(r) or (math.isnan(g) and math.isnan(r))):
                    sys.exit('%s %s[%d]: got %r, reference %r (f32 must be exact)' % (case_at, name, j, g, r))
            else:
                e = ulps_bf16(g, r)
                worst = max(worst, e)
                if e > 1:
                    sys.exit('%s %s[%d]: got %r, reference %r (%d bf16 ulps)' % (case_at, name, j, g, r, e))
    print('ok: %s matches the reference (%s out); worst bf16 error %d ulp' %
          (case_at, '/'.join(sorted(set(got_dt.values()))), worst))

def stats(work, out):
    """dl_stats@f32 (della_linear, m1 alone, weight 1, density 0.5, epsilon 0.4,
    rescale): out = base + kept * scale. Recovers the mask from the output
    (kept iff out != base), then checks the keep rate in four bands of
    normalized rank against the expected sum of probabilities (5 sigma), and
    that every survivor is base + delta * (L1 factor of that mask)."""
    base, m1 = pool_values(work, 'f32', 'base'), pool_values(work, 'f32', 'm1')
    got = read_folder(out)[0]
    bands = [[0.0, 0.0, 0] for _ in range(4)]  # expected, variance, observed
    checked = 0
    for name, shape in SHAPES:
        L = shape[-1] if len(shape) >= 2 else math.prod(shape)
        if L == 1: continue  # probability 0.5 everywhere: no ranks to check
        delta = [f32(a - b) for a, b in zip(m1[name], base[name])]
        keep = [g != b for g, b in zip(got[name], base[name])]
        probs = della_probs(delta, L, 0.5, 0.4)
        ranks = row_ranks(delta, L)
        for j, p in enumerate(probs):
            if delta[j] == 0: continue  # kept or not, the output is the base
            band = bands[min(3, ranks[j] * 4 // L)]
            band[0] += p; band[1] += p * (1 - p); band[2] += keep[j]
        scale = l1_scale(delta, keep)
        for j, k in enumerate(keep):
            if k:
                want = f32(base[name][j] + f32(delta[j] * scale))
                if f32_bits(got[name][j]) != f32_bits(want):
                    sys.exit('stats: %s[%d] = %r, want base + delta * %r = %r' % (name, j, got[name][j], scale, want))
                checked += 1
    for b, (exp, var, obs) in enumerate(bands):
        print('rank band %d: kept %d, expected %.1f +- %.1f' % (b, obs, exp, math.sqrt(var)))
        if abs(obs - exp) > 5 * math.sqrt(var):
            sys.exit('stats: rank band %d keeps %d, expected %.1f (more than 5 sigma)' % (b, obs, exp))
    print('ok: della keep rates follow the rank probabilities; %d survivors carry the L1 factor' % checked)

if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make':
        make_runs(sys.argv[2], make_pool, RUNS, recipe_text)
    elif cmd == 'check':
        work = sys.argv[2]
        for case_at, _ in RUNS:
            check(work, case_at, os.path.join(work, 'out-%s-1' % case_at))
        stats(work, os.path.join(work, 'out-dl_stats@f32-1'))
    else:
        sys.exit('unknown command ' + cmd)
