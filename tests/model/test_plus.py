"""Plus variants at the model level: the adapter scatter, packing, decoding with scattered prompt embeddings, and
export / import in the reference layout."""

import math

import pytest
import torch

from tests.conftest import TINY_CONFIG
from vita_audio.audio.encoders import tiny_sensevoice
from vita_audio.checkpoint import export_pretrained, load_pretrained
from vita_audio.data.packing import collate_rows
from vita_audio.data.prompt import ASR_PROMPT, PromptBuilder
from vita_audio.inference.decoder import Decoder, _default_stop_ids
from vita_audio.inference.generate import run_decoder
from vita_audio.inference.heads import Heads
from vita_audio.inference.schedule import schedule_steps
from vita_audio.model.adapter import AudioAdapter, scatter_audio
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.loss import IGNORE_INDEX
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.vocab import CONTEXT_OF_AUDIO, END_OF_AUDIO, VITA_AUDIO_PLUS_SPECIALS

CODEBOOK = 32
SR = 16000


def plus_lm(num_modules: int = 2, seed: int = 0) -> VitaAudioLM:
    bb = Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny", special_tokens="audio_markers_plus", seed=seed)
    torch.manual_seed(seed)
    mctp = MCTPStack.for_backbone(bb, num_modules) if num_modules else None
    enc = tiny_sensevoice(seed=seed, output_size=32, linear_units=32, num_blocks=1, tp_blocks=1)
    return VitaAudioLM(bb, mctp, enc, AudioAdapter).eval()


def wav(seconds: float, freq: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    noise = torch.randn(t.numel(), generator=torch.Generator().manual_seed(0))
    return 0.2 * torch.sin(2 * math.pi * freq * t) + 0.01 * noise


@pytest.fixture(scope="module")
def lm() -> VitaAudioLM:
    return plus_lm()


def test_plus_vocabulary_and_adapter_shape(lm):
    assert VITA_AUDIO_PLUS_SPECIALS[VITA_AUDIO_PLUS_SPECIALS.index(END_OF_AUDIO) + 1] == CONTEXT_OF_AUDIO
    v = lm.backbone.audio_vocab
    assert v.context == lm.backbone.tokenizer.convert_tokens_to_ids(CONTEXT_OF_AUDIO) == v.end_of_audio + 1
    a = lm.audio_adapter
    assert [type(m).__name__ for m in (a.pre_proj_layernorm, *a.mlp)] == ["LayerNorm", "Linear", "GELU", "Linear"]
    assert a.mlp[0].weight.shape == (64, 32) and a.mlp[2].weight.shape == (64, 64)
    assert a.mlp[0].bias is None and a.mlp[2].bias is None
    with pytest.raises(ValueError, match="context_of_audio"):
        VitaAudioLM(Backbone(CODEBOOK, config=dict(TINY_CONFIG), tokenizer="tiny"), None, tiny_sensevoice(),
                    AudioAdapter)


def test_scatter_puts_each_frame_at_its_placeholder_only(lm):
    ctx = lm.backbone.audio_vocab.context
    ids = torch.tensor([[5, ctx, ctx, 7, 8], [ctx, 9, 10, ctx, 11]])
    feats = torch.randn(4, 32)
    out = lm.input_embeddings(ids, feats)
    plain = lm.backbone.embed_tokens(ids)
    mapped = lm.audio_adapter(feats)
    where = (ids == ctx).nonzero().tolist()
    assert where == [[0, 1], [0, 2], [1, 0], [1, 3]]
    for i, (b, t) in enumerate(where):
        torch.testing.assert_close(out[b, t], mapped[i])
    keep = ids != ctx
    assert torch.equal(out[keep], plain[keep])
    with pytest.raises(ValueError, match="4 audio placeholder"):
        scatter_audio(plain, ids, ctx, mapped[:3])


def test_placeholders_are_inputs_never_targets(lm):
    builder = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab, [1, 10, 4, 10])
    frames = torch.randn(7, 32)
    codes = torch.arange(12) % CODEBOOK
    ids, labels = builder.build([("user", "<|audio|>"), ("assistant", "hi there\n<|audio|>")], [frames, codes])
    ctx = lm.backbone.audio_vocab.context
    assert ids.count(ctx) == 7 and all(lab == IGNORE_INDEX for i, lab in zip(ids, labels) if i == ctx)
    start = ids.index(ctx)
    v = lm.backbone.audio_vocab
    assert ids[start - 1] == v.begin_of_audio and ids[start + 7] == v.end_of_audio
    # an assistant continuous audio is still never supervised, and an interleaved one is refused
    ids, labels = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab).build(
        [("user", "x"), ("assistant", "<|audio|> ok")], [frames])
    assert ids.count(ctx) == 7 and all(lab == IGNORE_INDEX for i, lab in zip(ids, labels) if i == ctx)
    with pytest.raises(ValueError, match="discrete"):
        builder.build([("user", "x"), ("assistant", "<|audio|>")], [frames])


def _samples(lm, n_frames=(5, 9, 3)):
    builder = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab, [1, 10, 4, 10])
    g = torch.Generator().manual_seed(2)
    out = []
    for i, n in enumerate(n_frames):
        f = torch.randn(n, 32, generator=g)
        codes = torch.randint(0, CODEBOOK, (6 + i,), generator=g)
        ids, labels = builder.build([("user", f"{ASR_PROMPT}\n<|audio|>"), ("assistant", f"answer {i}\n<|audio|>")],
                                    [f, codes])
        out.append((ids, labels, [f]))
    return out


def test_packed_plus_batch_equals_samples_one_by_one(lm):
    samples = _samples(lm)
    T = sum(len(s[0]) for s in samples[:2]) + 3
    batch = collate_rows([samples[:2], samples[2:]], T, pad_id=0, feature_dim=32)
    assert batch["audio_features"].shape == (17, 32)
    with torch.no_grad():
        h0, levels = lm.hidden_states(batch["input_ids"], batch["position_ids"], batch["sample_ids"],
                                      audio_features=batch["audio_features"])
        starts = [(0, 0), (0, len(samples[0][0])), (1, 0)]  # (row, first position) of each sample
        for (row, a), (ids, _, frames) in zip(starts, samples):
            n = len(ids)
            alone_h0, alone_levels = lm.hidden_states(torch.tensor([ids]), audio_features=frames[0])
            torch.testing.assert_close(h0[row, a : a + n], alone_h0[0], rtol=1e-4, atol=1e-5)
            for k, (lv, alone) in enumerate(zip(levels, alone_levels)):
                torch.testing.assert_close(lv[row, a : a + n - k - 1], alone[0], rtol=1e-4, atol=1e-5)
    # an empty Plus batch (text only) still carries an (0, D) feature tensor that leaves the embeddings alone
    text = collate_rows([[([1, 2, 3], [1, 2, 3], [])]], 4, 0, 32)
    assert text["audio_features"].shape == (0, 32)
    assert torch.equal(lm.input_embeddings(text["input_ids"], text["audio_features"]),
                       lm.backbone.embed_tokens(text["input_ids"]))


def _slow(lm, prompt, feats, schedule, max_new):
    """Full recomputation with the features at every step (the oracle's rules)."""
    heads = Heads(lm, _default_stop_ids(lm.backbone.tokenizer), True)
    seq, new, logits = list(prompt), [], []
    in_span = torch.zeros(1, dtype=torch.bool)
    with torch.no_grad():
        for kind, k in schedule_steps(schedule):
            if len(new) >= max_new:
                break
            h0, levels = lm.hidden_states(torch.tensor([seq]), num_levels=0 if kind == "M" else k + 1,
                                          audio_features=feats)
            lg = heads.full(h0[:, -1]) if kind == "M" else heads.mctp(levels[k][:, -1], in_span)
            tok = int(lg.argmax(-1))
            in_span = heads.span_update(in_span, torch.tensor([tok]))
            seq.append(tok), new.append(tok), logits.append(lg)
    return new, logits


@pytest.mark.parametrize("schedule", [[1, 0], [1, 2]])
def test_decoding_a_plus_prompt_equals_full_recompute(lm, schedule):
    builder = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab)
    frames = lm.encode_audio(wav(0.5, 300.0), SR)
    assert frames.shape == (lm.audio_encoder.num_frames(SR // 2), 32)
    prompt = builder.generation_prompt([("user", f"{ASR_PROMPT}\n<|audio|>")], [frames])
    dec = Decoder(lm, [prompt], schedule=schedule, max_new_tokens=8, stop_ids=[], record_logits=True,
                  audio_features=frames, drafting="all")
    out = run_decoder(dec)
    want, want_logits = _slow(lm, prompt, frames, schedule, 8)
    assert out.rows()[0] == want
    for got, ref in zip(out.logits, want_logits):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # a Plus prompt without its frames is refused (the placeholders would be read as plain tokens)
    with pytest.raises(ValueError, match="audio_features"):
        Decoder(lm, [prompt], schedule=schedule, max_new_tokens=8)


def test_export_import_round_trip_in_the_reference_layout(lm, tmp_path):
    from safetensors import safe_open

    out = export_pretrained(lm, tmp_path / "hf", interleave_ratio=[1, 10, 4, 10])
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {"model.audio_projection.pre_proj_layernorm.weight", "model.audio_projection.pre_proj_layernorm.bias",
            "model.audio_projection.mlp.0.weight", "model.audio_projection.mlp.2.weight",
            "model.audio_model.model.embed.weight",
            "model.audio_model.model.encoder.encoders0.0.self_attn.linear_q_k_v.weight",
            "model.audio_model.model.encoder.tp_norm.weight", "mtp_projs.1.weight"} <= keys
    assert (out / "config.yaml").is_file() and (out / "am.mvn").is_file()
    import json

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2MTPSenseVoiceForCausalLM"] and cfg["model_type"] == "qwen2_mtp_sensevoice"
    back = load_pretrained(out)
    assert back.is_plus and back.num_mctp_modules == 2
    assert back.backbone.audio_vocab == lm.backbone.audio_vocab
    own, new = lm.state_dict(), back.state_dict()
    assert set(own) == set(new) and all(torch.equal(own[k], new[k]) for k in own)
    w = wav(0.4, 500.0)
    assert torch.equal(back.encode_audio(w, SR), lm.encode_audio(w, SR))  # CMVN and config came back too
    assert back.audio_encoder.identity == lm.audio_encoder.identity.replace(lm.audio_encoder.label, "sensevoice")
    assert not any(p.requires_grad for p in back.audio_encoder.parameters())
    ids, _, frames = _samples(lm)[0]
    with torch.no_grad():
        a, la = lm(torch.tensor([ids]), audio_features=frames[0])
        b, lb = back(torch.tensor([ids]), audio_features=frames[0])
    assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(la, lb))
    # Plus-Vanilla (no MCTP) exports as the reference's mtp0 Plus config
    v = export_pretrained(plus_lm(num_modules=0), tmp_path / "vanilla")
    assert json.loads((v / "config.json").read_text())["num_nextn_predict_layers"] == 0
    assert load_pretrained(v).is_plus
    (v / "am.mvn").unlink()
    with pytest.raises(FileNotFoundError, match="am.mvn"):
        load_pretrained(v)
