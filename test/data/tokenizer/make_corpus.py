#!/usr/bin/env python3
"""Writes corpus.jsonl: the texts the tokenizer test encodes with kintsugi and
with Hugging Face's tokenizers (tools/hf-reference) and compares.

Prose and code from this repository's docs and sources, sentences in many
languages and scripts, and the inputs tokenizers get wrong: whitespace runs,
tabs and newlines, digits, emoji, combining characters, special-token strings
inside text, empty and long strings. Deterministic (fixed seed).
Usage: python3 test/data/tokenizer/make_corpus.py > test/data/tokenizer/corpus.jsonl
"""
import json
import pathlib
import random

ROOT = pathlib.Path(__file__).resolve().parents[3]
rng = random.Random(20261130)

SENTENCES = [
    # English, with contractions in every case the GPT-2 pattern knows
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right, but they'll say we've done it and he'd agree; it's John's.",
    "I'M SURE YOU'RE RIGHT, BUT THEY'LL SAY WE'VE DONE IT AND HE'D AGREE; IT'S JOHN'S.",
    "Don't stop: won't, can't, shouldn't've, y'all, 'tis, rock 'n' roll.",
    # Western European
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Ça va ? Très bien, merci ! L'été dernier, j'étais à Nîmes.",
    "Die Straße ist naß; Größe, Übermut und Äpfel — das ist schön.",
    "¿Dónde está la biblioteca? ¡Está allí, señorita Muñoz!",
    "A ação foi concluída às três horas; não há exceção.",
    "Questo è un esempio: perché no? Città, virtù, caffè.",
    "Het is gezellig in Amsterdam; één, twee, drie.",
    "Þetta reddast — íslenska er fallegt mál með ð og þ.",
    "Å være eller ikke være; blåbærsyltetøy på brødskiva.",
    # Central / Eastern European
    "Zażółć gęślą jaźń — polski ma ogonki.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Árvíztűrő tükörfúrógép, őrült ütemben.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна — це держава; ґанок, їжак, єнот.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΟΔΥΣΣΕΥΣ, σοφός, ΣΊΣΥΦΟΣ.",
    "Türkçe: İstanbul'da ılık bir gün; IĞDIR, ışık, İİİ ııı.",
    "Tiếng Việt: Tôi yêu tiếng nước tôi từ khi mới ra đời.",
    "Kiswahili ni lugha ya Afrika Mashariki; habari za asubuhi?",
    # Middle East, South and South-East Asia
    "العربية: أبجد هوز حطي كلمن سعفص قرشت، ١٢٣٤٥٦٧٨٩٠.",
    "עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
    "فارسی: من زبان فارسی را دوست دارم؛ ۱۲۳۴.",
    "हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
    "বাংলা: আমি বাংলায় গান গাই; ০১২৩৪৫৬৭৮৯।",
    "தமிழ்: யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.",
    "ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "ລາວ: ພາສາລາວ; ខ្មែរ: ភាសាខ្មែរ; မြန်မာ: မြန်မာဘာသာ",
    "ქართული: ენა და დამწერლობა; Հայերեն: լեզու; አማርኛ: ቋንቋ",
    # East Asian
    "日本語: いろはにほへと ちりぬるを わかよたれそ つねならむ。カタカナ、漢字、ｶﾀｶﾅ（半角）。",
    "中文：我能吞下玻璃而不伤身体。繁體中文：我能吞下玻璃而不傷身體。",
    "한국어: 다람쥐 헌 쳇바퀴에 타고파. 키스의 고유조건은 입술끼리 만나야 하고.",
    "全角：ＡＢＣ１２３！？　全角スペース　です。",
    # Numbers and symbols
    "Pi is 3.14159265358979323846264338327950288419716939937510, e is 2.718281828.",
    "Call +1 (555) 012-3456 or 0800 123 456; order #12345678901234567890.",
    "Prices: $1,234.56, €99,99, £0.5, ¥10000, ₹2,50,000 and 1e-9 or 0x1F.",
    "Dates: 2026-11-30T14:27:45Z, 30/11/2026, 11.30.26; 12:00 AM.",
    "Math: ∑_{i=1}^{n} x_i² ≤ √(n·∑x_i⁴), ∀ε>0 ∃δ>0; ∞ ≠ ℵ₀; ½ ¾ ⅞.",
    "Roman: Ⅰ Ⅱ Ⅲ Ⅻ ⅰⅱⅲ; circled: ① ② ③ ⑳; superscript ¹²³.",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝐛𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 and ﬁ ﬂ ligatures.",
    # Emoji
    "Emoji: 🎉🦀🚀 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ❤️ ☕ 🫠 #️⃣ 1️⃣",
    "Faces: 😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉😌😍🥰",
    # Combining characters: decomposed accents, stacked marks
    "Decomposed: e\u0301 a\u0300 o\u0308 n\u0303 c\u0327 A\u030a and precomposed: é à ö ñ ç Å.",
    "Stacked: a\u0301\u0302\u0303\u0304 Z\u0351\u0352\u0353\u0354 ǫ\u0328 ḍ\u0323\u0307",
    "Zalgo: H\u0336\u0335\u0328e\u0337\u031b\u0321l\u0334\u0322l\u0335\u0327o\u0338",
    "Hangul jamo: \u1100\u1161\u11a8 vs 각; Devanagari: क\u094d\u0937",
    # Invisible and unusual whitespace
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffBOM\u2060word joiner",
    "nbsp\u00a0here, thin\u2009space, em\u2003space, ideographic\u3000space, narrow\u202fnbsp",
    "line\u2028separator and paragraph\u2029separator and next\u0085line",
    "vertical\u000btab and form\u000cfeed and bell\u0007 and escape\u001b[0m",
    "nul \u0000 byte and DEL \u007f and C1 \u0080\u009f",
    "private use \ue000\uf8ff and replacement \ufffd and noncharacter \ufdd0 \U0010fffd",
    "Right-to-left mark \u200f and left-to-right \u200e and override \u202eTXET\u202c",
]

CODE = [
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "int main(int argc, char** argv) {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "fn main() {\n    let s: &str = \"héllo\";\n    println!(\"{} {:?}\", s.len(), s.chars().rev().collect::<String>());\n}",
    "const f = async (x) => { await fetch(`/api/${x}?q=1&r=2`); return x ?? null; };",
    "SELECT id, name FROM users WHERE created_at >= '2024-01-01' AND email LIKE '%@example.com' ORDER BY id DESC;",
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}'\ndone\n",
    "<html>\n  <body class=\"main\">\n    <p>Hello &amp; welcome &lt;3</p>\n  </body>\n</html>",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"\\u00e9\"}}",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"世界\")\n}\n",
    "\\begin{equation} E = mc^2 \\quad \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2} \\end{equation}",
    "    indented with four spaces\n\t\tand two tabs\n        \n\n\n   trailing   \n",
    "x=1;y=2;z=x+y*3-4/5%6**7//8|9&10^~11<<12>>13;a+=1;b-=2;c*=3",
    "diff --git a/f.c b/f.c\n@@ -1,3 +1,3 @@\n-old line\n+new line\n context\n",
]

# Strings that are special (or added) tokens of the four reference tokenizers
# and of common others, to appear inside text.
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_5|>",
    "<s>", "</s>", "<unk>", "<pad>", "<bos>", "<eos>", "<mask>",
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|vision_start|>", "<|image_pad|>", "<0x0A>", "<0xFF>", "[INST]", "[/INST]",
    "<|endoftext", "endoftext|>", "<s", "s>", "<<s>>", "<|im_start|><|im_end|>",
]

EDGE = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t\t", " \t \n \r ",
    "a", "A", "1", "12", "123", "1234", "12345", "000000000000", "9" * 50,
    " leading", "trailing ", "  both  ", "multiple     internal     spaces",
    "tab\tseparated\tvalues\t1\t2\t3", "windows\r\nline\r\nendings\r\n", "mac\rline\rendings",
    "'s", "'", "''", "'''", "\"", "\"\"\"", "...", "—", "–", "-", "--", "---", "___", "***",
    "▁", "▁▁", "▁hello", "Ġ", "Ċ", "ĠĠ", "hello▁world", "##ing", "@@", "</w>",
    "!!!!!!!!!!", "??", "?!", ".,;:", "()", "[]", "{}", "<>", "</>", "<", ">", "|", "||",
    "a" * 300, "ab" * 400, " " * 100, "\n" * 40, "\t" * 30, "-" * 80, "=" * 64, "🎉" * 40,
    "The end.", "END", "eNd", "ǅ ǈ ǋ ǲ", "ß SS ẞ", "İ i̇ I ı", "Σ σ ς", "ﬀ ﬃ", "Å Å Å",
]


def doc_fragments():
    """Paragraphs and lines of the repository's Markdown docs."""
    out = []
    for p in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        text = p.read_text(encoding="utf-8")
        for para in text.split("\n\n"):
            para = para.strip("\n")
            if para:
                out.append(para)
    return out


def code_fragments():
    """Runs of 1-12 lines from a few source files of the repository."""
    out = []
    files = sorted((ROOT / "src").rglob("*.cpp"))[:40] + sorted((ROOT / "scripts").glob("*.sh"))
    for p in files:
        lines = p.read_text(encoding="utf-8").split("\n")
        k = 0
        while k < len(lines):
            n = rng.randint(1, 12)
            chunk = "\n".join(lines[k:k + n])
            if chunk.strip():
                out.append(chunk)
            k += n
    return out


def mixed(pool, count):
    """Random concatenations of fragments, specials and odd separators."""
    seps = ["", " ", "  ", "\n", "\n\n", "\t", " \t", "\r\n", "   \n  ", "\u3000", "\u00a0"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(2, 6)):
            r = rng.random()
            if r < 0.3:
                parts.append(rng.choice(SPECIALS))
            elif r < 0.45:
                parts.append(rng.choice(EDGE))
            else:
                s = rng.choice(pool)
                if len(s) > 200:
                    a = rng.randint(0, len(s) - 100)
                    s = s[a:a + rng.randint(20, 200)]
                parts.append(s)
            parts.append(rng.choice(seps))
        out.append("".join(parts))
    return out


def main():
    docs = doc_fragments()
    code = code_fragments()
    rng.shuffle(docs)
    rng.shuffle(code)
    texts = []
    texts += SENTENCES + CODE + SPECIALS + EDGE
    texts += [f"{a}{b}{c}" for a, b, c in zip(SPECIALS, SENTENCES, SPECIALS[1:])]
    texts += [f"User: {s}\n<start_of_turn>model\n{t}<end_of_turn>" for s, t in zip(SENTENCES, CODE)]
    texts += [f"<|im_start|>user\n{s}<|im_end|>\n<|im_start|>assistant\n" for s in SENTENCES[:20]]
    texts += [f"<s>[INST] {s} [/INST]" for s in SENTENCES[20:40]]
    texts += docs[:350]
    texts += code[:250]
    pool = SENTENCES + CODE + docs + code
    texts += mixed(pool, 300)
    # Long strings: a whole document, and many sentences in a row.
    texts.append((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    texts.append(" ".join(SENTENCES))
    texts.append("\n".join(CODE))
    for t in texts:
        print(json.dumps({"text": t}, ensure_ascii=False))


if __name__ == "__main__":
    main()
