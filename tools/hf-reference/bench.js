// Times Hugging Face's tokenizers (Rust, through the Node binding) encoding a
// JSONL corpus without special tokens, single-threaded (TOKENIZERS_PARALLELISM
// and RAYON_NUM_THREADS are set by the caller; encodeBatch then runs serially),
// for `kintsugi bench tokenize`:
//   node bench.js TOKENIZER_JSON CORPUS.jsonl REPEAT
// prints {"seconds": best of REPEAT passes after one warm-up, "tokens": N, "ids": [[...], ...]}.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [file, corpus, repeatArg] = process.argv.slice(2);
  const repeat = Math.max(1, parseInt(repeatArg || '5', 10));
  const tok = Tokenizer.fromFile(file);
  const texts = fs.readFileSync(corpus, 'utf8').split('\n').filter((l) => l !== '')
    .map((l) => JSON.parse(l).text);
  const opts = { addSpecialTokens: false };
  let encs = await tok.encodeBatch(texts, opts);  // warm-up (fills HF's word cache)
  let best = Infinity;
  for (let r = 0; r < repeat; ++r) {
    const t0 = process.hrtime.bigint();
    encs = await tok.encodeBatch(texts, opts);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, s);
  }
  const ids = encs.map((e) => Array.from(e.getIds()));
  const tokens = ids.reduce((n, a) => n + a.length, 0);
  process.stdout.write(JSON.stringify({ seconds: best, tokens, ids }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench.js: ${e.message}\n`);
  process.exit(1);
});
