"""GLM-4-Voice decoder: config.yaml read as data, flow.pt / hift.pt with their published names, 22,050 Hz out,
streaming equal to offline with a flat per-chunk cost and close to a whole-utterance decode (stated log-mel bounds
that broken streaming exceeds), and named errors for bad directories."""

from __future__ import annotations

import copy

import pytest
import torch

from vita_audio.audio.glm4voice import FlowConfig, FlowModel, Glm4VoiceDetokenizer, HiFTConfig, HiFTGenerator
from vita_audio.audio.glm4voice.decoder import position_noise
from vita_audio.audio.glm4voice.yaml_config import load_plain_yaml, plain, section

from .conftest import log_mel_distance
from .glm4voice_fixtures import write_tiny_decoder

CHUNK, CONTEXT = 10, 20
#: stream vs `decode_whole` (47 codes, chunk 10, context 20, the ideal estimator below), as mean |difference| of
#: the flow's log-mel frames and as `log_mel_distance` of the audio. Measured: 0.030 and 0.024. Broken rules:
#: chunks through the flow without context (context_tokens=0) 0.060 on the flow's frames; HiFT blocks without
#: context (vocoder_context=0) 0.075 and a source phase restarted at every vocoder call 0.26 on the audio.
FLOW_BOUND, AUDIO_BOUND = 0.045, 0.045


@pytest.fixture(scope="module")
def dec_dir(tmp_path_factory):
    return write_tiny_decoder(tmp_path_factory.mktemp("glm_dec") / "glm-4-voice-decoder")


@pytest.fixture(scope="module")
def det(dec_dir):
    return Glm4VoiceDetokenizer(dec_dir, n_timesteps=2, chunk_tokens=CHUNK, context_tokens=CONTEXT)


@pytest.fixture(scope="module")
def codes():
    return torch.randint(0, 16384, (47,), generator=torch.Generator().manual_seed(0))


# -- the published names (default = the GLM-4-Voice decoder's geometry, built on the meta device) ------------
FLOW_NAMES = {
    "input_embedding.weight": (16384, 512), "spk_embed_affine_layer.weight": (80, 192),
    "encoder.embed.out.0.weight": (512, 512), "encoder.embed.out.1.bias": (512,),
    "encoder.encoders.5.self_attn.pos_bias_u": (8, 64), "encoder.encoders.0.self_attn.linear_pos.weight": (512, 512),
    "encoder.encoders.0.self_attn.linear_k.bias": (512,), "encoder.encoders.3.feed_forward.w_1.weight": (2048, 512),
    "encoder.encoders.0.norm_mha.weight": (512,), "encoder.encoders.0.norm_ff.bias": (512,),
    "encoder.after_norm.weight": (512,), "encoder_proj.weight": (80, 512),
    "length_regulator.model.0.weight": (80, 80, 3), "length_regulator.model.10.bias": (80,),
    "length_regulator.model.12.weight": (80, 80, 1),
    "decoder.estimator.time_mlp.linear_1.weight": (1024, 320), "decoder.estimator.time_mlp.linear_2.weight": (1024, 1024),
    "decoder.estimator.down_blocks.0.0.mlp.1.weight": (256, 1024),
    "decoder.estimator.down_blocks.0.0.block1.block.0.weight": (256, 320, 3),
    "decoder.estimator.down_blocks.0.0.block1.block.1.weight": (256,),
    "decoder.estimator.down_blocks.0.0.res_conv.weight": (256, 320, 1),
    "decoder.estimator.down_blocks.0.1.3.attn1.to_q.weight": (512, 256),
    "decoder.estimator.down_blocks.0.1.0.attn1.to_out.0.bias": (256,),
    "decoder.estimator.down_blocks.0.1.0.ff.net.0.proj.weight": (1024, 256),
    "decoder.estimator.down_blocks.0.1.0.ff.net.2.weight": (256, 1024),
    "decoder.estimator.down_blocks.0.1.0.norm3.weight": (256,),
    "decoder.estimator.down_blocks.0.2.conv.weight": (256, 256, 3), "decoder.estimator.down_blocks.1.2.weight": (256, 256, 3),
    "decoder.estimator.mid_blocks.11.1.3.norm1.weight": (256,),
    "decoder.estimator.up_blocks.0.0.block1.block.0.weight": (256, 512, 3),
    "decoder.estimator.up_blocks.0.2.conv.weight": (256, 256, 4), "decoder.estimator.up_blocks.1.2.weight": (256, 256, 3),
    "decoder.estimator.final_block.block.0.weight": (256, 256, 3), "decoder.estimator.final_proj.weight": (80, 256, 1),
}
HIFT_NAMES = {
    "m_source.l_linear.weight": (1, 9), "conv_pre.weight_g": (512, 1, 1), "conv_pre.weight_v": (512, 80, 7),
    "ups.0.weight_v": (512, 256, 16), "ups.0.weight_g": (512, 1, 1), "ups.1.bias": (128,),
    "source_downs.0.weight": (256, 18, 16), "source_downs.1.weight": (128, 18, 1),
    "source_resblocks.1.convs1.2.weight_v": (128, 128, 11), "source_resblocks.0.activations2.2.alpha": (256,),
    "resblocks.5.convs2.0.weight_v": (128, 128, 11), "resblocks.0.convs1.0.weight_v": (256, 256, 3),
    "conv_post.weight_v": (18, 128, 7), "f0_predictor.condnet.0.weight_v": (512, 80, 3),
    "f0_predictor.condnet.8.weight_g": (512, 1, 1), "f0_predictor.classifier.weight": (1, 512),
}


def test_parameter_names_and_shapes_are_the_published_ones():
    with torch.device("meta"):
        flow, hift = FlowModel(FlowConfig()), HiFTGenerator(HiFTConfig())
    for module, names in ((flow, FLOW_NAMES), (hift, HIFT_NAMES)):
        shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert {k: shapes.get(k) for k in names} == names
    assert len(hift.resblocks) == 6 and len(flow.decoder.estimator.mid_blocks) == 12
    assert not [k for k in hift.state_dict() if "window" in k]  # no buffers that the published file lacks


# -- config.yaml as data --------------------------------------------------------------------------------------
def test_config_yaml_is_data_and_tags_do_nothing(dec_dir, tmp_path):
    data = load_plain_yaml(dec_dir / "config.yaml")
    flow = plain(section(data, "flow", "x"))
    assert flow["spk_embed_dim"] == 8 and flow["encoder"]["block_size"] == 10  # !ref resolved, !new: dropped
    assert plain(section(data, "hift", "x"))["sampling_rate"] == 22050
    assert data["flow"]["__tag__"] == "!new:cosyvoice.flow.flow.MaskedDiffWithXvec"
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"a: !apply:os.system ['touch {marker}']\nb: !!python/object/apply:os.system ['touch {marker}']\n"
                    f"flow: !new:os.system\n    command: touch {marker}\n")
    load_plain_yaml(evil)
    assert not marker.exists()


def test_published_config_sections_and_unsupported_variants(dec_dir):
    data = load_plain_yaml(dec_dir / "config.yaml")
    # the published file's `llm:` section is data too (tags kept, references resolved) and is never read
    assert data["llm"]["text_encoder"]["__tag__"] == "!new:cosyvoice.transformer.encoder.ConformerEncoder"
    assert data["llm"]["llm_input_size"] == 16 and data["__set_seed3"]["__tag__"] == "!apply:torch.manual_seed"
    flow = plain(section(data, "flow", "x"))
    assert FlowConfig.from_yaml(flow).enc_block_size == 10
    for path, value, field in ((("encoder", "normalize_before"), False, "normalize_before"),
                               (("decoder", "estimator", "act_fn"), "snake", "act_fn"),
                               (("encoder", "input_size"), 24, "input_size")):
        bad = copy.deepcopy(flow)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValueError, match=field):
            FlowConfig.from_yaml(bad)


# -- forward semantics against plain formulas --------------------------------------------------------------------
def test_length_regulator_is_nearest_neighbour():
    """GLM-4-Voice's CosyVoice fork resamples tokens to mel frames by nearest neighbour: frame f takes token
    floor(f * n / frames), before the conv stack."""
    from vita_audio.audio.glm4voice.flow import InterpolateRegulator

    torch.manual_seed(0)
    reg = InterpolateRegulator(FlowConfig(lr_channels=4)).eval()
    h = torch.randn(1, 7, 4)
    frames = 48
    idx = torch.div(torch.arange(frames) * 7, frames, rounding_mode="floor")
    with torch.no_grad():
        assert torch.allclose(reg(h, frames), reg.model(h[:, idx].transpose(1, 2)), atol=1e-6)


def test_block_rel_pos_attention_matches_the_formula():
    """score(i, j) = ((q_i + u) . k_j + (q_i + v) . p(i - j)) / sqrt(d_k), p(r) = linear_pos(sinusoid at offset r),
    allowed when j <= i or i, j share a block (the ESPnet rel_shift spelled out)."""
    from vita_audio.audio.glm4voice.flow import RelPosBlockAttention, block_grid, rel_positions

    torch.manual_seed(0)
    T, D, H, blk = 9, 8, 2, 4
    att = RelPosBlockAttention(H, D, key_bias=True)
    with torch.no_grad():
        att.pos_bias_u.normal_()
        att.pos_bias_v.normal_()
    x = torch.randn(1, T, D)
    pos = rel_positions(T, D, x.device, x.dtype)  # offsets T-1 .. -(T-1)
    allowed = block_grid(T, blk, x.device)
    with torch.no_grad():
        got = att(x, pos, allowed[None, None])
        dk = D // H
        q = att.linear_q(x).view(T, H, dk)
        k, v = att.linear_k(x).view(T, H, dk), att.linear_v(x).view(T, H, dk)
        p = att.linear_pos(pos[0]).view(2 * T - 1, H, dk)
        scores = torch.empty(H, T, T)
        for i in range(T):
            for j in range(T):
                r = i - j
                scores[:, i, j] = (((q[i] + att.pos_bias_u) * k[j]).sum(-1)
                                   + ((q[i] + att.pos_bias_v) * p[(T - 1) - r]).sum(-1)) / dk ** 0.5
        scores = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        want = att.linear_out(torch.einsum("hij,jhd->ihd", scores, v).reshape(1, T, D))
    assert torch.allclose(got, want, atol=1e-5)
    assert allowed[0, 3] and not allowed[0, 4] and allowed[5, 7] and not allowed[5, 8]  # blocks of 4 from 0


def test_weights_files_are_loaded_as_tensors_only(dec_dir, tmp_path):
    import shutil

    d = tmp_path / "pickled"
    shutil.copytree(dec_dir, d)
    torch.save({"x": torch.zeros(1), "obj": _Evil()}, d / "flow.pt")
    with pytest.raises(ValueError, match="flow.pt: not a readable weights file"):
        Glm4VoiceDetokenizer(d)


class _Evil:
    def __reduce__(self):
        return (print, ("executed",))


def test_bad_directories_name_what_is_missing(dec_dir, tmp_path):
    import shutil

    for missing in ("config.yaml", "flow.pt", "hift.pt"):
        d = tmp_path / missing
        shutil.copytree(dec_dir, d)
        (d / missing).unlink()
        with pytest.raises(FileNotFoundError, match=f"missing {missing}"):
            Glm4VoiceDetokenizer(d)
    d = tmp_path / "partial"
    shutil.copytree(dec_dir, d)
    state = torch.load(d / "hift.pt", weights_only=True)
    del state["conv_post.weight_v"]
    torch.save(state, d / "hift.pt")
    with pytest.raises(ValueError, match="conv_post.weight_v"):
        Glm4VoiceDetokenizer(d)
    d = tmp_path / "shape"
    shutil.copytree(dec_dir, d)
    (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("linear_units: 32", "linear_units: 48"))
    with pytest.raises(ValueError, match=r"encoder\.encoders\.0\.feed_forward\.w_1\.weight has shape"):
        Glm4VoiceDetokenizer(d)
    with pytest.raises(ValueError, match="block_size"):
        Glm4VoiceDetokenizer(dec_dir, chunk_tokens=15)


def test_newer_weight_norm_layout_loads(dec_dir, tmp_path, det, codes):
    import shutil

    d = tmp_path / "param"
    shutil.copytree(dec_dir, d)
    state = torch.load(d / "hift.pt", weights_only=True)
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in state.items()}
    torch.save(renamed, d / "hift.pt")
    other = Glm4VoiceDetokenizer(d, n_timesteps=2, chunk_tokens=CHUNK, context_tokens=CONTEXT)
    assert torch.equal(other.decode(codes[:12])[0], det.decode(codes[:12])[0])


# -- output ---------------------------------------------------------------------------------------------------
def test_decode_rate_and_range(det, codes):
    wav, sr = det.decode(codes)
    assert sr == 22050 and det.sample_rate == 22050
    assert wav.shape == (256 * int(47 / 12.5 * 22050 / 256),)  # 12.5 codes/s in, 256 samples per mel frame
    assert torch.isfinite(wav).all() and wav.abs().max() <= 0.99 and wav.abs().max() > 0
    assert torch.equal(wav, det.decode(codes)[0])  # deterministic (counter-seeded noise)
    with pytest.raises(ValueError, match="codes must lie"):
        det.decode(torch.tensor([16384]))


def test_euler_steps_are_configurable(dec_dir, codes):
    a = Glm4VoiceDetokenizer(dec_dir, n_timesteps=1)
    calls = []
    hook = a.flow.decoder.estimator.register_forward_hook(lambda *_: calls.append(1))
    a.decode(codes[:10])
    hook.remove()
    assert len(calls) == 2 * 1  # one Euler step = conditional + unconditional (guidance) estimator calls
    b = Glm4VoiceDetokenizer(dec_dir, n_timesteps=3)
    assert not torch.equal(a.decode(codes[:10])[0], b.decode(codes[:10])[0])
    assert Glm4VoiceDetokenizer(dec_dir).n_timesteps == 10  # the reference's default


@pytest.mark.parametrize("chunk", [1, 7, 23])
def test_stream_equals_offline(det, codes, chunk):
    offline, _ = det.decode(codes)
    s, parts = det.stream(), []
    for i in range(0, codes.numel(), chunk):
        parts.append(s.push(codes[i:i + chunk]))
    parts.append(s.finish())
    assert torch.equal(torch.cat(parts), offline)
    if chunk < 20:
        assert sum(p.numel() for p in parts[:-1]) > 0  # audio before finish()


def test_per_chunk_cost_is_flat(det):
    long = torch.randint(0, 16384, (150,), generator=torch.Generator().manual_seed(1))
    s = det.stream()
    for i in range(0, long.numel(), 5):
        s.push(long[i:i + 5])
    s.finish()
    steady = s.flow_log[CONTEXT // CHUNK:-1]
    assert len(steady) >= 10 and len({t for t, _ in steady}) == 1 and steady[0][0] == CHUNK + CONTEXT
    assert max(f for _, f in s.flow_log) <= det.flow.cfg.mel_frames(CHUNK + CONTEXT) + 1
    block = det.vocoder_block_frames + 2 * det.vocoder_context
    assert max(s.vocoder_log) == block and s.vocoder_log[3:-2] == [block] * len(s.vocoder_log[3:-2])
    assert s.mel.shape[-1] <= det.flow.cfg.mel_frames(CONTEXT) + block + 20  # state stays bounded too


# -- the stream against the whole utterance -------------------------------------------------------------------
class _IdealEstimator(torch.nn.Module):
    """The velocity field of a perfectly trained flow whose target is the regulated token encoding mu: from any x
    at time t straight to mu at t = 1. With the tiny decoder's random estimator the mel is mostly its noise (whole
    decodes of two unrelated code sequences differ less than a stream and a whole decode of the same codes: 0.11
    against 0.19 on the flow's frames), which no bound can tell from a streaming fault; encoder, length regulator
    and HiFT stay the tiny random ones."""

    def forward(self, x, mu, t, spks, cond):  # (1, 80, M) each; the prompt `cond` is ignored
        return (mu - x) / (1 - t)


def _ideal(dec_dir, **kw) -> Glm4VoiceDetokenizer:
    det = Glm4VoiceDetokenizer(dec_dir, **{"n_timesteps": 2, "chunk_tokens": CHUNK, "context_tokens": CONTEXT, **kw})
    det.flow.decoder.estimator = _IdealEstimator()
    return det


def _with_flow_mel(det, decode, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """(audio (S,), the new mel frames of every flow call in order (80, M)) of `decode(codes)`."""
    calls, inference = [], det.flow.inference
    det.flow.inference = lambda *a, **k: calls.append(inference(*a, **k)) or calls[-1]
    try:
        wav, _ = decode(codes)
    finally:
        del det.flow.inference
    return wav, torch.cat(calls, dim=2)[0]


def test_decode_whole_is_one_pass_with_the_stream_noise(det, codes):
    """One flow call over all the tokens and the decode's length; the same position-keyed noise as the stream, so
    flow noise of frames 30 .. 40 is the same whether drawn alone or inside 0 .. 100."""
    calls = []
    hook = det.flow.encoder.register_forward_hook(lambda m, i, out: calls.append(out.shape[1]))
    wav, sr = det.decode_whole(codes)
    hook.remove()
    assert calls == [codes.numel()] and sr == 22050
    assert wav.shape == det.decode(codes)[0].shape and torch.equal(wav, det.decode_whole(codes)[0])
    assert torch.equal(det.flow_noise(30, 40), det.flow_noise(0, 100)[:, :, 30:40])
    assert torch.equal(position_noise(0, 2, 4000, 9000, 9, 4096), position_noise(0, 2, 0, 9000, 9, 4096)[:, 4000:])
    assert det.decode_whole(torch.zeros(0, dtype=torch.long))[0].shape == (0,)
    with pytest.raises(ValueError, match="codes must lie"):
        det.decode_whole(torch.tensor([-1]))


def test_stream_approximates_whole_utterance_decode(dec_dir, codes):
    """`decode` is one streaming session, so stream == decode says nothing about the streaming rule. Against
    `decode_whole` (flow over all the tokens at once, HiFT over the whole mel) the stream stays within FLOW_BOUND
    on the flow's frames and AUDIO_BOUND on the audio; each stage decoded without its context exceeds them."""
    det = _ideal(dec_dir)
    whole, whole_mel = _with_flow_mel(det, det.decode_whole, codes)
    wav, mel = _with_flow_mel(det, det.decode, codes)
    assert mel.shape == whole_mel.shape == (80, det.flow.cfg.mel_frames(codes.numel()))
    assert float((mel - whole_mel).abs().mean()) < FLOW_BOUND
    assert wav.shape == whole.shape and log_mel_distance(wav, whole, 22050) < AUDIO_BOUND
    no_flow_context = _ideal(dec_dir, context_tokens=0)
    _, mel = _with_flow_mel(no_flow_context, no_flow_context.decode, codes)
    assert float((mel - whole_mel).abs().mean()) > FLOW_BOUND
    no_vocoder_context = _ideal(dec_dir, vocoder_context=0)
    assert log_mel_distance(no_vocoder_context.decode(codes)[0], whole, 22050) > AUDIO_BOUND


def test_sessions_are_independent(det, codes):
    a, b = det.stream(), det.stream()
    out = [a.push(codes[:20])]
    b.push(codes[5:30])
    out += [a.push(codes[20:]), a.finish()]
    assert torch.equal(torch.cat(out), det.decode(codes)[0])


# -- the pieces against whole-utterance references --------------------------------------------------------------
def test_blocked_vocoder_equals_whole_utterance(det):
    """HiFT on blocks with `vocoder_context` frames either side == HiFT on the whole mel (real kernel sizes)."""
    hift = det.hift
    g = torch.Generator().manual_seed(2)
    mel = torch.randn(1, 80, 100, generator=g)
    f0 = torch.rand(1, 100, generator=g) * 300
    s, _ = hift.source(f0, torch.zeros(1, 9), hift.start_phases(1, g), torch.randn(1, 100 * 256, 9, generator=g))
    with torch.no_grad():
        whole = hift.generate(mel, s)[0]
        B, L, hop, parts = det.vocoder_block_frames, det.vocoder_context, 256, []
        for a in range(0, 100, B):
            b, w0, w1 = min(a + B, 100), max(0, a - L), min(100, a + B + L)
            parts.append(hift.generate(mel[:, :, w0:w1], s[:, :, w0 * hop:w1 * hop])[0][(a - w0) * hop:(b - w0) * hop])
        assert (torch.cat(parts) - whole).abs().max() < 1e-4
        f0_whole = hift.f0_predictor(mel)
        f0_win = hift.f0_predictor(mel[:, :, 30:60])[:, 5:25]
        assert (f0_win - f0_whole[:, 35:55]).abs().max() < 1e-5


def test_source_phase_carries_over(det):
    """The harmonic source made in pieces with the phase carried equals the source made at once (no noise)."""
    hift = det.hift
    f0 = torch.full((1, 40), 200.0)
    off = hift.start_phases(1, torch.Generator().manual_seed(0))
    z = torch.zeros(1, 9)
    quiet = HiFTGenerator(HiFTConfig(**{**hift.cfg.__dict__, "nsf_sigma": 0.0}))
    quiet.load_state_dict(hift.state_dict())
    whole, _ = quiet.source(f0, z, off, None)
    a, ph = quiet.source(f0[:, :17], z, off, None)
    b, _ = quiet.source(f0[:, 17:], ph, off, None)
    assert (torch.cat([a, b], dim=2) - whole).abs().max() < 1e-5


def test_identity_covers_every_byte_of_the_weights(dec_dir, tmp_path):
    """Two decoders whose weight files agree in their first MiB but differ further on have different identities
    (a same-shape fine-tune must not reuse a cache keyed by the old one)."""
    import shutil

    dirs = []
    for i, tail in enumerate("ab"):
        d = tmp_path / f"dec{i}"
        shutil.copytree(dec_dir, d)
        with open(d / "config.yaml", "a") as f:  # a YAML comment that ends past the first MiB
            f.write("\n# " + "x" * (2 << 20) + tail + "\n")
        dirs.append(d)
    a, b = (Glm4VoiceDetokenizer(d).identity for d in dirs)
    assert a != b
    assert Glm4VoiceDetokenizer(dirs[0]).identity == a  # and it is a function of the content
