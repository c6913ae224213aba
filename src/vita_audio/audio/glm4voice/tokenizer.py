"""`Glm4VoiceTokenizer`: speech -> GLM-4-Voice codes (12.5 per second, 16384 codes) behind `AudioTokenizer`.

    wav (any rate) --resample--> 16 kHz --cut--> 30 s segments
        --WhisperFeatureExtractor (preprocessor_config.json: 128-bin log-mel, hop 160; padded to a multiple
          of 1280 samples = one token)--> features + frame mask
        --WhisperVQEncoder--> ids where the pooled mask is 1 --concat--> codes (N,)

A segment of L samples gives ceil(L / 1280) codes, so a clip gives 12.5 codes per second (a clip shorter than
one token gives one). Segments are encoded alone or in batches with the same result: each segment's features
are computed on its own and batches are padded with zero frames, which the masks keep out of every real
position. Silence is valid input (it has codes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from vita_audio.audio.digest import weights_digest
from vita_audio.audio.glm4voice.whisper_vq import WhisperVQEncoder, load_whisper_vq
from vita_audio.audio.interface import AudioTokenizer
from vita_audio.audio.io import check_audio, resample

PREPROCESSOR_FILE = "preprocessor_config.json"
SAMPLE_RATE = 16000
SEGMENT_SECONDS = 30


def load_feature_extractor(path: Path):
    """transformers' WhisperFeatureExtractor from the directory's preprocessor_config.json (local, offline)."""
    from transformers import WhisperFeatureExtractor

    file = path / PREPROCESSOR_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {PREPROCESSOR_FILE} (the Whisper feature extractor's settings of "
                                "glm-4-voice-tokenizer)")
    try:
        fe = WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    except (OSError, TypeError, ValueError) as err:
        raise ValueError(f"{file}: not a WhisperFeatureExtractor config ({err})") from err
    if int(fe.sampling_rate) != SAMPLE_RATE:
        raise ValueError(f"{file}: sampling_rate {fe.sampling_rate}, the GLM-4-Voice tokenizer works at 16 kHz")
    return fe


def _fingerprint(path: Path) -> str:
    """A cache key of the directory: both configs and, per weight file, its name and the digest of all its bytes
    (a same-shape fine-tune differs anywhere in the file, so nothing less identifies it)."""
    h = hashlib.sha256()
    for name in ("config.json", PREPROCESSOR_FILE):
        h.update((path / name).read_bytes())
    for file in sorted(path.glob("*.safetensors")):
        h.update(f"{file.name}:{weights_digest(file)}".encode())
    return h.hexdigest()[:16]


class Glm4VoiceTokenizer(AudioTokenizer):
    """The published `glm-4-voice-tokenizer` directory as an `AudioTokenizer` (see the module docstring).

    `batch_size`: segments per encoder call in `encode_batch`; `device` / `dtype`: where the encoder runs
    (e.g. "cuda", torch.bfloat16 on a GPU)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, path: str | Path, expected_codebook_size: int | None = None,
                 expected_frame_rate: float | None = None, device: str = "cpu",
                 dtype: str | torch.dtype = "float32", batch_size: int = 16):
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such directory (download glm-4-voice-tokenizer there; see "
                                    "README 'Using the published weights')")
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.feature_extractor = load_feature_extractor(self.path)
        self.model: WhisperVQEncoder = load_whisper_vq(self.path, dtype=dtype, device=device)
        cfg = self.model.cfg
        self.hop = int(self.feature_extractor.hop_length)
        self.samples_per_token = cfg.frames_per_token * self.hop  # 1280
        self.frame_rate = SAMPLE_RATE / self.samples_per_token  # 12.5
        self.codebook_size = cfg.quantize_vocab_size
        self.batch_size, self.device = int(batch_size), device
        if expected_codebook_size is not None and int(expected_codebook_size) != self.codebook_size:
            raise ValueError(f"{self.path}: the tokenizer has {self.codebook_size} codes, the config expects "
                             f"{expected_codebook_size} (audio.codebook_size)")
        if expected_frame_rate is not None and abs(float(expected_frame_rate) - self.frame_rate) > 1e-6:
            raise ValueError(f"{self.path}: the tokenizer gives {self.frame_rate:g} codes/s, the config expects "
                             f"{expected_frame_rate} (audio.frame_rate)")
        self._identity = f"glm4voice-{self.frame_rate:g}hz-{self.codebook_size}-{_fingerprint(self.path)}"

    @property
    def identity(self) -> str:
        return self._identity

    def segments(self, wav: torch.Tensor, sample_rate: int) -> list[np.ndarray]:
        """Validate, resample to 16 kHz, cut into 30 s segments (float32 numpy arrays)."""
        wav = check_audio(torch.as_tensor(wav), sample_rate, allow_silence=True)
        wav = resample(wav, sample_rate, SAMPLE_RATE).numpy()
        step = SEGMENT_SECONDS * SAMPLE_RATE
        return [wav[i:i + step] for i in range(0, wav.shape[0], step)]

    def features(self, segment: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment -> (log-mel (128, F), frame mask (F,)), F a multiple of the frames per token."""
        out = self.feature_extractor(segment, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                                     return_tensors="pt", padding="longest",
                                     pad_to_multiple_of=self.samples_per_token)
        return out["input_features"][0], out["attention_mask"][0]

    @torch.no_grad()
    def _encode_segments(self, segments: list[np.ndarray]) -> list[torch.Tensor]:
        feats = [self.features(s) for s in segments]
        out: list[torch.Tensor] = []
        for start in range(0, len(feats), self.batch_size):
            chunk = feats[start:start + self.batch_size]
            width = max(f.shape[-1] for f, _ in chunk)
            x = torch.zeros(len(chunk), chunk[0][0].shape[0], width)  # zero frames pad the batch (masked)
            m = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, (f, mask) in enumerate(chunk):
                x[i, :, :f.shape[-1]], m[i, :mask.shape[-1]] = f, mask
            ids, keep = self.model(x.to(self.device), m.to(self.device))
            out += [row[k].long().cpu() for row, k in zip(ids, keep)]
        return out

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return torch.cat(self._encode_segments(self.segments(wav, sample_rate)))

    def encode_batch(self, wavs: list[torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
        """All segments of all clips through the encoder in batches of `batch_size`."""
        per_clip = [self.segments(w, sample_rate) for w in wavs]
        flat = self._encode_segments([s for segs in per_clip for s in segs])
        out, i = [], 0
        for segs in per_clip:
            out.append(torch.cat(flat[i:i + len(segs)]))
            i += len(segs)
        return out
