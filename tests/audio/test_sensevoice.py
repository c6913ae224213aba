"""SenseVoice-Small front end and encoder: Kaldi fbank values against an independent implementation, shapes,
frame rate, the published checkpoint layout, errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vita_audio.audio.encoders import load_sensevoice, tiny_sensevoice
from vita_audio.audio.encoders.fbank import CMVN, FrontendConfig, fbank, mel_banks, stack_lfr
from vita_audio.audio.encoders.sensevoice import SenseVoiceEncoder

SR = 16000
#: Kaldi fbank of `kaldi_test_signal()` (SenseVoice's options: hamming, 80 bins from 20 Hz, dither 0), computed by
#: kaldi-native-fbank 1.23.0, an independent C++ implementation of Kaldi's compute-fbank-feats; written by
#: tests/audio/data/make_fbank_golden.py (kaldi-native-fbank is not a dependency: install it to regenerate).
FBANK_GOLDEN = Path(__file__).parent / "data" / "fbank_golden.json"
#: ours against it: measured at most 2.2e-4 (float32 there, float64 frames here, 5 decimals stored). One fault
#: each moves some value by 0.95 (pre-emphasis 0.96), 1.9 (low_freq 25 Hz), 5.7 (a Hann window), 3.8 (the first
#: sample pre-emphasised against 0, not against itself), 8.0 (no DC removal); the shape / peak test passes them all.
FBANK_ATOL = 2e-3


def tone(seconds: float, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return 0.3 * torch.sin(2 * math.pi * freq * t)


def kaldi_test_signal() -> np.ndarray:
    """1.2 s at 16 kHz, float32: a linear chirp 100 Hz -> 7 kHz over the first second (amplitude 0.3) plus
    seeded noise (0.01) and a DC offset (0.05, which Kaldi removes per frame), then 0.2 s of digital silence
    (frames at the log floor)."""
    t = np.arange(SR) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (100.0 * t + (7000.0 - 100.0) * t ** 2 / 2))
    voiced = chirp + 0.01 * np.random.default_rng(0).standard_normal(SR) + 0.05
    return np.concatenate([voiced, np.zeros(SR // 5)]).astype(np.float32)


def test_fbank_matches_kaldi():
    golden = json.loads(FBANK_GOLDEN.read_text())
    ours = fbank(torch.from_numpy(kaldi_test_signal()))
    assert ours.shape == (golden["num_frames"], 80) == (118, 80)
    want = torch.tensor(golden["values"])  # (frames, 80)
    got = ours[golden["frames"]]
    assert float((got - want).abs().max()) < FBANK_ATOL
    assert float(want[-1].max()) == pytest.approx(math.log(torch.finfo(torch.float32).eps))  # silence: the floor


def test_fbank_shape_and_peak_bin():
    feats = fbank(tone(1.0, 1000.0))
    assert feats.shape == (1 + (SR - 400) // 160, 80)  # 25 ms windows every 10 ms, edges snipped
    banks = mel_banks(80, 512, SR, 20.0)
    assert banks.shape == (80, 257) and torch.all(banks[:, -1] == 0)
    # the loudest bin is the one whose filter peaks nearest 1 kHz
    peak_bin = int(banks[:, round(1000 / SR * 512)].argmax())
    assert abs(int(feats.mean(0).argmax()) - peak_bin) <= 1
    assert fbank(torch.zeros(100)).shape == (0, 80)


def test_lfr_stacking_indices():
    T, F = 13, 2
    x = torch.arange(T, dtype=torch.float32)[:, None].repeat(1, F)  # frame i holds value i
    out = stack_lfr(x, m=7, n=6)
    assert out.shape == (math.ceil(T / 6), 14)
    frames = out.reshape(-1, 7, F)[..., 0]
    assert frames[0].tolist() == [0, 0, 0, 0, 1, 2, 3]  # 3 copies of the first frame on the left
    assert frames[1].tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert frames[2].tolist() == [9, 10, 11, 12, 12, 12, 12]  # the last frame repeats past the end


def test_cmvn_file_round_trip(tmp_path):
    cmvn = CMVN(torch.linspace(-3, 3, 560), torch.linspace(0.1, 2, 560))
    cmvn.write(tmp_path / "am.mvn")
    back = CMVN.read(tmp_path / "am.mvn")
    assert torch.allclose(back.shift, cmvn.shift) and torch.allclose(back.scale, cmvn.scale)
    (tmp_path / "bad.mvn").write_text("<Nnet>\n</Nnet>\n")
    with pytest.raises(ValueError, match="AddShift"):
        CMVN.read(tmp_path / "bad.mvn")


def write_sensevoice_dir(path, output_size=64, num_blocks=2, tp_blocks=1, seed=0):
    """A tiny random checkpoint in SenseVoice-Small's published format, written without our saver: config.yaml
    (encoder_conf / frontend_conf), model.pt (a state dict with the published names, CTC head included), am.mvn."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {"output_size": output_size, "attention_heads": 4, "linear_units": 96,
                         "num_blocks": num_blocks, "tp_blocks": tp_blocks, "dropout_rate": 0.1,
                         "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "input_layer": "pe",
                         "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
                         "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm"},
        "model": "SenseVoiceSmall",
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                          "lfr_m": 7, "lfr_n": 6, "cmvn_file": None},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    g = torch.Generator().manual_seed(seed)
    d, i, u = output_size, 560, 96

    def layer(prefix, in_dim):
        return {
            f"{prefix}.self_attn.linear_q_k_v.weight": torch.randn(3 * d, in_dim, generator=g) * 0.02,
            f"{prefix}.self_attn.linear_q_k_v.bias": torch.zeros(3 * d),
            f"{prefix}.self_attn.linear_out.weight": torch.randn(d, d, generator=g) * 0.02,
            f"{prefix}.self_attn.linear_out.bias": torch.zeros(d),
            f"{prefix}.self_attn.fsmn_block.weight": torch.randn(d, 1, 11, generator=g) * 0.02,
            f"{prefix}.feed_forward.w_1.weight": torch.randn(u, d, generator=g) * 0.02,
            f"{prefix}.feed_forward.w_1.bias": torch.zeros(u),
            f"{prefix}.feed_forward.w_2.weight": torch.randn(d, u, generator=g) * 0.02,
            f"{prefix}.feed_forward.w_2.bias": torch.zeros(d),
            f"{prefix}.norm1.weight": torch.ones(in_dim), f"{prefix}.norm1.bias": torch.zeros(in_dim),
            f"{prefix}.norm2.weight": torch.ones(d), f"{prefix}.norm2.bias": torch.zeros(d),
        }

    state = {"embed.weight": torch.randn(16, i, generator=g) * 0.1, **layer("encoder.encoders0.0", i)}
    for k in range(num_blocks - 1):
        state |= layer(f"encoder.encoders.{k}", d)
    for k in range(tp_blocks):
        state |= layer(f"encoder.tp_encoders.{k}", d)
    for norm in ("after_norm", "tp_norm"):
        state |= {f"encoder.{norm}.weight": torch.ones(d), f"encoder.{norm}.bias": torch.zeros(d)}
    state |= {"ctc.ctc_lo.weight": torch.randn(30, d, generator=g), "ctc.ctc_lo.bias": torch.zeros(30)}
    torch.save(state, path / "model.pt")
    shift, scale = " ".join(["-8.0"] * i), " ".join(["0.2"] * i)
    (path / "am.mvn").write_text(f"<Nnet>\n<Splice> {i} {i}\n[ 0 ]\n<AddShift> {i} {i}\n<LearnRateCoef> 0 [ {shift} ]"
                                 f"\n<Rescale> {i} {i}\n<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n")
    return path, state


def test_published_layout_loads_and_gives_frames_at_the_rate(tmp_path):
    path, state = write_sensevoice_dir(tmp_path / "SenseVoiceSmall")
    enc = load_sensevoice(path)
    assert enc.dim == 64 and enc.frame_rate == pytest.approx(1000 / 60)
    own = enc.state_dict()
    assert set(own) == {k for k in state if not k.startswith("ctc.")}  # published names, CTC head unused
    assert all(torch.equal(own[k], state[k]) for k in own)
    assert torch.allclose(enc.cmvn_shift, torch.full((560,), -8.0))
    for seconds in (1.0, 2.5):
        wav = tone(seconds)
        frames = enc.encode(wav, SR)
        n_fbank = 1 + (wav.numel() - 400) // 160
        assert frames.shape == (4 + math.ceil(n_fbank / 6), 64) == (enc.num_frames(wav.numel()), 64)
        assert torch.isfinite(frames).all()
    assert abs(enc.encode(tone(10.0), SR).shape[0] - 4 - 10 * 1000 / 60) <= 1  # ~16.7 frames per second
    # 8 kHz input is resampled to the encoder's rate: the same frame count as the 16 kHz version
    assert enc.encode(tone(1.0)[::2].contiguous(), 8000).shape == enc.encode(tone(1.0), SR).shape
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.train().training  # frozen


def test_padding_does_not_change_the_frames(tmp_path):
    enc = load_sensevoice(write_sensevoice_dir(tmp_path / "sv")[0])
    a, b = enc.features(tone(1.0)), enc.features(tone(0.6, 300.0))
    batch = torch.zeros(2, a.shape[0], 560)
    batch[0], batch[1, : b.shape[0]] = a, b
    out, lengths = enc(batch, torch.tensor([a.shape[0], b.shape[0]]))
    assert lengths.tolist() == [4 + a.shape[0], 4 + b.shape[0]]
    alone, _ = enc(b[None])
    torch.testing.assert_close(out[1, : lengths[1]], alone[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("missing", ["config.yaml", "model.pt", "am.mvn"])
def test_incomplete_directory_names_the_missing_file(tmp_path, missing):
    path, _ = write_sensevoice_dir(tmp_path / "sv")
    (path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_sensevoice(path)


def test_missing_parameter_and_wrong_shape_are_named(tmp_path):
    path, state = write_sensevoice_dir(tmp_path / "sv")
    broken = {k: v for k, v in state.items() if k != "encoder.tp_norm.weight"}
    torch.save(broken, path / "model.pt")
    with pytest.raises(KeyError, match="encoder.tp_norm.weight"):
        load_sensevoice(path)
    state["encoder.after_norm.weight"] = torch.ones(7)
    torch.save(state, path / "model.pt")
    with pytest.raises(ValueError, match="encoder.after_norm.weight"):
        load_sensevoice(path)
    with pytest.raises(FileNotFoundError, match="nothing is fetched"):
        load_sensevoice(tmp_path / "nowhere")


def test_save_writes_the_same_format(tmp_path):
    enc = tiny_sensevoice(seed=3)
    enc.save(tmp_path / "tiny")
    back = load_sensevoice(tmp_path / "tiny")
    assert back.identity.split("-")[-1] == enc.identity.split("-")[-1]  # same config, CMVN and weights
    wav = tone(0.7)
    assert torch.equal(back.encode(wav, SR), enc.encode(wav, SR))
    assert tiny_sensevoice(seed=4).identity != enc.identity


def test_tiny_encoder_is_deterministic_and_fast():
    a, b = tiny_sensevoice(), tiny_sensevoice()
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal(SR * 2).astype(np.float32) * 0.1)
    assert torch.equal(a.encode(wav, SR), b.encode(wav, SR)) and a.identity == b.identity
    assert isinstance(a, SenseVoiceEncoder) and a.encode(wav, SR).shape == (a.num_frames(wav.numel()), a.dim)
    assert FrontendConfig().feature_dim == 560


def test_encoder_presets_instantiate(make_cfg, tmp_path):
    """`model/audio_encoder=sensevoice_small` reads `${paths.checkpoints_dir}/SenseVoiceSmall`; `tiny` builds."""
    import hydra

    cfg = make_cfg(["+model/audio_encoder=sensevoice_small", f"paths.checkpoints_dir={tmp_path}/ckpts"], small=False)
    with pytest.raises(Exception, match="nothing is fetched"):
        hydra.utils.instantiate(cfg.model.audio_encoder)
    write_sensevoice_dir(tmp_path / "ckpts" / "SenseVoiceSmall")
    assert hydra.utils.instantiate(cfg.model.audio_encoder).dim == 64
    tiny = hydra.utils.instantiate(make_cfg(["+model/audio_encoder=tiny"]).model.audio_encoder)
    assert tiny.identity == tiny_sensevoice(output_size=128).identity


def test_an_encoder_that_leaves_out_a_member_cannot_be_built():
    from vita_audio.audio.encoders import ContinuousAudioEncoder

    class Half(ContinuousAudioEncoder):
        def encode(self, wav, sample_rate):
            return wav[:, None]

    with pytest.raises(TypeError, match="abstract"):
        Half()
