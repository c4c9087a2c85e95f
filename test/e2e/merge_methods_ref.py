#!/usr/bin/env python3
"""Independent references for kintsugi's mergekit-parity methods (stdlib only).

Written from the published definitions (mergekit's sparsify.magnitude_outliers,
generalized_task_arithmetic and nearswap), not from kintsugi's code. fp32
arithmetic is emulated exactly: each operation is done in double and rounded to
fp32 (double has more than 2 * 24 + 2 bits, so that is the correctly rounded
fp32 result), in the order the definitions give, one operation at a time.

make WORK:        pools WORK/bf16 and WORK/f32 (base, m1, m2, m3), the recipes
                  WORK/CASE.yaml and WORK/cases.json
check WORK CASE OUT: compares the merged folder OUT with the reference
"""
import json, math, os, random, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import write_safetensors, read_safetensors  # noqa: E402

def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]

def bf16_bits(x):
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    if (u & 0x7FFFFFFF) > 0x7F800000: return 0x7FC0
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF

def from_bf16(h):
    return struct.unpack('<f', struct.pack('<I', h << 16))[0]

def f32_bits(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]

SHAPES = [('model.embed_tokens.weight', [40, 50]),
          ('model.layers.0.mlp.up_proj.weight', [300, 7]),
          ('model.layers.0.input_layernorm.weight', [37]),  # gamma * 37 < 1: n_top == 0
          ('model.layers.1.self_attn.q_proj.weight', [1000]),
          ('lm_head.weight', [2, 513])]

def write_st(path, dtype, tensors):
    def raw(vals):
        if dtype == 'BF16':
            return struct.pack('<%dH' % len(vals), *[bf16_bits(v) for v in vals])
        return struct.pack('<%df' % len(vals), *vals)
    write_safetensors(path, [(name, dtype, shape, raw(vals)) for name, shape, vals in tensors],
                      {'format': 'pt'})

def read_st(path):
    """{name: list of fp32 values} (bf16 widened exactly)."""
    out, dtypes = {}, {}
    for k, (dtype, b) in read_safetensors(path)[1].items():
        if dtype == 'BF16':
            out[k] = [from_bf16(h) for h in struct.unpack('<%dH' % (len(b) // 2), b)]
        elif dtype == 'F32':
            out[k] = list(struct.unpack('<%df' % (len(b) // 4), b))
        else:
            sys.exit('unexpected dtype ' + dtype)
        dtypes[k] = dtype
    return out, dtypes

def read_folder(d):
    vals, dts = {}, {}
    for f in sorted(os.listdir(d)):
        if f.endswith('.safetensors'):
            v, t = read_st(os.path.join(d, f)); vals.update(v); dts.update(t)
    return vals, dts

def rounder(dtype):
    return (lambda x: from_bf16(bf16_bits(x))) if dtype == 'BF16' else f32

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
    for m, ts in models.items():
        folder = os.path.join(d, m); os.makedirs(folder, exist_ok=True)
        write_st(os.path.join(folder, 'model.safetensors'), dtype, ts)
        with open(os.path.join(folder, 'config.json'), 'w') as f:
            json.dump({'architectures': ['LlamaForCausalLM'], 'num_hidden_layers': 2,
                       'torch_dtype': 'bfloat16' if dtype == 'BF16' else 'float32'}, f)

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
            p = ['weight: %r' % w, 'density: %r' % d] + ([] if g is None else ['gamma: %r' % g])
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

def task_merge(base, xs, weights, densities, gammas, consensus, normalize, lam):
    """mergekit's generalized task arithmetic on one tensor, in fp32."""
    n = len(base)
    wd = []
    for x, w, d, g in zip(xs, weights, densities, gammas):
        delta = [f32(a - b) for a, b in zip(x, base)]
        wd.append([f32(w * v) for v in magnitude_outliers(delta, d, g)])
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

def ulps_bf16(got, ref):
    """Distance in bf16 steps between two bf16-representable values."""
    def ordered(x):
        u = f32_bits(x) >> 16
        return -(u & 0x7FFF) if u & 0x8000 else u
    return abs(ordered(got) - ordered(ref))

def check(work, case, out):
    pool = 'f32' if case.endswith('@f32') else 'bf16'
    case = case.split('@')[0]
    method, models, params, t, extra = CASES[case]
    load = lambda m: read_folder(os.path.join(work, pool, m))[0]
    base = load('base')
    got, got_dt = read_folder(out)
    assert sorted(got) == sorted(base), 'tensor names differ'
    worst = 0
    for name in sorted(got):
        if method == 'nearswap':
            ref = nearswap(base[name], load('m2')[name], t)
        else:
            ins = [load(m)[name] for m, *_ in models]
            ref = task_merge(base[name], ins, [f32(w) for _, w, _, _ in models],
                             [d for _, _, d, _ in models],
                             [0.01 if g is None else g for _, _, _, g in models],
                             method == 'breadcrumbs_ties', params.get('normalize', False),
                             params.get('lambda', 1.0))
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
        for case in CASES:
            for sub in ('bf16', 'f32'):
                with open(os.path.join(work, '%s@%s.yaml' % (case, sub)), 'w') as f:
                    f.write(recipe_text(case, sub))
        print(' '.join('%s@%s' % (c, s) for c in CASES for s in ('bf16', 'f32')))
    elif cmd == 'check':
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit('unknown command ' + cmd)
