import numpy as np
import pytest
import soundfile as sf
import torch

from vita_audio.audio.io import AudioError, check_audio, read_audio, resample, to_int16_bytes, to_mono, write_audio


def test_roundtrip_int16(tmp_path):
    x = 0.5 * torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000)
    p = write_audio(tmp_path / "a" / "x.wav", x, 16000)
    y, sr = read_audio(p)
    assert sr == 16000 and y.shape == x.shape and y.dtype == torch.float32
    assert (y - x).abs().max() < 1e-4
    assert sf.info(str(p)).subtype == "PCM_16"


def test_write_scales_instead_of_clipping(tmp_path):
    x = 3.0 * torch.sin(torch.arange(8000) * 2 * torch.pi * 200 / 16000)
    y, _ = read_audio(write_audio(tmp_path / "loud.wav", x, 16000))
    assert 0.98 < y.abs().max() <= 0.99 + 1e-4
    assert torch.allclose(y / y.abs().max(), x / x.abs().max(), atol=2e-4)  # same shape, nothing clipped


def test_stereo_mixdown_and_resample(tmp_path):
    t = np.arange(22050) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 300 * t)], axis=1) * 0.5
    sf.write(tmp_path / "st.wav", stereo.astype(np.float32), 22050)
    y, sr = read_audio(tmp_path / "st.wav", sample_rate=16000)
    assert sr == 16000 and y.dim() == 1 and abs(y.numel() - 16000) <= 1
    assert abs(float(y[1000:-1000].abs().max()) - 0.375) < 0.01  # mean of the two channels
    assert to_mono(torch.ones(5, 2)).shape == (5,)
    assert resample(torch.ones(441), 44100, 16000).numel() == 160


def test_int16_bytes():
    b = to_int16_bytes(torch.tensor([0.0, 2.0, -2.0]))
    v = np.frombuffer(b, dtype="<i2")
    assert v[0] == 0 and v[1] == round(0.99 * 32767) and v[2] == -v[1]


def test_missing_and_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: no such audio file"):
        read_audio(tmp_path / "nope.wav")
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"RIFF this is not a wav file at all")
    with pytest.raises(AudioError, match="garbage.wav: unreadable"):
        read_audio(bad)


def test_empty_and_silent_files(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        read_audio(tmp_path / "empty.wav")
    sf.write(tmp_path / "silent.wav", np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="silent.wav: silent audio"):
        read_audio(tmp_path / "silent.wav")
    y, _ = read_audio(tmp_path / "silent.wav", allow_silence=True)
    assert y.numel() == 1600


def test_check_audio_errors():
    x = torch.randn(100) * 0.1
    with pytest.raises(AudioError, match="clip.wav: sample rate 22050 Hz, expected 16000"):
        check_audio(x, 22050, name="clip.wav", expected_sample_rate=16000)
    x[3] = float("nan")
    with pytest.raises(AudioError, match="1 of 100 samples are NaN"):
        check_audio(x, 16000)
    with pytest.raises(AudioError, match="mono"):
        check_audio(torch.randn(2, 100), 16000)
    with pytest.raises(AudioError, match="NaN"):
        write_audio("/tmp/never_written.wav", torch.full((10,), float("nan")), 16000)
