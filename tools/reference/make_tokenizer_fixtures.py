#!/usr/bin/env python3
"""Generate tokenizer parity fixtures for tests/unit/text/tokenizer_test.cpp.

Reads the tiny LFM2-shaped tokenizer (tests/data/tokenizer/tiny/, made by make_tokenizer.py with
--vocab-size 2048), derives a second "variant" tokenizer.json from it that exercises the other code
paths (GPT-2 style ByteLevel pre-tokenizer with use_regex/add_prefix_space, Split behaviours,
legacy "a b" merges, ignore_merges, added tokens with lstrip/rstrip/single_word), and writes, for a
deterministic set of strings, the ids and decoded text that HF `tokenizers` produces:

  tests/data/tokenizer/tiny_variant/tokenizer.json
  tests/data/tokenizer/fixtures.jsonl     one JSON object per line:
      {"v": 1?, "t": text, "i": [ids], "d": decoded?, "s": decoded_skip_special?}
      {"v": 1?, "di": [ids to decode], "d": decoded, "s": decoded_skip_special}   (decode-only)
    "v": 1 marks the variant tokenizer (absent: tiny). "d"/"s" are omitted when equal to "t".
    Decode-only ids may include ids outside the vocabulary; HF skips those, and "d"/"s" hold
    HF's decode of the in-range ids.

Usage: python make_tokenizer_fixtures.py [--data-dir tests/data/tokenizer] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer

SPECIALS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
            "<|audio_start|>", "<|text_start|>", "<|text_end|>", "<|mixed_start|>",
            "<|mixed_end|>", "<|reserved_123|>", "<image>", "<|img_row_3_col_7|>",
            "<|tool_call_start|>", "<|cot_end|>", "<|file_end|>", "Mathias", "python"]
NEAR_SPECIALS = ["<|im_start", "<|im_start|", "im_start|>", "<|pad", "<|", "|>", "<<|pad|>>",
                 "<|PAD|>", "<|reserved_99999|>", "<|audio_start|><", "Mathia", "Pythons",
                 "pythonic", "mathias", "<im_start>", "<|image|>", "<imag"]

SCRIPTS = [  # (name, code point ranges) for random "words"
    ("latin", [(0x61, 0x7A), (0x41, 0x5A)]),
    ("latin_ext", [(0xC0, 0xFF), (0x100, 0x17F), (0x1E00, 0x1EFF)]),
    ("greek", [(0x391, 0x3A9), (0x3B1, 0x3C9)]),
    ("cyrillic", [(0x410, 0x44F)]),
    ("armenian", [(0x531, 0x556), (0x561, 0x586)]),
    ("hebrew", [(0x5D0, 0x5EA)]),
    ("arabic", [(0x621, 0x64A)]),
    ("devanagari", [(0x905, 0x939), (0x93E, 0x94D)]),
    ("bengali", [(0x985, 0x9B9)]),
    ("tamil", [(0xB85, 0xBB9)]),
    ("thai", [(0xE01, 0xE30)]),
    ("georgian", [(0x10D0, 0x10FA)]),
    ("ethiopic", [(0x1200, 0x1248)]),
    ("hangul", [(0xAC00, 0xD7A3)]),
    ("hiragana", [(0x3041, 0x3096)]),
    ("katakana", [(0x30A1, 0x30FA)]),
    ("cjk", [(0x4E00, 0x9FFF)]),
    ("cjk_ext_b", [(0x20000, 0x2A6DF)]),
    ("math_alnum", [(0x1D400, 0x1D7FF)]),
]
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "👍🏿", "🎉", "🚀", "🔥", "❤️", "❤", "✨", "☕", "🌍",
         "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "👩🏻‍💻", "🧑🏾‍🚀", "🇺🇸", "🇯🇵", "🇫🇷🇩🇪",
         "1️⃣", "#️⃣", "©️", "🫠", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🤖"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000",
          "\u2028", "\u2029", "\u0085", "\u200b", "\u2009", "\u202f", "\u180e", "\ufeff", "\x0b",
          "\x0c", " \t\n", "\n \n", "    \n"]
PUNCT = list(".,;:!?-—–()[]{}\"'“”‘’«»…/\\@#$%^&*+=<>|~`_¿¡§¶•·。、！？「」『』【】")
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D",
                "’s", "'x", "'", "''s", "'ſ", "'K"]
DIGITS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "²³¹", "ⅫⅣ", "½¾", "߀߁߂"]
WORDS = ("the of and to in is was for that with as on by it he she they we you this are be from "
         "hello world speech audio model voice token Perform ASR TTS Respond interleaved text "
         "user assistant system don't can't won't it's I'm you're we've they'll she'd "
         "naïve café Straße größer niño señor здравствуйте спасибо こんにちは 你好 안녕하세요 "
         "مرحبا שלום नमस्ते สวัสดี Γειά").split()


def rand_word(rng: random.Random) -> str:
    name, ranges = rng.choice(SCRIPTS)
    lo, hi = rng.choice(ranges)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8)))


def rand_code_point(rng: random.Random) -> str:
    while True:
        r = rng.random()
        if r < 0.3:
            cp = rng.randint(0, 0x7F)
        elif r < 0.6:
            cp = rng.randint(0x80, 0x7FF)
        elif r < 0.9:
            cp = rng.randint(0x800, 0xFFFF)
        else:
            cp = rng.randint(0x10000, 0x10FFFF)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def atom(rng: random.Random) -> str:
    k = rng.random()
    if k < 0.22:
        return rng.choice(WORDS)
    if k < 0.36:
        return rand_word(rng)
    if k < 0.44:
        return rng.choice(SPACES)
    if k < 0.52:
        d = rng.choice(DIGITS)
        return "".join(rng.choice(d) for _ in range(rng.randint(1, 12)))
    if k < 0.59:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 5)))
    if k < 0.65:
        return rng.choice(CONTRACTIONS)
    if k < 0.72:
        return rng.choice(EMOJI)
    if k < 0.79:
        return rng.choice(SPECIALS)
    if k < 0.83:
        return rng.choice(NEAR_SPECIALS)
    if k < 0.90:
        return "".join(rand_code_point(rng) for _ in range(rng.randint(1, 4)))
    if k < 0.93:
        return "e\u0301" if rng.random() < 0.5 else "a\u0308\u0323"  # combining marks
    if k < 0.95:
        return "\x00" if rng.random() < 0.5 else chr(rng.randint(1, 31))
    return rng.choice(WORDS).upper()


def make_texts(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = [
        "", " ", "a", "<|startoftext|>", "<|im_start|>system\nPerform ASR.<|im_end|>\n",
        "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n",
        "Respond with interleaved text and audio.", "Perform TTS. Use the UK female voice.",
        "1234567890", " 1234", "3.14159265358979", "Call 415-555-0132", "I'm here, you're there.",
        "HELLO'S WORLD'RE", "  leading", "trailing  ", "\n\n\nnewlines\r\n\r\n", "tab\tsep\tvalues",
        "<|im_start|><|im_end|>", "<|im_start|><|im_start|>", "python Mathias pythonpython",
        "<|pad|>" * 5, "a" * 1000, "ab" * 500, "的" * 300, " " * 200, "\n" * 50 + "x",
    ]
    while len(texts) < n:
        k = rng.random()
        if k < 0.80:
            parts = [atom(rng) for _ in range(rng.randint(1, 8))]
            joiner = rng.choice(["", " ", "", " ", "\n"])
            texts.append(joiner.join(parts))
        elif k < 0.90:  # sentence-like text
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
            texts.append(" ".join(words) + rng.choice([".", "!", "?", "\n", ""]))
        elif k < 0.96:  # long words / runs
            unit = rng.choice(["a", "ab", "xyz", "的", "한", "é", "1", "!", " ", "😀", "\u0301"])
            texts.append(unit * rng.randint(20, 150))
        else:  # random code point soup
            texts.append("".join(rand_code_point(rng) for _ in range(rng.randint(5, 60))))
    return texts


def make_variant(tiny: dict) -> dict:
    v = json.loads(json.dumps(tiny))
    v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "|"}, "behavior": "MergedWithNext",
         "invert": False},
        {"type": "Split", "pattern": {"Regex": "[0-9]"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "!+"}, "behavior": "MergedWithPrevious",
         "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\?"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[^\\s]"}, "behavior": "Contiguous",
         "invert": True},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    ]}
    v["model"]["ignore_merges"] = True
    v["model"]["merges"] = [" ".join(m) for m in v["model"]["merges"]]
    for t in v["added_tokens"]:
        if t["content"] == "<|im_start|>":
            t["rstrip"] = True
        elif t["content"] == "<|im_end|>":
            t["lstrip"] = True
        elif t["content"] == "Mathias":
            t["single_word"] = True
        elif t["content"] == "python":
            t["single_word"] = True
            t["lstrip"] = True
    v["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True}
    return v


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] /
                                              "tests/data/tokenizer"))
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    data = Path(args.data_dir)
    tiny_path = data / "tiny" / "tokenizer.json"
    tiny_json = json.loads(tiny_path.read_text(encoding="utf-8"))
    variant_json = make_variant(tiny_json)
    (data / "tiny_variant").mkdir(parents=True, exist_ok=True)
    (data / "tiny_variant" / "tokenizer.json").write_text(
        json.dumps(variant_json, ensure_ascii=False), encoding="utf-8")
    toks = {"tiny": Tokenizer.from_file(str(tiny_path)),
            "variant": Tokenizer.from_str(json.dumps(variant_json))}

    texts = make_texts(args.n)
    rng = random.Random(99)
    n_lines = 0
    with open(data / "fixtures.jsonl", "w", encoding="utf-8") as f:
        def write(rec: dict) -> None:
            nonlocal n_lines
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
            n_lines += 1

        for i, text in enumerate(texts):
            names = ["tiny"] + (["variant"] if i % 8 == 0 else [])
            for name in names:
                tok = toks[name]
                ids = tok.encode(text, add_special_tokens=False).ids
                rec = {"v": 1} if name == "variant" else {}
                rec.update({"t": text, "i": ids})
                dec = tok.decode(ids, skip_special_tokens=False)
                dec_skip = tok.decode(ids, skip_special_tokens=True)
                if dec != text:
                    rec["d"] = dec
                if dec_skip != text:
                    rec["s"] = dec_skip
                write(rec)
        vocab_size = toks["tiny"].get_vocab_size(with_added_tokens=True)
        for _ in range(300):  # decode-only: random ids incl. partial UTF-8 and out-of-range
            ids = [rng.randrange(-3, vocab_size + 3) for _ in range(rng.randint(0, 12))]
            ok = [i for i in ids if 0 <= i < vocab_size]  # HF's Python API rejects negatives
            for name, tok in toks.items():
                rec = {"v": 1} if name == "variant" else {}
                rec.update({"di": ids, "d": tok.decode(ok, skip_special_tokens=False),
                            "s": tok.decode(ok, skip_special_tokens=True)})
                write(rec)
    size = (data / "fixtures.jsonl").stat().st_size
    print(f"wrote {n_lines} fixture lines ({size} bytes) to {data / 'fixtures.jsonl'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
