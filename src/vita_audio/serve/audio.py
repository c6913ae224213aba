"""Audio in and out of the HTTP API: base64 input_audio -> mono waveform; waveforms -> base64 wav / pcm16."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import soundfile as sf
import torch

from vita_audio.audio.io import AudioError, check_audio, resample, to_mono
from vita_audio.serve.errors import bad_request

INPUT_FORMATS = ("wav", "flac", "ogg")  # what libsndfile decodes; OpenAI clients send "wav" (or "mp3": refused)


def decode_input_audio(data: object, fmt: object, sample_rate: int, max_seconds: float,
                       param: str) -> torch.Tensor:
    """A base64 `input_audio.data` -> (S,) float32 at `sample_rate`. Raises a 400 `APIError` naming `param` when
    the part is empty, not base64, not decodable audio, silent or longer than `max_seconds`."""
    if fmt is not None and str(fmt).lower() not in INPUT_FORMATS:
        raise bad_request(f"input_audio.format {fmt!r} is not supported: send {' / '.join(INPUT_FORMATS)}",
                          f"{param}.format", "unsupported_audio_format")
    if not isinstance(data, str) or not data.strip():
        raise bad_request("input_audio.data is empty: send the audio file as base64", f"{param}.data",
                          "empty_audio")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("input_audio.data is not valid base64", f"{param}.data", "invalid_audio") from None
    if not raw:
        raise bad_request("input_audio.data is empty: send the audio file as base64", f"{param}.data",
                          "empty_audio")
    try:
        with sf.SoundFile(io.BytesIO(raw)) as f:
            seconds = f.frames / f.samplerate
            if seconds > max_seconds:
                raise bad_request(f"input audio is {seconds:.1f} s long; this server accepts at most "
                                  f"{max_seconds:g} s", f"{param}.data", "audio_too_long")
            data_np = f.read(dtype="float32", always_2d=True)  # (S, C)
            sr = f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise bad_request(f"input_audio.data is not decodable audio ({err}); send a wav file", f"{param}.data",
                          "invalid_audio") from None
    try:
        wav = check_audio(to_mono(torch.from_numpy(data_np)), sr, name="input_audio")
    except AudioError as err:
        raise bad_request(str(err), f"{param}.data", "invalid_audio") from None
    return resample(wav, sr, sample_rate) if sr != sample_rate else wav


def pcm16_bytes(wav: torch.Tensor) -> bytes:
    """(S,) float in [-1, 1] -> little-endian int16 mono (clipped, not rescaled, so chunks stay continuous).
    numpy, not torch: this runs on the event loop, where a torch op may wake torch's whole thread pool."""
    x = np.clip(wav.detach().cpu().numpy().astype(np.float32), -1.0, 1.0) * 32767.0
    return np.round(x).astype("<i2").tobytes()


def wav_bytes(wav: torch.Tensor, sample_rate: int) -> bytes:
    """(S,) float -> a 16-bit PCM wav file in memory."""
    buf = io.BytesIO()
    pcm = np.frombuffer(pcm16_bytes(wav), dtype="<i2")
    sf.write(buf, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
