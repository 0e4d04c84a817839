#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from tests/data and small hand-made cases.

Run from the repository root: python3 fuzz/make_corpus.py. Every seed is a few KB at most.
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
DATA = os.path.join(ROOT, "tests", "data")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- wav ----------------------------------------------------------------------------------------
def wav(tag, channels, rate, bits, payload, extensible=False, extra_chunks=b"", data_size=None):
    block = channels * bits // 8
    if extensible:
        sub = struct.pack("<I", tag) + bytes.fromhex("000010008000 00AA00389B71".replace(" ", ""))
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits,
                          3 if channels == 2 else 4) + sub
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(payload) if data_size is None else data_size) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


with open(os.path.join(DATA, "audio", "short.wav"), "rb") as f:
    put("wav", "short.wav", f.read())
pcm16 = b"".join(struct.pack("<h", (i * 977) % 65536 - 32768) for i in range(64))
put("wav", "stereo16.wav", wav(1, 2, 48000, 16, pcm16))
put("wav", "mono24.wav", wav(1, 1, 44100, 24, bytes(range(96))))
put("wav", "mono32.wav", wav(1, 1, 8000, 32, bytes(range(128))))
put("wav", "float.wav", wav(3, 2, 16000, 32, b"".join(struct.pack("<f", x / 10) for x in range(-8, 8))))
put("wav", "extensible.wav", wav(3, 1, 22050, 32, struct.pack("<4f", 0.5, -0.5, 0.25, 0), extensible=True))
put("wav", "list_chunk.wav", wav(1, 1, 16000, 16, pcm16, extra_chunks=b"LIST\x05\x00\x00\x00INFOx\x00"))
put("wav", "streamed.wav", wav(1, 1, 16000, 16, pcm16, data_size=0xFFFFFFFF))

# ---- safetensors --------------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "small.safetensors", safetensors(
    [("a.weight", "BF16", [2, 3], bytes(12)), ("b.bias", "F32", [], bytes(4)),
     ("c", "I64", [1], bytes(8)), ("empty", "F16", [0, 4], b""), ("f8", "F8_E4M3", [3], bytes(3)),
     ("f4", "F4", [4], bytes(2))], {"format": "pt"}))
with open(os.path.join(DATA, "tiny", "model", "audio_detokenizer", "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = f.read(n)
# The real header with every tensor shrunk to its first dimension of 1 element: real names and
# layout, data a few bytes.
real = json.loads(hdr)
tensors = []
for name, t in sorted(((k, v) for k, v in real.items() if k != "__metadata__"),
                      key=lambda kv: kv[1]["data_offsets"][0]):
    size = {"BF16": 2, "F16": 2, "F32": 4, "I64": 8, "I32": 4}.get(t["dtype"], 1)
    tensors.append((name, t["dtype"], [1] * len(t["shape"]), bytes(size)))
put("safetensors", "detokenizer_layout.safetensors", safetensors(tensors, real.get("__metadata__")))

# ---- config -------------------------------------------------------------------------------------
for name, rel in [("model_config.json", "tiny/model/config.json"),
                  ("detokenizer_config.json", "tiny/model/audio_detokenizer/config.json")]:
    with open(os.path.join(DATA, rel), "rb") as f:
        put("config", name, f.read())

# ---- tokenizer.json -----------------------------------------------------------------------------
def byte_level_strings():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


with open(os.path.join(DATA, "tokenizer", "tiny", "tokenizer.json")) as f:
    tiny = json.load(f)
specials = ["<|startoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|text_end|>"]
vocab = {s: i for i, s in enumerate(specials)}
for s in byte_level_strings():
    vocab[s] = len(vocab)
merges = []
for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]:
    vocab.setdefault(a + b, len(vocab))
    merges.append([a, b])
added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True} for i, s in enumerate(specials)]
added.append({"id": len(vocab), "content": "<word>", "single_word": True, "lstrip": True,
              "rstrip": True, "normalized": True, "special": False})
bytelevel = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
    "normalizer": None, "pre_tokenizer": tiny["pre_tokenizer"],
    "post_processor": tiny["post_processor"], "decoder": tiny["decoder"],
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "ignore_merges": False, "vocab": vocab, "merges": merges}}
put("tokenizer_json", "bytelevel.json", json.dumps(bytelevel, ensure_ascii=False))
legacy = {
    "added_tokens": [], "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                                          "behavior": "MergedWithNext", "invert": False},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Replace", "pattern": {"String": "_"}, "content": " "},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
              "continuing_subword_prefix": "##", "end_of_word_suffix": None,
              "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "<0xC3>": 4, "<0xA9>": 5, "##a": 6},
              "merges": ["#version: 0.2", "a b"]}}
put("tokenizer_json", "legacy.json", json.dumps(legacy))

# ---- bpe (text) ---------------------------------------------------------------------------------
with open(os.path.join(DATA, "tokenizer", "fixtures.jsonl")) as f:
    lines = [json.loads(l).get("t", "") for l in f]
picked = [t for t in lines if 0 < len(t.encode()) <= 512]
step = max(1, len(picked) // 24)
for i, t in enumerate(picked[::step][:24]):
    put("bpe", "fixture_%02d.txt" % i, t)
put("bpe", "invalid_utf8.bin", b"ab\xff\xfe\xc3(\xed\xa0\x80 \xf0\x9f\x98 \x00end")
put("bpe", "long_digits.txt", "1234567890" * 40)
