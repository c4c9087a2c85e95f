#!/usr/bin/env python3
"""Large bf16 checkpoints for the bounded-memory merge test (stdlib only).

make DIR MODELS TENSORS MIB: MODELS folders m0.. each with TENSORS tensors of
    MIB MiB (bf16) in one model.safetensors, plus config.json. Each tensor is
    a pattern of PERIOD values (a prime, so that no power-of-two chunk or
    shard boundary lines up with it) repeated, rotated per tensor; the
    pattern differs per model. Built from repeated bytes, so 1 GiB takes
    seconds.
check OUT MODELS TENSORS MIB W0,W1,..: reads OUT's safetensors files (and
    the index when sharded) and checks, at the first and last elements, every
    power-of-two boundary and 4000 random positions of each tensor, that the
    value is the linear merge sum(w_i x_i) / sum(w_i) in double precision
    within one bf16 ulp.
"""
import json, os, random, struct, sys

from merge_pool import bf16, linear_error_ulps, unbf16

PERIOD = 65521


def pattern(model):
    rng = random.Random(1000 + model)
    return [bf16(rng.gauss(0, 0.05)) for _ in range(PERIOD)]


def value(pat, tensor, j):
    return pat[(j + 977 * tensor) % PERIOD]


def tensor_name(t):
    return 'model.layers.%d.mlp.up_proj.weight' % t


def make(d, models, tensors, mib):
    n = mib * (1 << 20) // 2
    for m in range(models):
        pat = pattern(m)
        folder = os.path.join(d, 'm%d' % m)
        os.makedirs(folder, exist_ok=True)
        header, off = {'__metadata__': {'format': 'pt'}}, 0
        for t in range(tensors):
            header[tensor_name(t)] = {'dtype': 'BF16', 'shape': [n // 1024, 1024],
                                      'data_offsets': [off, off + 2 * n]}
            off += 2 * n
        h = json.dumps(header).encode()
        h += b' ' * ((8 - len(h) % 8) % 8)
        with open(os.path.join(folder, 'model.safetensors'), 'wb') as f:
            f.write(struct.pack('<Q', len(h)))
            f.write(h)
            for t in range(tensors):
                rot = (977 * t) % PERIOD
                period = struct.pack('<%dH' % PERIOD, *(pat[rot:] + pat[:rot]))
                whole, rest = divmod(n, PERIOD)
                f.write(period * whole)
                f.write(period[:2 * rest])
        with open(os.path.join(folder, 'config.json'), 'w') as f:
            json.dump({'architectures': ['LlamaForCausalLM'], 'num_hidden_layers': tensors,
                       'torch_dtype': 'bfloat16'}, f)


def tensors_of(out):
    """name -> (file, absolute byte offset of the data, element count)"""
    res = {}
    for fn in sorted(os.listdir(out)):
        if not fn.endswith('.safetensors'):
            continue
        p = os.path.join(out, fn)
        with open(p, 'rb') as f:
            hn = struct.unpack('<Q', f.read(8))[0]
            header = json.loads(f.read(hn))
        for k, v in header.items():
            if k != '__metadata__':
                assert v['dtype'] == 'BF16', '%s: %s is %s' % (p, k, v['dtype'])
                b, e = v['data_offsets']
                res[k] = (p, 8 + hn + b, (e - b) // 2)
    return res


def check(out, models, tensors, mib, weights):
    w = [float(x) for x in weights.split(',')]
    assert len(w) == models, 'one weight per model'
    n = mib * (1 << 20) // 2
    pats = [pattern(m) for m in range(models)]
    got = tensors_of(out)
    assert sorted(got) == sorted(tensor_name(t) for t in range(tensors)), sorted(got)
    rng = random.Random(5)
    checked, worst = 0, 0.0
    for t in range(tensors):
        path, base, cnt = got[tensor_name(t)]
        assert cnt == n, '%s: %d elements, expected %d' % (tensor_name(t), cnt, n)
        pos = {0, n - 1} | {rng.randrange(n) for _ in range(4000)}
        b = 1
        while b < n:
            pos |= {b - 1, b}
            b *= 2
        with open(path, 'rb') as f:
            for j in sorted(pos):
                f.seek(base + 2 * j)
                h = struct.unpack('<H', f.read(2))[0]
                err, ref = linear_error_ulps(unbf16(h), [unbf16(value(p, t, j)) for p in pats], w)
                if err > 1:
                    sys.exit('%s[%d]: %r vs reference %r (more than 1 bf16 ulp)'
                             % (tensor_name(t), j, unbf16(h), ref))
                worst = max(worst, err)
                checked += 1
    print('big merge check ok: %d positions, worst error %.3f bf16 ulp' % (checked, worst))


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make':
        make(sys.argv[2], *map(int, sys.argv[3:6]))
    elif cmd == 'check':
        check(sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6])
    else:
        sys.exit('unknown command ' + cmd)
