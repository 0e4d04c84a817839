#!/usr/bin/env python3
"""Turn the JSON lines of one benchmark run into the markdown of docs/benchmarks.md.

    python3 bench/report.py OUT_DIR [MORE_DIRS_OR_JSONL ...] [--floor-bw GB_S] > results.md

Reads the run's own files in the folders (env.jsonl, voxrt.jsonl, reference.jsonl, peer.jsonl: what
bench/run_gpu.sh writes; other .jsonl there, e.g. a variant's `voxrt bench --json`, are left out
unless named) and any .jsonl files named: lines of engine "voxrt"
(voxrt bench --json), "liquid-audio" (bench/reference_bench.py), "torch-peer"
(bench/torch_step_bench.py), "copy" (bench/copy_bw.py), "env" and "inputs" (bench/env_info.py), "call" (bench/run_gpu.sh).
Inputs are matched by file name. The floor of a decode is (68 text steps x text bytes + 132 frames x
frame bytes) / the measured copy bandwidth; % of floor = floor / measured time. Byte counts come from
voxrt's line when there is one (src/model/lfm_audio.cpp), so every engine is held to the same floor.
A claim rests on ratios measured in one run on one card: the report warns when the lines name
different cards.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


RUN_FILES = {"env.jsonl", "voxrt.jsonl", "reference.jsonl", "peer.jsonl"}


def load(paths: list[str]) -> list[dict]:
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(f for f in p.glob("*.jsonl") if f.name in RUN_FILES) if p.is_dir() else [p]
    out = []
    for f in files:
        for i, line in enumerate(f.read_text().splitlines()):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"report: {f}:{i + 1}: skipped ({e})", file=sys.stderr)
                continue
            rec["_file"] = str(f)
            out.append(rec)
    return out


def f1(v, nd=1) -> str:
    return "–" if v is None or (isinstance(v, (int, float)) and v < 0) else f"{v:,.{nd}f}"


def rng(r: dict) -> str:
    return f"{f1(r['total_ms_median'])} ({f1(r['total_ms_min'])}–{f1(r['total_ms_max'])})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--floor-bw", type=float, help="copy bandwidth in GB/s, when no 'copy' line exists")
    args = ap.parse_args()
    recs = load(args.paths)
    by = lambda e: [r for r in recs if r.get("engine") == e]  # noqa: E731
    vox, ref, peer, copy, env, inputs = by("voxrt"), by("liquid-audio"), by("torch-peer"), by("copy"), by("env"), by("inputs")
    name = lambda r: Path(r["input"]).name  # noqa: E731
    bw = args.floor_bw or (max(c["copy_gb_s"] for c in copy) if copy else None)
    tb = (vox or ref or peer or [{}])[0].get("text_step_bytes")
    ab = (vox or ref or peer or [{}])[0].get("audio_frame_bytes")

    L = []
    e = env[-1] if env else {}
    cards = sorted({r.get("device", "?") for r in vox + ref + peer + copy})
    L.append(f"### Run of {e.get('date', '(date)')} on {', '.join(cards) or '(card)'}")
    L.append("")
    calls = by("call")
    cmds = [c["command"] for c in calls] or [e.get("command", "(command)")]
    L.append(f"- commit: `{e.get('commit', '(commit)')}`; command{'s' if len(cmds) > 1 else ''}: "
             + "; then ".join(f"`{c}`" for c in cmds))
    if e:
        L.append(f"- card: {e.get('gpu', '?')}, driver {e.get('driver', '?')}, {e.get('gpu_memory', '?')}; "
                 f"host: {e.get('cpu', '?')}; torch {e.get('torch', '?')} (CUDA {e.get('torch_cuda', '?')}), "
                 f"transformers {e.get('transformers', '?')}, liquid-audio {e.get('liquid_audio', '?')}")
    if bw:
        L.append(f"- copy bandwidth (device-to-device, (read+write)/time): **{bw:,.0f} GB/s**"
                 + (f"; bytes per step: text {tb / 1e9:.3f} GB, audio frame {ab / 1e9:.3f} GB" if tb and ab else ""))
    if inputs:
        ins = inputs[-1].get("inputs", [])
        L.append("- inputs (bench/make_inputs.py): " + ", ".join(
            f"`{i['file']}` {i['seconds']:.1f} s @ {i['rate'] / 1000:g} kHz (sha256 {i['sha256'][:12]})" for i in ins))
    if len(cards) > 1:
        L.append(f"- **WARNING: lines from different cards ({', '.join(cards)}): ratios across them are not claims.**")
    steps = {r.get("steps") for r in vox + ref}
    if len(steps) > 1:
        L.append(f"- **WARNING: engines ran different step counts {sorted(steps)}.**")
    L.append("")

    # ---- end to end ----
    names = []
    for r in vox + ref:
        if name(r) not in names:
            names.append(name(r))
    vmap, rmap = {name(r): r for r in vox}, {name(r): r for r in ref}
    if names:
        n_runs = sorted({r.get("runs") for r in vox + ref})
        L.append(f"End to end, one speech-to-speech turn of {sorted(steps)[0] if steps else '?'} steps "
                 f"(median of {'/'.join(map(str, n_runs))} runs, min–max; ms unless noted). "
                 "Cells with two numbers are voxrt / liquid-audio.")
        L.append("")
        L.append("| input | audio s | voxrt total | liquid-audio total | speed-up | prefill | encoder | mel | "
                 "first frame | first sample | steps/s | detok |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in names:
            v, r = vmap.get(n), rmap.get(n)
            a = (v or r)["audio_s"]
            pair = lambda k, nd=1: f"{f1(v.get(k) if v else None, nd)} / {f1(r.get(k) if r else None, nd)}"  # noqa: E731
            sp = f"**{r['total_ms_median'] / v['total_ms_median']:.1f}×**" if v and r and v["total_ms_median"] > 0 else "–"
            L.append(f"| {n} | {a:.1f} | {rng(v) if v else '–'} | {rng(r) if r else '–'} | {sp} | {pair('prefill_ms')} | "
                     f"{pair('encoder_ms')} | {pair('mel_ms')} | {pair('first_frame_ms')} | {pair('first_sample_ms')} | "
                     f"{pair('steps_per_s')} | {pair('detok_ms')} |")
        L.append("")
        L.append("liquid-audio is not streaming: its first output sample exists once the detokenizer has run over "
                 "all frames, so its first sample = its total.")
        L.append("")

    # ---- decode vs floor ----
    rows = []
    for r in vox + ref:
        t_b, a_b = tb or r["text_step_bytes"], ab or r["audio_frame_bytes"]
        need = r["text_tokens"] * t_b + r["audio_frames"] * a_b
        floor_ms = need / (bw * 1e9) * 1e3 if bw else None
        gbs = need / (r["decode_ms"] * 1e-3) / 1e9 if r["decode_ms"] > 0 else 0
        pct = 100 * floor_ms / r["decode_ms"] if floor_ms and r["decode_ms"] > 0 else None
        rows.append(f"| {r['engine']} | {name(r)} | {r['text_tokens']} + {r['audio_frames']} | {f1(r['decode_ms'])} | "
                    f"{f1(floor_ms)} | {f1(gbs, 0)} | {f1(pct)} |")
    for p in peer:
        if p.get("status") == "failed" or p.get("text_step_ms") is None:
            continue
        t_b, a_b = tb or p["text_step_bytes"], ab or p["audio_frame_bytes"]
        need = p["text_steps"] * t_b + p["audio_frames"] * a_b
        floor_ms = need / (bw * 1e9) * 1e3 if bw else None
        for label, ms in (("measured", p.get("gen200_ms")), ("68 t + 132 a", p.get("gen200_est_ms"))):
            if ms:
                gbs = need / (ms * 1e-3) / 1e9
                pct = 100 * floor_ms / ms if floor_ms else None
                rows.append(f"| torch peer ({p.get('mode')}, {label}) | – | {p['text_steps']} + {p['audio_frames']} | "
                            f"{f1(ms)} | {f1(floor_ms)} | {f1(gbs, 0)} | {f1(pct)} |")
    if rows:
        L.append("Decode (the generation steps only, detokenizer excluded) against the bandwidth floor:")
        L.append("")
        L.append("| engine | input | text + audio steps | decode ms | floor ms | GB/s | % of floor |")
        L.append("|---|---|---|---|---|---|---|")
        L += rows
        L.append("")

    # ---- torch peer ----
    if peer:
        L.append("PyTorch peer (bench/torch_step_bench.py: static KV/conv state, torch.compile(fullgraph=True), "
                 "each step one CUDA graph, argmax on the GPU), per step at KV length "
                 f"{peer[0].get('context', '?')}:")
        L.append("")
        L.append("| mode | compile | verified | text step ms | audio frame ms | 200 steps est. ms | 200 steps measured ms | "
                 "text GB/s (% floor) | audio GB/s (% floor) |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for p in peer:
            if p.get("status") == "failed":
                err = (p.get("errors") or ["?"])[-1].splitlines()[0][:160]
                L.append(f"| failed | {p.get('compile_mode')} | – | – | – | – | – | – | {err} |")
                continue
            pct = lambda g: f" ({100 * g / bw:.0f} %)" if bw else ""  # noqa: E731
            t_gbs = (tb or p["text_step_bytes"]) / (p["text_step_ms"] * 1e-3) / 1e9
            a_gbs = (ab or p["audio_frame_bytes"]) / (p["audio_frame_ms"] * 1e-3) / 1e9
            ver = "yes" if p.get("verified") else "**NO**"
            ver += f" (cos ≥ {min(p.get('hidden_cos_min', 0), p.get('logits_cos_min', 0)):.4f}, argmax " \
                   f"{p.get('argmax_exact', '?')}+{p.get('argmax_tie', '?')} ties/{p.get('argmax_total', '?')})"
            cm = p.get("compile_mode") if p.get("mode", "").startswith("compiled") else "none"
            L.append(f"| {p.get('mode')} | {cm}{' + coord. descent' if p.get('coordinate_descent_tuning') and cm != 'none' else ''} | "
                     f"{ver} | {p['text_step_ms']:.3f} | {p['audio_frame_ms']:.3f} | {f1(p.get('gen200_est_ms'))} | "
                     f"{f1(p.get('gen200_ms'))} | {t_gbs:,.0f}{pct(t_gbs)} | {a_gbs:,.0f}{pct(a_gbs)} |")
        if vox:
            best = [p for p in peer if p.get("verified") and p.get("gen200_ms")]
            if best:
                b = min(best, key=lambda p: p["gen200_ms"])
                L.append("")
                L.append("voxrt's decode vs the best verified peer (200 steps, measured): " + ", ".join(
                    f"{name(v)} {v['decode_ms']:.1f} ms vs {b['gen200_ms']:.1f} ms "
                    f"(**{b['gen200_ms'] / v['decode_ms']:.2f}×**)" for v in vox if v["decode_ms"] > 0)
                    + f"; the peer runs at KV length {b.get('context')}..{b.get('context', 0) + 200}.")
                per = [v for v in vox if v.get("text_step_ms") and v.get("audio_frame_ms")]
                if per:
                    L.append("")
                    L.append("Per step (voxrt: mean wall time of the turn's text steps and audio-frame steps, host "
                             "round trip included; peer: graph replay): " + ", ".join(
                        f"{name(v)} text {v['text_step_ms']:.3f} vs {b['text_step_ms']:.3f} ms "
                        f"(**{b['text_step_ms'] / v['text_step_ms']:.2f}×**), audio frame {v['audio_frame_ms']:.3f} vs "
                        f"{b['audio_frame_ms']:.3f} ms (**{b['audio_frame_ms'] / v['audio_frame_ms']:.2f}×**)"
                        for v in per) + ".")
        L.append("")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
