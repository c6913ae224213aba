"""Audio in and out of the HTTP API: base64 input_audio -> mono waveforms; waveforms -> base64 wav / pcm16.

Input audio is checked from its header before a sample is decoded, so a small file cannot make the server
allocate much (an 11 KB FLAC at 655,350 Hz holds millions of samples):

    each part   base64 -> bytes -> header (rate, channels, frames): rate <= max_sample_rate, mono or stereo
    the parts   together at most max_audio_seconds (frames / rate from the headers)
    decoding    at most the frames the header announced and the request has left (a lying header gains nothing)
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from vita_audio.audio.io import AudioError, check_audio, resample, to_mono
from vita_audio.serve.errors import bad_request

INPUT_FORMATS = ("wav", "flac", "ogg")  # what libsndfile decodes; OpenAI clients send "wav" (or "mp3": refused)
MAX_CHANNELS = 2


@dataclass(frozen=True)
class AudioLimits:
    max_seconds: float  # all parts of a request together
    max_sample_rate: int


@dataclass
class _Probe:
    raw: bytes
    rate: int
    frames: int
    param: str


def read_input_audio(parts: Sequence[tuple[object, object, str]], sample_rate: int,
                     limits: AudioLimits) -> list[torch.Tensor]:
    """(base64 data, format, param) per part -> (S,) float32 waveforms at `sample_rate`. Raises a 400 `APIError`
    naming the part's `param` for bad base64, audio libsndfile cannot read, a rate over the limit, more than two
    channels, empty or silent audio, or parts longer than `limits.max_seconds` together."""
    probes = [_probe(data, fmt, param, limits) for data, fmt, param in parts]
    total = 0.0
    for p in probes:
        total += p.frames / p.rate
        if total > limits.max_seconds:
            raise bad_request(f"the input audio is {total:.1f} s long up to this part; this server accepts at most "
                              f"{limits.max_seconds:g} s per request", f"{p.param}.data", "audio_too_long")
    left = limits.max_seconds
    out = []
    for p in probes:
        wav = _decode(p, left, sample_rate)
        left -= p.frames / p.rate
        out.append(wav)
    return out


def _probe(data: object, fmt: object, param: str, limits: AudioLimits) -> _Probe:
    """Base64 -> bytes, and the header's rate, channels and frames (nothing decoded yet)."""
    if fmt is not None and str(fmt).lower() not in INPUT_FORMATS:
        raise bad_request(f"input_audio.format {fmt!r} is not supported: send {' / '.join(INPUT_FORMATS)}",
                          f"{param}.format", "unsupported_audio_format")
    if not isinstance(data, str) or not data.strip():
        raise bad_request("input_audio.data is empty: send the audio file as base64", f"{param}.data", "empty_audio")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("input_audio.data is not valid base64", f"{param}.data", "invalid_audio") from None
    if not raw:
        raise bad_request("input_audio.data is empty: send the audio file as base64", f"{param}.data", "empty_audio")
    try:
        info = sf.info(io.BytesIO(raw))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise bad_request(f"input_audio.data is not decodable audio ({err}); send a wav file", f"{param}.data",
                          "invalid_audio") from None
    if info.samplerate > limits.max_sample_rate:
        raise bad_request(f"input audio at {info.samplerate} Hz is over this server's limit of "
                          f"{limits.max_sample_rate} Hz: resample it first (16 kHz is enough)", f"{param}.data",
                          "unsupported_sample_rate")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise bad_request(f"input audio has {info.channels} channels; send mono or stereo", f"{param}.data",
                          "invalid_audio")
    return _Probe(raw, int(info.samplerate), max(0, int(info.frames)), param)


def _decode(p: _Probe, max_seconds: float, sample_rate: int) -> torch.Tensor:
    """Decode at most the header's frames and at most `max_seconds` (refused when the data holds more)."""
    cap = int(max_seconds * p.rate)
    try:
        with sf.SoundFile(io.BytesIO(p.raw)) as f:
            data = f.read(frames=min(p.frames, cap) + 1 if p.frames else cap + 1, dtype="float32",
                          always_2d=True)  # (S, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise bad_request(f"input_audio.data is not decodable audio ({err}); send a wav file", f"{p.param}.data",
                          "invalid_audio") from None
    if len(data) > cap:
        raise bad_request(f"the input audio is longer than this server's {max_seconds:g} s left for this part",
                          f"{p.param}.data", "audio_too_long")
    try:
        wav = check_audio(to_mono(torch.from_numpy(data)), p.rate, name="input_audio")
    except AudioError as err:
        raise bad_request(str(err), f"{p.param}.data", "invalid_audio") from None
    return resample(wav, p.rate, sample_rate) if p.rate != sample_rate else wav


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
