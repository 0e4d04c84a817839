#!/usr/bin/env python3
"""The "good PyTorch engineer" peer (bench/protocol.md): one decode step written in PyTorch on the
official modules' weights, with static state, torch.compile(fullgraph=True) and the whole step in one
CUDA graph, argmax on the GPU.

    python3 bench/torch_step_bench.py --model DIR --json OUT.jsonl [--device cuda]
        [--compile-mode max-autotune-no-cudagraphs] [--context 300] [--max-len 1024]
    python3 bench/torch_step_bench.py --model tests/data/tiny/model --device cpu [--dtype fp32]
        (CPU: compiles and verifies the step against the official modules; no graphs, no timing claims)

The model is LFM2AudioModel.from_pretrained(DIR) (bf16). The peer reads its weights in place (no copies):
  text step   x[1,D] -> 16 LFM2 layers (10 short-conv, 6 GQA attention) -> final norm -> tied head
              [65536] -> argmax -> embedding of the token written back into x; position += 1
  audio frame x[1,D] -> the same backbone -> depth_linear -> 8 codebooks x 6 depthformer blocks (RoPE
              over the codebook index, per-frame KV of at most 8 positions) -> argmax per codebook ->
              sum of the 8 audio embeddings written back into x; position += 1
State is static: KV caches [1, 8, max_len, 64] per attention layer and conv windows [D, 2] per conv
layer, preallocated; the position is a device tensor (RoPE row gather, KV row write, attention mask
= positions <= pos), so one captured graph serves every step. Each step function is compiled with
torch.compile(fullgraph=True, mode=--compile-mode), warmed up on a side stream and captured with
torch.cuda.CUDAGraph; text steps and audio frames share the x / position / cache buffers, so replaying
the two graphs in the interleaved order (6 text, 12 audio, ...) is the generation loop.

Correctness first: before any timing, the compiled step is run teacher-forced for --verify-steps
positions (6 text, 12 audio, 6 text by default) next to the official modules stepping one position
at a time (model.lfm with its cache, the text head, model._sample_audio_frame greedy, and the
depthformer fed the peer's codes): hidden states and logits must agree (cosine), and every argmax
must equal the official one or be a numerical tie (the official logit of the peer's pick within the
observed logit error of the official maximum). The JSON line says "verified": true/false.

Timing (CUDA events): median over --reps batches of --iters replays of each graph at positions
--context .. --context+iters (KV length there), plus the 200-step interleaved sequence (68 text steps +
132 audio frames) replayed for real, next to the estimate 68 t + 132 a. If torch.compile or capture
fails, the script reports the error and falls back to the eager step captured in a CUDA graph, then to
the eager step (the "mode" field says which ran); it does not crash.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bench_common import device_name, median, step_bytes  # noqa: E402

N_TEXT, N_AUDIO = 6, 12


def schedule(n: int, n_text: int = N_TEXT, n_audio: int = N_AUDIO) -> list[bool]:
    """True = text step, for the first n steps of interleaved generation with text never ending."""
    out = []
    while len(out) < n:
        out += [True] * n_text + [False] * n_audio
    return out[:n]


def rms_hf(x, w, eps: float):
    """transformers Lfm2RMSNorm: normalise in fp32, cast back, times the weight."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def rms_la(x, w, eps: float):
    """liquid_audio RMSNorm: normalise in fp32, times the weight, cast back."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w).type_as(x)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_pairs(x, c, s):
    """liquid_audio apply_rotary_emb (adjacent pairs as complex numbers) in real arithmetic, fp32."""
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).type_as(x)


class StaticStep(nn.Module):
    """Static-state text step and audio frame on the official modules' weights (batch 1)."""

    def __init__(self, model, max_len: int):
        super().__init__()
        lfm = model.lfm
        cfg = lfm.config
        dev, dt = lfm.embed_tokens.weight.device, lfm.embed_tokens.weight.dtype
        self.model = model  # the official modules (weights used in place)
        self.D = cfg.hidden_size
        self.kinds = list(cfg.layer_types)
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = self.D // self.nh
        self.eps = cfg.norm_eps
        self.max_len = max_len
        K = cfg.conv_L_cache
        self.kc, self.vc, self.cs = [], [], []
        for i, k in enumerate(self.kinds):
            if k == "full_attention":
                for name, lst in (("k", self.kc), ("v", self.vc)):
                    b = torch.zeros(1, self.nkv, max_len, self.hd, device=dev, dtype=dt)
                    self.register_buffer(f"{name}{i}", b, persistent=False)
                    lst.append(b)
            else:
                b = torch.zeros(self.D, K - 1, device=dev, dtype=dt)
                self.register_buffer(f"conv{i}", b, persistent=False)
                self.cs.append(b)
        self.register_buffer("pos", torch.zeros(1, dtype=torch.long, device=dev), persistent=False)
        self.register_buffer("x", torch.zeros(1, self.D, device=dev, dtype=dt), persistent=False)
        self.register_buffer("ar", torch.arange(max_len, device=dev), persistent=False)
        with torch.no_grad():
            cos, sin = lfm.rotary_emb(torch.zeros(1, device=dev, dtype=dt), torch.arange(max_len, device=dev)[None])
        self.register_buffer("cos", cos[0].contiguous(), persistent=False)   # [max_len, hd], HF's own table
        self.register_buffer("sin", sin[0].contiguous(), persistent=False)
        # depthformer
        self.Q, self.Dd = model.codebooks, model.depthformer_dim
        op0 = model.depthformer.layers[0].operator
        self.dh, self.dg = op0.num_heads, op0.gqa_dim
        self.dhd = self.Dd // self.dh
        fc = op0.freqs_cis[: self.Q]
        self.register_buffer("dcos", fc.real.float().contiguous().to(dev), persistent=False)  # [Q, dhd/2]
        self.register_buffer("dsin", fc.imag.float().contiguous().to(dev), persistent=False)
        self.register_buffer("offsets", model.codebook_offsets.clone(), persistent=False)

    def reset(self, pos: int = 0) -> None:
        for b in self.kc + self.vc + self.cs:
            b.zero_()
        self.pos.fill_(pos)

    # ---- the backbone: one position --------------------------------------------------------------
    def backbone(self, x):
        lfm = self.model.lfm
        pos = self.pos
        cos, sin = self.cos[pos][:, None, :], self.sin[pos][:, None, :]     # [1, 1, hd]
        mask = (self.ar <= pos).view(1, 1, 1, self.max_len)
        ai = ci = 0
        for i, layer in enumerate(lfm.layers):
            h = rms_hf(x, layer.operator_norm.weight, self.eps)
            if self.kinds[i] == "full_attention":
                a = layer.self_attn
                q = rms_hf(F.linear(h, a.q_proj.weight).view(1, self.nh, self.hd), a.q_layernorm.weight, self.eps)
                k = rms_hf(F.linear(h, a.k_proj.weight).view(1, self.nkv, self.hd), a.k_layernorm.weight, self.eps)
                v = F.linear(h, a.v_proj.weight).view(1, self.nkv, self.hd)
                q = q * cos + rotate_half(q) * sin
                k = k * cos + rotate_half(k) * sin
                kc, vc = self.kc[ai], self.vc[ai]
                kc[:, :, pos] = k.view(1, self.nkv, 1, self.hd)
                vc[:, :, pos] = v.view(1, self.nkv, 1, self.hd)
                # GQA as 8 groups of 4 query rows: query head j*4+r uses KV head j (repeat_kv order)
                qg = q.view(1, self.nkv, self.nh // self.nkv, self.hd)
                o = F.scaled_dot_product_attention(qg, kc, vc, attn_mask=mask)
                o = F.linear(o.reshape(1, self.D), a.out_proj.weight)
                ai += 1
            else:
                c = layer.conv
                b, cc, xx = F.linear(h, c.in_proj.weight, c.in_proj.bias).chunk(3, dim=-1)
                st = self.cs[ci]
                win = torch.cat((st, (b * xx).t()), dim=-1)                       # [D, K]
                y = (win.float() * c.conv.weight.squeeze(1).float()).sum(-1).to(x.dtype)
                if c.conv.bias is not None:
                    y = y + c.conv.bias
                st.copy_(win[:, 1:])
                o = F.linear(cc * y[None], c.out_proj.weight, c.out_proj.bias)
                ci += 1
            x = x + o
            f = layer.feed_forward
            hf = rms_hf(x, layer.ffn_norm.weight, self.eps)
            x = x + F.linear(F.silu(F.linear(hf, f.w1.weight)) * F.linear(hf, f.w3.weight), f.w2.weight)
        return rms_hf(x, lfm.embedding_norm.weight, self.eps)

    # ---- the audio head: 8 codebooks ---------------------------------------------------------------
    def depth(self, h):
        m = self.model
        dl = F.linear(h, m.depth_linear.weight, m.depth_linear.bias).view(self.Q, self.Dd)
        tok = torch.zeros_like(dl[:1])
        ks: list = [None] * len(m.depthformer.layers)
        vs: list = [None] * len(m.depthformer.layers)
        codes, logits = [], []
        kvd = self.dg * self.dhd
        for i in range(self.Q):
            x = dl[i:i + 1] + tok                                                 # [1, Dd]
            for li, blk in enumerate(m.depthformer.layers):
                op, ba = blk.operator, blk.operator.bounded_attention
                hn = rms_la(x, blk.operator_norm.weight, blk.operator_norm.eps)
                q, k, v = F.linear(hn, op.qkv_proj.weight).split([self.Dd, kvd, kvd], dim=-1)
                q = rms_la(q.view(1, self.dh, self.dhd), ba.q_layernorm.weight, ba.q_layernorm.eps)
                k = rms_la(k.view(1, self.dg, self.dhd), ba.k_layernorm.weight, ba.k_layernorm.eps)
                q = rope_pairs(q, self.dcos[i], self.dsin[i])
                k = rope_pairs(k, self.dcos[i], self.dsin[i])
                v = v.view(1, self.dg, self.dhd)
                ks[li] = k if i == 0 else torch.cat((ks[li], k), 0)               # [i+1, G, dhd]
                vs[li] = v if i == 0 else torch.cat((vs[li], v), 0)
                qg = q.view(1, self.dg, self.dh // self.dg, self.dhd)
                o = F.scaled_dot_product_attention(qg, ks[li].transpose(0, 1)[None], vs[li].transpose(0, 1)[None])
                hh = F.linear(o.reshape(1, self.Dd), op.out_proj.weight) + x
                ff = blk.feed_forward
                hf = rms_la(hh, blk.ffn_norm.weight, blk.ffn_norm.eps)
                x = hh + F.linear(F.silu(F.linear(hf, ff.w1.weight)) * F.linear(hf, ff.w3.weight), ff.w2.weight)
            emb = m.depth_embeddings[i]
            lg = F.linear(rms_la(x, emb.embedding_norm.weight, emb.embedding_norm.eps), emb.to_logits.weight)
            nxt = lg.argmax(-1)                                                   # [1]
            tok = F.embedding(nxt, emb.embedding.weight)
            codes.append(nxt)
            logits.append(lg)
        return torch.cat(codes), torch.cat(logits)

    # ---- the two steps -------------------------------------------------------------------------------
    def text_step(self):
        h = self.backbone(self.x)
        w = self.model.lfm.embed_tokens.weight
        logits = F.linear(h, w)                                                   # [1, V]
        tok = logits.argmax(-1)
        self.x.copy_(F.embedding(tok, w))
        self.pos.add_(1)
        return h, tok, logits

    def audio_step(self):
        h = self.backbone(self.x)
        codes, logits = self.depth(h)
        emb = self.model.audio_embedding.embedding.weight
        self.x.copy_(F.embedding(codes + self.offsets, emb).sum(0, keepdim=True))
        self.pos.add_(1)
        return h, codes, logits


# ---- verification against the official modules ------------------------------------------------------

def official_depth_logits(model, h, codes):
    """_sample_audio_frame's computation with the given codes fed back -> [Q, 2049]."""
    C, Dd = model.codebooks, model.depthformer_dim
    din = model.depth_linear(h).reshape(C, Dd)
    tok = torch.zeros_like(din[0])
    cache, out = None, []
    for i in range(C):
        o, cache = model.depthformer.forward_cached((din[i] + tok)[None, None, :], cache)
        out.append(model.depth_embeddings[i].get_logits(o.squeeze()))
        tok = model.depth_embeddings[i](codes[i:i + 1]).squeeze()
    return torch.stack(out)


def cos_sim(a, b) -> float:
    a, b = a.float().flatten(), b.float().flatten()
    return float((a @ b) / (a.norm() * b.norm() + 1e-30))


def pick_ok(official_row, peer_row, pick: int) -> tuple[bool, bool]:
    """(exact, ok): the peer's argmax equals the official one, or is a numerical tie with it."""
    off = official_row.float()
    exact = int(off.argmax()) == pick
    tol = float((peer_row.float() - off).abs().max())
    return exact, exact or float(off[pick]) >= float(off.max()) - tol


@torch.no_grad()
def verify(model, step: StaticStep, text_fn, audio_fn, n_steps: int, sync) -> dict:
    lfm = model.lfm
    kinds = schedule(n_steps)
    step.reset(0)
    x = lfm.embed_tokens(torch.tensor([1], device=step.x.device))              # <|startoftext|>
    cache = None
    worst_h, worst_l, n_exact, n_ok, n_picks, max_rel = 1.0, 1.0, 0, 0, 0, 0.0
    for is_text in kinds:
        out = lfm(inputs_embeds=x.view(1, 1, -1), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        h_off = out.last_hidden_state[0, -1]
        step.x.copy_(x.view(1, -1))
        if is_text:
            h_p, tok_p, lg_p = text_fn()
            lg_p = lg_p.clone()[0]
            lg_off = F.linear(h_off, lfm.embed_tokens.weight)
            ex, ok = pick_ok(lg_off, lg_p, int(tok_p[0]))
            n_exact += ex
            n_ok += ok
            n_picks += 1
            worst_l = min(worst_l, cos_sim(lg_p, lg_off))
            max_rel = max(max_rel, float((lg_p.float() - lg_off.float()).abs().max() / lg_off.float().abs().max()))
            x = lfm.embed_tokens(lg_off.argmax().view(1))
        else:
            h_p, codes_p, lg_p = audio_fn()
            codes_p, lg_p = codes_p.clone(), lg_p.clone()
            lg_off = official_depth_logits(model, h_off, codes_p)
            for i in range(model.codebooks):
                ex, ok = pick_ok(lg_off[i], lg_p[i], int(codes_p[i]))
                n_exact += ex
                n_ok += ok
                n_picks += 1
            worst_l = min(worst_l, cos_sim(lg_p, lg_off))
            max_rel = max(max_rel, float((lg_p.float() - lg_off.float()).abs().max() / lg_off.float().abs().max()))
            codes_off = model._sample_audio_frame(h_off)                         # official greedy frame
            x = model.audio_embedding(codes_off + model.codebook_offsets).sum(0)[None, :]
        worst_h = min(worst_h, cos_sim(h_p.clone(), h_off))
    sync()
    thr = 0.999 if step.x.dtype == torch.float32 else 0.99
    passed = n_ok == n_picks and worst_h >= thr and worst_l >= thr
    return {"verified": passed, "verify_steps": n_steps, "verify_text_steps": sum(kinds),
            "verify_audio_frames": n_steps - sum(kinds), "hidden_cos_min": worst_h, "logits_cos_min": worst_l,
            "logits_max_rel_err": max_rel, "argmax_exact": n_exact, "argmax_tie": n_ok - n_exact,
            "argmax_total": n_picks, "cos_threshold": thr}


# ---- timing ---------------------------------------------------------------------------------------------

def time_cuda(fns: dict, step: StaticStep, ctx: int, iters: int, reps: int) -> dict:
    """fns: {'text': replay, 'audio': replay}. Per-step ms (median of reps) and the 200-step sequence."""
    res = {}
    for name, fn in fns.items():
        ts = []
        for _ in range(reps):
            step.pos.fill_(ctx)
            fn()
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(iters):
                fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b) / iters)
        res[name] = median(ts)
        res[name + "_runs"] = ts
    seq = schedule(200)
    ts = []
    for _ in range(reps):
        step.pos.fill_(ctx)
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for is_text in seq:
            (fns["text"] if is_text else fns["audio"])()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    res["gen200"] = median(ts)
    return res


def capture(fn, warmup: int = 3):
    """Warm fn up on a side stream (this is where torch.compile compiles), then capture one call."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    torch.cuda.synchronize()
    return g.replay


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--json", help="append the result as one JSON line here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16",
                    help="fp32: model.float() after from_pretrained (tight CPU check of the math)")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default: max-autotune-no-cudagraphs on CUDA, default on CPU); "
                         "'none' skips torch.compile")
    ap.add_argument("--no-coordinate-descent", action="store_true",
                    help="leave torch._inductor.config.coordinate_descent_tuning off")
    ap.add_argument("--max-len", type=int, default=1024, help="static KV length")
    ap.add_argument("--context", type=int, default=300, help="KV positions already filled when timing")
    ap.add_argument("--verify-steps", type=int, default=24)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    from liquid_audio import LFM2AudioModel

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    mode = args.compile_mode or ("max-autotune-no-cudagraphs" if cuda else "default")
    rec = {"engine": "torch-peer", "device": device_name(torch, dev), "precision": args.dtype,
           "torch": torch.__version__, "compile_mode": mode, "max_len": args.max_len, "context": args.context}
    t0 = time.perf_counter()
    model = LFM2AudioModel.from_pretrained(Path(args.model), device=dev).eval()
    if args.dtype == "fp32":
        model = model.float()
    rec["text_step_bytes"], rec["audio_frame_bytes"] = step_bytes(model)
    torch.set_grad_enabled(False)
    step = StaticStep(model, args.max_len)
    print(f"torch_step_bench: {args.model} on {rec['device']}, {args.dtype}, load {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    if cuda and not args.no_coordinate_descent:
        import torch._inductor.config as icfg
        icfg.coordinate_descent_tuning = True
    rec["coordinate_descent_tuning"] = cuda and not args.no_coordinate_descent

    # (how the step runs, torch.compile mode, captured in a CUDA graph)
    attempts = [("compiled", mode, cuda)] if mode != "none" else []
    attempts += [("eager", None, True)] if cuda else []
    attempts += [("eager", None, False)]
    errors, t = [], None
    for kind, cmode, graph in attempts:
        try:
            if kind == "compiled":
                tc = time.perf_counter()
                text_fn = torch.compile(step.text_step, fullgraph=True, mode=cmode)
                audio_fn = torch.compile(step.audio_step, fullgraph=True, mode=cmode)
                step.reset(0)
                text_fn()
                audio_fn()
                sync()
                rec["compile_s"] = time.perf_counter() - tc
                print(f"torch_step_bench: compiled ({cmode}) in {rec['compile_s']:.1f} s", file=sys.stderr)
            else:
                text_fn, audio_fn = step.text_step, step.audio_step
            v = verify(model, step, text_fn, audio_fn, args.verify_steps, sync)
            rec.update(v)
            print(f"torch_step_bench: verify ({kind}): {json.dumps(v)}", file=sys.stderr)
            rec["mode"] = kind + ("+cudagraph" if graph else "")
            if cuda:
                step.reset(args.context)
                fns = {"text": capture(text_fn), "audio": capture(audio_fn)} if graph else \
                      {"text": text_fn, "audio": audio_fn}
                t = time_cuda(fns, step, args.context, args.iters, args.reps)
                rec["status"] = "ok"
            else:
                t = {}
                for name, fn in (("text", text_fn), ("audio", audio_fn)):
                    ts = []
                    for _ in range(3):
                        step.pos.fill_(args.context)
                        a = time.perf_counter()
                        fn()
                        ts.append(1e3 * (time.perf_counter() - a))
                    t[name] = median(ts)
                t["gen200"] = None
                rec["status"] = "ok (cpu: correctness only, timings are not a claim)"
            break
        except Exception as e:  # noqa: BLE001  (report, then fall back)
            msg = f"{kind} ({cmode}, graph={graph}): {type(e).__name__}: {e}"
            errors.append(msg[:2000] + "\n" + traceback.format_exc(limit=8)[-3000:])
            print(f"torch_step_bench: {msg[:2000]}; falling back", file=sys.stderr)
            torch._dynamo.reset()
            t = None
    if errors:
        rec["errors"] = errors
    if t is None:
        rec["status"] = "failed"
    else:
        tm, am = t["text"], t["audio"]
        rec["text_step_ms"], rec["audio_frame_ms"] = tm, am
        rec["text_steps"], rec["audio_frames"] = schedule(200).count(True), schedule(200).count(False)
        rec["gen200_est_ms"] = rec["text_steps"] * tm + rec["audio_frames"] * am
        rec["gen200_ms"] = t.get("gen200")
        rec["text_gb_s"] = rec["text_step_bytes"] / (tm * 1e-3) / 1e9
        rec["audio_gb_s"] = rec["audio_frame_bytes"] / (am * 1e-3) / 1e9
        for k in ("text_runs", "audio_runs"):
            if k in t:
                rec[k.replace("_runs", "_ms_runs")] = t[k]
        if cuda:
            try:
                from copy_bw import measure
                bw = measure(torch)
                rec["copy_gb_s"] = bw["copy_gb_s"]
                rec["text_pct_floor"] = 100 * rec["text_gb_s"] / bw["copy_gb_s"]
                rec["audio_pct_floor"] = 100 * rec["audio_gb_s"] / bw["copy_gb_s"]
            except Exception as e:  # noqa: BLE001
                rec["copy_bw_error"] = str(e)
        print(f"torch_step_bench [{rec['mode']}, verified={rec.get('verified')}]: text step {tm:.3f} ms "
              f"({rec['text_gb_s']:.0f} GB/s), audio frame {am:.3f} ms ({rec['audio_gb_s']:.0f} GB/s), "
              f"200 steps est. {rec['gen200_est_ms']:.1f} ms"
              + (f", measured {rec['gen200_ms']:.1f} ms" if rec.get("gen200_ms") else ""))
    if args.json:
        with open(args.json, "a") as f:  # appends: run_gpu.sh may try a second configuration
            f.write(json.dumps(rec) + "\n")
    return 0 if rec["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
