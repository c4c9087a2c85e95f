#!/usr/bin/env python3
"""Independent references for kintsugi's mergekit-parity methods (stdlib only).

Written from the published definitions (mergekit's sparsify.magnitude,
sparsify.magnitude_outliers, sparsify.rescaled_masked_tensor,
generalized_task_arithmetic, nearswap, nuslerp, multislerp and karcher), not
from kintsugi's code. fp32 arithmetic is emulated exactly: each operation is
done in double and rounded to fp32 (double has more than 2 * 24 + 2 bits, so
that is the correctly rounded fp32 result), in the order the definitions give,
one operation at a time.

nuslerp, multislerp and karcher (docs/merge.md, "Methods that rescale by
norms") are checked twice. (1) mergekit's algorithm as written, on the
vectors themselves in double, against the same algorithm carried on the span
of the inputs (every vector it builds is a combination sum_i c_i x_i, so its
steps need only the inputs' Gram matrix): the two double results agree to
1e-9 of the largest magnitude, which checks the derivation. (2) kintsugi's
output against that span form computed as documented: the Gram matrix in
the documented fixed point (exact Python integers), the weights c_i in double
(math's functions are the C library's, as kintsugi's), rounded to fp32, then
the final sum in fp32: fp32 outputs must match bit for bit.

make WORK [CASE...]: pools WORK/bf16 and WORK/f32 (base, m1, m2, m3), the recipes
                  WORK/CASE.yaml and WORK/cases.json
check WORK CASE OUT: compares the merged folder OUT with the reference
"""
import math, os, random, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import (write_safetensors, read_safetensors, f32, f32_bits, bf16_bits,  # noqa: E402
                        from_bf16, rounder, ulps_bf16, write_pool,
                        pool_values, read_values_folder as read_folder)

SHAPES = [('model.embed_tokens.weight', [40, 50]),
          ('model.layers.0.mlp.up_proj.weight', [300, 7]),
          ('model.layers.0.input_layernorm.weight', [37]),  # gamma * 37 < 1: n_top == 0
          ('model.layers.1.self_attn.q_proj.weight', [1000]),
          ('lm_head.weight', [2, 513])]

def make_pool(d, dtype):
    """base, m1..m3 whose deltas to the base have pairwise distinct magnitudes
    in every tensor (so the rank order of |delta| is unambiguous)."""
    rnd = rounder(dtype)
    rng = random.Random(11 if dtype == 'BF16' else 12)
    models = {m: [] for m in ('base', 'm1', 'm2', 'm3')}
    for name, shape in SHAPES:
        n = math.prod(shape)
        base = [rnd(rng.gauss(0, 0.05)) for _ in range(n)]
        models['base'].append((name, shape, base))
        for k, m in enumerate(('m1', 'm2', 'm3')):
            seen, vals = set(), []
            for j in range(n):
                while True:
                    x = rnd(base[j] + rng.gauss(0, 0.02 * (k + 1)))
                    key = abs(f32(x - base[j]))
                    if key not in seen: break
                seen.add(key); vals.append(x)
            models[m].append((name, shape, vals))
    write_pool(d, dtype, models)

# Each case: method, models (name, weight, density, gamma: None = default),
# global parameters, t (nearswap), extra recipe lines.
CASES = {
    'bc_plain': ('breadcrumbs', [('m1', 0.6, 0.9, 0.01), ('m2', 0.5, 0.7, 0.05)], {}, None, ''),
    # n_bot < 0 (density + gamma > 1) for m1, density 1 (delta unchanged) for m2.
    'bc_nbot_neg': ('breadcrumbs', [('m1', 1.0, 0.5, 0.7), ('m2', 0.4, 1.0, 0.2)],
                    {'normalize': True, 'lambda': 0.8}, None, ''),
    'bct_three': ('breadcrumbs_ties', [('m1', 1.0, 0.8, 0.1), ('m2', 0.7, 0.6, None),
                                       ('m3', 0.5, 0.3, 0.0)], {'int8_mask': True}, None, ''),
    'bct_norm': ('breadcrumbs_ties', [('m1', 0.9, 0.95, 0.3), ('m2', -0.4, 0.2, 0.02),
                                      ('m3', 0.6, 1.0, None)],
                 {'normalize': True, 'lambda': 1.25}, None, 'out_dtype: float32\n'),
    # rescale: true, mergekit's L1 rescale of each pruned task vector's survivors
    # (sum |delta| / sum |kept delta|); m3 at density 1 is not pruned, not rescaled.
    'bc_rescale': ('breadcrumbs', [('m1', 0.6, 0.9, 0.01), ('m2', 0.5, 0.7, 0.05),
                                   ('m3', 0.4, 1.0, None)], {'rescale': True}, None, ''),
    'bct_rescale': ('breadcrumbs_ties', [('m1', 1.0, 0.8, 0.1), ('m2', 0.7, 0.6, None)],
                    {'rescale': True, 'normalize': True}, None, 'out_dtype: float32\n'),
    # ties (magnitude top-k, normalize on by default) with rescale (without:
    # mergekit's ties.yml against its reference in merge_mergekit_examples.sh).
    'ties_rescale': ('ties', [('m1', 1.0, 0.5, None), ('m2', 0.6, 0.3, None),
                              ('m3', -0.4, 1.0, None)], {'rescale': True}, None, ''),
    'ns_small': ('nearswap', [], {}, 0.001, ''),
    'ns_mid': ('nearswap', [], {}, 0.02, ''),
    'ns_large': ('nearswap', [], {}, 0.5, 'out_dtype: float32\n'),
}

def recipe_text(case, pool):
    method, models, params, t, extra = CASES[case]
    lines = ['merge_method: %s' % method, 'base_model: %s/base' % pool, 'models:']
    if method == 'nearswap':
        lines += ['  - model: %s/base' % pool, '  - model: %s/m2' % pool]
        params = dict(params, t=t)
    else:
        for m, w, d, g in models:
            p = ['weight: %r' % w, 'density: %r' % d] + ([] if g is None or method == 'ties'
                                                          else ['gamma: %r' % g])
            lines.append('  - model: %s/%s' % (pool, m))
            lines.append('    parameters: {%s}' % ', '.join(p))
    if params:
        lines.append('parameters: {%s}' % ', '.join(
            '%s: %s' % (k, ('true' if v else 'false') if isinstance(v, bool) else repr(v))
            for k, v in params.items()))
    return '\n'.join(lines) + '\n' + extra

def magnitude_outliers(delta, density, gamma):
    """mergekit's sparsify.magnitude_outliers, as its definition reads."""
    if density >= 1: return list(delta)
    n = len(delta)
    target = int(density * n)
    n_top = int(gamma * n)
    n_bot = n - target - n_top
    if n_bot < 0:
        n_top += n_bot
        n_bot = 0
    order = sorted(range(n), key=lambda j: abs(delta[j]))  # ascending |delta|
    keep = set(order[n_bot:n - n_top])
    return [delta[j] if j in keep else 0.0 for j in range(n)]

def magnitude(delta, density):
    """mergekit's sparsify.magnitude: the int(density * n) largest |delta|."""
    if density >= 1: return list(delta)
    k = int(density * len(delta))
    keep = set(sorted(range(len(delta)), key=lambda j: -abs(delta[j]))[:k])
    return [delta[j] if j in keep else 0.0 for j in range(len(delta))]

def l1_rescaled(delta, kept):
    """mergekit's rescaled_masked_tensor (L1): the survivors times sum |delta| /
    sum |kept delta| (each sum exact, rounded once to double, then to fp32; the
    quotient in fp32), unless either sum is below 1e-7."""
    before = f32(math.fsum(abs(v) for v in delta))
    after = f32(math.fsum(abs(v) for v in kept))
    if before < f32(1e-7) or after < f32(1e-7): return kept
    scale = f32(before / after)
    return [f32(v * scale) for v in kept]

def task_merge(base, xs, weights, densities, gammas, consensus, normalize, lam, method, rescale):
    """mergekit's generalized task arithmetic on one tensor, in fp32."""
    n = len(base)
    wd = []
    for x, w, d, g in zip(xs, weights, densities, gammas):
        delta = [f32(a - b) for a, b in zip(x, base)]
        kept = magnitude(delta, d) if method == 'ties' else magnitude_outliers(delta, d, g)
        if rescale and d < 1: kept = l1_rescaled(delta, kept)
        wd.append([f32(w * v) for v in kept])
    out = []
    wsum = 0.0
    for w in weights: wsum = f32(wsum + w)
    for j in range(n):
        if consensus:  # "sum": majority sign of the weighted deltas' sum, 0 counts as +
            s = 0.0
            for r in wd: s = f32(s + r[j])
            maj = 1 if s >= 0 else -1
            mixed = div = 0.0
            for r, w in zip(wd, weights):
                sign = (r[j] > 0) - (r[j] < 0)
                if sign == maj:
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

def nearswap(v0, v1, t):
    """mergekit's nearswap: w = t / |v0 - v1| (NaN, +-Inf -> 1), clamped to [0, 1]."""
    t = f32(t)
    out = []
    for a, b in zip(v0, v1):
        d = abs(f32(a - b))
        w = 1.0 if d == 0 else f32(t / d)
        if math.isnan(w) or math.isinf(w): w = 1.0
        w = min(max(w, 0.0), 1.0)
        out.append(f32(f32(w * b) + f32(f32(1.0 - w) * a)))
    return out

# ---- nuslerp, multislerp, karcher ----------------------------------------

def fixed_gram(vecs):
    """The documented Gram matrix: m = the largest magnitude, m < 2^e,
    E = 62 - 2e; G_ab = sum of trunc(x * y * 2^E) (exact integers), rounded
    once to double, times 2^-E."""
    n = len(vecs)
    m = 0.0
    for v in vecs:
        for x in v: m = max(m, abs(x))
    g = [[0.0] * n for _ in range(n)]
    if m == 0: return g
    scale = math.ldexp(1.0, 62 - 2 * math.frexp(m)[1])
    for a in range(n):
        for b in range(a, n):
            s = 0
            for x, y in zip(vecs[a], vecs[b]): s += int(x * y * scale)
            g[a][b] = g[b][a] = float(s) / scale
    return g

def quad(q, x):
    s = 0.0
    for i in range(len(x)):
        r = 0.0
        for j in range(len(x)): r += q[i][j] * x[j]
        s += x[i] * r
    return max(s, 0.0)

def nuslerp_coef(g, t):
    """mergekit's nuslerp on one pair: _normalize clamps norms to 1e-7,
    cos clamped, lerp where |sin theta| < 1e-8."""
    n0 = max(math.sqrt(g[0][0]), 1e-7); n1 = max(math.sqrt(g[1][1]), 1e-7)
    cos = min(max(g[0][1] / (n0 * n1), -1.0), 1.0)
    theta = math.acos(cos)
    st = math.sin(theta)
    if abs(st) < 1e-8: return [1.0 - t, t]
    return [math.sin((1.0 - t) * theta) / st, math.sin(t * theta) / st]

def multislerp_coef(g, w, eps):
    n = len(w)
    norm = [math.sqrt(g[i][i]) for i in range(n)]
    u = [[g[i][j] / ((norm[i] + eps) * (norm[j] + eps)) for j in range(n)] for i in range(n)]
    mn = math.sqrt(quad(u, w))
    if mn < eps: return None
    alpha = [x / mn for x in w]
    wd = 0.0
    for i in range(n):
        d = 0.0
        for j in range(n): d += u[i][j] * alpha[j]
        wd += w[i] * d
    beta = [w[k] - wd * alpha[k] for k in range(n)]
    tn = math.sqrt(quad(u, beta)) + eps
    c, sn = math.cos(tn), math.sin(tn) / tn
    avg = 0.0
    for i in range(n): avg += norm[i] * w[i]
    return [(alpha[k] * c + beta[k] * sn) * avg / (norm[k] + eps) for k in range(n)]

def karcher_coef(g, max_iter, tol):
    n = len(g)
    alpha = 1.0 / n
    norm = [math.sqrt(g[i][i]) for i in range(n)]
    valid = [i for i in range(n) if norm[i] > tol]
    coef = [0.0] * n
    if not valid: return coef, 0
    v = len(valid)
    asum = 0.0
    for _ in valid: asum += alpha
    a = alpha / asum
    unit = [[g[p][q] / (norm[p] * norm[q]) for q in valid] for p in valid]
    gm = [a] * v
    ng = math.sqrt(quad(unit, gm))
    if ng < tol: gm = [1.0] + [0.0] * (v - 1)
    else: gm = [x / ng for x in gm]
    iters = 0
    for _ in range(max_iter):
        tan = [0.0] * v
        for p in range(v):
            dot = 0.0
            for q in range(v): dot += gm[q] * unit[q][p]
            dot = min(max(dot, -1.0), 1.0)
            theta = math.acos(dot)
            if theta < tol: continue
            k = a * (theta / math.sin(theta))
            for q in range(v): tan[q] -= k * (dot * gm[q])
            tan[p] += k
        nt = math.sqrt(quad(unit, tan))
        if nt < tol: break
        c, sn = math.cos(nt), math.sin(nt)
        gm = [c * gm[q] + sn * (tan[q] / nt) for q in range(v)]
        nu = math.sqrt(quad(unit, gm))
        if nu > tol: gm = [x / nu for x in gm]
        iters += 1
    scale = 0.0
    for i in range(n): scale += alpha * norm[i]
    for p, i in enumerate(valid): coef[i] = scale * gm[p] / norm[i]
    return coef, iters

# mergekit's algorithms as written, on the vectors, in double.
def norm2(x): return math.sqrt(math.fsum(a * a for a in x))
def dot(x, y): return math.fsum(a * b for a, b in zip(x, y))

def nuslerp_literal(t, v0, v1):
    n0, n1 = max(norm2(v0), 1e-7), max(norm2(v1), 1e-7)
    u0 = [x / n0 for x in v0]; u1 = [x / n1 for x in v1]
    theta = math.acos(min(max(dot(u0, u1), -1.0), 1.0))
    st = math.sin(theta)
    if abs(st) < 1e-8: return [(1 - t) * a + t * b for a, b in zip(v0, v1)]
    return [(math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / st for a, b in zip(v0, v1)]

def multislerp_literal(xs, w, eps):
    norms = [norm2(x) for x in xs]
    units = [[a / (nn + eps) for a in x] for x, nn in zip(xs, norms)]
    mean = [math.fsum(wi * u[j] for wi, u in zip(w, units)) for j in range(len(xs[0]))]
    mn = norm2(mean)
    if mn < eps: return None
    mean = [a / mn for a in mean]
    dots = [dot(u, mean) for u in units]
    tangent = [math.fsum(wi * (u[j] - d * mean[j]) for wi, u, d in zip(w, units, dots))
               for j in range(len(mean))]
    tn = norm2(tangent) + eps
    avg = math.fsum(nn * wi for nn, wi in zip(norms, w))
    return [(m * math.cos(tn) + tv * (math.sin(tn) / tn)) * avg for m, tv in zip(mean, tangent)]

def karcher_literal(xs, max_iter, tol):
    n = len(xs)
    alphas = [1.0 / n] * n
    norms = [norm2(x) for x in xs]
    units = [[a / nn for a in x] if nn > 0 else [0.0] * len(x) for x, nn in zip(xs, norms)]
    valid = [i for i in range(n) if norms[i] > tol]
    if not valid: return [0.0] * len(xs[0])
    asum = math.fsum(alphas[i] for i in valid)
    na = [alphas[i] / asum for i in valid]
    vu = [units[i] for i in valid]
    u = [math.fsum(a * x[j] for a, x in zip(na, vu)) for j in range(len(xs[0]))]
    nu = norm2(u)
    u = list(vu[0]) if nu < tol else [a / nu for a in u]
    for _ in range(max_iter):
        T = [0.0] * len(u)
        for a, ui in zip(na, vu):
            d = min(max(dot(u, ui), -1.0), 1.0)
            theta = math.acos(d)
            if theta < tol: continue
            k = a * (theta / math.sin(theta))
            T = [tj + k * (x - d * y) for tj, x, y in zip(T, ui, u)]
        nt = norm2(T)
        if nt < tol: break
        u = [math.cos(nt) * y + math.sin(nt) * (tj / nt) for y, tj in zip(u, T)]
        nn = norm2(u)
        if nn > tol: u = [a / nn for a in u]
    s = math.fsum(a * nn for a, nn in zip(alphas, norms))
    return [s * a for a in u]

def combine_f32(xs, base, coef):
    """kintsugi's final sum in fp32: sum_i c_i x_i, or base + sum_i c_i (x_i - base)."""
    c = [f32(x) for x in coef]
    out = []
    for j in range(len(xs[0])):
        acc = 0.0
        if base is None:
            for ci, x in zip(c, xs): acc = f32(acc + f32(ci * x[j]))
            out.append(acc)
        else:
            b = base[j]
            for ci, x in zip(c, xs): acc = f32(acc + f32(ci * f32(x[j] - b)))
            out.append(f32(b + acc))
    return out

def combine_double(xs, base, coef):
    if base is None:
        return [math.fsum(c * x[j] for c, x in zip(coef, xs)) for j in range(len(xs[0]))]
    # the task vectors in fp32, as kintsugi (and the literal form) takes them
    return [base[j] + math.fsum(c * f32(x[j] - base[j]) for c, x in zip(coef, xs))
            for j in range(len(xs[0]))]

def agree(literal, span, what):
    big = max([abs(x) for x in literal] + [1e-30])
    for j, (a, b) in enumerate(zip(literal, span)):
        if abs(a - b) > 1e-9 * big:
            sys.exit('%s[%d]: mergekit as written %r, on the span %r' % (what, j, a, b))

def sphere_vectors(name, shape, vals_of, flatten, row_wise):
    """Index lists of nuslerp's vectors: the tensor, its rows, or (row_wise)
    the vectors along dimension 0."""
    n = math.prod(shape)
    if flatten or len(shape) < 2: return [list(range(n))]
    if not row_wise:
        L = shape[-1]
        return [list(range(r * L, (r + 1) * L)) for r in range(n // L)]
    S = n // shape[0]
    return [list(range(c, n, S)) for c in range(S)]

def sphere_reference(case, name, shape, load):
    """The fp32 reference of one tensor; also checks mergekit-as-written
    against the span form."""
    method, has_base, models, params = SPHERE_CASES[case]
    base = load('base')[name] if has_base else None
    xs = [load(m)[name] for m, _ in models]
    what = '%s %s' % (case, name)
    if method == 'nuslerp':
        w0, w1 = models[0][1], models[1][1]
        t = 0.5 if abs(w0 + w1) < 1e-6 else w1 / (w0 + w1)
        vs = [[f32(a - b) for a, b in zip(x, base)] for x in xs] if has_base else xs
        out = [0.0] * len(xs[0])
        lit_all, span_all = [0.0] * len(out), [0.0] * len(out)
        for idx in sphere_vectors(name, shape, None, params.get('nuslerp_flatten', True),
                                  params.get('nuslerp_row_wise', False)):
            v0 = [vs[0][j] for j in idx]; v1 = [vs[1][j] for j in idx]
            coef = nuslerp_coef(fixed_gram([v0, v1]), t)
            sub_x = [[x[j] for j in idx] for x in xs]
            sub_b = [base[j] for j in idx] if has_base else None
            for j, o in zip(idx, combine_f32(sub_x, sub_b, coef)): out[j] = o
            lit = nuslerp_literal(t, v0, v1)
            if has_base: lit = [b + x for b, x in zip(sub_b, lit)]
            for j, a, b in zip(idx, lit, combine_double(sub_x, sub_b, coef)):
                lit_all[j], span_all[j] = a, b
        agree(lit_all, span_all, what)
        return out
    if method == 'multislerp':
        w = [x for _, x in models]
        if params.get('normalize_weights', True) and len(w) > 1:
            tot = 0.0
            for x in w: tot += x
            w = [x / tot for x in w]
        eps = params.get('eps', 1e-8)
        if len(xs) == 1: return combine_f32(xs, None, [1.0])
        vs = [[f32(a - b) for a, b in zip(x, base)] for x in xs] if has_base else xs
        coef = multislerp_coef(fixed_gram(vs), w, eps)
        lit = multislerp_literal(vs, w, eps)
        if has_base: lit = [b + x for b, x in zip(base, lit)]
        agree(lit, combine_double(xs, base, coef), what)
        return combine_f32(xs, base, coef)
    # karcher: the base is one more input, first
    ins = ([base] if has_base else []) + xs
    max_iter, tol = params.get('max_iter', 10), params.get('tol', 1e-5)
    coef, _ = karcher_coef(fixed_gram(ins), max_iter, tol)
    agree(karcher_literal(ins, max_iter, tol), combine_double(ins, None, coef), what)
    return combine_f32(ins, None, coef)

# method, with base_model, models (name, weight or None), global parameters
SPHERE_CASES = {
    'nus_flat': ('nuslerp', False, [('m1', 0.3), ('m2', 0.7)], {}),
    'nus_base': ('nuslerp', True, [('m1', 1.0), ('m3', 0.5)], {}),
    'nus_rows': ('nuslerp', True, [('m1', 0.6), ('m2', 0.4)], {'nuslerp_flatten': False}),
    'nus_rows_nobase': ('nuslerp', False, [('m2', 0.2), ('m3', 0.8)],
                        {'nuslerp_flatten': False}),
    'nus_cols': ('nuslerp', True, [('m1', 0.5), ('m2', 0.5)],
                 {'nuslerp_flatten': False, 'nuslerp_row_wise': True}),
    'ms_plain': ('multislerp', False, [('m1', 0.2), ('m2', 0.5), ('m3', 0.3)], {}),
    'ms_base': ('multislerp', True, [('m1', 1.0), ('m2', 2.0), ('m3', 1.0)], {}),
    'ms_nonorm': ('multislerp', True, [('m1', 0.7), ('m3', 0.6)],
                  {'normalize_weights': False, 'eps': 1e-6}),
    'ms_one': ('multislerp', True, [('m2', 0.4)], {}),
    'ka_plain': ('karcher', False, [('m1', None), ('m2', None), ('m3', None)], {}),
    'ka_base': ('karcher', True, [('m1', None), ('m3', None)], {'max_iter': 3, 'tol': 1e-9}),
    'ka_noiter': ('karcher', True, [('m2', None), ('m3', None)], {'max_iter': 0}),
}

def sphere_recipe(case, pool):
    method, has_base, models, params = SPHERE_CASES[case]
    lines = ['merge_method: %s' % method]
    if has_base: lines.append('base_model: %s/base' % pool)
    lines.append('models:')
    for m, w in models:
        lines.append('  - model: %s/%s' % (pool, m))
        if w is not None: lines.append('    parameters: {weight: %r}' % w)
    if params:
        lines.append('parameters: {%s}' % ', '.join(
            '%s: %s' % (k, ('true' if v else 'false') if isinstance(v, bool) else repr(v))
            for k, v in params.items()))
    # Half the cases write fp32 from the bf16 pool: the fp32 sums compared bit for bit.
    return '\n'.join(lines) + '\n' + ('out_dtype: float32\n' if len(case) % 2 else '')

def check(work, case, out):
    pool = 'f32' if case.endswith('@f32') else 'bf16'
    case = case.split('@')[0]
    load = lambda m: pool_values(work, pool, m)  # noqa: E731
    base = load('base')
    got, got_dt = read_folder(out)
    assert sorted(got) == sorted(base), 'tensor names differ'
    shapes = dict(SHAPES)
    worst = 0
    method = None if case in SPHERE_CASES else CASES[case][0]
    if method is not None:
        _, models, params, t, extra = CASES[case]
    for name in sorted(got):
        if method is None:
            ref = sphere_reference(case, name, shapes[name], load)
        elif method == 'nearswap':
            ref = nearswap(base[name], load('m2')[name], t)
        else:
            ins = [load(m)[name] for m, *_ in models]
            ref = task_merge(base[name], ins, [f32(w) for _, w, _, _ in models],
                             [d for _, _, d, _ in models],
                             [0.01 if g is None else g for _, _, _, g in models],
                             method in ('ties', 'breadcrumbs_ties'),
                             params.get('normalize', method == 'ties'), params.get('lambda', 1.0),
                             method, params.get('rescale', False))
        rnd = rounder(got_dt[name])
        for j, (g, r) in enumerate(zip(got[name], ref)):
            r = rnd(r)
            if got_dt[name] == 'F32':
                ok = f32_bits(g) == f32_bits(r) or (math.isnan(g) and math.isnan(r))
                if not ok:
                    sys.exit('%s %s[%d]: got %r, reference %r (f32 must be exact)' % (case, name, j, g, r))
            else:
                e = ulps_bf16(g, r)
                worst = max(worst, e)
                if e > 1:
                    sys.exit('%s %s[%d]: got %r, reference %r (%d bf16 ulps)' % (case, name, j, g, r, e))
    print('ok: %s (%s pool, %s out) matches the reference; worst bf16 error %d ulp' %
          (case, pool, '/'.join(sorted(set(got_dt.values()))), worst))

if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make':
        work = sys.argv[2]
        for dt, sub in (('BF16', 'bf16'), ('F32', 'f32')):
            make_pool(os.path.join(work, sub), dt)
        only = sys.argv[3:]  # case names (default: all)
        cases = [c for c in list(CASES) + list(SPHERE_CASES) if not only or c in only]
        for case in cases:
            for sub in ('bf16', 'f32'):
                with open(os.path.join(work, '%s@%s.yaml' % (case, sub)), 'w') as f:
                    f.write(sphere_recipe(case, sub) if case in SPHERE_CASES
                            else recipe_text(case, sub))
        print(' '.join('%s@%s' % (c, s) for c in cases for s in ('bf16', 'f32')))
    elif cmd == 'check':  # check WORK CASE OUT [CASE OUT ...]
        pairs = sys.argv[3:]
        assert pairs and len(pairs) % 2 == 0, 'check WORK CASE OUT [CASE OUT ...]'
        for case, out in zip(pairs[::2], pairs[1::2]):
            check(sys.argv[2], case, out)
    else:
        sys.exit('unknown command ' + cmd)
