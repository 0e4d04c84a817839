#!/usr/bin/env python3
"""The official liquid-audio pipeline, timed as bench/protocol.md asks (engine "liquid-audio").

    python3 bench/reference_bench.py --model DIR --inputs A.wav B.wav C.wav --steps 200 --runs 5 \
        --warmup 1 --json OUT.jsonl [--device cuda]

What runs is the package's README chat example, unchanged, on random full-size weights:
  LFM2AudioProcessor.from_pretrained(DIR) / LFM2AudioModel.from_pretrained(DIR) (bf16; SDPA, which
  from_pretrained picks when flash_attn is not installed), ChatState with the system prompt
  "Respond with interleaved text and audio.", the user turn = the WAV's samples (the processor
  resamples to 16 kHz and computes the log-mel), the assistant turn, then
  model.generate_interleaved(**chat, max_new_tokens=STEPS, audio_temperature=1.0, audio_top_k=4)
  and processor.decode(codes) (the LFM2.5 detokenizer) on the generated frames.

End masking (random weights would stop at a random step; every engine must do the same 200 steps).
The package is not edited; two of its methods are wrapped on the loaded instances:
  * model._sample_text_token   <- sets logits[7] (<|im_end|>) to -inf, then calls the original;
  * model.depth_embeddings[i].get_logits (i = 0..7) <- the original, then logits[..., 2048]
    (end-of-audio) = -inf. Masking 2048 in all 8 codebooks (not only codebook 0, which is what ends
    audio in generate_interleaved) also keeps every code in [0, 2047], which processor.decode requires
    (it raises on 2048); with random weights and top-k 4, codebooks 1..7 would otherwise pick 2048
    about twice per 132 frames.
  Cost: one 1-element fill kernel per text step and 8 per audio frame, about 1,100 launches of a few
  microseconds in a turn of several seconds (< 0.1 %). Since no end-of-audio frame is generated, all
  frames are decoded (the README drops the last frame because it is that end-of-audio frame).

Timing (perf_counter; torch.cuda.synchronize at every boundary below; each of these points already
synchronises in the official code, which reads tensors back with .tolist() / `if tensor == ...`):
  total       from the WAV's float samples in memory (a CPU tensor, as soundfile would give them) to
              the 24 kHz waveform in host memory: ChatState + tokenizer, resample + mel, encoder,
              prefill, 200 generation steps, detokenizer, copy to host
  mel         ChatState.add_audio (to device, torchaudio resample, log-mel)
  encoder     model._prefill (text embeddings, conformer, adapter, assembling the input embeddings)
  prefill     the first model.lfm call inside generate_interleaved (the backbone over the prompt)
  decode      from the end of the prefill to the last generated item (200 samplings, 199 one-position
              backbone calls); steps/s = steps / decode, the same definition as voxrt's
  first frame from t0 to the first audio frame yielded by the generator
  detok       processor.decode + copy to host; the official pipeline is not streaming, so its first
              output sample exists only when the detokenizer has run: first sample = total
Load and the warm-up run(s) are excluded. Each run seeds torch with its index.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from bench_common import END_OF_AUDIO, IM_END, SYSTEM_PROMPT, device_name, median, read_wav, step_bytes  # noqa: E402


def install_end_masks(model) -> None:
    """Mask <|im_end|> in the text logits and end-of-audio in every codebook's logits (see module doc)."""
    orig_text = model._sample_text_token

    def sample_text_no_end(logits, **kw):
        logits[IM_END] = float("-inf")
        return orig_text(logits, **kw)

    model._sample_text_token = sample_text_no_end
    for emb in model.depth_embeddings:
        def get_logits_no_end(x, _orig=emb.get_logits):
            lg = _orig(x)
            lg[..., END_OF_AUDIO] = float("-inf")
            return lg
        emb.get_logits = get_logits_no_end


class StageTimer:
    """Wraps model._prefill and model.lfm.forward to time the encoder and the backbone prefill."""

    def __init__(self, model, sync):
        self.sync = sync
        self.reset()
        orig_prefill, orig_lfm = model._prefill, model.lfm.forward

        def prefill(**kw):
            sync()
            t = time.perf_counter()
            out = orig_prefill(**kw)
            sync()
            self.enc = (t, time.perf_counter())
            return out

        def lfm_forward(*a, **kw):
            if self.calls:
                self.calls += 1
                return orig_lfm(*a, **kw)
            self.calls = 1
            sync()
            t = time.perf_counter()
            out = orig_lfm(*a, **kw)
            sync()
            self.prefill = (t, time.perf_counter())
            return out

        model._prefill = prefill
        model.lfm.forward = lfm_forward

    def reset(self):
        self.calls = 0
        self.enc = self.prefill = None


def cpu_detokenizer(processor):
    """CPU copy of LFM2AudioProcessor.audio_detokenizer, which hard-codes .cuda(): the same classes,
    config handling and strict load_state_dict, moved to the CPU (only used with --device cpu)."""
    from safetensors.torch import load_file
    from transformers import Lfm2Config

    from liquid_audio.detokenizer import LFM2AudioDetokenizer

    d = Path(processor.detokenizer_path)
    cfg = Lfm2Config.from_pretrained(d / "config.json")
    cfg.layer_types = ["full_attention" if t == "sliding_attention" else t for t in cfg.layer_types]
    det = LFM2AudioDetokenizer(cfg).eval()
    det.load_state_dict(load_file(d / "model.safetensors"))
    return det.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint folder (Hugging Face layout)")
    ap.add_argument("--inputs", nargs="+", required=True, help="WAV files")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", help="append-free: write one JSON line per input here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    from liquid_audio import ChatState, LFM2AudioModel, LFM2AudioProcessor

    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    t_load = time.perf_counter()
    model_dir = Path(args.model)  # a Path: a str is taken for a Hub repo id
    processor = LFM2AudioProcessor.from_pretrained(model_dir, device=dev).eval()
    model = LFM2AudioModel.from_pretrained(model_dir, device=dev).eval()
    if dev.type == "cuda":
        _ = processor.audio_detokenizer  # the official lazy load (.cuda()), outside the timing
    else:
        processor._audio_detokenizer = cpu_detokenizer(processor)
    sync()
    load_ms = 1e3 * (time.perf_counter() - t_load)
    install_end_masks(model)
    timer = StageTimer(model, sync)
    text_bytes, frame_bytes = step_bytes(model)
    attn = model.lfm.config._attn_implementation
    dname = device_name(torch, dev)
    print(f"reference_bench: {args.model} on {dname}, bf16, attention {attn}, load {load_ms:.0f} ms, "
          f"torch {torch.__version__}", file=sys.stderr)

    def one_turn(wave_cpu: torch.Tensor, sr: int, seed: int) -> dict:
        torch.manual_seed(seed)
        timer.reset()
        sync()
        t0 = time.perf_counter()
        chat = ChatState(processor)
        chat.new_turn("system")
        chat.add_text(SYSTEM_PROMPT)
        chat.end_turn()
        chat.new_turn("user")
        sync()
        ta = time.perf_counter()
        chat.add_audio(wave_cpu, sr)
        sync()
        tb = time.perf_counter()
        chat.end_turn()
        chat.new_turn("assistant")
        audio_out, n_text, t_first_frame, t_last = [], 0, None, None
        for t in model.generate_interleaved(**chat, max_new_tokens=args.steps, audio_temperature=1.0,
                                            audio_top_k=4):
            t_last = time.perf_counter()
            if t.numel() == 1:
                n_text += 1
            else:
                audio_out.append(t)
                if t_first_frame is None:
                    t_first_frame = t_last
        sync()
        t_gen = time.perf_counter()
        codes = torch.stack(audio_out, 1).unsqueeze(0)
        wav = processor.decode(codes)
        pcm = wav.float().cpu()
        t_end = time.perf_counter()
        ms = lambda a, b: 1e3 * (b - a)  # noqa: E731
        steps = n_text + len(audio_out)
        dec = ms(timer.prefill[1], t_gen)  # the last item, and the embedding of it that the loop makes
        return {
            "total_ms": ms(t0, t_end), "mel_ms": ms(ta, tb), "encoder_ms": ms(*timer.enc),
            "prefill_ms": ms(*timer.prefill), "decode_ms": dec, "detok_ms": ms(t_gen, t_end),
            "first_frame_ms": ms(t0, t_first_frame) if t_first_frame else -1.0, "first_sample_ms": ms(t0, t_end),
            "steps": steps, "text_tokens": n_text, "audio_frames": len(audio_out),
            "out_samples": int(pcm.shape[-1]), "lfm_calls": timer.calls,
        }

    out = open(args.json, "w") if args.json else None
    print("| input | audio s | total ms (min-max) | prefill ms | mel ms | encoder ms | first frame ms | "
          "first sample ms | steps/s | detok ms | decode GB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.inputs:
        x, sr = read_wav(path)
        wave_cpu = torch.from_numpy(x).unsqueeze(0)  # [1, N] float32, as the README's sf.read gives
        runs = []
        for r in range(args.warmup + args.runs):
            res = one_turn(wave_cpu, sr, r)
            if res["steps"] != args.steps:
                print(f"reference_bench: {path}: run {r} made {res['steps']} steps, not {args.steps}",
                      file=sys.stderr)
            if r >= args.warmup:
                runs.append(res)
            print(f"  {Path(path).name} run {r}{' (warm-up)' if r < args.warmup else ''}: "
                  f"total {res['total_ms']:.1f} ms, prefill {res['prefill_ms']:.1f}, "
                  f"decode {res['decode_ms']:.1f} ({res['steps']} steps), detok {res['detok_ms']:.1f}",
                  file=sys.stderr)
        col = lambda k: [r[k] for r in runs]  # noqa: E731
        tot, dec, r0 = col("total_ms"), median(col("decode_ms")), runs[0]
        sps = 1e3 * r0["steps"] / dec if dec > 0 else 0.0
        nbytes = r0["text_tokens"] * text_bytes + r0["audio_frames"] * frame_bytes
        gbs = nbytes / (dec * 1e-3) / 1e9 if dec > 0 else 0.0
        rec = {
            "engine": "liquid-audio", "device": dname, "precision": "bf16", "input": path,
            "audio_s": round(len(x) / sr, 3), "runs": len(runs),
            "total_ms_median": median(tot), "total_ms_min": min(tot), "total_ms_max": max(tot),
            "prefill_ms": median(col("prefill_ms")), "mel_ms": median(col("mel_ms")),
            "encoder_ms": median(col("encoder_ms")), "decode_ms": dec, "steps": r0["steps"],
            "text_tokens": r0["text_tokens"], "audio_frames": r0["audio_frames"], "steps_per_s": sps,
            "first_frame_ms": median(col("first_frame_ms")), "first_sample_ms": median(col("first_sample_ms")),
            "detok_ms": median(col("detok_ms")), "decode_gb_s": gbs,
            "text_step_bytes": text_bytes, "audio_frame_bytes": frame_bytes,
            # extras (not in voxrt's lines)
            "total_ms_runs": tot, "out_samples": r0["out_samples"], "attention": attn,
            "end_masking": "im_end text logit and code 2048 in all 8 codebooks set to -inf",
            "streaming": False, "load_ms": load_ms, "torch": torch.__version__,
        }
        print(f"| {path} | {rec['audio_s']:.1f} | {rec['total_ms_median']:.1f} ({min(tot):.1f}-{max(tot):.1f}) | "
              f"{rec['prefill_ms']:.1f} | {rec['mel_ms']:.1f} | {rec['encoder_ms']:.1f} | {rec['first_frame_ms']:.1f} | "
              f"{rec['first_sample_ms']:.1f} | {sps:.1f} | {rec['detok_ms']:.1f} | {gbs:.0f} |", flush=True)
        if out:
            out.write(json.dumps(rec) + "\n")
            out.flush()
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
