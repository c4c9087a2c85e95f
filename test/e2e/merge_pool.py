#!/usr/bin/env python3
"""Small HF-style checkpoints for the merge end-to-end tests (stdlib only).

make DIR: base + m1..m3 folders (config.json, tokenizer.json, model.safetensors),
          plus 'odd' (m1 with one tensor's shape changed) for the error tests.
linear-check OUT W1,W2,W3 MODELS...: checks OUT against a double-precision
          linear merge of the MODELS (within one bf16 ulp).
meta OUT: prints the __metadata__ of every .safetensors file in OUT as JSON.
"""
import json, math, os, random, struct, sys

def write_safetensors(path, entries, meta=None):
    """A safetensors file, written by hand from the format's definition:
    entries are (name, dtype, shape, raw little-endian bytes), in file order
    (also used by merge_methods_ref.py)."""
    header, blobs, off = {}, [], 0
    if meta: header['__metadata__'] = meta
    for name, dtype, shape, data in entries:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + len(data)]}
        blobs.append(data); off += len(data)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)

def read_safetensors(path):
    """(metadata, {name: (dtype, raw bytes)})."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n)); data = f.read()
    out = {}
    for k, v in header.items():
        if k == '__metadata__': continue
        b, e = v['data_offsets']
        out[k] = (v['dtype'], data[b:e])
    return header.get('__metadata__', {}), out

# fp32 and bf16 as the references emulate them (shared by merge_*_ref.py).
def f32(x):
    """x rounded to fp32 (round to nearest even)."""
    return struct.unpack('<f', struct.pack('<f', x))[0]

def f32_bits(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]

def bf16_bits(x):
    """fp32 x rounded to bf16 bits (nearest even; NaN -> the canonical quiet NaN)."""
    u = f32_bits(x)
    if (u & 0x7FFFFFFF) > 0x7F800000: return 0x7FC0
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF

def from_bf16(h):
    return struct.unpack('<f', struct.pack('<I', h << 16))[0]

def rounder(dtype):
    """Rounding of an fp32 value to a tensor dtype ('BF16' or 'F32')."""
    return (lambda x: from_bf16(bf16_bits(x))) if dtype == 'BF16' else f32

def ulps_bf16(got, ref):
    """Distance in bf16 steps between two bf16-representable values."""
    def ordered(x):
        u = f32_bits(x) >> 16
        return -(u & 0x7FFF) if u & 0x8000 else u
    return abs(ordered(got) - ordered(ref))

bf16, unbf16 = bf16_bits, from_bf16  # the names this module's own pool uses

def write_typed(path, dtype, tensors, meta=None):
    """tensors: (name, shape, fp32 values), stored as dtype 'BF16' or 'F32'."""
    def raw(vals):
        if dtype == 'BF16':
            return struct.pack('<%dH' % len(vals), *[bf16_bits(v) for v in vals])
        return struct.pack('<%df' % len(vals), *vals)
    write_safetensors(path, [(name, dtype, shape, raw(vals)) for name, shape, vals in tensors],
                      meta if meta is not None else {'format': 'pt'})

_POOL_VALUES = {}

def pool_values(work, pool, m):
    """{name: fp32 values} of model m of work/pool, read once per process."""
    key = (work, pool, m)
    if key not in _POOL_VALUES: _POOL_VALUES[key] = read_values_folder(os.path.join(work, pool, m))[0]
    return _POOL_VALUES[key]

def write_pool(d, dtype, models):
    """models: {name: [(tensor name, shape, fp32 values)]}, each written to
    d/name as model.safetensors (in dtype) and a two-layer Llama config.json."""
    for m, ts in models.items():
        folder = os.path.join(d, m); os.makedirs(folder, exist_ok=True)
        write_typed(os.path.join(folder, 'model.safetensors'), dtype, ts)
        with open(os.path.join(folder, 'config.json'), 'w') as f:
            json.dump({'architectures': ['LlamaForCausalLM'], 'num_hidden_layers': 2,
                       'torch_dtype': 'bfloat16' if dtype == 'BF16' else 'float32'}, f)

def make_runs(work, make_pool, runs, recipe_text):
    """A reference's `make`: the bf16 and f32 pools under work, each run's
    recipe at work/CASE@POOL.yaml, and one line per run: CASE@POOL and its
    rank counts."""
    for dt, sub in (('BF16', 'bf16'), ('F32', 'f32')):
        make_pool(os.path.join(work, sub), dt)
    for case_at, nps in runs:
        case, sub = case_at.split('@')
        with open(os.path.join(work, case_at + '.yaml'), 'w') as f:
            f.write(recipe_text(case, sub))
        print(case_at, nps)

def read_values_folder(d):
    """({name: fp32 values (bf16 widened exactly)}, {name: dtype}) over d's .safetensors files."""
    vals, dts = {}, {}
    for f in sorted(os.listdir(d)):
        if not f.endswith('.safetensors'): continue
        for k, (dtype, b) in read_safetensors(os.path.join(d, f))[1].items():
            if dtype == 'BF16':
                vals[k] = [from_bf16(h) for h in struct.unpack('<%dH' % (len(b) // 2), b)]
            elif dtype == 'F32':
                vals[k] = list(struct.unpack('<%df' % (len(b) // 4), b))
            else:
                sys.exit('unexpected dtype ' + dtype)
            dts[k] = dtype
    return vals, dts

def write_st(path, tensors, meta=None):
    write_safetensors(path, [(name, 'BF16', shape, struct.pack('<%dH' % len(vals), *vals))
                             for name, shape, vals in tensors], meta)

def linear_error_ulps(got, xs, w):
    """How far bf16 `got` is from the double-precision sum(w_i x_i) / sum(w_i),
    in bf16 ulps of the reference, after allowing for fp32 accumulation error
    where terms cancel; also returns the reference."""
    ref = sum(wi * x for wi, x in zip(w, xs)) / sum(w)
    mag = sum(abs(wi * x) for wi, x in zip(w, xs)) / abs(sum(w))
    ulp = 2.0 ** (math.frexp(ref)[1] - 8) if ref != 0 else 2.0 ** -133
    return max(0.0, abs(got - ref) - 2 * len(w) * mag * 2.0 ** -24) / ulp, ref

def read_st(path):
    meta, raw = read_safetensors(path)
    return meta, {k: list(struct.unpack('<%dH' % (len(b) // 2), b)) for k, (_, b) in raw.items()}

def read_folder(d):
    res = {}
    for f in sorted(os.listdir(d)):
        if f.endswith('.safetensors'): res.update(read_st(os.path.join(d, f))[1])
    return res

SHAPES = [('model.embed_tokens.weight', [64, 32]),
          ('model.layers.0.self_attn.q_proj.weight', [32, 32]),
          ('model.layers.0.mlp.up_proj.weight', [300, 1001]),
          ('model.layers.0.input_layernorm.weight', [32]),
          ('model.layers.1.self_attn.q_proj.weight', [32, 32]),
          ('model.layers.1.mlp.up_proj.weight', [48, 32]),
          ('model.layers.1.input_layernorm.weight', [32]),
          ('model.norm.weight', [32]),
          ('lm_head.weight', [64, 32])]

def make(d):
    base = {}
    rng = random.Random(0)
    for name, shape in SHAPES:
        n = math.prod(shape)
        base[name] = [rng.gauss(0, 0.05) for _ in range(n)]
    for k, model in enumerate(['base', 'm1', 'm2', 'm3', 'odd']):
        r = random.Random(100 + k)
        folder = os.path.join(d, model); os.makedirs(folder, exist_ok=True)
        ts = []
        for name, shape in SHAPES:
            if model == 'base':
                vals = base[name]
            else:
                shared = random.Random(7)  # a component shared by all models
                vals = [b + 0.01 * shared.gauss(0, 1) + 0.01 * r.gauss(0, 1) for b in base[name]]
            if model == 'odd' and name == 'model.layers.1.mlp.up_proj.weight':
                shape = [32, 48]
            ts.append((name, shape, [bf16(v) for v in vals]))
        write_st(os.path.join(folder, 'model.safetensors'), ts, {'format': 'pt'})
        with open(os.path.join(folder, 'config.json'), 'w') as f:
            json.dump({'architectures': ['LlamaForCausalLM'], 'num_hidden_layers': 2,
                       'hidden_size': 32, 'torch_dtype': 'bfloat16'}, f)
        with open(os.path.join(folder, 'tokenizer.json'), 'w') as f:
            f.write('{"model": {"type": "BPE"}, "from": "%s"}' % model)

def linear_check(out, weights, models):
    w = [float(x) for x in weights.split(',')]
    ins = [read_folder(m) for m in models]
    got = read_folder(out)
    assert sorted(got) == sorted(ins[0]), 'tensor names differ'
    worst = 0.0
    for name in got:
        for j, h in enumerate(got[name]):
            err, ref = linear_error_ulps(unbf16(h), [unbf16(x[name][j]) for x in ins], w)
            if err > 1:
                sys.exit('%s[%d]: %r vs reference %r (more than 1 bf16 ulp)' % (name, j, unbf16(h), ref))
            worst = max(worst, err)
    print('linear check ok: worst error %.3f bf16 ulp' % worst)

if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make': make(sys.argv[2])
    elif cmd == 'linear-check': linear_check(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == 'meta':
        out = {}
        for f in sorted(os.listdir(sys.argv[2])):
            if f.endswith('.safetensors'): out[f] = read_st(os.path.join(sys.argv[2], f))[0]
        print(json.dumps(out))
    else: sys.exit('unknown command ' + cmd)
