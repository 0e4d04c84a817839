#!/usr/bin/env python3
"""Build an LFM2-shaped byte-level BPE tokenizer with the Hugging Face `tokenizers` library.

The real LFM2 / LFM2.5 `tokenizer.json` cannot be downloaded here, so this trains a stand-in that
has the same *structure* (see docs/tokenizer.md for what is known vs assumed):

  normalizer     null
  pre_tokenizer  Sequence[ Split(Llama-3 / cl100k regex, Isolated, invert=false),
                           ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=false) ]
  model          BPE(dropout=null, unk_token=null, byte_fallback=false, ignore_merges=false,
                     fuse_unk=false, merges as [a, b] pairs)
  post_processor Sequence[ ByteLevel(trim_offsets=false), TemplateProcessing(BOS + $A) ]
  decoder        Sequence[ ByteLevel ]

  ids 0..13      <|pad|> <|startoftext|> <|endoftext|> <|fim_pre|> <|fim_mid|> <|fim_suf|>
                 <|im_start|> <|im_end|> <|tool_list_start|> ... <|tool_response_end|>
  ids 14..500    <|reserved_{id-10}|>, except the LFM2.5 renames:
                 128..132 <|audio_start|> <|text_start|> <|text_end|> <|mixed_start|> <|mixed_end|>
                 396 <image>, 397..496 <|img_row_R_col_C|>, 497 <|img_thumbnail|>,
                 498 <|image_start|>, 499 <|image_end|>
  then           256 byte-level alphabet symbols, then the learned merges
  last 6 ids     <|cot_start|> <|cot_end|> <|review_start|> <|review_end|> <|file_start|>
                 <|file_end|>
  also           two non-special added tokens "Mathias" and "python" (as in LFM2).

The id space is exactly `vocab_size`. If the corpus cannot supply enough merges, the gap between
the last merge and the top block is filled with <|reserved_N|> special tokens (N continuing from
491). The training corpus is generated from fixed seeds (sentences from small multilingual word
lists, numbers, code, emoji; plus, above 4096, Zipf-distributed pseudo-words in several scripts),
so the output depends only on vocab_size and the `tokenizers` version, not on the machine.

Usage: python make_tokenizer.py OUT_DIR --vocab-size N
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

FUNCTIONAL_TOKENS = [
    "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>",
    "<|im_start|>", "<|im_end|>", "<|tool_list_start|>", "<|tool_list_end|>",
    "<|tool_call_start|>", "<|tool_call_end|>", "<|tool_response_start|>", "<|tool_response_end|>",
]
N_LOW_SPECIAL = 501  # ids 0..500
TOP_TOKENS = ["<|cot_start|>", "<|cot_end|>", "<|review_start|>", "<|review_end|>",
              "<|file_start|>", "<|file_end|>"]
NON_SPECIAL_ADDED = ["Mathias", "python"]


def low_special_tokens() -> list[str]:
    """The 501 special tokens at ids 0..500, in id order (LFM2.5 layout)."""
    renames = {128: "<|audio_start|>", 129: "<|text_start|>", 130: "<|text_end|>",
               131: "<|mixed_start|>", 132: "<|mixed_end|>", 396: "<image>",
               497: "<|img_thumbnail|>", 498: "<|image_start|>", 499: "<|image_end|>"}
    for r in range(1, 11):
        for c in range(1, 11):
            renames[397 + (r - 1) * 10 + (c - 1)] = f"<|img_row_{r}_col_{c}|>"
    out = list(FUNCTIONAL_TOKENS)
    for i in range(len(out), N_LOW_SPECIAL):
        out.append(renames.get(i, f"<|reserved_{i - 10}|>"))
    return out


# ---- deterministic training corpus --------------------------------------------------------------

_WORDS = {
    "en": ("the of and to in is was for that with as on by it he she they we you this are be from "
           "at his her an which or not have has had but one all were when there can more their if "
           "will about would what out up into time only new some could these two may first then "
           "do any like my now over such our man me even most made after also did many before "
           "must through back years where much your way well down should because each just those "
           "people how too little state good very make world still own see men work long get here "
           "between both life being under never day same another know while last might us great "
           "old year off come since against go came right used take three speech audio model "
           "voice token sound music language question answer hello thanks please sorry "
           "user assistant system Perform ASR TTS Respond with interleaved text and audio Use "
           "US UK male female "
           "don't can't won't it's I'm you're we've they'll she'd John's O'Neil ").split(),
    "fr": ("le la les de des du un une et est en que qui dans pour pas sur avec ce il elle "
           "nous vous "
           "être avoir fait très été où château français économie naïve garçon déjà après").split(),
    "de": ("der die das und ist nicht ein eine zu den von mit sich auf für dem im auch über Straße "
           "schön Mädchen größer Grüße können müssen Würde äußerst Öffnung").split(),
    "es": ("el la los las de que y en un una es por con para como más pero sus le ya o este sí "
           "porque esta entre cuando muy sin sobre también niño señor mañana corazón "
           "¿qué ¡hola").split(),
    "ru": ("и в не на я быть он с что а по это она этот к но они мы как из у который то за свой "
           "весь год от так о для ты же все тот мочь вы человек такой его сказать только или "
           "здравствуйте спасибо пожалуйста хорошо").split(),
    "el": "και το η να του τα της με που ο για την σε από είναι Αθήνα ελληνικά".split(),
    "ar": "في من على أن إلى هذا مع كان عن التي الذي ما لا هو السلام عليكم شكرا العربية".split(),
    "he": "של את על זה לא הוא עם אני כל שלום תודה".split(),
    "hi": "के है में की और से को का एक यह नमस्ते धन्यवाद हिन्दी भारत".split(),
    "th": "ที่ และ ของ ใน เป็น ไม่ มี การ สวัสดี ขอบคุณ ภาษาไทย".split(),
    "vi": "của và là có trong được cho không người những Việt Nam xin chào cảm ơn".split(),
    "tr": "bir ve bu da için ile çok ne değil gibi Türkçe teşekkürler merhaba ğüşıöç".split(),
}
_CJK = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家"
        "学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见"
        "经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话"
        "汉字语音模型")
_JA = ("これはテストですひらがなカタカナの日本語を話しますありがとうございますこんにちは"
       "東京大阪音声合成認識")
_KO = "안녕하세요감사합니다한국어음성인식모델입니다오늘날씨가어때요"
_EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "🎉", "🚀", "🔥", "❤️", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵",
          "👩🏻‍💻", "🤖", "✨", "☕", "🌍"]
_PUNCT = list(".,;:!?-—–()[]{}\"'“”‘’«»…/\\@#$%^&*+=<>|~`_")
_CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "SELECT id, name FROM users WHERE age >= 21;\n",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}\n",
    "<div class=\"x\">Hello</div>\r\n",
]


def _sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:
        lang = rng.choice(list(_WORDS))
        words = rng.choices(_WORDS[lang], k=rng.randint(3, 18))
        s = " ".join(words)
        if rng.random() < 0.5:
            s = s[:1].upper() + s[1:]
        return s + rng.choice([".", ".", "!", "?", ",", ";", ":", ""])
    if kind < 0.70:
        src = rng.choice([_CJK, _JA, _KO])
        n = rng.randint(2, 24)
        start = rng.randrange(len(src))
        return "".join(src[(start + i * rng.randint(1, 3)) % len(src)] for i in range(n)) + \
            rng.choice(["。", "、", "！", "？", "", " "])
    if kind < 0.80:
        return " ".join(str(rng.randint(0, 10 ** rng.randint(1, 9)))
                        for _ in range(rng.randint(1, 5)))
    if kind < 0.88:
        return rng.choice(_CODE)
    if kind < 0.94:
        return " ".join(rng.choice(_EMOJI) for _ in range(rng.randint(1, 4)))
    return "".join(rng.choice(_PUNCT) for _ in range(rng.randint(1, 6)))


def generated_corpus(n_lines: int, seed: int = 20250101) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        parts = [_sentence(rng) for _ in range(rng.randint(1, 6))]
        sep = rng.choice([" ", " ", "  ", "\n", "\n\n", "\t"])
        lines.append(sep.join(parts))
    return lines


_SYLLABLE_SETS = [
    # (onsets, nuclei, codas) per script; pseudo-words are onset+nucleus(+coda) sequences.
    ("bcdfghjklmnprstvwyz", "aeiou", "nrstlmk"),
    ("бвгджзклмнпрстфхцчшщ", "аеиоуыэюя", "нстлмкй"),
    ("βγδζθκλμνξπρστφχψ", "αεηιουω", "νςρ"),
    ("bcdfghjklmnprstvz", "aeiouäöüéèàó", "nrstlß"),
    ("بتثجحخدذرزسشصضطظعغفقكلمنهوي", "اوي", "نلم"),
    ("kstnhmyrwgzdbp", "aiueo", "n"),
]
_SYLLABLE_SCRIPTS = [(0x3041, 0x3096), (0x30A1, 0x30FA), (0x4E00, 0x62FF), (0xAC00, 0xB7FF)]


def _pseudo_word(rng: random.Random) -> str:
    if rng.random() < 0.25:
        lo, hi = rng.choice(_SYLLABLE_SCRIPTS)
        return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 4)))
    onsets, nuclei, codas = rng.choice(_SYLLABLE_SETS)
    w = "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.4:
        w += rng.choice(codas)
    return w


def pseudo_word_corpus(n_lines: int, n_words: int, seed: int = 7) -> list[str]:
    """Zipf-distributed pseudo-words in several scripts: an unbounded, environment-independent
    source of frequent substrings, so large vocab sizes train to completion deterministically."""
    rng = random.Random(seed)
    lexicon = [_pseudo_word(rng) for _ in range(n_words)]
    cum, total = [], 0.0
    for r in range(n_words):
        total += 1.0 / (r + 10)
        cum.append(total)
    lines = []
    for _ in range(n_lines):
        words = rng.choices(lexicon, cum_weights=cum, k=rng.randint(4, 20))
        lines.append(" ".join(words) + rng.choice([".", ",", "!", "?", "", "\n"]))
    return lines


# ---- building -----------------------------------------------------------------------------------

def _added(id_: int, content: str, special: bool) -> dict:
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": not special, "special": special}


def build_tokenizer(out_dir: str, vocab_size: int) -> None:
    low = low_special_tokens()
    n_fixed = len(low) + 256 + len(TOP_TOKENS) + len(NON_SPECIAL_ADDED)
    if vocab_size < n_fixed:
        raise ValueError(f"vocab_size must be >= {n_fixed}")

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, ignore_merges=False,
                               fuse_unk=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TOP_TOKENS) - len(NON_SPECIAL_ADDED),
        min_frequency=2, show_progress=False, special_tokens=low,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = generated_corpus(60_000)
    if vocab_size > 4096:
        corpus += pseudo_word_corpus(300_000, 200_000)
    tok.train_from_iterator(corpus, trainer=trainer)

    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    for i, t in enumerate(low):
        assert vocab.get(t) == i, (t, vocab.get(t), i)
    added = [_added(i, t, True) for i, t in enumerate(low)]
    next_id = len(vocab)
    for word in NON_SPECIAL_ADDED:
        if word not in vocab:
            vocab[word] = next_id
            next_id += 1
        added.append(_added(vocab[word], word, False))
    reserved_n = N_LOW_SPECIAL - 10
    n_filler = 0
    while next_id < vocab_size - len(TOP_TOKENS):
        name = f"<|reserved_{reserved_n}|>"
        vocab[name] = next_id
        added.append(_added(next_id, name, True))
        next_id += 1
        reserved_n += 1
        n_filler += 1
    for t in TOP_TOKENS:
        vocab[t] = next_id
        added.append(_added(next_id, t, True))
        next_id += 1
    added.sort(key=lambda a: a["id"])

    data["added_tokens"] = added
    data["normalizer"] = None
    data["model"]["ignore_merges"] = False
    data["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|startoftext|>", "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|startoftext|>": {"id": "<|startoftext|>", "ids": [1],
                                                "tokens": ["<|startoftext|>"]}}}]}
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}

    final = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    if final.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise RuntimeError(f"vocab size {final.get_vocab_size(True)} != {vocab_size}")
    ids = sorted(final.get_vocab(with_added_tokens=True).values())
    if ids != list(range(vocab_size)):
        raise RuntimeError("token ids are not contiguous 0..vocab_size-1")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final.save(str(out / "tokenizer.json"), pretty=False)
    _write_configs(out, added)
    print(f"wrote {out}/tokenizer.json: vocab {vocab_size}, merges "
          f"{len(data['model']['merges'])}, reserved filler {n_filler}", file=sys.stderr)


CHAT_TEMPLATE = (
    "{{- bos_token -}}\n"
    "{%- for message in messages -%}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' -}}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{- message['content'] -}}\n"
    "    {%- else -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- endif -%}\n"
    "    {{- '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n"
)


def _write_configs(out: Path, added: list[dict]) -> None:
    decoder = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                 "single_word", "special")} for a in added}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "extra_special_tokens": {},
        "legacy": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<|pad|>",
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "use_default_system_prompt": False,
        "use_fast": True,
    }
    tok_spec = {"normalized": False, "lstrip": False, "rstrip": False, "single_word": False}
    special_map = {"bos_token": {"content": "<|startoftext|>", **tok_spec},
                   "eos_token": {"content": "<|im_end|>", **tok_spec},
                   "pad_token": {"content": "<|pad|>", **tok_spec}}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False)
                                               + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n",
                                                 encoding="utf-8")
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--vocab-size", type=int, required=True)
    args = ap.parse_args()
    build_tokenizer(args.out_dir, args.vocab_size)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    sys.exit(main())
