"""Proof that a generated checkpoint has the published layout: the official loaders take it as it is.

    /opt/venvs/ref/bin/python -m pytest tools/reference/test_layout.py -q
    VOXRT_FULL_CKPT=/data/lfm25-random /opt/venvs/ref/bin/python -m pytest tools/reference/test_layout.py -q

Tiny: tests/data/tiny/model (override with VOXRT_TINY_CKPT). Full: only when VOXRT_FULL_CKPT is set.

accelerate.load_checkpoint_in_model (what LFM2AudioModel.from_pretrained calls) uses strict=False:
missing keys silently keep their random init and unexpected keys only log a warning. So this test
compares the model's state_dict key set, shapes and dtypes against the file itself, and checks that
every loaded tensor equals the file's tensor.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from liquid_audio import LFM2AudioModel, LFM2AudioProcessor  # noqa: E402

from make_checkpoint import build_detokenizer_from_dir  # noqa: E402

TINY = Path(os.environ.get("VOXRT_TINY_CKPT", REPO / "tests" / "data" / "tiny" / "model"))
FULL = os.environ.get("VOXRT_FULL_CKPT")

CKPTS = [pytest.param(TINY, id="tiny")]
CKPTS.append(pytest.param(Path(FULL) if FULL else None, id="full",
                          marks=pytest.mark.skipif(not FULL, reason="set VOXRT_FULL_CKPT to test the full checkpoint")))


def file_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("ckpt", CKPTS)
def test_main_model_layout(ckpt: Path) -> None:
    # Path, not str: liquid_audio.utils.get_model_dir sends a str to huggingface_hub.snapshot_download.
    model = LFM2AudioModel.from_pretrained(Path(ckpt), device="cpu").eval()
    ftensors = file_tensors(ckpt / "model.safetensors")
    sd = model.state_dict()
    missing = sorted(set(sd) - set(ftensors))
    unexpected = sorted(set(ftensors) - set(sd))
    assert not missing, f"keys the model has but the file lacks: {missing[:10]}"
    assert not unexpected, f"keys in the file the model does not have: {unexpected[:10]}"
    for k, v in sd.items():
        f = ftensors[k]
        assert tuple(f.shape) == tuple(v.shape), k
        if torch.is_floating_point(v):
            assert f.dtype == torch.bfloat16, (k, f.dtype)
            assert v.dtype == torch.bfloat16, (k, v.dtype)  # from_pretrained default dtype
        else:
            assert f.dtype == v.dtype, (k, f.dtype, v.dtype)
        assert torch.equal(f, v), f"loaded tensor differs from file: {k}"
    # tied tensors: the file stores the tied copy, identical to the embedding
    for k in ftensors:
        if k.startswith("depth_embeddings.") and k.endswith("to_logits.weight"):
            assert torch.equal(ftensors[k], ftensors[k.replace("to_logits", "embedding")]), k
    # the buffers the code defines must carry their defined values
    assert torch.equal(ftensors["codebook_offsets"], torch.arange(8) * 2049)
    # config round trip: every key is consumed by the dataclasses
    cfg = json.loads((ckpt / "config.json").read_text())
    assert model.conf.codebooks == cfg["codebooks"] == 8
    assert model.audio_vocab_size == 2049


@pytest.mark.parametrize("ckpt", CKPTS)
def test_processor_and_detokenizer(ckpt: Path) -> None:
    proc = LFM2AudioProcessor.from_pretrained(Path(ckpt), device="cpu").eval()
    tok = proc.text
    ids = {t: tok.convert_tokens_to_ids(t) for t in
           ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
            "<|audio_start|>", "<|text_start|>", "<|text_end|>"]}
    assert ids == {"<|pad|>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2, "<|im_start|>": 6, "<|im_end|>": 7,
                   "<|audio_start|>": 128, "<|text_start|>": 129, "<|text_end|>": 130}
    assert tok.encode("<|startoftext|>", add_special_tokens=False) == [1]
    cfg = json.loads((ckpt / "config.json").read_text())
    assert len(tok) == cfg["lfm"]["vocab_size"]
    assert proc.detokenizer_path is not None
    # The official property hard-codes .cuda(); build it through the same classes on CPU instead.
    detok = build_detokenizer_from_dir(Path(proc.detokenizer_path), "cpu")  # load_state_dict strict=True
    ftensors = file_tensors(ckpt / "audio_detokenizer" / "model.safetensors")
    sd = detok.state_dict()
    assert set(sd) == set(ftensors)
    for k, v in sd.items():
        assert v.dtype == torch.float32, k  # detokenizer runs in fp32
        assert torch.equal(ftensors[k].float(), v), k
    # the ISTFT window is the persistent Hann buffer (bf16-rounded by storage)
    assert torch.equal(ftensors["istft.window"], torch.hann_window(1280).bfloat16())
    dcfg = json.loads((ckpt / "audio_detokenizer" / "config.json").read_text())
    assert detok.sliding_window_size == dcfg["sliding_window"] == 30
    if torch.cuda.is_available():
        official = proc.audio_detokenizer
        assert set(official.state_dict()) == set(ftensors)
