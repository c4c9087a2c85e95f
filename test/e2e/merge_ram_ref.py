#!/usr/bin/env python3
"""Independent references for kintsugi's ram, ramplus_tl, arcee_fusion, lrp, cabs and core_space (stdlib only).

Written from mergekit's published definitions (merge_methods/ram.py: RAM and
RAM+ tensor-local, Reinforced Agent Merging; merge_methods/arcee_fusion.py;
merge_methods/lrp.py with sparsify.build_mask; merge_methods/cabs.py: n:m
pruning in pruning order, positions taken once; merge_methods/core_space.py
on dense tensors: the mean of the distinct inputs)
and from kintsugi's documented choices where it departs (docs/merge.md):
arithmetic in fp32 (each operation emulated in double and rounded to fp32,
which is the correctly rounded fp32 result), equal magnitudes in a top-k
taken lower index first (torch leaves that order unspecified), arcee_fusion's row divergence in
double with each sum in index order, and its quartiles exact over every entry
(mergekit samples a million entries of larger tensors). Not derived from
kintsugi's code.

make WORK:   pools WORK/bf16 and WORK/f32 (base, m1, m2, m3), recipes
             WORK/CASE.yaml; prints one line per case: CASE and the rank counts
             to run it with
check WORK:  every case's WORK/out-CASE-1 against the reference (fp32 bit for
             bit, bf16 within 1 ulp)
"""
import math, os, random, re, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import (f32, f32_bits, rounder, ulps_bf16, write_pool, make_runs,  # noqa: E402
                        pool_values, read_values_folder as read_folder)


# ---- pools and cases ----
SHAPES = [('model.embed_tokens.weight', [24, 50]),
          ('model.layers.0.mlp.up_proj.weight', [300, 7]),
          ('model.layers.0.input_layernorm.weight', [37]),
          ('model.layers.1.self_attn.q_proj.weight', [700]),
          ('model.layers.1.mlp.down_proj.weight', [5, 1]),     # rows of one element
          ('lm_head.weight', [2, 513])]

# How often each model changes an entry of the base: the rest stay equal to
# the base or move by less than a few thousandths (below or near epsilon).
CHANGE = {'m1': 0.5, 'm2': 0.35, 'm3': 0.6}


def make_pool(d, dtype):
    """base, m1..m3: per entry a model keeps the base, nudges it (|change| <
    0.003) or changes it (Gaussian, or in the embedding multiples of 1/64, so
    that importances tie)."""
    rnd = rounder(dtype)
    rng = random.Random(41 if dtype == 'BF16' else 42)
    models = {m: [] for m in ('base', 'm1', 'm2', 'm3')}
    for name, shape in SHAPES:
        n = math.prod(shape)
        base = [rnd(rng.gauss(0, 0.05)) for _ in range(n)]
        models['base'].append((name, shape, base))
        for k, m in enumerate(('m1', 'm2', 'm3')):
            vals = []
            for b in base:
                u = rng.random()
                if u < CHANGE[m]:
                    step = rng.randint(-3, 3) / 64.0 if 'embed' in name else rng.gauss(0, 0.02 * (k + 1))
                    vals.append(rnd(b + step))
                elif u < CHANGE[m] + 0.15:
                    vals.append(rnd(b + rng.uniform(-0.003, 0.003)))
                else:
                    vals.append(b)
            models[m].append((name, shape, vals))
    write_pool(d, dtype, models)


# Each case: method, models, global parameters, extra lines[, per-model parameters].
CASES = {
    # The mean of the distinct inputs: base (listed first), m1 (listed twice), m2.
    'core_three': ('core_space', ['m1', 'm2', 'm1'], {}, ''),
    'lrp_three': ('lrp', ['m1', 'm2', 'm3'], {'density': 0.4}, '',
                  {'m1': {'weight': 1.0}, 'm2': {'weight': 0.5}, 'm3': {'weight': 2.5}}),
    # mergekit's defaults: density 0.7, weight 1.
    'lrp_default': ('lrp', ['m1', 'm3'], {}, 'out_dtype: float32\n'),
    # Per-model n:m whose blocks nest in superblocks of 24, in a given order.
    'cabs_three': ('cabs', ['m1', 'm2', 'm3'], {'pruning_order': ['m3', 'base', 'm1', 'm2']}, '',
                   {'m1': {'weight': 0.6, 'n_val': 2, 'm_val': 4},
                    'm2': {'weight': -0.4, 'n_val': 3, 'm_val': 8},
                    'm3': {'n_val': 1, 'm_val': 3}}),
    # Global defaults under parameters, the models sorted by name.
    'cabs_default': ('cabs', ['m2', 'm1'], {'default_n_val': 8, 'default_m_val': 32}, '',
                     {'m1': {'weight': 0.7}}),
    # As mergekit's example cabs.yml writes them: siblings of merge_method.
    'cabs_top': ('cabs', ['m1', 'm3'], {}, 'default_n_val: 1\ndefault_m_val: 2\npruning_order: [M3, M1]\n',
                 {'m3': {'n_val': 5, 'm_val': 7}}),
    'ram_three': ('ram', ['m1', 'm2', 'm3'], {}, ''),
    # An epsilon the nudges straddle; fp32 out of a bf16 pool.
    'ram_eps': ('ram', ['m1', 'm3'], {'epsilon': 0.001}, 'out_dtype: float32\n'),
    'rpt_three': ('ramplus_tl', ['m1', 'm2', 'm3'], {}, ''),
    # rho below alpha (no clamp): lambda = 1 + r * rho.
    'rpt_params': ('ramplus_tl', ['m1', 'm3'], {'r': 0.5, 'alpha': 0.9, 'epsilon': 0.002}, ''),
    'fusion': ('arcee_fusion', ['m1'], {}, ''),
    'fusion_f32': ('arcee_fusion', ['m3'], {}, 'out_dtype: float32\n'),
}

# np 1 runs every case; the byte comparison across 1, 2 and 3 ranks runs on
# the cases whose statistics cross ranks (ramplus_tl's counts, arcee_fusion's
# quartiles and rows split between ranks).
RUNS = [('rpt_three@bf16', '1,2,3'), ('fusion@f32', '1,2,3'),
        ('core_three@bf16', '1'), ('core_three@f32', '1'), ('lrp_three@bf16', '1'), ('cabs_three@bf16', '1,3'), ('lrp_default@f32', '1'),
        ('lrp_default@bf16', '1'), ('cabs_default@f32', '1'), ('cabs_top@bf16', '1'),
        ('ram_three@bf16', '1'), ('ram_three@f32', '1'), ('ram_eps@bf16', '1'),
        ('rpt_three@f32', '1'), ('rpt_params@f32', '1'), ('rpt_params@bf16', '1'),
        ('fusion@bf16', '1'), ('fusion_f32@bf16', '1'), ('fusion_f32@f32', '1')]


def fmt(v):
    return ('true' if v else 'false') if isinstance(v, bool) else repr(v)


def recipe_text(case, pool):
    method, models, params, extra = CASES[case][:4]
    per_model = CASES[case][4] if len(CASES[case]) > 4 else {}
    spec = lambda m: '%s/%s' % (pool, m)  # noqa: E731
    lines = ['merge_method: %s' % method, 'base_model: %s' % spec('base'), 'models:',
             '  - model: %s' % spec('base')]
    for m in models:
        lines.append('  - model: %s' % spec(m))
        if m in per_model:
            lines.append('    parameters: {%s}' % ', '.join('%s: %s' % (k, fmt(v)) for k, v in per_model[m].items()))
    if params:
        lines.append('parameters: {%s}' % ', '.join(
            '%s: %s' % (k, '[%s]' % ', '.join(spec(x) for x in v) if k == 'pruning_order' else fmt(v))
            for k, v in params.items()))
    extra = re.sub(r'\bM(\d)\b', lambda g: spec('m' + g.group(1)), extra)
    return '\n'.join(lines) + '\n' + extra


# ---- the definitions ----
def ram(base, xs, epsilon, r=None, alpha=None):
    """RAM: per entry, the task-vector entries above epsilon; one alone is
    taken as it is (RAM+: times its model's lambda), several are averaged."""
    eps = f32(epsilon)
    deltas = [[f32(x - b) for x, b in zip(xs_i, base)] for xs_i in xs]
    counts = [sum(1 for d in ds if abs(d) > eps) for ds in zip(*deltas)]
    lam = None
    if r is not None:
        lam = []
        for ds in deltas:
            shared = sum(1 for d, c in zip(ds, counts) if abs(d) > eps and c > 1)
            unique = sum(1 for d, c in zip(ds, counts) if abs(d) > eps and c == 1)
            rho = f32(f32(shared) / max(f32(unique), eps))
            lam.append(f32(1.0 + f32(f32(r) * min(max(rho, 0.0), f32(alpha)))))
    out = []
    for j, b in enumerate(base):
        acc = 0.0
        for i, ds in enumerate(deltas):
            d = ds[j]
            if abs(d) <= eps:
                t = 0.0
            elif counts[j] == 1:
                t = d if lam is None else f32(d * lam[i])
            else:
                t = f32(d / counts[j])
            acc = f32(acc + t)
        out.append(f32(b + acc))
    return out


def softmax_plus(row):
    """softmax(row) + 1e-8 in double: the row's maximum subtracted, the sum in order."""
    mx = max(row)
    e = [math.exp(v - mx) for v in row]
    s = 0.0
    for v in e: s += v
    return [v / s + 1e-8 for v in e]


def divergence(xrow, brow):
    p, q = softmax_plus(xrow), softmax_plus(brow)
    k = 0.0
    for a, c in zip(p, q): k += a * math.log(a / c)
    return k


def arcee_fusion(base, x, L):
    d = [f32(a - b) for a, b in zip(x, base)]
    kl = [f32(divergence(x[r:r + L], base[r:r + L])) for r in range(0, len(base), L)]
    imp = [f32(abs(dj) * kl[j // L]) for j, dj in enumerate(d)]
    srt = sorted(imp)
    n = len(srt)
    q1, med, q3 = (srt[int(q * (n - 1))] for q in (0.25, 0.5, 0.75))
    thr = f32(med + f32(1.5 * f32(q3 - q1)))
    return [f32(b + f32(dj * (1.0 if i >= thr else 0.0))) for b, dj, i in zip(base, d, imp)]


def lrp(base, xs, weights, density):
    """lrp: each delta keeps its k = int(density * n) largest |entries| (all
    at density >= 1), weighted by w_i / sum(w); the weighted sum added to the base."""
    n = len(base)
    total = sum(weights)
    acc = [0.0] * n
    for x, w in zip(xs, weights):
        d = [f32(a - b) for a, b in zip(x, base)]
        k = n if density >= 1 else int(max(density, 0.0) * n)
        keep = set(sorted(range(n), key=lambda j: (-abs(d[j]), j))[:k])
        wn = f32(w / total)
        for j in range(n):
            acc[j] = f32(acc[j] + (f32(wn * d[j]) if j in keep else 0.0))
    return [f32(b + a) for b, a in zip(base, acc)]


def cabs(base, xs, weights, nms):
    """cabs, the models in pruning order: a model's candidates are its deltas
    at the positions no model before it took (0 elsewhere); in each block of m
    (from the tensor's start; the last one shorter) the n largest |candidates|
    are kept and taken; the base plus each model's weighted kept candidates."""
    n = len(base)
    acc = list(base)
    taken = [False] * n
    for x, w, (nv, mv) in zip(xs, weights, nms):
        c = [0.0 if taken[j] else f32(x[j] - base[j]) for j in range(n)]
        sel = [False] * n
        for q in range(0, n, mv):
            for j in sorted(range(q, min(q + mv, n)), key=lambda j: (-abs(c[j]), j))[:nv]:
                sel[j] = True
        for j in range(n):
            acc[j] = f32(acc[j] + (f32(f32(w) * c[j]) if sel[j] else 0.0))
            taken[j] = taken[j] or sel[j]
    return acc


def core_space(inputs):
    """core_space on dense tensors: the mean of the distinct inputs, as the
    weighted sum with weights fp32(1/N) in input order."""
    w = f32(1.0 / len(inputs))
    out = []
    for vals in zip(*inputs):
        acc = 0.0
        for v in vals: acc = f32(acc + f32(w * v))
        out.append(acc)
    return out


def cabs_plan(case):
    """The models in pruning order with their weights and n:m."""
    method, models, params, extra = CASES[case][:4]
    per_model = CASES[case][4] if len(CASES[case]) > 4 else {}
    top = dict(re.findall(r'^(default_[nm]_val): (\d+)$', extra, re.M))
    order = params.get('pruning_order')
    m_top = re.search(r'^pruning_order: \[(.*)\]$', extra, re.M)
    if m_top: order = [s.strip().lower() for s in m_top.group(1).split(',')]
    order = [m for m in order if m != 'base'] if order else sorted(models)
    dn = params.get('default_n_val', int(top.get('default_n_val', 1)))
    dm = params.get('default_m_val', int(top.get('default_m_val', 4)))
    plan = []
    for m in order:
        p = per_model.get(m, {})
        plan.append((m, p.get('weight', 1.0), (p.get('n_val', dn), p.get('m_val', dm))))
    return plan


def check(work, case_at, out):
    case, pool = case_at.split('@')
    method, models, params, extra = CASES[case][:4]
    per_model = CASES[case][4] if len(CASES[case]) > 4 else {}
    base = pool_values(work, pool, 'base')
    if method == 'cabs':
        plan = cabs_plan(case)
        models = [m for m, _, _ in plan]
    ins = [pool_values(work, pool, m) for m in models]
    got, got_dt = read_folder(out)
    assert sorted(got) == sorted(base), 'tensor names differ'
    worst = 0
    for name, shape in SHAPES:
        L = shape[-1] if len(shape) >= 2 else math.prod(shape)
        xs = [x[name] for x in ins]
        if method == 'arcee_fusion':
            ref = arcee_fusion(base[name], xs[0], L)
        elif method == 'core_space':
            distinct = [m for k, m in enumerate(models) if m not in models[:k]]
            ref = core_space([base[name]] + [ins[models.index(m)][name] for m in distinct])
        elif method == 'lrp':
            ref = lrp(base[name], xs, [per_model.get(m, {}).get('weight', 1.0) for m in models],
                      params.get('density', 0.7))
        elif method == 'cabs':
            ref = cabs(base[name], xs, [w for _, w, _ in plan], [nm for _, _, nm in plan])
        elif method == 'ramplus_tl':
            ref = ram(base[name], xs, params.get('epsilon', 1e-5), params.get('r', 0.1),
                      params.get('alpha', 0.2))
        else:
            ref = ram(base[name], xs, params.get('epsilon', 1e-5))
        rnd = rounder(got_dt[name])
        for j, (g, r) in enumerate(zip(got[name], ref)):
            r = rnd(r)
            if got_dt[name] == 'F32':
                if f32_bits(g) != f32_bits(r):
                    sys.exit('%s %s[%d]: got %r, reference %r (f32 must be exact)' % (case_at, name, j, g, r))
            else:
                e = ulps_bf16(g, r)
                worst = max(worst, e)
                if e > 1:
                    sys.exit('%s %s[%d]: got %r, reference %r (%d bf16 ulps)' % (case_at, name, j, g, r, e))
    print('ok: %s matches the reference (%s out); worst bf16 error %d ulp' %
          (case_at, '/'.join(sorted(set(got_dt.values()))), worst))


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make':
        make_runs(sys.argv[2], make_pool, RUNS, recipe_text)
    elif cmd == 'check':
        work = sys.argv[2]
        for case_at, _ in RUNS:
            check(work, case_at, os.path.join(work, 'out-%s-1' % case_at))
    else:
        sys.exit('unknown command ' + cmd)
