#!/usr/bin/env python3
"""Checkpoints whose vocabularies differ, and an independent reference for
mergekit's tokenizer reconciliation (stdlib only; written from mergekit's
tokenizer/build.py and tokenizer/embed.py, not from kintsugi's code).

make SRC_BASE SRC_A SRC_B DIR: DIR/base (SRC_BASE as is), DIR/a0, DIR/b0 (SRC_A,
    SRC_B as they are: the plain pool) and DIR/a, DIR/b: the same weights with
    2 and 5 added tokens (one shared, at different ids), their rows appended
    to embed_tokens and lm_head, tokenizer.json, tokenizer_config.json and
    config.json's vocab_size to match.
check DIR CASE OUT PLAIN: checks OUT, the merge of recipe CASE (see CASES),
    against the reference; PLAIN is the same recipe's merge of the plain pool.
"""
import json, math, os, random, shutil, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import bf16, unbf16, read_safetensors, write_safetensors

VOCAB_TENSORS = ('model.embed_tokens.weight', 'lm_head.weight')
ADDED_A = [('<think>', False), ('<tool>', True)]
ADDED_B = [('<x1>', True), ('<x2>', False), ('<think>', False), ('<x3>', False), ('<x4>', True)]

# Each case: the recipe's method and settings, the members (tokenizer base
# first), the weights of the merge, and what the output vocabulary holds.
CASES = {
    # linear ignores base_model: its first model is the tokenizer's base.
    'union_linear': dict(method='linear', models=['base', 'a', 'b'], weights=[0.2, 0.5, 0.3],
                         source='union'),
    'union_ta': dict(method='task_arithmetic', base='base', models=['a', 'b'], weights=[0.6, 0.5],
                     source='union', pad=8,
                     tokens={'<think>': {'source': {'kind': 'zero'}, 'force': True},
                             '<new>': {'source': {'kind': 'model_token', 'model': 'a',
                                                  'token': '<tool>'}},
                             '<x2>': {'source': 'b', 'force': True}}),
    # The tokenizer's base (a, first) has <think>: every member lacking it takes a's row.
    'union_first_a': dict(method='linear', models=['a', 'b', 'base'], weights=[0.3, 0.3, 0.4],
                          source='union'),
    'base_ta': dict(method='task_arithmetic', base='base', models=['a', 'b'], weights=[0.6, 0.5],
                    source='base'),
    'model_b': dict(method='linear', models=['a', 'b'], weights=[0.5, 0.5], source='b'),
    # slices: the vocabulary over the tokenizer's base (base_model, else the
    # first slice's first source) and every source; each token-indexed tensor
    # filled from its own inputs (mergekit's PermutedEmbeddings): embed_tokens
    # from the first slice's, lm_head from the last's. A frankenmerge: a's
    # embeddings lack b's tokens and b's lm_head lacks <tool>: zero rows.
    'slices_pt': dict(method='passthrough', source='union',
                      slices=[[('a', 0, 2, None)], [('b', 2, 4, None)]]),
    'slices_ta': dict(method='task_arithmetic', base='base', source='union',
                      slices=[[('base', 0, 2, None), ('a', 0, 2, 0.6)],
                              [('base', 2, 4, None), ('b', 2, 4, 0.5)]]),
}


def members_of(c):
    """The vocabulary's members, the tokenizer's base first."""
    if 'slices' not in c:
        return ([c['base']] if 'base' in c else []) + c['models']
    out = [c['base']] if 'base' in c else []
    for sl in c['slices']:
        for m, *_ in sl:
            if m not in out: out.append(m)
    return out


def tensor_inputs(c, name):
    """A token-indexed tensor's inputs (base first) and their weights."""
    if 'slices' not in c:
        return members_of(c), c['weights']
    sl = c['slices'][0] if 'embed' in name else c['slices'][-1]
    srcs = sorted(sl, key=lambda x: x[0] != c.get('base'))  # the base first
    return [m for m, *_ in srcs], [w for _, _, _, w in srcs if w is not None]


def read_tensors(folder):
    out = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith('.safetensors'):
            path = os.path.join(folder, f)
            with open(path, 'rb') as fh:
                n = struct.unpack('<Q', fh.read(8))[0]
                header = json.loads(fh.read(n))
            _, raw = read_safetensors(path)
            for k, (dtype, data) in raw.items():
                assert dtype == 'BF16', (path, k, dtype)
                out[k] = (header[k]['shape'], list(struct.unpack('<%dH' % (len(data) // 2), data)))
    return out


def write_variant(src, dst, added, seed):
    os.makedirs(dst, exist_ok=True)
    t = read_tensors(src)
    rng = random.Random(seed)
    entries = []
    for name in sorted(t):
        shape, vals = t[name]
        if name in VOCAB_TENSORS:
            vals = vals + [bf16(rng.gauss(0, 0.05)) for _ in range(len(added) * shape[1])]
            shape = [shape[0] + len(added), shape[1]]
        entries.append((name, 'BF16', shape, struct.pack('<%dH' % len(vals), *vals)))
    write_safetensors(os.path.join(dst, 'model.safetensors'), entries, {'format': 'pt'})
    cfg = json.load(open(os.path.join(src, 'config.json')))
    tok = json.load(open(os.path.join(src, 'tokenizer.json')))
    tcfg = json.load(open(os.path.join(src, 'tokenizer_config.json')))
    first = cfg['vocab_size']
    for k, (content, special) in enumerate(added):
        e = {'id': first + k, 'content': content, 'single_word': False, 'lstrip': False,
             'rstrip': False, 'normalized': not special, 'special': special}
        tok['added_tokens'].append(e)
        tcfg['added_tokens_decoder'][str(first + k)] = {x: e[x] for x in e if x != 'id'}
    cfg['vocab_size'] = first + len(added)
    for name, obj in (('config.json', cfg), ('tokenizer.json', tok), ('tokenizer_config.json', tcfg)):
        with open(os.path.join(dst, name), 'w') as f:
            json.dump(obj, f, indent=2)


def make(src_base, src_a, src_b, d):
    shutil.copytree(src_base, os.path.join(d, 'base'))
    shutil.copytree(src_a, os.path.join(d, 'a0'))
    shutil.copytree(src_b, os.path.join(d, 'b0'))
    write_variant(src_a, os.path.join(d, 'a'), ADDED_A, 1)
    write_variant(src_b, os.path.join(d, 'b'), ADDED_B, 2)
    for name, c in CASES.items():
        with open(os.path.join(d, name + '.yaml'), 'w') as f:
            f.write(recipe(c, plain=False))
        with open(os.path.join(d, name + '-plain.yaml'), 'w') as f:
            f.write(recipe(c, plain=True))
    print(' '.join(CASES))


def recipe(c, plain):
    """The case's recipe (JSON is YAML); plain: on a0/b0, without tokenizer settings."""
    m = lambda x: (x + '0') if plain and x in ('a', 'b') else x
    r = {'merge_method': c['method'], 'dtype': 'bfloat16'}
    if 'slices' in c:
        r['slices'] = [{'sources': [dict({'model': m(x), 'layer_range': [a, b]},
                                         **({'parameters': {'weight': w}} if w is not None else {}))
                                    for x, a, b, w in sl]} for sl in c['slices']]
    else:
        r['models'] = [{'model': m(x), 'parameters': {'weight': w}}
                       for x, w in zip(c['models'], c['weights'])]
    if c['method'] == 'linear': r['parameters'] = {'normalize': True}
    if 'base' in c: r['base_model'] = c['base']
    if not plain:
        if 'tokens' in c or 'pad' in c:
            r['tokenizer'] = {'source': c['source']}
            if 'tokens' in c: r['tokenizer']['tokens'] = c['tokens']
            if 'pad' in c: r['tokenizer']['pad_to_multiple_of'] = c['pad']
        else:
            r['tokenizer_source'] = c['source']
    return json.dumps(r, indent=1) + '\n'


def vocab_of(folder):
    """HF's get_vocab() without ids >= config.vocab_size: {token: id}, and
    the added tokens' entries by content."""
    tok = json.load(open(os.path.join(folder, 'tokenizer.json')))
    limit = json.load(open(os.path.join(folder, 'config.json')))['vocab_size']
    v = {t: i for t, i in tok['model']['vocab'].items() if i < limit}
    added = {}
    for e in tok['added_tokens']:
        if e['id'] < limit:
            v[e['content']] = e['id']
            added[e['content']] = e
    return v, added


def expected_vocab(d, c):
    """mergekit's output vocabulary for the case: {token: id}, and the entries added."""
    members = members_of(c)
    vocabs = [vocab_of(os.path.join(d, x)) for x in members]
    if c['source'] not in ('base', 'union'):
        out, _ = vocab_of(os.path.join(d, c['source']))
        return out, members, vocabs, []
    out = dict(vocabs[0][0])
    new = []
    nxt = max(out.values()) + 1
    if c['source'] == 'union':
        added_anywhere = set()
        for _, a in vocabs: added_anywhere |= set(a)
        for v, a in vocabs[1:]:
            for t, i in sorted(v.items(), key=lambda x: x[1]):
                if t not in a and t not in added_anywhere and t not in out:
                    out[t] = nxt; nxt += 1; new.append((t, None))
        for v, a in vocabs:
            for t, e in sorted(a.items(), key=lambda x: x[1]['id']):
                if t not in out:
                    out[t] = nxt; nxt += 1; new.append((t, e))
    for t in c.get('tokens', {}):
        if t not in out:
            out[t] = nxt; nxt += 1; new.append((t, None))
    return out, members, vocabs, new


def reindexed(d, c, name):
    """Each input's rows of the output vocabulary (floats), by mergekit's rules
    over the tensor's own inputs (its base first)."""
    out = expected_vocab(d, c)[0]
    members = tensor_inputs(c, name)[0]
    vocabs = [vocab_of(os.path.join(d, x)) for x in members]
    tensors = [read_tensors(os.path.join(d, x))[name] for x in members]
    width = tensors[0][0][1]
    row = lambda k, r: [unbf16(h) for h in tensors[k][1][r * width:(r + 1) * width]]
    n = max(out.values()) + 1
    rows = n if 'pad' not in c else -(-n // c['pad']) * c['pad']
    cfgs = c.get('tokens', {})
    by_id = {i: t for t, i in out.items()}
    result = [[None] * rows for _ in members]
    for i in range(n):
        t = by_id[i]
        has = [t in v for v, _ in vocabs]
        cfg = cfgs.get(t)
        default = None
        if (cfg and cfg.get('force')) or not all(has):
            if cfg:
                s = cfg['source']
                if isinstance(s, dict) and s['kind'] == 'zero':
                    default = [0.0] * width
                elif isinstance(s, dict):
                    k = members.index(s['model'])
                    default = row(k, vocabs[k][0][s['token']])
                else:
                    k = members.index(s)
                    default = row(k, vocabs[k][0][t])
            elif sum(has) == 1:
                k = has.index(True)
                default = row(k, vocabs[k][0][t])
            elif sum(has) == 0:
                default = [0.0] * width
            elif has[0]:
                default = row(0, vocabs[0][0][t])
            else:  # average in bf16, each operation rounded (torch)
                acc = [0.0] * width
                cnt = 0
                for k in range(len(members)):
                    if has[k]:
                        x = row(k, vocabs[k][0][t]); cnt += 1
                        acc = [unbf16(bf16(a + b)) for a, b in zip(acc, x)]
                default = [unbf16(bf16(a / cnt)) for a in acc]
        for k in range(len(members)):
            force = cfg and cfg.get('force')
            result[k][i] = row(k, vocabs[k][0][t]) if has[k] and not force else default
    for k in range(len(members)):
        mean = [sum(result[k][i][j] for i in range(n)) / n for j in range(width)]
        for i in range(n, rows):
            result[k][i] = [unbf16(bf16(x)) for x in mean]
    return result, width, rows


def check(d, case, out, plain):
    c = CASES[case]
    vocab, members, vocabs, new = expected_vocab(d, c)
    n = max(vocab.values()) + 1
    got = read_tensors(out)
    ref_plain = read_tensors(plain)
    cfg = json.load(open(os.path.join(out, 'config.json')))
    rows = n if 'pad' not in c else -(-n // c['pad']) * c['pad']
    assert cfg['vocab_size'] == rows, ('config vocab_size', cfg['vocab_size'], rows)
    # The tokenizer files.
    tok = json.load(open(os.path.join(out, 'tokenizer.json')))
    if c['source'] not in ('base', 'union'):
        for f in ('tokenizer.json', 'tokenizer_config.json'):
            assert open(os.path.join(out, f), 'rb').read() == \
                open(os.path.join(d, c['source'], f), 'rb').read(), f + ' not copied from the source'
    got_vocab = dict(tok['model']['vocab'])
    for e in tok['added_tokens']: got_vocab[e['content']] = e['id']
    assert got_vocab == vocab, ('vocabulary', sorted(set(got_vocab.items()) ^ set(vocab.items()))[:10])
    for t, e in new:
        entry = [x for x in tok['added_tokens'] if x['content'] == t][0]
        want = dict(e) if e else {'content': t, 'single_word': False, 'lstrip': False,
                                  'rstrip': False, 'normalized': True, 'special': False}
        want['id'] = vocab[t]
        assert entry == want, ('added token entry', entry, want)
    if new:
        tcfg = json.load(open(os.path.join(out, 'tokenizer_config.json')))
        for t, _ in new:
            assert tcfg['added_tokens_decoder'][str(vocab[t])]['content'] == t, t
    # Tensors other than the vocabulary's equal the plain pool's merge.
    assert sorted(got) == sorted(ref_plain), 'tensor names differ'
    for name in got:
        if name not in VOCAB_TENSORS:
            assert got[name] == ref_plain[name], name + ' differs from the plain merge'
    worst = 0.0
    shared = 0
    for name in VOCAB_TENSORS:
        shape, vals = got[name]
        res, width, rows = reindexed(d, c, name)
        assert shape == [rows, width], (name, shape, rows, width)
        base_vocab = vocab_of(os.path.join(d, 'base'))[0]
        pshape, pvals = ref_plain[name]
        by_id = {i: t for t, i in vocab.items()}
        for i in range(rows):
            t = by_id.get(i)
            # A token every plain checkpoint has, at the same id, with
            # nothing forced: its row is the plain merge's, bit for bit.
            if t in base_vocab and base_vocab[t] == i and t not in c.get('tokens', {}) and \
                    all(v[0].get(t) == i for v in vocabs):
                assert vals[i * width:(i + 1) * width] == pvals[i * width:(i + 1) * width], \
                    '%s row %d (%r) differs from the plain merge' % (name, i, t)
                shared += 1
            for j in range(width):
                xs = [res[k][i][j] for k in range(len(res))]
                w = tensor_inputs(c, name)[1]
                if c['method'] == 'passthrough':
                    ref, mag = xs[0], abs(xs[0])
                elif c['method'] == 'linear':
                    ref = sum(a * b for a, b in zip(w, xs)) / sum(w)
                    mag = sum(abs(a * b) for a, b in zip(w, xs)) / abs(sum(w))
                else:  # task arithmetic: base + sum w (x - base), base first
                    ref = xs[0] + sum(a * (b - xs[0]) for a, b in zip(w, xs[1:]))
                    mag = abs(xs[0]) + sum(abs(a * (b - xs[0])) for a, b in zip(w, xs[1:]))
                g = unbf16(vals[i * width + j])
                ulp = 2.0 ** (math.frexp(ref)[1] - 8) if ref != 0 else 2.0 ** -133
                err = max(0.0, abs(g - ref) - 4 * len(xs) * mag * 2.0 ** -24) / ulp
                if err > 1:
                    sys.exit('%s: %s[%d, %d] (%r): %r vs reference %r' % (case, name, i, j, t, g, ref))
                worst = max(worst, err)
    print('%s: vocabulary of %d tokens (%d added), %d rows; %d rows equal the plain merge; '
          'worst %.3f bf16 ulp' % (case, n, len(new), rows, shared, worst))


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make': make(*sys.argv[2:6])
    elif cmd == 'check': check(*sys.argv[2:6])
    else: sys.exit('unknown command ' + cmd)
