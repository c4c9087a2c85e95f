#!/usr/bin/env python3
"""mergekit's own examples/ as a test suite (stdlib only).

test/data/mergekit_examples/NAME.yml stands for mergekit's examples/NAME.yml,
with each model name replaced by a placeholder (its first line gives the
mapping). This script writes tiny stand-in checkpoints of the layout each
placeholder's model has (Llama, Mistral, Qwen2-VL, GPT-2, BERT, Whisper,
Florence-2: real tensor names, config.json architectures and layer counts,
hidden size 8) and the recipes with the placeholders mapped to them.

EXPECTED says what kintsugi does with each example: 'runs', or refused
(exit 2, one line, nothing written) with a message containing the given text.
When kintsugi gains a method or feature, update its line.

make WORK:        stand-ins in WORK/models, recipes in WORK/recipes; prints one line
                  per case: NAME<TAB>runs, or NAME<TAB>refused<TAB>MESSAGE TEXT
check WORK OUTS:  checks every case that runs against its output OUTS/NAME: files,
                  config.json, tensor names, shapes and dtypes; values against an
                  independent reference (linear, ties, slerp over slices with
                  gradients, passthrough frankenmerge)
"""
import json, math, os, random, re, struct, sys, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_pool import write_safetensors, read_safetensors  # noqa: E402
from merge_slices_ref import evaluate_setting, f32  # noqa: E402
from merge_ram_ref import arcee_fusion, cabs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, '..', 'data', 'mergekit_examples')

# What kintsugi does with each example ({NAME} stands for a stand-in's path).
UNKNOWN = 'merge_method: "%s" is not one of: linear,'
METRICS = 'metric_method: a mergekit metrics recipe (metric_method), not a merge: not supported'
EXPECTED = {
    'arcee_fusion.yml': ('runs', None),
    'bio-merge.yml': ('runs', None),
    'cabs.yml': ('runs', None),
    'chipalign.yml': ('refused',
                      'chipalign.yml:7: parameters.geodesic: unknown parameter for merge_method nuslerp'),
    'core_space.yml': ('runs', None),
    'evo_bert_large.yml': ('refused',
                           'evo_bert_large.yml:2: genome: a mergekit-evolve configuration, not a merge recipe'),
    'gpt2-small.yml': ('refused', 'gpt2-small.yml:3: slices over layers: {GPT2} is GPT2LMHeadModel '
                                  '(config.json architectures), whose layers kintsugi does not map'),
    'gradient-slerp.yml': ('runs', None),
    'linear.yml': ('runs', None),
    'linear_small.yml': ('refused', 'linear_small.yml:5: ' + METRICS),
    # TinyLlama-1.1B as the base of two 13B models: mergekit fails on it too.
    'lrp.yml': ('refused', 'incompatible pool: {ORCA_MINI_V3_13B}: tensor lm_head.weight: dtype F16 here, '
                           'BF16 in {TINYLLAMA_CHAT}'),
    'mega.yml': ('refused', 'mega.yml:20: a second YAML document (after ---)'),
    'metrics-1.yml': ('refused', 'metrics-1.yml:5: ' + METRICS),
    'metrics-llama-1v2.yml': ('refused', 'metrics-llama-1v2.yml:5: ' + METRICS),
    'metrics-llama-codev2.yml': ('refused', 'metrics-llama-codev2.yml:5: ' + METRICS),
    'metrics-small.yml': ('refused', 'metrics-small.yml:5: ' + METRICS),
    'orcamini-platy-44layer.yml': ('runs', None),
    'ties.yml': ('runs', None),
    'vlm-linear.yml': ('runs', None),
    'vlm-ties.yml': ('refused', 'vlm-ties.yml:5: the gradient of density over layers: {FLORENCE2_BASE} is '
                                'Florence2ForConditionalGeneration (config.json architectures)'),
    'whisper-encoder-decoder-test.yml': ('runs', None),
    'whisper-encoder-decoder-weighted.yml': ('runs', None),
    'whisper-lora-multilingual.yml': ('refused', 'whisper-lora-multilingual.yml:4: models[0].lora: '
                                                 'LoRA adapters (lora:) are not supported'),
    'whisper-merge-multilingual.yml': ('refused', 'whisper-merge-multilingual.yml:5: '
                                       'models[0].parameters.weight: unknown parameter for merge_method slerp'),
    'zipit.yml': ('refused', 'zipit.yml:24: align_weights: aligning the models\' weights before merging'),
}

# Not mergekit examples: plain merges of the other architectures keep working
# (per tensor, no layers involved); slices and gradients over them are refused.
EXTRA = {
    'extra-bert-linear.yml': ('runs', None, '''merge_method: linear
models:
  - model: BERT_HATE_SPEECH
    parameters: {weight: 0.25}
  - model: BERT_TUPY
    parameters: {weight: 0.75}
'''),
    'extra-whisper-slerp.yml': ('runs', None, '''merge_method: slerp
base_model: WHISPER_LARGE_V2
models:
  - model: WHISPER_SPECIALIZED_FRENCH
parameters: {t: 0.3}
dtype: float32
'''),
    'extra-whisper-gradient.yml': ('refused', 'extra-whisper-gradient.yml:5: the gradient of t over layers: '
                                   '{WHISPER_LARGE_V2} is WhisperForConditionalGeneration', '''merge_method: slerp
base_model: WHISPER_LARGE_V2
models:
  - model: WHISPER_SPECIALIZED_FRENCH
parameters: {t: [0, 1]}
'''),
    'extra-bert-slices.yml': ('refused', 'extra-bert-slices.yml:3: slices over layers: {BERT_TUPY} is '
                              'BertForSequenceClassification', '''merge_method: passthrough
slices:
  - sources:
      - model: BERT_TUPY
        layer_range: [0, 12]
'''),
}

# ---- stand-in layouts ------------------------------------------------------
H, FF, VOCAB = 8, 16, 32

def llama_tensors(layers, bias=False):
    t = [('model.embed_tokens.weight', [VOCAB, H])]
    for j in range(layers):
        p = 'model.layers.%d.' % j
        for x in 'qkvo':
            t.append((p + 'self_attn.%s_proj.weight' % x, [H, H]))
            if bias and x != 'o': t.append((p + 'self_attn.%s_proj.bias' % x, [H]))
        t += [(p + 'mlp.gate_proj.weight', [FF, H]), (p + 'mlp.up_proj.weight', [FF, H]),
              (p + 'mlp.down_proj.weight', [H, FF]), (p + 'input_layernorm.weight', [H]),
              (p + 'post_attention_layernorm.weight', [H])]
    return t + [('model.norm.weight', [H]), ('lm_head.weight', [VOCAB, H])]

def llama_config(arch, layers, dtype):
    return {'architectures': [arch], 'model_type': arch[:-len('ForCausalLM')].lower(),
            'hidden_size': H, 'intermediate_size': FF, 'num_hidden_layers': layers,
            'num_attention_heads': 2, 'num_key_value_heads': 2, 'vocab_size': VOCAB,
            'hidden_act': 'silu', 'rms_norm_eps': 1e-5, 'max_position_embeddings': 4096,
            'torch_dtype': {'F16': 'float16', 'BF16': 'bfloat16', 'F32': 'float32'}[dtype]}

def gpt2_tensors(layers):
    t = [('transformer.wte.weight', [VOCAB, H]), ('transformer.wpe.weight', [16, H])]
    for j in range(layers):
        p = 'transformer.h.%d.' % j
        t += [(p + 'ln_1.weight', [H]), (p + 'ln_1.bias', [H]), (p + 'attn.c_attn.weight', [H, 3 * H]),
              (p + 'attn.c_proj.weight', [H, H]), (p + 'ln_2.weight', [H]), (p + 'ln_2.bias', [H]),
              (p + 'mlp.c_fc.weight', [H, FF]), (p + 'mlp.c_proj.weight', [FF, H])]
    return t + [('transformer.ln_f.weight', [H]), ('transformer.ln_f.bias', [H])]

def bert_tensors(layers):
    t = [('bert.embeddings.word_embeddings.weight', [VOCAB, H]),
         ('bert.embeddings.position_embeddings.weight', [16, H]),
         ('bert.embeddings.token_type_embeddings.weight', [2, H]),
         ('bert.embeddings.LayerNorm.weight', [H])]
    for j in range(layers):
        p = 'bert.encoder.layer.%d.' % j
        t += [(p + 'attention.self.query.weight', [H, H]), (p + 'attention.self.key.weight', [H, H]),
              (p + 'attention.self.value.weight', [H, H]), (p + 'attention.output.dense.weight', [H, H]),
              (p + 'intermediate.dense.weight', [FF, H]), (p + 'output.dense.weight', [H, FF])]
    return t + [('bert.pooler.dense.weight', [H, H]), ('classifier.weight', [2, H])]

def whisper_tensors(layers):
    t = [('model.encoder.conv1.weight', [H, 4, 3]), ('model.encoder.embed_positions.weight', [16, H]),
         ('model.decoder.embed_tokens.weight', [VOCAB, H]), ('model.decoder.embed_positions.weight', [16, H])]
    for stack in ('encoder', 'decoder'):
        for j in range(layers):
            p = 'model.%s.layers.%d.' % (stack, j)
            t += [(p + 'self_attn.q_proj.weight', [H, H]), (p + 'fc1.weight', [FF, H])]
            if stack == 'decoder': t.append((p + 'encoder_attn.q_proj.weight', [H, H]))
    return t + [('model.encoder.layer_norm.weight', [H]), ('model.decoder.layer_norm.weight', [H])]

def qwen2vl_tensors(layers, blocks):
    t = llama_tensors(layers, bias=True)
    t += [('visual.patch_embed.proj.weight', [H, 3, 2, 2, 2]), ('visual.merger.mlp.0.weight', [H, H])]
    for j in range(blocks):
        t += [('visual.blocks.%d.attn.qkv.weight' % j, [3 * H, H]), ('visual.blocks.%d.mlp.fc1.weight' % j, [FF, H])]
    return t

def florence2_tensors(layers, blocks):
    t = [('language_model.model.shared.weight', [VOCAB, H]), ('language_model.lm_head.weight', [VOCAB, H]),
         ('image_projection', [H, H]), ('image_pos_embed.row_embeddings.weight', [8, H])]
    for stack in ('encoder', 'decoder'):
        for j in range(layers):
            t.append(('language_model.model.%s.layers.%d.self_attn.q_proj.weight' % (stack, j), [H, H]))
    for j in range(blocks):
        t.append(('vision_tower.blocks.%d.0.channel_block.channel_attn.fn.qkv.weight' % j, [3 * H, H]))
    return t

# Each kind: (tensors, config.json, dtype, family base or None, extra files).
def kind(name):
    if name in ('ORCA_MINI_V3_13B', 'PLATYPUS2_13B', 'WIZARDLM_13B_V12', 'WIZARDMATH_13B', 'LLAMA2_13B'):
        return 'llama13', llama_tensors(40), llama_config('LlamaForCausalLM', 40, 'F16'), 'F16', 'LLAMA2_13B'
    if name in ('LLAMA_7B', 'LLAMA2_7B', 'CODELLAMA_7B_PYTHON', 'LLAMA2_7B_HF'):
        return 'llama7', llama_tensors(32), llama_config('LlamaForCausalLM', 32, 'F16'), 'F16', None
    if name in ('SMOL_LLAMA_GQA', 'SMOL_LLAMA_OPENHERMES'):
        return 'smol', llama_tensors(10), llama_config('LlamaForCausalLM', 10, 'F32'), 'F32', None
    if name == 'TINYLLAMA_CHAT':
        return 'tiny', llama_tensors(22), llama_config('LlamaForCausalLM', 22, 'BF16'), 'BF16', None
    if name in ('MODEL_A', 'MODEL_B', 'INSTRUCTION_MODEL', 'CHIP_MODEL'):
        return 'llama4', llama_tensors(4), llama_config('LlamaForCausalLM', 4, 'BF16'), 'BF16', None
    if name in ('MISTRAL_7B_V01', 'MISTRAL_7B_INSTRUCT_V02', 'BIOMISTRAL_7B', 'ZEPHYR_7B_ALPHA', 'ZEPHYR_7B_BETA'):
        cfg = llama_config('MistralForCausalLM', 32, 'BF16')
        cfg['sliding_window'] = 4096
        return 'mistral', llama_tensors(32), cfg, 'BF16', 'MISTRAL_7B_V01'
    if name == 'GPT2':
        return 'gpt2', gpt2_tensors(12), {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
                                          'n_layer': 12, 'n_embd': H, 'n_head': 2, 'vocab_size': VOCAB}, 'F32', None
    if name.startswith('BERT_'):
        return 'bert', bert_tensors(24), {'architectures': ['BertForSequenceClassification'],
                                          'model_type': 'bert', 'num_hidden_layers': 24,
                                          'hidden_size': H, 'vocab_size': VOCAB}, 'F32', None
    if name.startswith('WHISPER_'):
        return 'whisper', whisper_tensors(32), {'architectures': ['WhisperForConditionalGeneration'],
                                                'model_type': 'whisper', 'encoder_layers': 32,
                                                'decoder_layers': 32, 'num_hidden_layers': 32,
                                                'd_model': H, 'vocab_size': VOCAB}, 'F32', 'WHISPER_LARGE_V2'
    if name.startswith('QWEN2_VL_'):
        cfg = llama_config('Qwen2ForCausalLM', 28, 'BF16')
        cfg.update({'architectures': ['Qwen2VLForConditionalGeneration'], 'model_type': 'qwen2_vl',
                    'vision_config': {'depth': 32, 'embed_dim': H}})
        return 'qwen2vl', qwen2vl_tensors(28, 32), cfg, 'BF16', None
    if name.startswith('FLORENCE2_'):
        return 'florence2', florence2_tensors(6, 4), {'architectures': ['Florence2ForConditionalGeneration'],
                                                      'model_type': 'florence2',
                                                      'text_config': {'encoder_layers': 6, 'decoder_layers': 6}},\
            'F32', 'FLORENCE2_BASE'
    raise SystemExit('no stand-in for placeholder ' + name)

def pack(dtype, vals):
    if dtype == 'F32': return struct.pack('<%df' % len(vals), *vals)
    if dtype == 'F16': return struct.pack('<%de' % len(vals), *vals)
    out = []
    for v in vals:  # bf16, round to nearest even
        u = struct.unpack('<I', struct.pack('<f', v))[0]
        out.append(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
    return struct.pack('<%dH' % len(out), *out)

def values(seed, n):
    r = random.Random(seed)
    return [r.gauss(0, 0.05) for _ in range(n)]

def write_lora(folder, name):
    """A PEFT adapter folder (adapter_config.json, adapter_model.safetensors)."""
    os.makedirs(folder, exist_ok=True)
    entries = []
    for j in range(2):
        for ab, shape in (('A', [4, H]), ('B', [H, 4])):
            n = 'base_model.model.model.encoder.layers.%d.self_attn.q_proj.lora_%s.weight' % (j, ab)
            entries.append((n, 'F32', shape, pack('F32', values(zlib.crc32((name + n).encode()), 4 * H))))
    write_safetensors(os.path.join(folder, 'adapter_model.safetensors'), entries, {'format': 'pt'})
    with open(os.path.join(folder, 'adapter_config.json'), 'w') as f:
        json.dump({'peft_type': 'LORA', 'r': 4, 'lora_alpha': 8, 'target_modules': ['q_proj']}, f)

def write_standin(folder, name):
    """A family's models share its base's values plus their own 0.02-sized change."""
    os.makedirs(folder, exist_ok=True)
    _, tensors, cfg, dtype, base = kind(name)
    entries = []
    for n, shape in tensors:
        numel = math.prod(shape)
        family = base or name
        vals = values(zlib.crc32((family + n).encode()), numel)
        if name != family:
            own = values(zlib.crc32((name + n).encode()), numel)
            vals = [a + 0.4 * b for a, b in zip(vals, own)]
        entries.append((n, dtype, shape, pack(dtype, vals)))
    write_safetensors(os.path.join(folder, 'model.safetensors'), entries, {'format': 'pt'})
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(folder, 'tokenizer.json'), 'w') as f:
        f.write('{"model": {"type": "BPE"}, "from": "%s"}' % name)
    if cfg['model_type'] in ('qwen2_vl', 'whisper', 'florence2'):
        with open(os.path.join(folder, 'preprocessor_config.json'), 'w') as f:
            json.dump({'from': name}, f)

PLACEHOLDER = re.compile(r'\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\bGPT2\b')

def cases():
    """{name: (outcome, message text or None, recipe text)}: the examples, then EXTRA."""
    out = {}
    names = sorted(f for f in os.listdir(DATA) if f.endswith('.yml'))
    if names != sorted(EXPECTED):
        raise SystemExit('examples and EXPECTED differ: %s' % sorted(set(names) ^ set(EXPECTED)))
    for n in names:
        with open(os.path.join(DATA, n)) as f:
            out[n] = EXPECTED[n] + (f.read(),)
    out.update(EXTRA)
    return out

def make(work):
    models = os.path.join(work, 'models')
    recipes = os.path.join(work, 'recipes')
    os.makedirs(recipes, exist_ok=True)
    made = {}

    def path_of(name):
        if name not in made:
            made[name] = os.path.join(models, name)
            if name.endswith('_LORA'): write_lora(made[name], name)
            else: write_standin(made[name], name)
        return made[name]

    for n, (outcome, message, text) in cases().items():
        body = [line if line.startswith('#') else PLACEHOLDER.sub(lambda m: path_of(m.group(0)), line)
                for line in text.split('\n')]
        with open(os.path.join(recipes, n), 'w') as f:
            f.write('\n'.join(body))
        line = '%s\t%s' % (n, outcome)
        if message:
            line += '\t' + re.sub(r'\{(\w+)\}', lambda m: path_of(m.group(1)), message)
        print(line)

# ---- checks of the outputs -------------------------------------------------

def decode(dtype, raw):
    if dtype == 'F32': return list(struct.unpack('<%df' % (len(raw) // 4), raw))
    if dtype == 'F16': return list(struct.unpack('<%de' % (len(raw) // 2), raw))
    assert dtype == 'BF16', dtype
    return [struct.unpack('<f', struct.pack('<I', h << 16))[0]
            for h in struct.unpack('<%dH' % (len(raw) // 2), raw)]

def load(folder):
    """{name: (dtype, shape, raw)} of a folder: model.safetensors or the index's shards."""
    index = os.path.join(folder, 'model.safetensors.index.json')
    files = (sorted(set(json.load(open(index))['weight_map'].values())) if os.path.exists(index)
             else ['model.safetensors'])
    out = {}
    for fn in files:
        path = os.path.join(folder, fn)
        _, raw = read_safetensors(path)
        with open(path, 'rb') as f:
            header = json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))
        for k, (dtype, b) in raw.items():
            out[k] = (dtype, header[k]['shape'], b)
    return out

def ulp(x, dtype):
    """The spacing of `dtype` values around x."""
    mant, emin = {'F16': (11, -14), 'BF16': (8, -126), 'F32': (24, -126)}[dtype]
    e = max(math.frexp(x)[1] - 1, emin) if x != 0 else emin
    return 2.0 ** (e - mant + 1)

def close(got, ref, dtype, what, slack=0.0):
    """Within 1 ulp of the output dtype, after `slack` (fp32 rounding of the method's own steps)."""
    for j, (g, r) in enumerate(zip(got, ref)):
        if abs(g - r) - slack > ulp(r, dtype):
            raise SystemExit('%s[%d]: %r, reference %r (more than 1 %s ulp)' % (what, j, g, r, dtype))

def layer_t(name, layers):
    m = re.search(r'(?:^|\.)layers\.(\d+)\.', name)
    if m: return int(m.group(1)) / (layers - 1)
    return 0.0 if 'embed' in name else 1.0

def linear_ref(ins, weights, name):
    xs = [decode(d, b) for d, _, b in (i[name] for i in ins)]
    s = sum(weights)
    return ([sum(w * x[j] for w, x in zip(weights, xs)) / s for j in range(len(xs[0]))],
            2 * len(xs) * max(abs(v) for x in xs for v in x) * 2.0 ** -24)

def ties_ref(base, xs, weights, densities, normalize=True):
    """mergekit's TIES (generalized_task_arithmetic, sparsify.magnitude, consensus 'sum',
    lambda 1) in fp32: the k = int(density * n) largest |delta| kept (equal
    magnitudes: the lower index first), sign elected by the sum, agreeing weighted
    deltas summed and (normalize) divided by the sum of their weights."""
    n = len(base)
    wd = []
    for x, w, d in zip(xs, weights, densities):
        delta = [f32(a - b) for a, b in zip(x, base)]
        k = int(d * n)
        keep = set(sorted(range(n), key=lambda j: (-abs(delta[j]), j))[:k])
        wd.append([f32(f32(w) * delta[j]) if j in keep else 0.0 for j in range(n)])
    out = []
    for j in range(n):
        s = 0.0
        for r in wd: s = f32(s + r[j])
        maj = 1 if s >= 0 else -1
        mixed = div = 0.0
        for r, w in zip(wd, weights):
            if (r[j] > 0) - (r[j] < 0) == maj:
                mixed = f32(mixed + r[j]); div = f32(div + f32(w))
        if normalize: mixed = f32(mixed / (div if div != 0 else 1.0))
        out.append(f32(base[j] + mixed))
    return out

def slerp_ref(t, v0, v1):
    """mergekit's slerp (merge_methods/slerp.py), in double on the whole tensor."""
    n0 = math.sqrt(math.fsum(a * a for a in v0)); n1 = math.sqrt(math.fsum(b * b for b in v1))
    dot = math.fsum((a / n0) * (b / n1) for a, b in zip(v0, v1))
    if abs(dot) > 0.9995:
        return [(1 - t) * a + t * b for a, b in zip(v0, v1)]
    th0 = math.acos(dot); th = th0 * t
    s0 = math.sin(th0 - th) / math.sin(th0); s1 = math.sin(th) / math.sin(th0)
    return [s0 * a + s1 * b for a, b in zip(v0, v1)]

def check_files(out, want_names, dtype, layers, donor):
    """The output folder is complete: tensors, shapes, dtypes, config.json, recipe, tokenizer."""
    got = load(out)
    if sorted(got) != sorted(want_names):
        raise SystemExit('%s: tensor names differ: %s' % (out, sorted(set(got) ^ set(want_names))[:5]))
    for n, (dt, shape, raw) in got.items():
        if dt != dtype: raise SystemExit('%s: %s is %s, want %s' % (out, n, dt, dtype))
        if len(raw) != math.prod(shape) * {'F16': 2, 'BF16': 2, 'F32': 4}[dt]:
            raise SystemExit('%s: %s: size does not match its shape' % (out, n))
    cfg = json.load(open(os.path.join(out, 'config.json')))
    want = json.load(open(os.path.join(donor, 'config.json')))
    if layers is not None: want['num_hidden_layers'] = layers
    want['torch_dtype'] = {'F16': 'float16', 'BF16': 'bfloat16', 'F32': 'float32'}[dtype]
    if cfg != want: raise SystemExit('%s: config.json %s, want %s' % (out, cfg, want))
    for f in os.listdir(donor):
        if f in ('tokenizer.json', 'preprocessor_config.json') and \
                open(os.path.join(out, f)).read() != open(os.path.join(donor, f)).read():
            raise SystemExit('%s: %s is not the donor\'s' % (out, f))
    if not os.path.exists(os.path.join(out, 'kintsugi_recipe.yaml')):
        raise SystemExit('%s: no kintsugi_recipe.yaml' % out)
    return got

def check(work, outs):
    m = lambda name: os.path.join(work, 'models', name)  # noqa: E731
    ins = {}

    def model(name):
        if name not in ins: ins[name] = load(m(name))
        return ins[name]

    def names_of(name):
        return [n for n, _ in kind(name)[1]]

    # linear.yml: sum w_i x_i / sum w_i (normalize), float16.
    orca, wiz, platy = 'ORCA_MINI_V3_13B', 'WIZARDLM_13B_V12', 'PLATYPUS2_13B'
    got = check_files(os.path.join(outs, 'linear.yml'), names_of(orca), 'F16', None, m(orca))
    for n, (dt, _, raw) in got.items():
        ref, slack = linear_ref([model(orca), model(wiz), model(platy)], [1.0, 0.3, 0.5], n)
        close(decode(dt, raw), ref, dt, 'linear.yml: ' + n, slack)
    print('linear.yml: %d tensors within 1 fp16 ulp of the reference' % len(got))

    # ties.yml: gradients of density and weight over the layer index (t = N / 39).
    base, math_ = 'LLAMA2_13B', 'WIZARDMATH_13B'
    got = check_files(os.path.join(outs, 'ties.yml'), names_of(base), 'F16', None, m(base))
    for n, (dt, _, raw) in got.items():
        t = layer_t(n, 40)
        dens = [evaluate_setting(n, [1, 0.7, 0.1], t), 0.5, 0.33]
        w = [1.0, evaluate_setting(n, [0, 0.3, 0.7, 1], t),
             evaluate_setting(n, [{'filter': 'mlp', 'value': 0.5}, {'value': 0}], t)]
        xs = [decode(*model(k)[n][::2]) for k in (orca, platy, math_)]
        close(decode(dt, raw), ties_ref(decode(*model(base)[n][::2]), xs, w, dens), dt, 'ties.yml: ' + n)
    print('ties.yml: %d tensors within 1 fp16 ulp of the reference' % len(got))

    # bio-merge.yml: TIES with density 0.5, weights 0.5, normalize: false, bf16 into float16.
    mbase = 'MISTRAL_7B_V01'
    got = check_files(os.path.join(outs, 'bio-merge.yml'), names_of(mbase), 'F16', None, m(mbase))
    for n, (dt, _, raw) in got.items():
        xs = [decode(*model(k)[n][::2]) for k in ('MISTRAL_7B_INSTRUCT_V02', 'BIOMISTRAL_7B')]
        ref = ties_ref(decode(*model(mbase)[n][::2]), xs, [0.5, 0.5], [0.5, 0.5], normalize=False)
        close(decode(dt, raw), ref, dt, 'bio-merge.yml: ' + n)
    print('bio-merge.yml: %d tensors within 1 fp16 ulp of the reference' % len(got))

    # gradient-slerp.yml: one slice of 40 layers, t by filter over k / 39; embeddings at
    # t = 0, final norm and lm_head at t = 1 (fallback value 0.5 for both).
    got = check_files(os.path.join(outs, 'gradient-slerp.yml'), names_of(orca), 'F16', 40, m(orca))
    setting = [{'filter': 'self_attn', 'value': [0, 0.5, 0.3, 0.7, 1]},
               {'filter': 'mlp', 'value': [1, 0.5, 0.7, 0.3, 0]}, {'value': 0.5}]
    slerped = 0
    for n, (dt, _, raw) in got.items():
        t = evaluate_setting(n, setting, layer_t(n, 40))
        v0, v1 = decode(*model(orca)[n][::2]), decode(*model(platy)[n][::2])
        close(decode(dt, raw), slerp_ref(t, v0, v1), dt, 'gradient-slerp.yml: %s (t=%g)' % (n, t))
        slerped += 0 < t < 1
    print('gradient-slerp.yml: %d tensors (%d strictly between the models) within 1 fp16 ulp of '
          'the slerp formula' % (len(got), slerped))

    # orcamini-platy-44layer.yml: layers 0-23 of orca, then 20-39 of platypus, bit for bit.
    want = {}
    suffixes = [n[len('model.layers.0.'):] for n in names_of(orca) if n.startswith('model.layers.0.')]
    for n in names_of(orca):
        if not n.startswith('model.layers.'): want[n] = model(orca if 'embed' in n else platy)[n]
    for k in range(44):
        src, at = (orca, k) if k < 24 else (platy, k - 4)
        for rest in suffixes:
            want['model.layers.%d.%s' % (k, rest)] = model(src)['model.layers.%d.%s' % (at, rest)]
    got = check_files(os.path.join(outs, 'orcamini-platy-44layer.yml'), list(want), 'F16', 44, m(orca))
    for n, v in got.items():
        if v != want[n]: raise SystemExit('orcamini-platy-44layer.yml: %s differs from its source' % n)
    print('orcamini-platy-44layer.yml: 44 layers, %d tensors equal to their sources' % len(got))

    # arcee_fusion.yml: MODEL_B's changes to MODEL_A kept where their importance
    # (|delta| times the row's KL divergence) reaches median + 1.5 IQR.
    fa, fb = 'MODEL_A', 'MODEL_B'
    got = check_files(os.path.join(outs, 'arcee_fusion.yml'), names_of(fa), 'BF16', None, m(fa))
    kept = 0
    for n, (dt, shape, raw) in got.items():
        base, x = decode(*model(fa)[n][::2]), decode(*model(fb)[n][::2])
        ref = arcee_fusion(base, x, shape[-1] if shape else 1)
        close(decode(dt, raw), ref, dt, 'arcee_fusion.yml: ' + n)
        kept += sum(r != b for r, b in zip(ref, base))
    if kept == 0: raise SystemExit('arcee_fusion.yml: the reference keeps no change: a vacuous check')
    print('arcee_fusion.yml: %d tensors (%d changes kept) within 1 bf16 ulp of the reference' % (len(got), kept))

    # cabs.yml: zephyr-alpha, then zephyr-beta in the positions left, each keeping
    # 8 of every 32 entries of its delta to Mistral (the order and defaults beside
    # merge_method, as the example writes them).
    cb = 'MISTRAL_7B_V01'
    got = check_files(os.path.join(outs, 'cabs.yml'), names_of(cb), 'BF16', None, m(cb))
    kept = 0
    for n, (dt, _, raw) in got.items():
        base = decode(*model(cb)[n][::2])
        xs = [decode(*model(k)[n][::2]) for k in ('ZEPHYR_7B_ALPHA', 'ZEPHYR_7B_BETA')]
        ref = cabs(base, xs, [0.6, 0.4], [(8, 32), (8, 32)])
        close(decode(dt, raw), ref, dt, 'cabs.yml: ' + n)
        kept += sum(r != b for r, b in zip(ref, base))
    if kept == 0: raise SystemExit('cabs.yml: the reference keeps no change: a vacuous check')
    print('cabs.yml: %d tensors (%d entries changed) within 1 bf16 ulp of the reference' % (len(got), kept))

    # core_space.yml: GPT-2 listed twice and as the base is one distinct input,
    # whose mean is itself, bit for bit (mergekit keys the tensors by model).
    got = check_files(os.path.join(outs, 'core_space.yml'), names_of('GPT2'), 'F32', None, m('GPT2'))
    for n, v in got.items():
        if v != model('GPT2')[n]: raise SystemExit('core_space.yml: %s differs from GPT-2\'s' % n)
    print('core_space.yml: %d tensors equal to the one distinct input' % len(got))

    # vlm-linear.yml, extra-bert-linear.yml: plain linear merges of other layouts.
    for case, (a, b), (wa, wb), dtype in (
            ('vlm-linear.yml', ('QWEN2_VL_7B_INSTRUCT', 'QWEN2_VL_7B_CAPTIONER'), (1.0, 1.0), 'F32'),
            ('extra-bert-linear.yml', ('BERT_HATE_SPEECH', 'BERT_TUPY'), (0.25, 0.75), 'F32')):
        got = check_files(os.path.join(outs, case), names_of(a), dtype, None, m(a))
        for n, (dt, _, raw) in got.items():
            ref, slack = linear_ref([model(a), model(b)], [wa, wb], n)
            close(decode(dt, raw), ref, dt, case + ': ' + n, slack)
        print('%s: %d tensors against the linear reference' % (case, len(got)))

    # whisper-encoder-decoder-*.yml: linear with each model's encoder_weight, its
    # decoder_weight for "decoder" tensors, and for "decoder" + "encoder_attn" the
    # mean of the two (cross_weight not given).
    for case, (a, b) in (('whisper-encoder-decoder-test.yml', ('WHISPER_LARGE_V2', 'WHISPER_FRENCH')),
                         ('whisper-encoder-decoder-weighted.yml',
                          ('WHISPER_LARGE_V2', 'WHISPER_SPECIALIZED'))):
        got = check_files(os.path.join(outs, case), names_of(a), 'F32', None, m(a))
        kinds = set()
        for n, (dt, _, raw) in got.items():
            enc, dec = (0.8, 0.2), (0.3, 0.7)
            w = ([(e + d) / 2 for e, d in zip(enc, dec)] if 'decoder' in n and 'encoder_attn' in n
                 else dec if 'decoder' in n else enc)
            kinds.add(tuple(w))
            ref, slack = linear_ref([model(a), model(b)], list(w), n)
            close(decode(dt, raw), ref, dt, case + ': ' + n, slack)
        if len(kinds) != 3: raise SystemExit('%s: not every weight set was checked' % case)
        print('%s: %d tensors against the linear reference with per-part weights' % (case, len(got)))

    # extra-whisper-slerp.yml: scalar t over every tensor of an encoder-decoder.
    wb, wf = 'WHISPER_LARGE_V2', 'WHISPER_SPECIALIZED_FRENCH'
    got = check_files(os.path.join(outs, 'extra-whisper-slerp.yml'), names_of(wb), 'F32', None, m(wb))
    for n, (dt, _, raw) in got.items():
        v0, v1 = decode(*model(wb)[n][::2]), decode(*model(wf)[n][::2])
        ref = slerp_ref(0.3, v0, v1)
        close(decode(dt, raw), ref, dt, 'extra-whisper-slerp.yml: ' + n,
              4 * max(abs(x) for x in v0 + v1) * 2.0 ** -24)
    print('extra-whisper-slerp.yml: %d tensors against the slerp formula' % len(got))

if __name__ == '__main__':
    if sys.argv[1] == 'make': make(sys.argv[2])
    elif sys.argv[1] == 'check': check(sys.argv[2], sys.argv[3])
    else: raise SystemExit('unknown command ' + sys.argv[1])
