// Hugging Face's own encoding of a JSONL corpus: the reference kintsugi's
// tokenizer is compared with. Same interface and output as `kintsugi tokenize`:
//   node encode.js TOKENIZER_JSON --input FILE.jsonl [--add-special-tokens] [--decode] [--skip-special-tokens]
// prints one {"ids": [...]} (plus "text" with --decode) per input line.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const args = process.argv.slice(2);
  const flag = (f) => args.includes(f);
  const input = args[args.indexOf('--input') + 1];
  const tok = Tokenizer.fromFile(args[0]);
  const lines = fs.readFileSync(input, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out = [];
  for (const line of lines) {
    const enc = await tok.encode(JSON.parse(line).text, null, {
      addSpecialTokens: flag('--add-special-tokens'),
    });
    const ids = Array.from(enc.getIds());
    const o = { ids };
    if (flag('--decode')) o.text = await tok.decode(ids, flag('--skip-special-tokens'));
    out.push(JSON.stringify(o));
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
}

main().catch((e) => {
  process.stderr.write(`encode.js: ${e.message}\n`);
  process.exit(1);
});
