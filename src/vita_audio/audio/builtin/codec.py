"""The built-in codec behind the `AudioTokenizer` / `AudioDetokenizer` interface, and its checkpoint format.

A checkpoint is a directory: `config.json` (CodecConfig: sizes, kind, a semantic codec's phoneme inventory),
`model.safetensors` (all weights and buffers: encoder, mel statistics, codebook, decoder, a semantic codec's CTC
head) and, when trained here, `training.json` (provenance). A `config.json` without `kind` is an acoustic codec.

Decoding (offline and streaming are the same computation):

    codes --codebook--> vectors --Decoder on fixed windows (2 codes + R context each side)--> log-magnitude
          --exp--> BlockGriffinLim (fixed blocks of frames, clamped overlap) --> 16 kHz waveform

`decode_whole` is the reference the stream approximates: the decoder once over all the codes, Griffin-Lim once
over all the frames (tests/audio/test_streaming.py bounds the log-mel distance between the two).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vita_audio.audio.builtin.config import CodecConfig
from vita_audio.audio.builtin.features import Features, normalise_loudness, pad_to_tokens
from vita_audio.audio.builtin.griffinlim import BlockGriffinLim, griffin_lim_whole
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.interface import AudioDetokenizer, AudioTokenizer, StreamingSession
from vita_audio.audio.io import check_audio, resample

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def save_codec(model: CodecModel, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.cfg.save(out_dir / CONFIG_FILE)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out_dir / WEIGHTS_FILE))
    return out_dir


def _check_expected(cfg: CodecConfig, where: str, codebook_size: int | None, frame_rate: float | None,
                    kind: str | None = None) -> None:
    if kind is not None and cfg.kind != kind:
        group = {"acoustic": "builtin", "semantic": "builtin_semantic"}
        raise ValueError(
            f"{where}: the codec is of kind {cfg.kind!r} but the config expects kind {kind!r} (audio.codec_kind): use "
            f"the audio group of its kind (audio={group[cfg.kind]}), or train a {kind} codec there "
            f"(`python -m vita_audio.cli.train_codec audio={group.get(kind, kind)}`)"
        )
    if codebook_size is not None and cfg.codebook_size != int(codebook_size):
        raise ValueError(
            f"{where}: codec has {cfg.codebook_size} codes but the config expects {codebook_size} "
            f"(audio.codebook_size); set audio.codebook_size={cfg.codebook_size} or load the matching codec"
        )
    if frame_rate is not None and abs(cfg.frame_rate - float(frame_rate)) > 1e-6:
        raise ValueError(f"{where}: codec runs at {cfg.frame_rate:g} tokens/s but the config expects "
                         f"{frame_rate} (audio.frame_rate)")


def load_codec(path: str | Path, expected_codebook_size: int | None = None,
               expected_frame_rate: float | None = None, expected_kind: str | None = None) -> CodecModel:
    """Load a codec directory (config.json + model.safetensors) in eval mode.

    `expected_codebook_size` / `expected_frame_rate` / `expected_kind` (e.g. `${audio.codebook_size}`, acoustic |
    semantic) must match the checkpoint."""
    path = Path(path)
    for f in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / f).is_file():
            raise FileNotFoundError(
                f"{path}: not a built-in codec checkpoint (missing {f}); train one with "
                f"`python -m vita_audio.cli.train_codec wavs=<wav dir or jsonl> out_dir={path}`"
            )
    cfg = CodecConfig.load(path / CONFIG_FILE)
    _check_expected(cfg, str(path), expected_codebook_size, expected_frame_rate, expected_kind)
    model = CodecModel(cfg)
    state = load_file(str(path / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}/{WEIGHTS_FILE}: weights do not fit the config (missing {missing}, "
                         f"unexpected {unexpected})")
    return model.eval()


def _identity(path: Path, cfg: CodecConfig) -> str:
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    with open(path / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    kind = "" if cfg.kind == "acoustic" else f"{cfg.kind}-"  # acoustic identities read as they always did
    return f"builtin-{kind}{cfg.frame_rate:g}hz-{cfg.codebook_size}-{h.hexdigest()[:16]}"


def _as_model(codec: str | Path | CodecModel, expected_codebook_size: int | None,
              expected_frame_rate: float | None, expected_kind: str | None) -> CodecModel:
    if isinstance(codec, CodecModel):
        _check_expected(codec.cfg, "<in-memory codec>", expected_codebook_size, expected_frame_rate, expected_kind)
        return codec.eval()
    return load_codec(codec, expected_codebook_size, expected_frame_rate, expected_kind)


def _codec_identity(codec: str | Path | CodecModel, model: CodecModel) -> str:
    """The tokenizer's cache key: a hash of the weights (of the checkpoint files, or of an in-memory model)."""
    if isinstance(codec, CodecModel):
        buf = b"".join(v.detach().contiguous().numpy().tobytes() for v in model.state_dict().values())
        kind = "" if model.cfg.kind == "acoustic" else f"{model.cfg.kind}-"
        return f"builtin-mem-{kind}{hashlib.sha256(buf).hexdigest()[:16]}"
    return _identity(Path(codec), model.cfg)


class BuiltinTokenizer(AudioTokenizer):
    """wav at any rate -> 16 kHz -> loudness-normalised -> codes at `frame_rate` (25/s by default).

    N = ceil(seconds * frame_rate) codes (the tail is zero-padded to a whole token). `kind`: acoustic | semantic
    (part of `identity`); `expected_kind` refuses a codec of the other kind."""

    def __init__(self, codec: str | Path | CodecModel, expected_codebook_size: int | None = None,
                 expected_frame_rate: float | None = None, expected_kind: str | None = None):
        self.model = _as_model(codec, expected_codebook_size, expected_frame_rate, expected_kind)
        self.kind = self.model.cfg.kind
        self._identity = _codec_identity(codec, self.model)
        cfg = self.model.cfg
        self.frame_rate, self.codebook_size, self.sample_rate = cfg.frame_rate, cfg.codebook_size, cfg.sample_rate
        self.features = Features(cfg)

    @property
    def identity(self) -> str:
        return self._identity

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        cfg = self.model.cfg
        wav = check_audio(torch.as_tensor(wav), sample_rate)
        wav = resample(wav, sample_rate, cfg.sample_rate)
        wav = pad_to_tokens(normalise_loudness(wav, cfg.target_rms), cfg.samples_per_token)
        log_mel = self.features.log_mel(self.features.magnitude(wav[None]))  # (1, F, M)
        return self.model.vq.nearest(self.model.encoder(log_mel))[0].long()  # (N,)


def _checked(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes of any shape -> (n,) long, each in [0, codebook_size)."""
    codes = torch.as_tensor(codes).long().reshape(-1)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
    return codes


class BuiltinStreamingSession(StreamingSession):
    """Codes in, final samples out. State: the code vectors not yet decoded (plus 2R of context) and the
    Griffin-Lim block state.

    The decoder always runs on windows of exactly `block_tokens + 2R` vectors at fixed absolute positions, so
    every push pattern (and `decode`, which is one push) performs the very same float operations: the stream is
    bit-identical to the offline decode. (Griffin-Lim would amplify even 1e-7 differences between windows of
    other lengths.)"""

    def __init__(self, model: CodecModel, block_tokens: int = 2):
        self.model, self.block_tokens = model, block_tokens
        self.r = model.decoder.context
        self.pending = torch.zeros(self.r, model.cfg.latent_dim)  # (R zero "no token" vectors) + received
        cfg = model.cfg
        self.vocoder = BlockGriffinLim(cfg.n_fft, cfg.hop_length, cfg.gl_iters, cfg.gl_momentum,
                                       cfg.gl_block_frames, cfg.gl_lookahead_frames)
        #: tokens run through the decoder network in each call (the count-based cost check)
        self.decoder_log: list[int] = []
        self.finished = False

    def _decode_blocks(self) -> torch.Tensor:
        """Decode every full block that has its R right-context vectors -> log-magnitude frames (f, K)."""
        width, out = self.block_tokens + 2 * self.r, []
        while self.pending.shape[0] >= width:
            self.decoder_log.append(width)
            with torch.no_grad():
                out.append(self.model.decoder(self.pending[None, :width])[0])  # (block_tokens * k, K)
            self.pending = self.pending[self.block_tokens:]
        return torch.cat(out) if out else torch.zeros(0, self.model.cfg.n_bins)

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("push() after finish()")
        codes = _checked(codes, self.model.cfg.codebook_size)
        if codes.numel() == 0:
            return torch.zeros(0)
        self.pending = torch.cat([self.pending, self.model.vq.lookup(codes)])
        return self.vocoder.push(torch.exp(self._decode_blocks())).clamp(-1, 1)

    def finish(self) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        left = self.pending.shape[0] - self.r  # tokens received but not decoded yet
        pad = (-left) % self.block_tokens  # zero vectors completing the last block; their frames are dropped
        self.pending = torch.cat([self.pending, torch.zeros(self.r + pad, self.pending.shape[1])])
        frames = self._decode_blocks()
        frames = frames[: frames.shape[0] - pad * self.model.cfg.frames_per_token]
        head = self.vocoder.push(torch.exp(frames))
        return torch.cat([head, self.vocoder.finish()]).clamp(-1, 1)


class BuiltinDetokenizer(AudioDetokenizer):
    """codes -> 16 kHz waveform; `decode` runs one streaming session over all the codes.

    `block_tokens`: codes the decoder network handles per call (latency vs. cost: each call also reads 2R
    context codes). It changes the float rounding, so keep it fixed where outputs are compared."""

    def __init__(self, codec: str | Path | CodecModel, expected_codebook_size: int | None = None,
                 expected_frame_rate: float | None = None, block_tokens: int = 2, expected_kind: str | None = None):
        self.model = _as_model(codec, expected_codebook_size, expected_frame_rate, expected_kind)
        self.kind = self.model.cfg.kind
        self.block_tokens = block_tokens
        self.sample_rate = self.model.cfg.sample_rate
        self.codebook_size = self.model.cfg.codebook_size
        self.frame_rate = self.model.cfg.frame_rate

    def stream(self) -> BuiltinStreamingSession:
        return BuiltinStreamingSession(self.model, self.block_tokens)

    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        s = self.stream()
        head = s.push(codes)
        return torch.cat([head, s.finish()]), self.sample_rate

    @torch.no_grad()
    def decode_whole(self, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The whole utterance at once: the decoder network over all the codes in one call (R zero vectors at
        each edge, as the stream has), then Griffin-Lim over all the frames together. Cost and memory grow with
        the length (the reference the stream is measured against, not a serving path); same length as `decode`."""
        codes, cfg = _checked(codes, self.model.cfg.codebook_size), self.model.cfg
        if codes.numel() == 0:
            return torch.zeros(0), self.sample_rate
        edge = torch.zeros(self.model.decoder.context, cfg.latent_dim)  # (R, D) "no token"
        emb = torch.cat([edge, self.model.vq.lookup(codes), edge])[None]  # (1, N + 2R, D)
        mag = torch.exp(self.model.decoder(emb)[0])  # (N * frames_per_token, K)
        wav = griffin_lim_whole(mag, cfg.n_fft, cfg.hop_length, cfg.gl_iters, cfg.gl_momentum)
        return wav.clamp(-1, 1), self.sample_rate
