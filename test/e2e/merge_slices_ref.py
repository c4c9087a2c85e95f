#!/usr/bin/env python3
"""Independent reference for mergekit's `slices:` recipes and `passthrough` (stdlib only).

Written from mergekit's published definitions (config.py's evaluate_setting and
ConfigReader.parameter, plan.py's MergePlanner, merge.py's output config,
merge_methods/passthrough.py), not from kintsugi's code:
- output layers are the slices' layers in order; output layer k of a slice is
  layer first + k of each of its sources, named model.layers.<output index>.*;
- the non-layer tensors come from the first slice's sources (embeddings, t = 0)
  and the last slice's (the rest: final norm, lm_head, t = 1);
- inside a slice of n layers, gradients are evaluated at t = k / (n - 1)
  (t = 1 when n == 1);
- a source's parameters win over its slice's, which win over the global ones;
  per-model parameters are looked up with the input tensor's name, the
  method's own (normalize) with the output tensor's;
- passthrough copies its one source's tensor, times `scale` when given;
- config.json: the donor's (base_model, else the first source) with
  num_hidden_layers = the sum of the slice lengths; kintsugi also rebuilds
  layer_types from each output layer's source layer.
fp32 arithmetic is emulated exactly (each operation in double, then rounded to
fp32), in the order the definitions give.

make WORK:             pools WORK/bf16 and WORK/f32 (base, m1, m2: 6 layers; m3: 4
                       layers) and the recipes WORK/CASE.yaml; prints the case names
check WORK CASE OUT:   compares the merged folder OUT with the reference
by-layer WORK CASE:    writes one recipe per output layer of CASE, with every gradient
                       evaluated to a scalar (WORK/CASE-layerK.yaml); prints the files
compare-layers WORK CASE OUT: OUT's layer K (and its non-layer tensors) against the
                       by-layer merges WORK/CASE-layerK.out, byte for byte
"""
import json, math, os, random, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import (write_safetensors, read_safetensors, f32, f32_bits, bf16_bits,  # noqa: E402
                        from_bf16)

LAYER = [('self_attn.q_proj.weight', [16, 24]),
         ('mlp.up_proj.weight', [40, 16]),
         ('input_layernorm.weight', [16])]
OTHER = [('model.embed_tokens.weight', [20, 16]),
         ('model.norm.weight', [16]),
         ('lm_head.weight', [20, 16])]
LAYERS = {'base': 6, 'm1': 6, 'm2': 6, 'm3': 4}
KINDS = ['full_attention', 'sliding_attention']

def layer_types(model):
    """A distinct pattern per model, so the output's entries show where each came from."""
    k = sorted(LAYERS).index(model)
    return [KINDS[((j * (k + 2)) // 3 + k) % 2] for j in range(LAYERS[model])]

def tensor_names(model):
    names = [n for n, _ in OTHER]
    for j in range(LAYERS[model]):
        names += ['model.layers.%d.%s' % (j, s) for s, _ in LAYER]
    return names

def shape_of(name):
    for n, s in OTHER:
        if n == name: return s
    return dict(LAYER)[name.split('.', 3)[3]]

def make_pool(d, dtype):
    rng = random.Random(21 if dtype == 'BF16' else 22)
    rnd = (lambda x: from_bf16(bf16_bits(x))) if dtype == 'BF16' else f32
    for model in sorted(LAYERS):
        entries = []
        for name in tensor_names(model):
            shape = shape_of(name)
            vals = [rnd(rng.gauss(0, 0.05)) for _ in range(math.prod(shape))]
            if dtype == 'BF16':
                raw = struct.pack('<%dH' % len(vals), *[bf16_bits(v) for v in vals])
            else:
                raw = struct.pack('<%df' % len(vals), *vals)
            entries.append((name, dtype, shape, raw))
        folder = os.path.join(d, model); os.makedirs(folder, exist_ok=True)
        write_safetensors(os.path.join(folder, 'model.safetensors'), entries, {'format': 'pt'})
        with open(os.path.join(folder, 'config.json'), 'w') as f:
            json.dump({'architectures': ['Qwen2ForCausalLM'], 'model_type': 'qwen2',
                       'num_hidden_layers': LAYERS[model], 'hidden_size': 16,
                       'layer_types': layer_types(model), 'from': model,
                       'torch_dtype': 'bfloat16' if dtype == 'BF16' else 'float32'}, f)
        with open(os.path.join(folder, 'tokenizer.json'), 'w') as f:
            f.write('{"model": {"type": "BPE"}, "from": "%s"}' % model)

# Each case: pool, method, base model (or None), global parameters, slices
# [(slice parameters, [(model, first, end, source parameters)][, slice keys])],
# extra lines; slice keys: the slice's own base_model, residual_weight.
# Parameter values as mergekit's YAML has them: a number, a gradient (list of
# numbers) or a list of {filter, value}.
CASES = {
    # A frankenmerge: 3 + 4 + 2 layers from three models, one source scaled
    # (its mlp tensors only), the last slice's model of another depth.
    'frank_bf16': ('bf16', 'passthrough', None, {}, [
        ({}, [('m1', 0, 3, {})]),
        ({}, [('m2', 2, 6, {'scale': [{'filter': 'mlp', 'value': 0.3}]})]),
        ({}, [('m3', 1, 3, {})])], ''),
    # The same shape from an f32 pool written as bf16 (a dtype conversion),
    # with a scale gradient set on the slice, and base_model as config donor.
    'frank_f32': ('f32', 'passthrough', 'm2', {}, [
        ({'scale': [1.0, 0.0, -2.0]}, [('m3', 0, 4, {})]),
        ({}, [('m1', 5, 6, {'scale': 1.5})])], 'out_dtype: bfloat16\n'),
    # linear over two slices, three sources each, gradients and filters at
    # every level: a source's setting wins over its slice's, over the global one.
    # A filter on a source's setting matches the input tensor's name (m3's
    # layer 2 is output layer 1); a one-layer slice is at t = 1.
    'grad_linear': ('f32', 'linear', None, {'weight': 0.25, 'normalize': True}, [
        ({'weight': [1.0, 3.0]}, [
            ('m1', 1, 4, {'weight': [0.5, 2.0, 0.25]}),
            ('m2', 3, 6, {}),
            ('m3', 1, 4, {'weight': [{'filter': 'layers.2.', 'value': 5.0},
                                     {'filter': 'mlp', 'value': [2.0, -1.0]}]})]),
        ({'normalize': False}, [
            ('m3', 2, 4, {'weight': [0.75, 1.25]}),
            ('m1', 0, 2, {}),
            ('base', 4, 6, {'weight': [{'filter': 'norm', 'value': 0.5}, {'value': [0.1, 0.9]}]})]),
        ({}, [('m2', 0, 1, {'weight': [0.1, 0.7]}), ('m1', 2, 3, {})])],
        ''),
}
# Checked against per-layer recipes of scalar settings (kintsugi's own
# arithmetic is checked elsewhere; this holds the layer offsets, t and the
# precedence of the settings for a method with a base).
BY_LAYER_CASES = {
    'grad_ties': ('bf16', 'ties', 'base', {'lambda': [0.5, 1.5], 'density': 0.9}, [
        ({'density': [0.3, 0.8], 'normalize': False}, [
            ('base', 1, 4, {}),
            ('m1', 0, 3, {'weight': [0.2, 1.0], 'density': [{'filter': 'mlp', 'value': [0.6, 0.2]}]}),
            ('m2', 3, 6, {'weight': 0.7})]),
        ({'weight': [1.0, 0.0]}, [
            ('m3', 2, 4, {}),
            ('base', 4, 6, {})])], ''),
    # A slice's own base_model (mergekit's ConfigReader.base_model: the slice's,
    # else the recipe's) for its layers and, as the first and last slice, the
    # embeddings and the final tensors; residual_weight is accepted and does
    # nothing (mergekit never reads it). Each layer is checked against a
    # recipe whose top-level base_model is the slice's base.
    'slice_base': ('bf16', 'task_arithmetic', 'base', {'weight': 0.6}, [
        ({'lambda': 0.8}, [
            ('m2', 0, 2, {}),
            ('m1', 3, 5, {'weight': [1.0, 0.5]})], {'base_model': 'm2', 'residual_weight': 0.5}),
        ({}, [
            ('base', 2, 3, {}),
            ('m3', 3, 4, {})]),
        ({}, [
            ('m3', 0, 1, {'weight': 0.9}),
            ('m1', 5, 6, {})], {'base_model': 'm3'})], ''),
}
# Run on one rank only: the plan is the same on every rank (merge_slices.sh).
ONE_RANK = ['slice_base']

def parts(sl):
    """A slice's parameters, sources and slice keys."""
    return sl[0], sl[1], (sl[2] if len(sl) > 2 else {})

def yaml_value(v):
    if isinstance(v, bool): return 'true' if v else 'false'
    if isinstance(v, (int, float)): return repr(float(v))
    if v and isinstance(v[0], dict):
        return '[%s]' % ', '.join('{%s}' % ', '.join('%s: %s' % (k, yaml_value(x) if k == 'value' else x)
                                                    for k, x in e.items()) for e in v)
    return '[%s]' % ', '.join(repr(float(x)) for x in v)

def yaml_params(p):
    return '{%s}' % ', '.join('%s: %s' % (k, yaml_value(v)) for k, v in p.items())

def recipe_text(case, pool_dir, spec):
    pool, method, base, params, slices, extra = spec
    lines = ['merge_method: %s' % method]
    if base: lines.append('base_model: %s/%s' % (pool_dir, base))
    if params: lines.append('parameters: %s' % yaml_params(params))
    lines.append('slices:')
    for sl in slices:
        sp, sources, keys = parts(sl)
        lines.append('  - sources:')
        for m, a, b, p in sources:
            lines.append('      - model: %s/%s' % (pool_dir, m))
            lines.append('        layer_range: [%d, %d]' % (a, b))
            if p: lines.append('        parameters: %s' % yaml_params(p))
        if sp: lines.append('    parameters: %s' % yaml_params(sp))
        if 'base_model' in keys: lines.append('    base_model: %s/%s' % (pool_dir, keys['base_model']))
        if 'residual_weight' in keys: lines.append('    residual_weight: %r' % keys['residual_weight'])
    return '\n'.join(lines) + '\n' + extra

def evaluate_setting(tensor, setting, t):
    """mergekit's evaluate_setting: a scalar; a gradient interpolated at t; or
    the first {filter, value} whose filter occurs in the tensor name."""
    if isinstance(setting, (int, float, bool)): return setting
    if all(isinstance(e, (int, float)) for e in setting):
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    for cond in setting:
        if cond.get('filter') in (None, '*') or cond['filter'] in tensor:
            return evaluate_setting(tensor, cond['value'], t)
    return None

def parameter(name, key, t, src_params, slice_params, global_params):
    """ConfigReader.parameter: source, then slice, then global."""
    for level in (src_params, slice_params, global_params):
        if level is not None and key in level:
            v = evaluate_setting(name, level[key], t)
            if v is not None: return v
    return None

def with_layer(name, layer):
    parts = name.split('.')
    parts[2] = str(layer)
    return '.'.join(parts)

def plan(spec):
    """[(output name, slice index, t, [(model, input name, source index)])] in mergekit's order."""
    pool, method, base, params, slices, extra = spec
    out = []
    first = slices[0][1]
    for n, _ in OTHER:
        if 'embed' in n: out.append((n, 0, 0.0, [(m, n, i) for i, (m, *_r) in enumerate(first)]))
    k_out = 0
    for k, sl in enumerate(slices):
        sp, sources, _ = parts(sl)
        n = sources[0][2] - sources[0][1]
        for off in range(n):
            t = off / (n - 1) if n > 1 else 1
            for s, _ in LAYER:
                out.append(('model.layers.%d.%s' % (k_out, s), k, t,
                            [(m, 'model.layers.%d.%s' % (a + off, s), i)
                             for i, (m, a, b, p) in enumerate(sources)]))
            k_out += 1
    last = slices[-1][1]
    for n, _ in OTHER:
        if 'embed' not in n:
            out.append((n, len(slices) - 1, 1.0, [(m, n, i) for i, (m, *_r) in enumerate(last)]))
    return out, k_out

def read_values(dtype, raw):
    if dtype == 'BF16':
        return [from_bf16(h) for h in struct.unpack('<%dH' % (len(raw) // 2), raw)]
    assert dtype == 'F32', dtype
    return list(struct.unpack('<%df' % (len(raw) // 4), raw))

def read_folder(d):
    """{name: (dtype, raw bytes)} over every .safetensors file of d."""
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith('.safetensors'): out.update(read_safetensors(os.path.join(d, f))[1])
    return out

def check_config(work, spec, out, layer_count, origins):
    pool, method, base, params, slices, extra = spec
    donor = base or slices[0][1][0][0]
    with open(os.path.join(work, pool, donor, 'config.json')) as f: want = json.load(f)
    with open(os.path.join(out, 'config.json')) as f: got = json.load(f)
    want['num_hidden_layers'] = layer_count
    want['layer_types'] = [layer_types(m)[j] for m, j in origins]
    want['torch_dtype'] = 'bfloat16' if pool == 'bf16' or 'bfloat16' in extra else 'float32'
    if got != want: sys.exit('config.json: got %s, want %s' % (got, want))
    with open(os.path.join(out, 'tokenizer.json')) as f:
        if '"from": "%s"' % donor not in f.read(): sys.exit('tokenizer.json is not the donor\'s')

def check(work, case, out):
    spec = CASES[case]
    pool, method, base, params, slices, extra = spec
    ins = {m: read_folder(os.path.join(work, pool, m)) for m in LAYERS}
    got = read_folder(out)
    planned, layer_count = plan(spec)
    want_names = sorted(n for n, *_ in planned)
    if sorted(got) != want_names:
        sys.exit('%s: tensor names %s, want %s' % (case, sorted(got), want_names))
    index = os.path.join(out, 'model.safetensors.index.json')
    if os.path.exists(index):  # sharded: the index names the file of every tensor
        with open(index) as f: wm = json.load(f)['weight_map']
        held = {n: f for f in os.listdir(out) if f.endswith('.safetensors')
                for n in read_safetensors(os.path.join(out, f))[1]}
        if wm != held: sys.exit('%s: the index does not match the shards' % case)
    origins = []
    for k, (sp, sources) in enumerate(slices):
        m, a, b, _ = sources[0]
        origins += [(m, j) for j in range(a, b)]
    check_config(work, spec, out, layer_count, origins)
    out_bf16 = pool == 'bf16' or 'bfloat16' in extra
    exact = 0
    for name, k, t, inputs in planned:
        sp, sources = slices[k]
        dtype, raw = got[name]
        if dtype != ('BF16' if out_bf16 else 'F32'): sys.exit('%s: %s is %s' % (case, name, dtype))
        if method == 'passthrough':
            (m, in_name, i), = inputs
            in_dtype, in_raw = ins[m][in_name]
            scale = parameter(in_name, 'scale', t, sources[i][3], sp, params)
            if scale is None and in_dtype == dtype:
                if raw != in_raw: sys.exit('%s: %s is not a copy of %s %s' % (case, name, m, in_name))
                exact += 1
                continue
            xs = read_values(in_dtype, in_raw)
            ref = [f32(x * f32(scale)) if scale is not None else x for x in xs]
        else:  # linear: sum of f32(w_i) * x_i in fp32, in source order
            ws = [parameter(in_name, 'weight', t, sources[i][3], sp, params) for m, in_name, i in inputs]
            normalize = parameter(name, 'normalize', t, None, sp, params)
            if normalize is None: normalize = True
            if normalize:
                total = sum(ws)
                ws = [w / total for w in ws]
            xs = [read_values(*ins[m][in_name]) for m, in_name, i in inputs]
            ref = []
            for j in range(len(xs[0])):
                acc = 0.0
                for w, x in zip(ws, xs): acc = f32(acc + f32(f32(w) * x[j]))
                ref.append(acc)
        vals = read_values(dtype, raw)
        for j, (g, r) in enumerate(zip(vals, ref)):
            r = from_bf16(bf16_bits(r)) if out_bf16 else f32(r)
            if f32_bits(g) != f32_bits(r):
                sys.exit('%s %s[%d]: got %r, reference %r (must be exact)' % (case, name, j, g, r))
    print('ok: %s: %d layers, %d tensors (%d copied byte for byte), config.json, all exact' %
          (case, layer_count, len(planned), exact))

def by_layer(work, case):
    """One recipe per output layer: that layer's slice with every source cut to
    the one layer, and every setting evaluated to a scalar at the layer's t."""
    spec = BY_LAYER_CASES[case]
    pool, method, base, params, slices, extra = spec
    def scalar(setting, t):
        if isinstance(setting, (int, float, bool)): return setting
        if all(isinstance(e, (int, float)) for e in setting): return evaluate_setting('', setting, t)
        return [dict(c, value=scalar(c['value'], t)) for c in setting]
    files, k_out = [], 0
    for sl in slices:
        sp, sources, keys = parts(sl)
        n = sources[0][2] - sources[0][1]
        for off in range(n):
            t = off / (n - 1) if n > 1 else 1
            # The slice's own base as the one-layer recipe's top-level base_model.
            one = (pool, method, keys.get('base_model', base),
                   {k: scalar(v, t) for k, v in params.items()},
                   [({k: scalar(v, t) for k, v in sp.items()},
                     [(m, a + off, a + off + 1, {k: scalar(v, t) for k, v in p.items()})
                      for m, a, b, p in sources])], extra)
            path = os.path.join(work, '%s-layer%d.yaml' % (case, k_out))
            with open(path, 'w') as f: f.write(recipe_text(case, pool, one))
            files.append(path); k_out += 1
    print(' '.join(files))

def compare_layers(work, case, out):
    spec = BY_LAYER_CASES[case]
    got = read_folder(out)
    planned, layer_count = plan(spec)
    compared = 0
    for k in range(layer_count):
        one = read_folder(os.path.join(work, '%s-layer%d.out' % (case, k)))
        for name, (dtype, raw) in one.items():
            if name.startswith('model.layers.'):
                target = with_layer(name, k)
            elif ('embed' in name) != (k == 0) or ('embed' not in name and k != layer_count - 1):
                continue  # embeddings from the first layer's merge, the rest from the last's
            else:
                target = name
            if got[target] != (dtype, raw):
                sys.exit('%s: %s differs from layer %d\'s own merge (%s)' % (case, target, k, name))
            compared += 1
    if compared != len(got): sys.exit('%s: compared %d of %d tensors' % (case, compared, len(got)))
    print('ok: %s: all %d tensors equal the %d per-layer merges byte for byte' %
          (case, compared, layer_count))

if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make':
        work = sys.argv[2]
        for dt, sub in (('BF16', 'bf16'), ('F32', 'f32')):
            make_pool(os.path.join(work, sub), dt)
        for case, spec in list(CASES.items()) + list(BY_LAYER_CASES.items()):
            with open(os.path.join(work, case + '.yaml'), 'w') as f:
                f.write(recipe_text(case, spec[0], spec))
        print(' '.join(list(CASES) + list(BY_LAYER_CASES)))
    elif cmd == 'one-rank':
        print(' '.join(ONE_RANK))
    elif cmd == 'check':
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == 'by-layer':
        by_layer(sys.argv[2], sys.argv[3])
    elif cmd == 'compare-layers':
        compare_layers(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit('unknown command ' + cmd)
