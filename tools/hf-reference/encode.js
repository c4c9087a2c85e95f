// Hugging Face's own encoding of a JSONL corpus: the reference kintsugi's
// tokenizer is compared with. Same interface and output as `kintsugi tokenize`:
//   node encode.js TOKENIZER_JSON --input FILE.jsonl [--add-special-tokens] [--decode] [--skip-special-tokens]
// prints one {"ids": [...]} (plus "text" with --decode) per input line.
// Several variants from one start (the tokenizer file is read once):
//   node encode.js TOKENIZER_JSON --input FILE.jsonl --out FLAGS OUT.jsonl [--out FLAGS OUT.jsonl ...]
// FLAGS: a comma-separated list of the flags above without their dashes
// (add-special-tokens,decode,skip-special-tokens), or "-" for none.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

const KNOWN = ['add-special-tokens', 'decode', 'skip-special-tokens'];

function parseArgs(argv) {
  const a = { tokenizer: argv[0], input: null, flags: new Set(), outs: [] };
  for (let i = 1; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--input') a.input = argv[++i];
    else if (v === '--out') {
      const spec = argv[++i], file = argv[++i];
      if (spec === undefined || file === undefined) throw new Error('--out takes FLAGS and a file');
      const flags = new Set(spec === '-' ? [] : spec.split(','));
      for (const f of flags) if (!KNOWN.includes(f)) throw new Error(`unknown flag in --out: ${f}`);
      a.outs.push({ flags, file });
    } else if (v.startsWith('--') && KNOWN.includes(v.slice(2))) a.flags.add(v.slice(2));
    else throw new Error(`unknown argument: ${v}`);
  }
  if (!a.tokenizer || !a.input) throw new Error('usage: encode.js TOKENIZER_JSON --input FILE.jsonl ...');
  if (a.outs.length && a.flags.size) throw new Error('flags go inside --out when --out is given');
  return a;
}

async function encodeAll(tok, texts, flags) {
  const out = [];
  for (const text of texts) {
    const enc = await tok.encode(text, null, { addSpecialTokens: flags.has('add-special-tokens') });
    const ids = Array.from(enc.getIds());
    const o = { ids };
    if (flags.has('decode')) o.text = await tok.decode(ids, flags.has('skip-special-tokens'));
    out.push(JSON.stringify(o));
  }
  return out.join('\n') + (out.length ? '\n' : '');
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const tok = Tokenizer.fromFile(a.tokenizer);
  const lines = fs.readFileSync(a.input, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const texts = lines.map((l) => JSON.parse(l).text);
  if (!a.outs.length) {
    process.stdout.write(await encodeAll(tok, texts, a.flags));
    return;
  }
  for (const o of a.outs) fs.writeFileSync(o.file, await encodeAll(tok, texts, o.flags));
}

main().catch((e) => {
  process.stderr.write(`encode.js: ${e.message}\n`);
  process.exit(1);
});
