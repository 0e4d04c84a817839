#!/usr/bin/env python3
"""Build a random-weight LFM2.5-Audio checkpoint in the published layout, with the official classes.

    python tools/reference/make_checkpoint.py --size tiny --out tests/data/tiny/model --seed 0
    python tools/reference/make_checkpoint.py --size full --out /data/lfm25-random --seed 0

Writes
    OUT/config.json                      every key LFM2AudioModel.from_pretrained / LFM2AudioProcessor read
    OUT/model.safetensors                bf16, official state-dict names (tied tensors stored as copies)
    OUT/tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja
                                         (from tools/reference/make_tokenizer.py, not ours)
    OUT/audio_detokenizer/config.json    llama.cpp-compatible Lfm2 config ("sliding_attention" layers)
    OUT/audio_detokenizer/model.safetensors   bf16
    OUT/checkpoint_info.json             seed, sizes, versions (not read by any loader)

The weights are the modules' own random inits (torch.manual_seed(seed) before construction), plus
(see perturb_constant_tensors) noise on every tensor that the inits leave constant (norm weights = 1,
biases/pos_bias = 0, BatchNorm running stats), so that a C++ implementation that ignores such a tensor
fails the parity tests instead of passing by accident.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from transformers import Lfm2Config  # noqa: E402

from liquid_audio.detokenizer import LFM2AudioDetokenizer  # noqa: E402
from liquid_audio.model.conformer.encoder import ConformerEncoderConfig  # noqa: E402
from liquid_audio.model.lfm2_audio import DepthformerConfig, LFM2AudioConfig, LFM2AudioModel  # noqa: E402
from liquid_audio.processor import PreprocessorConfig  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------------

PREPROCESSOR = dict(sample_rate=16000, normalize="per_feature", window_size=0.025, window_stride=0.01,
                    window="hann", features=128, n_fft=512, log=True, frame_splicing=1, dither=1e-5,
                    pad_to=0, pad_value=0.0)

FULL_LAYER_TYPES = ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv",
                    "full_attention", "conv", "full_attention", "conv", "full_attention", "conv",
                    "full_attention", "conv"]


def lfm_block(size: str) -> dict:
    """The `lfm` block of config.json (kwargs of transformers.Lfm2Config)."""
    common = dict(model_type="lfm2", conv_bias=False, conv_L_cache=3, norm_eps=1e-5, rope_theta=1000000.0,
                  block_auto_adjust_ff_dim=True, block_ffn_dim_multiplier=1.0, initializer_range=0.02,
                  pad_token_id=0, bos_token_id=1, eos_token_id=7, tie_embedding=True, use_cache=True,
                  max_position_embeddings=128000)
    if size == "full":
        return dict(common, vocab_size=65536, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, intermediate_size=12288, block_multiple_of=256,
                    layer_types=FULL_LAYER_TYPES)
    # tiny: effective FFN = 64 * ceil(int(2*192/3) / 64) = 128. initializer_range 1/sqrt(64) gives the
    # tiny backbone the unit-gain linears that 0.02 gives at width 2048 (with 0.02 at width 64 every
    # layer is ~6x too weak and greedy decoding just repeats its input token).
    return dict(common, vocab_size=2048, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                initializer_range=0.125,
                num_key_value_heads=2, intermediate_size=192, block_multiple_of=64,
                layer_types=["conv", "full_attention", "conv", "full_attention"])


def encoder_block(size: str) -> dict:
    full = size == "full"
    return dict(feat_in=128, feat_out=-1, n_layers=17 if full else 2, d_model=512 if full else 64,
                subsampling="dw_striding", subsampling_factor=8,
                subsampling_conv_channels=256 if full else 16, causal_downsampling=False, reduction=None,
                reduction_position=None, reduction_factor=1, ff_expansion_factor=4,
                self_attention_model="rel_pos", n_heads=8 if full else 4, att_context_size=[-1, -1],
                xscaling=False, untie_biases=True, pos_emb_max_len=5000, conv_kernel_size=9,
                conv_norm_type="batch_norm", conv_context_size=None, dropout=0.1, dropout_pre_encoder=0.1,
                dropout_emb=0.0, dropout_att=0.1)


def main_config(size: str) -> dict:
    full = size == "full"
    return dict(
        architectures=["Lfm2AudioForConditionalGeneration"],
        codebooks=8,
        tie_audio_embeddings=False,
        semantic_codebook_factor=100.0,
        codebook_weight="log",
        interleaved_n_text=6,
        interleaved_n_audio=12,
        preprocessor=dict(PREPROCESSOR),
        encoder=encoder_block(size),
        lfm=lfm_block(size),
        depthformer=dict(layers=6 if full else 2, dim=1024 if full else 64, tie=True),
    )


def detok_config(size: str) -> dict:
    """audio_detokenizer/config.json, in the llama.cpp-compatible form that processor.py renames."""
    full = size == "full"
    common = dict(architectures=["Lfm25AudioTokenizer"], model_type="lfm2", hidden_size=512,
                  num_attention_heads=16, num_key_value_heads=8, conv_bias=False, conv_L_cache=3,
                  norm_eps=1e-5, rope_theta=1000000.0, block_auto_adjust_ff_dim=True,
                  block_ffn_dim_multiplier=1.0, max_position_embeddings=4096, sliding_window=30,
                  output_size=1282, initializer_range=0.02, tie_embedding=True, use_cache=False,
                  pad_token_id=0, bos_token_id=1, eos_token_id=7)
    if full:
        return dict(common, vocab_size=65536, num_hidden_layers=8, intermediate_size=3328, block_multiple_of=256,
                    layer_types=["conv", "conv", "sliding_attention", "conv", "sliding_attention", "conv",
                                 "sliding_attention", "conv"])
    # tiny: effective FFN = 64 * ceil(int(2*96/3) / 64) = 64; embed_tokens (unused) [64, 512]
    return dict(common, vocab_size=64, num_hidden_layers=2, intermediate_size=96, block_multiple_of=64,
                layer_types=["conv", "sliding_attention"])


# --------------------------------------------------------------------------------------------------
# Construction (mirrors LFM2AudioModel.from_pretrained / LFM2AudioProcessor.audio_detokenizer)
# --------------------------------------------------------------------------------------------------

def parse_main_config(config: dict) -> LFM2AudioConfig:
    """Exactly what LFM2AudioModel.from_pretrained does with config.json."""
    config = json.loads(json.dumps(config))
    return LFM2AudioConfig(
        lfm=Lfm2Config(**config.pop("lfm")),
        encoder=ConformerEncoderConfig(**config.pop("encoder")),
        depthformer=DepthformerConfig(**config.pop("depthformer")),
        **config,
    )


def detok_lfm_config(config: dict) -> Lfm2Config:
    """What LFM2AudioProcessor.audio_detokenizer does with audio_detokenizer/config.json
    (Lfm2Config.from_pretrained, then "sliding_attention" -> "full_attention")."""
    cfg = Lfm2Config(**json.loads(json.dumps(config)))
    cfg.layer_types = ["full_attention" if t == "sliding_attention" else t for t in cfg.layer_types]
    return cfg


def build_detokenizer_from_dir(detok_dir: Path, device: str = "cpu") -> LFM2AudioDetokenizer:
    """CPU-capable copy of LFM2AudioProcessor.audio_detokenizer (which hard-codes .cuda()).

    Same classes, same order: Lfm2Config.from_pretrained(config.json), layer rename, construct, eval,
    move, load_state_dict(load_file(model.safetensors)) with the default strict=True."""
    from safetensors.torch import load_file

    detok_config = Lfm2Config.from_pretrained(detok_dir / "config.json")
    detok_config.layer_types = ["full_attention" if t == "sliding_attention" else t
                                for t in detok_config.layer_types]
    detok = LFM2AudioDetokenizer(detok_config).eval().to(device)
    detok.load_state_dict(load_file(detok_dir / "model.safetensors"))  # strict=True (default)
    detok.eval()
    return detok


def perturb_constant_tensors(module: torch.nn.Module, gen: torch.Generator, skip: tuple[str, ...] = ()) -> list[str]:
    """Give every floating state-dict tensor that the init left constant a seeded random value.

    all ones  (norm weights, BatchNorm running_var) -> 1 + 0.1 * N(0,1)    (running_var: U(0.5, 1.5))
    all zeros (biases, pos_bias_u/v, running_mean)  -> 0.1 * N(0,1)
    Tensors in `skip` (e.g. the ISTFT window) are left alone. Returns the names touched."""
    touched = []
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if any(s in name for s in skip) or not torch.is_floating_point(t) or t.numel() == 0:
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif bool((t == 1).all()):
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=gen))
            elif bool((t == 0).all()):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            else:
                continue
            touched.append(name)
    return touched


def sparsify_(w: torch.Tensor, gen: torch.Generator, density: float) -> None:
    """Overwrite w with N(0,1) values at a random `density` fraction of entries, zeros elsewhere."""
    with torch.no_grad():
        keep = torch.rand(w.shape, generator=gen) < density
        w.copy_(torch.randn(w.shape, generator=gen) * keep)


def state_dict_for_file(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """state_dict with tied tensors stored as separate copies (safetensors refuses shared storage;
    the published file stores depth_embeddings.k.to_logits.weight next to .embedding.weight)."""
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach()
        if torch.is_floating_point(v):
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "full"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detok-density", type=float, default=1 / 32,
                    help="tiny only: fraction of nonzero entries of the detokenizer emb.emb table and of "
                         "the unused audio_embedding.to_logits table")
    args = ap.parse_args()

    from safetensors.torch import save_file
    from make_tokenizer import build_tokenizer

    out = Path(args.out)
    (out / "audio_detokenizer").mkdir(parents=True, exist_ok=True)

    # ---- main model ----
    cfg_json = main_config(args.size)
    conf = parse_main_config(cfg_json)
    torch.manual_seed(args.seed)
    model = LFM2AudioModel(conf).eval()
    gen = torch.Generator().manual_seed(args.seed + 1000)
    touched = perturb_constant_tensors(model, gen)
    if args.size == "tiny":
        # audio_embedding.to_logits is never used by the official code (tie_audio_embeddings=False, no
        # caller of get_logits): sparse like emb.emb below, so git compresses it.
        sparsify_(model.audio_embedding.to_logits.weight, gen, args.detok_density)
    sd = state_dict_for_file(model, torch.bfloat16)
    (out / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    n_params = sum(v.numel() for k, v in sd.items())
    del model, sd

    # ---- detokenizer ----
    dcfg_json = detok_config(args.size)
    torch.manual_seed(args.seed + 1)
    detok = LFM2AudioDetokenizer(detok_lfm_config(dcfg_json)).eval()
    gen = torch.Generator().manual_seed(args.seed + 2000)
    d_touched = perturb_constant_tensors(detok, gen, skip=("istft.window",))
    if args.size == "tiny":
        # Sparse-random FusedEmbedding table: ~density of the entries nonzero, N(0,1), so git compresses it.
        sparsify_(detok.emb.emb.weight, gen, args.detok_density)
    dsd = state_dict_for_file(detok, torch.bfloat16)
    (out / "audio_detokenizer" / "config.json").write_text(json.dumps(dcfg_json, indent=2) + "\n")
    save_file(dsd, str(out / "audio_detokenizer" / "model.safetensors"), metadata={"format": "pt"})
    d_params = sum(v.numel() for v in dsd.values())
    del detok, dsd

    # ---- tokenizer (owned by make_tokenizer.py) ----
    build_tokenizer(str(out), cfg_json["lfm"]["vocab_size"])

    import liquid_audio  # noqa: F401
    from importlib.metadata import version
    info = dict(size=args.size, seed=args.seed, detok_density=args.detok_density if args.size == "tiny" else 1.0,
                params_main=n_params, params_detok=d_params, perturbed_main=touched, perturbed_detok=d_touched,
                versions={p: version(p) for p in ["liquid-audio", "torch", "transformers", "accelerate",
                                                  "safetensors", "tokenizers"]},
                command=" ".join(sys.argv))
    (out / "checkpoint_info.json").write_text(json.dumps(info, indent=1) + "\n")
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>14,d}  {p.relative_to(out)}")
    print(f"params: main {n_params:,d}  detok {d_params:,d}")


if __name__ == "__main__":
    main()
