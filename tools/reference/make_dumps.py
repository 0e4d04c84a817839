#!/usr/bin/env python3
"""Reference dumps from the official liquid-audio code, for voxrt's C++ parity tests.

    python tools/reference/make_dumps.py --model tests/data/tiny/model --out tests/data/tiny/dumps \
        --precision both [--device cpu|cuda] [--steps 64] [--cases question,asr,...]

Precisions (see docs/reference-dumps.md):
  fp32  LFM2AudioModel.from_pretrained(dir, dtype=torch.float32): the official float32 load, with
        exact non-persistent buffers (lfm.rotary_emb.inv_freq, conformer.pos_enc.pe); mel passed
        in fp32 (ChatState(dtype=torch.float32)). --fp32-load bf16cast instead makes the older
        from_pretrained(dir).float() (those two buffers bf16-rounded; tools/reference/diff_loads.py
        lists what differs).
  bf16  exactly as from_pretrained leaves the model; ChatState default dtype (bf16).
The detokenizer always runs in fp32 (as in the official code).

Files written to --out (safetensors, readable without Python; manifest.json lists every tensor):
  stages_<prec>.safetensors       mel/enc/adapter per audio case
  audio.safetensors               16 kHz resampled input of the synthetic non-16k cases
  tf_<mode>_<prec>.safetensors    prompt + teacher-forced per-step hidden/logits, mode in s2s|asr|tts
  greedy_<mode>_<prec>.safetensors  official greedy generate_* output (max_new_tokens 64)
  detok.safetensors               detokenizer stages for seeded random codes
  manifest.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from liquid_audio import ChatState, LFM2AudioModel, LFM2AudioProcessor  # noqa: E402
from liquid_audio.utils import LFMModality  # noqa: E402

from audio_cases import CASES, load_case  # noqa: E402
from make_checkpoint import build_detokenizer_from_dir  # noqa: E402

AUDIO_START, IM_END, TEXT_END = 128, 7, 130
EOS_CODE = 2048

SYSTEM = {
    "s2s": "Respond with interleaved text and audio.",
    "asr": "Perform ASR.",
    "tts": "Perform TTS. Use the UK female voice.",
}
TTS_TEXT = ("What is this obsession people have with books? They put them in their houses\u2014like "
            "they're trophies. What do you need it for after you read it?")
USER_AUDIO = {"s2s": "question", "asr": "asr"}

# Forced audio path for the sequential modes (random weights never pick <|audio_start|> greedily):
FORCE_TEXT_BEFORE = 4   # greedy text tokens, then <|audio_start|> is forced
FORCE_EOS_FRAME = 24    # the 24th frame is forced to all-2048 (end of audio), then greedy text again


# --------------------------------------------------------------------------------------------------

def load_model(model_dir: Path, device: str, prec: str, fp32_load: str = "float32") -> LFM2AudioModel:
    if prec == "fp32" and fp32_load == "float32":
        return LFM2AudioModel.from_pretrained(model_dir, device=device, dtype=torch.float32).eval()
    model = LFM2AudioModel.from_pretrained(model_dir, device=device).eval()  # bf16, the default
    if prec == "fp32":
        model = model.float()  # bf16cast: the bf16 load cast back to float
    return model


def make_chat(proc: LFM2AudioProcessor, mode: str, dtype: torch.dtype) -> ChatState:
    chat = ChatState(proc, dtype=dtype)
    chat.new_turn("system")
    chat.add_text(SYSTEM[mode])
    chat.end_turn()
    chat.new_turn("user")
    if mode in USER_AUDIO:
        wave, sr = load_case(USER_AUDIO[mode])
        chat.add_audio(wave, sr)
    else:
        chat.add_text(TTS_TEXT)
    chat.end_turn()
    chat.new_turn("assistant")
    return chat


def embed_item(model: LFM2AudioModel, kind: int, tok: int, codes: torch.Tensor) -> torch.Tensor:
    """Next-step input embedding, exactly as generate_* builds it."""
    dev = model.codebook_offsets.device
    if kind == 0:
        t = torch.tensor([tok], device=dev)
        return model.lfm.embed_tokens(t)[None, :]
    return model.audio_embedding(codes.to(dev) + model.codebook_offsets).sum(0)[None, None, :]


def depth_logits_tf(model: LFM2AudioModel, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """_sample_audio_frame with the given codes fed back instead of sampled ones -> [8, 2049]."""
    C, D = model.codebooks, model.depthformer_dim
    depthformer_in = model.depth_linear(h).reshape(C, D)  # == rearrange "(C D) -> C D"
    depthformer_token = torch.zeros_like(depthformer_in[0])
    cache = None
    out = []
    for i in range(C):
        cur = depthformer_in[i] + depthformer_token
        dout, cache = model.depthformer.forward_cached(cur[None, None, :], cache)
        out.append(model.depth_embeddings[i].get_logits(dout.squeeze()))
        nxt = codes[i:i + 1].to(h.device)
        depthformer_token = model.depth_embeddings[i](nxt).squeeze()
    return torch.stack(out)


def to_seq(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    kind, text, codes = [], [], []
    for t in items:
        t = t.detach().cpu().reshape(-1)
        if t.numel() == 1:
            kind.append(0); text.append(int(t)); codes.append([-1] * 8)
        else:
            kind.append(1); text.append(-1); codes.append([int(x) for x in t])
    return {"kind": torch.tensor(kind, dtype=torch.int64), "text": torch.tensor(text, dtype=torch.int64),
            "codes": torch.tensor(codes, dtype=torch.int64).reshape(-1, 8)}


@torch.no_grad()
def forced_sequential(model: LFM2AudioModel, chat: ChatState, steps: int) -> list[torch.Tensor]:
    """generate_sequential (greedy), except that <|audio_start|> is forced after FORCE_TEXT_BEFORE
    text tokens and the FORCE_EOS_FRAME-th frame is forced to the end-of-audio frame."""
    in_emb = model._prefill(**chat)
    mod, cache, out = LFMModality.TEXT, None, []
    n_text, n_frames, forced = 0, 0, False
    for _ in range(steps):
        lfm_out = model.lfm(inputs_embeds=in_emb, past_key_values=cache, use_cache=True)
        h, cache = lfm_out.last_hidden_state[0, -1], lfm_out.past_key_values
        if mod == LFMModality.TEXT:
            tok = model._sample_text_token(F.linear(h, model.lfm.embed_tokens.weight))
            if not forced and n_text == FORCE_TEXT_BEFORE:
                tok = torch.full_like(tok, AUDIO_START)
                forced = True
            n_text += 1
            out.append(tok)
            if tok == AUDIO_START:
                mod = LFMModality.AUDIO_OUT
            if tok == IM_END:
                break
            in_emb = model.lfm.embed_tokens(tok)[None, :]
        else:
            frame = model._sample_audio_frame(h)
            n_frames += 1
            if n_frames == FORCE_EOS_FRAME:
                frame[:] = EOS_CODE
            if frame[0] == EOS_CODE:
                frame[:] = EOS_CODE
                mod = LFMModality.TEXT
            out.append(frame)
            in_emb = model.audio_embedding(frame + model.codebook_offsets).sum(0)[None, None, :]
    return out


@torch.no_grad()
def teacher_forced(model: LFM2AudioModel, chat: ChatState, seq: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefill, then one position per step (the cache path of generate_*), feeding seq[i] after step i."""
    in_emb = model._prefill(**chat)
    res: dict[str, torch.Tensor] = {
        "prompt.text": chat.text[0].cpu(),
        "prompt.modality": chat.modality_flag[0].cpu(),
        "prompt.embeds": in_emb[0].cpu(),
    }
    cache = None
    hidden, tlog, dlog, asteps = [], [], [], []
    S = len(seq["kind"])
    emb = in_emb
    for i in range(S):
        lfm_out = model.lfm(inputs_embeds=emb, past_key_values=cache, use_cache=True)
        cache = lfm_out.past_key_values
        if i == 0:
            res["prompt.hidden"] = lfm_out.last_hidden_state[0].cpu()
        h = lfm_out.last_hidden_state[0, -1]
        hidden.append(h)
        tlog.append(F.linear(h, model.lfm.embed_tokens.weight))
        kind, tok, codes = int(seq["kind"][i]), int(seq["text"][i]), seq["codes"][i]
        if kind == 1:
            dlog.append(depth_logits_tf(model, h, codes))
            asteps.append(i)
        if i + 1 < S:
            emb = embed_item(model, kind, tok, codes)
    res["tf.hidden"] = torch.stack(hidden).cpu()
    res["tf.text_logits"] = torch.stack(tlog).cpu()
    if dlog:
        res["tf.depth_logits"] = torch.stack(dlog).cpu()
    res["tf.audio_steps"] = torch.tensor(asteps, dtype=torch.int64)
    for k, v in seq.items():
        res[f"seq.{k}"] = v
    return res


def check_greedy_consistency(res: dict[str, torch.Tensor], forced: bool) -> dict:
    """In fp32 the sequence came from the same computations: argmax must reproduce it."""
    kind, text, codes = res["seq.kind"], res["seq.text"], res["seq.codes"]
    bad_text, bad_codes = [], []
    a = 0
    for i in range(len(kind)):
        if kind[i] == 0:
            am = int(res["tf.text_logits"][i].argmax())
            if am != int(text[i]) and not (forced and int(text[i]) == AUDIO_START):
                bad_text.append(i)
        else:
            am = res["tf.depth_logits"][a].argmax(-1)
            if not (forced and bool((codes[i] == EOS_CODE).all())) and not torch.equal(am, codes[i]):
                bad_codes.append(i)
            a += 1
    return {"text_mismatch_steps": bad_text, "frame_mismatch_steps": bad_codes}


@torch.no_grad()
def stages(model: LFM2AudioModel, proc: LFM2AudioProcessor, dtype: torch.dtype, cases: list[str]) -> dict:
    res = {}
    for c in cases:
        wave, sr = load_case(c)
        chat = ChatState(proc, dtype=dtype)
        chat.add_audio(wave, sr)  # resample -> mel (fp32) -> cast to dtype: what the model is fed
        mel = chat.audio_in
        enc, enc_len = model.conformer(mel[None].to(model.lfm.embed_tokens.weight.dtype), chat.audio_in_lens)
        enc_t = enc[0, :, : int(enc_len[0])].mT  # [T', Denc]
        res[f"mel.{c}"] = mel.cpu()
        res[f"enc.{c}"] = enc_t.cpu()
        res[f"adapter.{c}"] = model.audio_adapter(enc_t).cpu()
    return res


@torch.no_grad()
def detok_dump(model_dir: Path, device: str, seed: int, tc: int = 20) -> dict:
    detok = build_detokenizer_from_dir(model_dir / "audio_detokenizer", device)
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (8, tc), generator=gen, dtype=torch.int64)
    cap = {}
    hooks = [
        detok.emb.register_forward_hook(lambda m, i, o: cap.__setitem__("emb", o)),
        detok.lfm.register_forward_hook(lambda m, i, o: cap.__setitem__("hidden", o.last_hidden_state)),
        detok.lin.register_forward_hook(lambda m, i, o: cap.__setitem__("spec", o)),
    ]
    pcm = detok(codes[None].to(device))  # == LFM2AudioProcessor.decode (after its range check)
    for h in hooks:
        h.remove()
    return {"codes": codes, "emb": cap["emb"][0].cpu(), "hidden": cap["hidden"][0].cpu(),
            "spec": cap["spec"][0].cpu(), "pcm": pcm[0].cpu()}


def save(path: Path, tensors: dict[str, torch.Tensor], manifest: dict, meta: dict | None = None) -> None:
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={k: str(v) for k, v in (meta or {}).items()})
    manifest["files"][path.name] = {
        "bytes": path.stat().st_size,
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
        **({"metadata": meta} if meta else {}),
    }
    print(f"  wrote {path.name} ({path.stat().st_size:,d} bytes, {len(tensors)} tensors)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=64, help="teacher-forced sequence length S")
    ap.add_argument("--greedy-steps", type=int, default=64, help="max_new_tokens of the greedy dumps")
    ap.add_argument("--cases", default=",".join(CASES), help="audio cases for stages_*")
    ap.add_argument("--modes", default="s2s,asr,tts")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the detokenizer codes")
    ap.add_argument("--fp32-load", choices=["float32", "bf16cast"], default="float32",
                    help="fp32 reference: from_pretrained(dtype=float32), or the bf16 load .float()")
    args = ap.parse_args()

    # A true fp32 reference on CUDA: no TF32 (cuDNN convs default to TF32 in PyTorch).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)

    model_dir, out = Path(args.model).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    precs = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    modes = args.modes.split(",")
    cases = args.cases.split(",")
    from importlib.metadata import version
    manifest: dict = {
        "command": " ".join(sys.argv),
        "model": args.model,
        "model_info": json.loads((model_dir / "checkpoint_info.json").read_text())
        if (model_dir / "checkpoint_info.json").exists() else None,
        "device": args.device,
        "versions": {p: version(p) for p in ["liquid-audio", "torch", "torchaudio", "transformers",
                                             "accelerate", "safetensors", "tokenizers", "numpy"]},
        "python": sys.version.split()[0],
        "steps": args.steps, "greedy_steps": args.greedy_steps,
        "force": {"text_before_audio_start": FORCE_TEXT_BEFORE, "eos_frame_index": FORCE_EOS_FRAME},
        "prompts": {"system": SYSTEM, "tts_user_text": TTS_TEXT, "user_audio": USER_AUDIO},
        "fp32_load": args.fp32_load, "detok_seed": args.seed, "cases": cases, "files": {}, "checks": {},
    }
    proc = LFM2AudioProcessor.from_pretrained(model_dir, device=args.device).eval()
    t0 = time.time()

    # 16 kHz input of the short synthetic cases that need resampling. The speech cases are left out
    # to keep the dumps small: tests/data/audio/fixtures.safetensors holds their resampled input.
    audio = {}
    import torchaudio
    for c in cases:
        wave, sr = load_case(c)
        if sr != 16000 and c not in ("question", "asr"):
            audio[f"wave16k.{c}"] = torchaudio.functional.resample(wave, sr, 16_000)[0]
    if audio:
        save(out / "audio.safetensors", audio, manifest)

    seqs: dict[str, dict[str, torch.Tensor]] = {}
    if "bf16" in precs and "fp32" not in precs:
        # the sequences are defined by the fp32 run: take them from an existing fp32 dump
        for mode in modes:
            from safetensors.torch import load_file
            d = load_file(str(out / f"tf_{mode}_fp32.safetensors"))
            seqs[mode] = {k[4:]: v for k, v in d.items() if k.startswith("seq.")}

    for prec in precs:
        dtype = torch.float32 if prec == "fp32" else torch.bfloat16
        print(f"[{prec}] loading model ({time.time() - t0:.1f}s)", flush=True)
        model = load_model(model_dir, args.device, prec, args.fp32_load)
        save(out / f"stages_{prec}.safetensors", stages(model, proc, dtype, cases), manifest)
        for mode in modes:
            chat = make_chat(proc, mode, dtype)
            gen_fn = model.generate_interleaved if mode == "s2s" else model.generate_sequential
            greedy = list(gen_fn(**chat, max_new_tokens=args.greedy_steps))
            gseq = to_seq(greedy)
            save(out / f"greedy_{mode}_{prec}.safetensors", {f"greedy.{k}": v for k, v in gseq.items()}, manifest)
            if prec == "fp32":
                if mode == "s2s":
                    items = greedy if args.steps == args.greedy_steps else list(
                        gen_fn(**make_chat(proc, mode, dtype), max_new_tokens=args.steps))
                else:
                    items = forced_sequential(model, make_chat(proc, mode, dtype), args.steps)
                seqs[mode] = to_seq(items)
            res = teacher_forced(model, make_chat(proc, mode, dtype), seqs[mode])
            if prec == "fp32":
                manifest["checks"][f"tf_{mode}_fp32_reproduces_seq"] = check_greedy_consistency(res, mode != "s2s")
            save(out / f"tf_{mode}_{prec}.safetensors", res, manifest)
            print(f"  [{prec}] {mode}: prompt L={len(res['prompt.modality'])} S={len(res['seq.kind'])} "
                  f"frames={int(res['seq.kind'].sum())} ({time.time() - t0:.1f}s)", flush=True)
        del model

    save(out / "detok.safetensors", detok_dump(model_dir, args.device, args.seed), manifest)
    print(f"done in {time.time() - t0:.1f}s")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest["checks"], indent=1))


if __name__ == "__main__":
    main()
