"""GLM-4-Voice tokenizer: a tiny random checkpoint in the published format loads and tokenizes at 12.5 codes/s,
matches a slow reference built from transformers' Whisper layers, and bad directories give named errors."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vita_audio.audio.glm4voice import Glm4VoiceTokenizer, WhisperVQConfig
from vita_audio.audio.glm4voice.whisper_vq import required_names

from .conftest import speechlike
from .glm4voice_fixtures import TINY_TOKENIZER, write_tiny_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return write_tiny_tokenizer(tmp_path_factory.mktemp("glm_tok") / "glm-4-voice-tokenizer")


@pytest.fixture(scope="module")
def tok(tok_dir):
    return Glm4VoiceTokenizer(tok_dir)


def _wav(seconds, seed=0, sr=16000):
    return torch.from_numpy(speechlike(seconds, seed=seed, sr=sr))


# -- the published names --------------------------------------------------------------------------------------
def test_parameter_names_are_the_published_whisper_ones():
    cfg = WhisperVQConfig.from_dict(dict(TINY_TOKENIZER, quantize_position=3, pooling_position=3, encoder_layers=5))
    names = set(required_names(cfg))
    layer = {"self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
             "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
             "self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight",
             "fc2.bias", "final_layer_norm.weight", "final_layer_norm.bias"}
    want = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "embed_positions.weight", "codebook.weight",
            "embed_positions2.weight", *(f"layers.{i}.{n}" for i in range(3) for n in layer)}
    assert names == want  # no k_proj bias, nothing past the quantiser, no final layer_norm


# -- shapes, rates, determinism -------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [0.02, 1.0, 2.96, 4.0])
def test_rate_and_range(tok, seconds):
    ids = tok.encode(_wav(seconds), 16000)
    assert ids.dtype == torch.long and ids.shape == (math.ceil(seconds * 16000 / 1280),)
    assert 0 <= int(ids.min()) and int(ids.max()) < 16384
    assert tok.frame_rate == 12.5 and tok.codebook_size == 16384


def test_deterministic_and_batched_equals_single(tok):
    wavs = [_wav(1.3, 1), _wav(0.4, 2), _wav(2.0, 3)]
    single = [tok.encode(w, 16000) for w in wavs]
    assert all(torch.equal(a, tok.encode(w, 16000)) for a, w in zip(single, wavs))
    batched = tok.encode_batch(wavs, 16000)
    assert all(torch.equal(a, b) for a, b in zip(single, batched))
    assert len(set(single[2].tolist())) > 3  # random weights still spread over the codebook


def test_longer_than_30s_is_cut_into_segments(tok):
    wav = _wav(31.0, 4)
    ids = tok.encode(wav, 16000)
    assert ids.shape == (375 + 13,)  # 30 s = 375 codes, then 1 s = ceil(12.5)
    head = tok.encode(wav[:30 * 16000], 16000)
    tail = tok.encode(wav[30 * 16000:], 16000)
    assert torch.equal(ids, torch.cat([head, tail]))


def test_silence_and_other_rates(tok):
    assert tok.encode(torch.zeros(16000), 16000).shape == (13,)
    ids = tok.encode(_wav(1.0, 5, sr=22050), 22050)  # resampled to 16 kHz first
    assert ids.shape == (13,)
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(torch.full((1600,), float("nan")), 16000)


# -- against a slow reference ---------------------------------------------------------------------------------
def _reference_ids(tok_dir, features, frame_mask):
    """The published forward, written out plainly on transformers' WhisperEncoderLayer with the weights read by
    their published names (block-causal mask as tril | block_diag, pooling as a reshape-mean)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

    raw = json.loads((tok_dir / "config.json").read_text())
    w = {k.removeprefix("model.encoder."): v for k, v in load_file(str(tok_dir / "model.safetensors")).items()}
    wc = WhisperConfig(d_model=raw["d_model"], encoder_attention_heads=raw["encoder_attention_heads"],
                       encoder_ffn_dim=raw["encoder_ffn_dim"], activation_function="gelu", dropout=0.0,
                       attention_dropout=0.0, activation_dropout=0.0)
    wc._attn_implementation = "eager"

    def causal_conv(x, name, stride):
        return F.conv1d(F.pad(x, (2, 0)), w[f"{name}.weight"], w[f"{name}.bias"], stride=stride)

    x = F.gelu(causal_conv(features, "conv1", 1))
    x = F.gelu(causal_conv(x, "conv2", 2)).transpose(1, 2)
    T = x.shape[1]
    x = x + w["embed_positions.weight"][:T]
    mask = frame_mask[:, ::2]

    def bias(mask, block):
        n = mask.shape[1]
        blocks = torch.block_diag(*[torch.ones(min(block, n - s), min(block, n - s)) for s in range(0, n, block)])
        allowed = (torch.tril(torch.ones(n, n)) + blocks).bool()[None] & mask.bool()[:, None, :]
        return ((~allowed).float() * torch.finfo(torch.float32).min)[:, None]

    b = bias(mask, raw["quantize_causal_block_size"])
    for i in range(raw["quantize_position"]):
        layer = WhisperEncoderLayer(wc)
        layer.load_state_dict({k[len(f"layers.{i}."):]: v for k, v in w.items() if k.startswith(f"layers.{i}.")})
        out = layer(x, b, layer_head_mask=None) if "layer_head_mask" in layer.forward.__code__.co_varnames \
            else layer(x, b)
        x = out[0] if isinstance(out, tuple) else out
        if i + 1 == raw["pooling_position"]:
            k = raw["pooling_kernel_size"]
            x = x.view(x.shape[0], -1, k, x.shape[-1]).mean(2)
            mask = mask[:, ::k]
            b = bias(mask, raw["quantize_causal_block_size"] // k)
    code = w["codebook.weight"]
    ids = torch.stack([torch.stack([((v - code) ** 2).sum(-1).argmin() for v in row]) for row in x])
    return ids, mask.bool()


@pytest.mark.parametrize("block,layout", [(200, "published"), (8, "full")])  # one 4 s block / many 160 ms blocks
def test_matches_the_slow_reference(tmp_path, block, layout):
    tok_dir = write_tiny_tokenizer(tmp_path / "tok", seed=block, layout=layout, quantize_causal_block_size=block)
    tok = Glm4VoiceTokenizer(tok_dir)
    feats, masks = zip(*[tok.features(_wav(s, 6).numpy()) for s in (2.2, 1.0)])
    x = torch.zeros(2, 128, feats[0].shape[-1])
    m = torch.zeros(2, feats[0].shape[-1], dtype=torch.long)
    for i, (f, k) in enumerate(zip(feats, masks)):
        x[i, :, :f.shape[-1]], m[i, :k.shape[-1]] = f, k
    ids, keep = tok.model(x, m)
    ref_ids, ref_keep = _reference_ids(tok_dir, x, m)
    assert torch.equal(keep, ref_keep)
    assert torch.equal(ids[keep], ref_ids[ref_keep])


# -- directories ----------------------------------------------------------------------------------------------
def test_bad_directories_name_what_is_missing(tok_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        Glm4VoiceTokenizer(tmp_path / "nowhere")
    for missing in ("config.json", "model.safetensors", "preprocessor_config.json"):
        d = write_tiny_tokenizer(tmp_path / missing)
        (d / missing).unlink()
        with pytest.raises(FileNotFoundError, match=missing.split(".")[0]):
            Glm4VoiceTokenizer(d)
    for layout, name in (("published", "layers.1.fc2.weight"), ("full", "model.encoder.layers.1.fc2.weight")):
        d = write_tiny_tokenizer(tmp_path / f"partial_{layout}", layout=layout)
        with safe_open(str(d / "model.safetensors"), framework="pt") as f:
            kept = {k: f.get_tensor(k) for k in f.keys() if k != name}
        save_file(kept, str(d / "model.safetensors"))
        with pytest.raises(ValueError, match=rf"1 encoder tensors missing .*\({re.escape(name)}\)"):
            Glm4VoiceTokenizer(d)
    d = write_tiny_tokenizer(tmp_path / "shape", d_model=24, encoder_attention_heads=2)
    raw = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**raw, "d_model": 16}))
    with pytest.raises(ValueError, match="has shape"):
        Glm4VoiceTokenizer(d)
    with pytest.raises(ValueError, match="audio.codebook_size"):
        Glm4VoiceTokenizer(tok_dir, expected_codebook_size=2048)


def test_both_layouts_give_the_same_ids_and_unused_tensors_are_not_required(tok, tok_dir, tmp_path):
    """The published file (bare WhisperVQEncoder names + EMA buffers) and a full training checkpoint
    (`model.encoder.*` + later layers, final norm, decoder) of the same weights tokenize identically."""
    full = write_tiny_tokenizer(tmp_path / "full", layout="full")
    published, whole = load_file(str(tok_dir / "model.safetensors")), load_file(str(full / "model.safetensors"))
    needed = set(required_names(tok.model.cfg))
    assert not any(k.startswith("model.") for k in published) and {"ema_count", "ema_weight"} <= set(published)
    assert needed < set(published) and len(whole) > len(needed) + 2
    assert "model.encoder.layers.2.fc1.weight" in whole and "model.decoder.embed_tokens.weight" in whole
    wav = _wav(1.5, 7)
    assert torch.equal(Glm4VoiceTokenizer(full).encode(wav, 16000), tok.encode(wav, 16000))
    with pytest.raises(ValueError, match="layout"):
        write_tiny_tokenizer(tmp_path / "bad", layout="sharded")
