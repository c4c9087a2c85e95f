// Compares kintsugi's output with Hugging Face's, line by line:
//   node compare.js CORPUS.jsonl HF.jsonl KINTSUGI.jsonl LABEL
// Prints the mismatches (at most 5, with the input text) and exits 1 if any,
// or one "ok" line.
'use strict';
const fs = require('fs');

const [corpus, hfFile, ksFile, label] = process.argv.slice(2);
const read = (f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l !== '');
const texts = read(corpus).map((l) => JSON.parse(l).text);
const hf = read(hfFile).map((l) => JSON.parse(l));
const ks = read(ksFile).map((l) => JSON.parse(l));
const bad = [];
if (hf.length !== texts.length) bad.push(`HF gave ${hf.length} lines for ${texts.length} texts`);
if (ks.length !== texts.length) bad.push(`kintsugi gave ${ks.length} lines for ${texts.length} texts`);
const n = Math.min(texts.length, hf.length, ks.length);
let mismatches = 0;
for (let i = 0; i < n; ++i) {
  const same = JSON.stringify(hf[i]) === JSON.stringify(ks[i]);
  if (same) continue;
  if (++mismatches <= 5)
    bad.push(`line ${i + 1}: text ${JSON.stringify(texts[i]).slice(0, 300)}\n  HF:       ${JSON.stringify(hf[i]).slice(0, 600)}\n  kintsugi: ${JSON.stringify(ks[i]).slice(0, 600)}`);
}
if (bad.length) {
  console.log(`${label}: ${mismatches} of ${n} lines differ from Hugging Face`);
  for (const b of bad) console.log(b);
  process.exit(1);
}
console.log(`${label}: ok, ${n} lines identical to Hugging Face`);
