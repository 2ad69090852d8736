#!/usr/bin/env python3
"""Golden reference data for the tokenizer tests, made with the Hugging Face `tokenizers` library.

Usage:  python3 tests/golden/make_tokenizer_golden.py --data tests/data/tokenizers [--corpus-only]

Writes, under --data:
  corpus.json                 a JSON list of test strings (built deterministically by this script; the corpus
                              alone needs only the Python standard library: --corpus-only)
  golden_<name>.json.gz       for each of qwen3, deepseek_v3, llama2, llama3_1, gptoss:
                              {"tokenizer": name, "tokenizers_version": ..., "cases": [
                                 {"ids": [...], "ids_special": [...], "decoded": "...", "decoded_special": "..."},
                                 ...]}   one case per corpus string, in corpus order;
                              ids = encode(s, add_special_tokens=False).ids,
                              ids_special = encode(s, add_special_tokens=True).ids,
                              decoded = decode(ids, skip_special_tokens=False),
                              decoded_special = decode(ids_special, skip_special_tokens=False)
  reference_speed.json        single-threaded speed of the library (load time, encode throughput)

The tokenizer files are <name>.tokenizer.json.gz in the same folder (see SOURCES.md).
"""

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import sys
import time

# single-threaded library: must be set before tokenizers is imported
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

NAMES = ["qwen3", "deepseek_v3", "llama2", "llama3_1", "gptoss"]


# ----------------------------------------------------------------------------------------------------------------
# corpus
# ----------------------------------------------------------------------------------------------------------------

def _special_tokens_by_tokenizer(data_dir):
    """Added tokens of each tokenizer file: all the named ones, and the first two reserved/placeholder ones."""
    out = {}
    for name in NAMES:
        with gzip.open(os.path.join(data_dir, f"{name}.tokenizer.json.gz"), "rt", encoding="utf-8") as f:
            d = json.load(f)
        named, filler = [], []
        for a in d["added_tokens"]:
            c = a["content"]
            if "reserved" in c or "place▁holder" in c:
                filler.append(c)
            else:
                named.append(c)
        out[name] = named + filler[:2]
    return out


def build_corpus(data_dir):
    C = []

    def add(*xs):
        for x in xs:
            C.append(x)

    # --- empty / whitespace -------------------------------------------------------------------------------------
    add("", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \t \n ",
        "\t\t\tindented with tabs", "    four leading spaces", "trailing spaces    ", "  both sides  ",
        "word\n", "\nword", "a  b   c    d     e", "a\tb\t\tc", "line1\nline2\r\nline3\rline4",
        "para one.\n\npara two.\n\n\npara three.", " " * 64, "\n" * 33, " \n" * 17, "x" + " " * 100 + "y",
        "\u00a0non-breaking\u00a0space", "ideographic\u3000space", "\u2003em\u2002en\u2009thin\u200ahair spaces",
        "\u2028line separator\u2029paragraph separator", "\x0bvertical tab\x0cform feed", "\x85next line (NEL)")

    # --- scripts ------------------------------------------------------------------------------------------------
    add("Hello, world!", "hello world", "HELLO WORLD", "Hello World", "The quick brown fox jumps over the lazy dog.",
        "Café, naïve, façade, jalapeño, São Paulo, Zürich, Ærøskøbing, Łódź, Dvořák, Þórr, İstanbul, ß, ẞ",
        "Ça va? À bientôt! Über Öl, Äpfel — «guillemets» „Anführungszeichen“ ‘single’ “double”",
        "Vietnamese: Tiếng Việt có dấu: Người ta nói rằng",
        "我们的模型是一个混合专家模型。", "中文测试：你好，世界！今天天气很好。", "繁體中文：臺灣、香港、電腦",
        "日本語のテキスト：こんにちは、世界。カタカナとひらがな、漢字。", "ｶﾀｶﾅ半角 and ＦＵＬＬＷＩＤＴＨ ａｂｃ １２３",
        "한국어 텍스트: 안녕하세요, 세계! 대한민국", "العربية: مرحبا بالعالم، كيف حالك؟", "שלום עולם! עברית מימין לשמאל",
        "हिन्दी: नमस्ते दुनिया, यह एक परीक्षण है।", "ภาษาไทย: สวัสดีชาวโลก ไม่มีช่องว่างระหว่างคำ",
        "Русский: Привет, мир! Ёжик в тумане.", "Ελληνικά: Γειά σου Κόσμε! Αλφάβητο αβγδε",
        "Українська: Ґаздиня їсть і п'є", "Հայերեն, ქართული, አማርኛ, ᠮᠣᠩᠭᠣᠯ, ᏣᎳᎩ, ⵜⴰⵎⴰⵣⵉⵖⵜ",
        "Mixed: English 中文 日本語 한국어 العربية עברית हिन्दी ไทย Русский Ελληνικά",
        "bidi: abc אבג def مرحبا 123", "Tamil தமிழ், Bengali বাংলা, Telugu తెలుగు, Gujarati ગુજરાતી",
        "Math: ∀x∈ℝ, ∃y: x²+y²≤1; ∑ᵢ aᵢ = ∫₀¹ f(x)dx ≈ π/4 ≠ ∞ ± √2 ⊕ ⊗ ⇒ ⟨ψ|φ⟩",
        "Symbols: © ® ™ § ¶ † ‡ • … ‰ ′ ″ € £ ¥ ₹ ₽ ¢ ° µ Ω ℃ № ☺ ☃ ♥ ★ ✓ ✗ ⚠ ♪",
        "Box drawing: ┌──┐ │  │ └──┘ ░▒▓█", "Braille ⠓⠑⠇⠇⠕ and runes ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝐛𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐",
        "Old Italic 𐌀𐌁𐌂, Gothic 𐌰𐌱𐌲, cuneiform 𒀀𒀁, Egyptian 𓀀𓀁", "CJK ext B: 𠀀𠀁𠀂 𪚥 𩸽")

    # --- combining marks / normalisation ------------------------------------------------------------------------
    add("e\u0301", "caf\u00e9", "cafe\u0301", "re\u0301sume\u0301 vs r\u00e9sum\u00e9",
        "A\u030a ring (NFD) vs \u00c5 (NFC) vs \u212b (angstrom sign)",
        "\u1112\u1161\u11ab\u1100\u1173\u11af (Hangul jamo, NFD) vs \ud55c\uae00 (NFC)",
        "n\u0303 o\u0308 u\u0308 a\u0300\u0301\u0302\u0303\u0304 z\u0335\u0336\u0337",
        "Zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
        "\u0301 lone combining mark at start", "x\u20dd enclosing circle, 1\u20e3 keycap-ish",
        "ﬁ ﬂ ﬀ ligatures, \u2160 \u2161 roman numerals, \u00bd \u2153 fractions, \u2460\u2461 circled",
        "Kelvin \u212a vs K, Ohm \u2126 vs \u03a9, micro \u00b5 vs \u03bc",
        "ḱṷṓn Q\u0323\u0307 precomposed and decomposed ṩ s\u0323\u0307 s\u0307\u0323",
        "\u0915\u094d\u0937 \u0924\u094d\u0930 \u091c\u094d\u091e conjuncts", "ก\u0e34\u0e4a stacked Thai marks")

    # --- emoji --------------------------------------------------------------------------------------------------
    add("😀", "😀😃😄😁", "I ❤️ NY", "❤", "❤️",
        "family 👨\u200d👩\u200d👧\u200d👦 and 👩\u200d👩\u200d👦",
        "professions 👩\u200d💻 👨\u200d🚀 🧑\u200d🔬 👩\u200d⚕️ 🧑\u200d🍳",
        "skin tones 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿 👋🏽 🧑🏿\u200d🤝\u200d🧑🏻",
        "flags 🇺🇸 🇬🇧 🇯🇵 🇩🇪 🇫🇷 🇨🇳 🇺🇦 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
        "keycaps 1️⃣ 2️⃣ #️⃣ *️⃣ 0⃣", "rainbow flag 🏳️\u200d🌈, pirate 🏴\u200d☠️",
        "text vs emoji presentation: ☺ ☺️ ✈ ✈️ ↔️", "🇦🇧🇨🇩 (nonsense regional indicator pairs) 🇦",
        "emoji between words:hello🙂world🙃again", "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉", "🧑‍🤝‍🧑🫶🏽🫠🪿🫎")

    # --- digits / numbers ---------------------------------------------------------------------------------------
    add("0", "7", "42", "123", "1234", "12345", "123456789", "1234567890123456789012345678901234567890",
        "9" * 100, "3.14159265358979323846", "-0.5", "+1", "1,234,567", "1.234.567,89", "1 000 000",
        "2024-01-15", "15/01/2024", "12:34:56.789", "2024-01-15T12:34:56Z", "+1 (555) 123-4567",
        "+44 20 7946 0958", "6.022e23", "1.6E-19", "0xDEADBEEF 0b1010 0o777", "1e-10, 2.5e+3, -3.0E4",
        "v1.2.3-rc.4+build.5", "50% off, 3/4 cup, 100°C, $1,299.99, €5, ¥100, ₹2,50,000",
        "٠١٢٣٤٥٦٧٨٩ Arabic-Indic digits", "०१२३ Devanagari digits", "１２３４５ full-width digits",
        "Room 101, 221B Baker St, PO Box 12345", "π≈3.14, e≈2.718, φ≈1.618", "IPv4 192.168.0.1, IPv6 2001:db8::ff00:42:8329")

    # --- code / markup ------------------------------------------------------------------------------------------
    add('def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nprint(fib(10))\n',
        'class Foo:\n\tdef __init__(self, x: int = 0) -> None:\n\t\tself.x = x  # comment\n',
        '#include <iostream>\n#include <vector>\n\nint main() {\n    std::vector<int> v{1, 2, 3};\n    for (auto& x : v) std::cout << x << "\\n";\n    return 0;\n}\n',
        'template <typename T>\nconstexpr T max(T a, T b) noexcept { return a > b ? a : b; }',
        'const f = async (x) => {\n  const r = await fetch(`https://example.com/${x}`);\n  return r.json();\n};\n',
        '#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  echo "$f" | tr a-z A-Z > "${f%.txt}.out"\ndone\n',
        'SELECT id, name FROM users WHERE age >= 18 AND name LIKE \'%son\' ORDER BY id DESC;',
        '{"name": "ringmoe", "version": "0.1.0", "experts": [1, 2, 3], "nested": {"a": null, "b": true, "c": -1.5e3}}',
        '{\n  "key": "value",\n  "list": [\n    1,\n    2\n  ]\n}',
        "https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json?download=true#L10",
        "http://user:pass@example.com:8080/path/to/file.html?q=a+b&x=%20y",
        "mailto:someone@example.org, first.last+tag@sub.example.co.uk",
        "# Heading\n\n## Sub-heading\n\n- item *one*\n- item **two**\n1. `code`\n\n> quote\n\n```python\nprint('hi')\n```\n",
        "| col1 | col2 |\n|------|------|\n| a    | b    |",
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>T</title></head>\n<body><p class="x">Hello &amp; goodbye &lt;3</p></body>\n</html>',
        "<s>not a special token in most vocabularies</s> <unk> <pad> [CLS] [SEP] [MASK]",
        "regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@\\w+\\.\\w{2,}$", "path C:\\Users\\name\\file.txt and /usr/local/bin",
        "a==b!=c<=d>=e->f=>g::h||i&&j<<k>>l**m//n%%o++p--", "lambda x: x**2 if x>0 else -x; x += 1; y -= 2",
        "    \n    indented blank line above\n\t\n", "if (x) {\n\treturn;\n}\r\n", "...!!!???,,,;;;:::---___===+++***",
        "(((nested))) [[[brackets]]] {{{braces}}} <<<angles>>>", "\"quoted\" 'single' `back` «»‹› 「」『』【】")

    # --- contractions / apostrophes -----------------------------------------------------------------------------
    add("it's", "don't", "we're", "I've", "I'm", "you'll", "he'd", "IT'S DON'T WE'RE I'VE I'M YOU'LL HE'D",
        "John's book", "JOHN'S BOOK", "the '90s", "rock 'n' roll", "O'Neil's", "'s 't 're 've 'm 'll 'd",
        "it’s (curly apostrophe) don’t", "''double single''", "quote'at'middle", "y'all'd've",
        "Let's go! Can't stop, won't stop. Shouldn't've.")

    # --- long words / long inputs -------------------------------------------------------------------------------
    add("pneumonoultramicroscopicsilicovolcanoconiosis", "Donaudampfschifffahrtsgesellschaftskapitänswitwe",
        "Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz", "supercalifragilisticexpialidocious",
        "a" * 1000, "ab" * 300, " a" * 200, "-" * 500, "=" * 129, "\u00e9" * 300, "中" * 400, "😀" * 150,
        "".join(chr(ord("a") + (i * 7) % 26) for i in range(200)), "x" * 200 + " " + "y" * 200,
        "0123456789" * 50, "la" * 100 + "!", "Aa" * 128, "...." * 100)

    # --- unusual Unicode / control --------------------------------------------------------------------------------
    add("\u2581", "\u2581hello\u2581world", "▁▁▁ triple lower one eighth block", "zero\u200bwidth\u200bspace",
        "zwnj\u200cand\u200dzwj", "\ufeffBOM at start", "BOM\ufeffin middle", "\ufffd replacement char \ufffd\ufffd",
        "private use \ue000\ue001\uf8ff \U000f0000 \U0010fffd", "non-characters \ufdd0 \ufffe \uffff \U0001fffe \U0010ffff",
        "controls " + "".join(chr(i) for i in range(0, 32)), "\x00", "a\x00b", "DEL\x7f and C1 \x80\x85\x9f",
        "\u00ad soft hyphen \u2060 word joiner \u180e mongolian vowel separator",
        "\u202eright-to-left override\u202c and \u2066isolate\u2069", "tag chars \U000e0041\U000e0042",
        "variation selectors: \u845b\U000e0100 a\ufe0f", "\u034f combining grapheme joiner", "\U0001f3fb lone skin tone",
        "\u200d", "\u200b" * 10, "\ud7ff\ue000 around the surrogate range")

    # --- special tokens of each tokenizer, embedded in text ------------------------------------------------------
    add("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi there<｜Assistant｜>Hello!<｜end▁of▁sentence｜>",
        "<|start|>system<|message|>You are ChatGPT.<|end|><|start|>user<|message|>hi<|end|><|start|>assistant<|channel|>final<|message|>hello<|return|>",
        "<s>[INST] What is MoE? [/INST] A mixture of experts.</s>", "<s>", "</s>", "<unk>", " <s> ", "\n</s>\n",
        "<|endoftext|>", "<|endoftext|><|endoftext|>", "text<|endoftext|>more", " <|endoftext|> ", "\n<|endoftext|>\n",
        "<|im_start|", "<|im_start", "|im_start|>", "<|im_start|>>", "<<|im_start|>", "<|IM_START|>", "< |im_start| >",
        "<|begin_of_text|>", "<|eot_id|>\n\n", "<｜begin▁of▁sentence｜>", "<|start|>", "<|message|>",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", "<think>reasoning</think>answer")
    for name, toks in _special_tokens_by_tokenizer(data_dir).items():
        for i, t in enumerate(toks):
            if i % 3 == 0:
                add(f"hello{t}world", f" {t} \n")
            elif i % 3 == 1:
                add(f"{t}", f"\n\n{t}text {t}{t}")
            else:
                add(f"x {t}\ty", f"{t}  leading and trailing  {t}")

    # --- deterministic random mixtures ----------------------------------------------------------------------------
    rng = random.Random(20240611)
    pool = ["the", " cat", " sat", "Hello", " World", ",", ".", "!", "?", " ", "  ", "\n", "\t", "\r\n", "123",
            "4.5", "1,000", "'s", "'T", "n't", "café", "e\u0301", "日本", "中文", "한국", "مرحبا", "שלום", "नमस्ते",
            "สวัสดี", "Привет", "Γειά", "😀", "👨\u200d👩\u200d👧", "🇯🇵", "👍🏽", "1️⃣", "<|im_start|>", "<|endoftext|>",
            "<s>", "</s>", "<|eot_id|>", "<|start|>", "<｜User｜>", "\u2581", "\u200b", "\ufeff", "\x00", "\x1b[0m",
            "def ", "():", "    ", "{}", "[]", "http://x.y/z", "a@b.c", "ß", "ﬁ", "Ω", "\u00a0", "...", "--", "'",
            '"', "`", "\\", "/", "#", "$", "%", "^", "&", "*", "(", ")", "_", "+", "=", "~", "|", "<", ">"]
    for i in range(70):
        n = rng.randint(1, 40)
        add("".join(rng.choice(pool) for _ in range(n)))

    # --- a few KB of mixed text ---------------------------------------------------------------------------------
    chunks = [c for c in C if 0 < len(c) < 300]
    for size, seed in ((2048, 1), (4096, 2), (8192, 3)):
        r = random.Random(seed)
        s = ""
        while len(s.encode("utf-8")) < size:
            s += r.choice(chunks) + r.choice([" ", "\n", "", "\n\n", ". "])
        add(s)
    return C


# ----------------------------------------------------------------------------------------------------------------
# goldens and speed
# ----------------------------------------------------------------------------------------------------------------

def load_json_str(data_dir, name):
    with gzip.open(os.path.join(data_dir, f"{name}.tokenizer.json.gz"), "rt", encoding="utf-8") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tests/data/tokenizers")
    ap.add_argument("--prose", default="bench/data/prose.txt")
    ap.add_argument("--corpus-only", action="store_true")
    ap.add_argument("--speed-seconds", type=float, default=2.0)
    args = ap.parse_args()

    corpus = build_corpus(args.data)
    assert len(corpus) >= 320, len(corpus)
    blob = json.dumps(corpus, ensure_ascii=False, indent=0)
    with open(os.path.join(args.data, "corpus.json"), "w", encoding="utf-8") as f:
        f.write(blob + "\n")
    print(f"corpus: {len(corpus)} strings, {sum(len(s.encode('utf-8')) for s in corpus)} bytes, "
          f"sha256 {hashlib.sha256(blob.encode('utf-8')).hexdigest()}")
    if args.corpus_only:
        return

    import tokenizers
    from tokenizers import Tokenizer
    version = tokenizers.__version__
    print("tokenizers", version, "python", sys.version.split()[0])

    # ---- goldens
    for name in NAMES:
        tok = Tokenizer.from_str(load_json_str(args.data, name))
        cases = []
        for s in corpus:
            ids = tok.encode(s, add_special_tokens=False).ids
            ids_sp = tok.encode(s, add_special_tokens=True).ids
            cases.append({"ids": ids, "ids_special": ids_sp,
                          "decoded": tok.decode(ids, skip_special_tokens=False),
                          "decoded_special": tok.decode(ids_sp, skip_special_tokens=False)})
        out = {"tokenizer": name, "tokenizers_version": version, "cases": cases}
        path = os.path.join(args.data, f"golden_{name}.json.gz")
        raw = json.dumps(out, ensure_ascii=False).encode("utf-8")
        with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
            f.write(raw)
        ntok = sum(len(c["ids"]) for c in cases)
        roundtrip = sum(1 for s, c in zip(corpus, cases) if c["decoded"] == s)
        print(f"golden {name}: {len(cases)} cases, {ntok} tokens, decode(encode(s)) == s for {roundtrip} cases, "
              f"{os.path.getsize(path)} bytes gz")

    # ---- speed (single thread, one document at a time)
    with open(args.prose, "rb") as f:
        prose_bytes = f.read()
    prose = prose_bytes.decode("utf-8")
    speed = {"tokenizers_version": version, "python": sys.version.split()[0], "machine": platform.machine(),
             "cpu": _cpu_name(), "threads": "RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false",
             "prose_file": args.prose, "prose_bytes": len(prose_bytes), "load": {}, "encode": {}}
    for name in NAMES:
        path = os.path.join(args.data, f"{name}.tokenizer.json.gz")
        s = load_json_str(args.data, name)
        t_str, t_gz = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            Tokenizer.from_str(s)
            t_str.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with gzip.open(path, "rt", encoding="utf-8") as f:
                Tokenizer.from_str(f.read())
            t_gz.append(time.perf_counter() - t0)
        speed["load"][name] = {"from_str_s_min": min(t_str), "from_str_s_median": sorted(t_str)[1],
                               "gunzip_plus_from_str_s_min": min(t_gz), "json_bytes": len(s.encode("utf-8")),
                               "gz_bytes": os.path.getsize(path)}
        print(f"load {name}: from_str {min(t_str)*1e3:.1f} ms, with gunzip {min(t_gz)*1e3:.1f} ms")

    for name in NAMES:
        tok = Tokenizer.from_str(load_json_str(args.data, name))
        ntokens = len(tok.encode(prose, add_special_tokens=False).ids)  # warm-up
        reps, t0 = 0, time.perf_counter()
        while True:
            tok.encode(prose, add_special_tokens=False)
            reps += 1
            el = time.perf_counter() - t0
            if el >= args.speed_seconds:
                break
        ids = tok.encode(prose, add_special_tokens=False).ids
        dreps, t1 = 0, time.perf_counter()
        while True:
            tok.decode(ids, skip_special_tokens=False)
            dreps += 1
            del_t = time.perf_counter() - t1
            if del_t >= args.speed_seconds / 2:
                break
        mbps = len(prose_bytes) * reps / el / 1e6
        speed["encode"][name] = {"MB_per_s": mbps, "tokens_per_s": ntokens * reps / el, "repetitions": reps,
                                 "seconds": el, "tokens": ntokens, "bytes_per_token": len(prose_bytes) / ntokens,
                                 "decode_MB_per_s": len(prose_bytes) * dreps / del_t / 1e6}
        print(f"encode {name}: {mbps:.2f} MB/s ({ntokens} tokens per pass, {reps} passes in {el:.2f} s), "
              f"decode {speed['encode'][name]['decode_MB_per_s']:.1f} MB/s")
    speed["qwen3_encode_MB_per_s"] = speed["encode"]["qwen3"]["MB_per_s"]
    with open(os.path.join(args.data, "reference_speed.json"), "w") as f:
        json.dump(speed, f, indent=2)
        f.write("\n")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
