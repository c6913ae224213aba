"""`Glm4VoiceDetokenizer`: GLM-4-Voice codes -> 22,050 Hz speech, offline and streaming, from the published
`glm-4-voice-decoder` directory (`config.yaml`, `flow.pt`, `hift.pt`).

Loading: config.yaml is read as data (yaml_config: no object is ever constructed from it); the two `.pt` files
with `torch.load(..., weights_only=True)` (tensors only, nothing executed); every parameter must be present with
its shape (extra tensors are named in a warning and not read).

Streaming (`Glm4VoiceStreamingSession`), with each chunk's cost bounded (the reference re-synthesises the whole
prefix at every chunk):

    codes --> token chunks of `chunk_tokens` on a fixed grid from token 0
        flow on [up to `context_tokens` previous tokens + the chunk], conditioned on the previous mel of those
        context tokens (the prompt), new mel frames only: frames M(n0) .. M(n1), M(n) = int(n / 12.5 * 22050/256)
    mel --> f0 of a frame once its 5 frames of right context exist; the source excitation of those frames,
        phase carried over; HiFT generator on fixed blocks of `vocoder_block_frames` with `vocoder_context`
        frames of mel + source either side --> samples 256 per frame

Everything runs on fixed grids, and every noise value (flow x0 of mel frame f, source noise of sample s) is a
function of its absolute position only (`position_noise`), so the output is the same for every push pattern:
`decode` is one session over all the codes, and a stream equals it exactly.

`decode_whole` is the reference the stream approximates: one flow pass over all the tokens at once (no prompt,
no context window), then HiFT once over the whole mel, with the same position-keyed noise. The two differ only
where the stream's bounded context changes what a chunk sees (tests/audio/test_glm4voice_decoder.py bounds the
log-mel distance).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from vita_audio.audio.digest import weights_digest
from vita_audio.audio.glm4voice.flow import FlowConfig, FlowModel
from vita_audio.audio.glm4voice.hift import HiFTConfig, HiFTGenerator, convert_weight_norm_names
from vita_audio.audio.glm4voice.yaml_config import load_plain_yaml, plain, section
from vita_audio.audio.interface import AudioDetokenizer, StreamingSession

CONFIG_FILE, FLOW_FILE, HIFT_FILE = "config.yaml", "flow.pt", "hift.pt"
log = logging.getLogger(__name__)


def _load_weights(module: torch.nn.Module, file: Path, convert=None) -> None:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which and why
        raise ValueError(f"{file}: not a readable weights file ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: expected a state dict of tensors")
    state = convert(state) if convert else state
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise ValueError(f"{file}: {len(missing)} parameters that config.yaml implies are missing: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:  # tensors this architecture does not read (a newer file?): named, never silently used
        log.warning("%s: %d tensors not read by the decoder: %s", file, len(unexpected), unexpected[:5])
        state = {k: v for k, v in state.items() if k in expected}
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{file}: {k} has shape {tuple(state[k].shape)}, config.yaml implies {tuple(v.shape)}")
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def load_decoder(path: str | Path, device: str = "cpu") -> tuple[FlowModel, HiFTGenerator]:
    """The published decoder directory -> (flow, hift) in eval mode."""
    path = Path(path).expanduser()
    for f in (CONFIG_FILE, FLOW_FILE, HIFT_FILE):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path}: missing {f} (expected the glm-4-voice-decoder directory: "
                                    f"{CONFIG_FILE}, {FLOW_FILE}, {HIFT_FILE})")
    src = str(path / CONFIG_FILE)
    data = load_plain_yaml(path / CONFIG_FILE)
    flow = FlowModel(FlowConfig.from_yaml(plain(section(data, "flow", src)), src))
    hift = HiFTGenerator(HiFTConfig.from_yaml(plain(section(data, "hift", src))))
    _load_weights(flow, path / FLOW_FILE)
    _load_weights(hift, path / HIFT_FILE, convert_weight_norm_names)
    return flow.to(device).eval(), hift.to(device).eval()


FLOW_NOISE, PHASE_NOISE, SOURCE_NOISE = 0, 1, 2  # noise streams
MEL_NOISE_BLOCK, SOURCE_NOISE_BLOCK = 64, 4096  # positions (mel frames / samples) per counter-seeded draw


def _gen(seed: int, stream: int, index: int) -> torch.Generator:
    """A generator for draw `index` of noise stream `stream` (counter-based: independent of call sizes)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + stream * 7_919 + index) % (2 ** 63))


def position_noise(seed: int, stream: int, lo: int, hi: int, rows: int, block: int) -> torch.Tensor:
    """Standard normal noise at positions lo .. hi of `stream`: (rows, hi - lo). Position p always gets the same
    column, whatever range asks for it (blocks of `block` positions, each drawn from its own generator)."""
    if hi <= lo:
        return torch.zeros(rows, 0)
    b0, b1 = lo // block, (hi - 1) // block + 1
    draws = [torch.randn(rows, block, generator=_gen(seed, stream, b)) for b in range(b0, b1)]
    return torch.cat(draws, dim=1)[:, lo - b0 * block:hi - b0 * block]


def _checked(codes: torch.Tensor, vocab: int) -> torch.Tensor:
    """codes of any shape -> (n,) long on the CPU, each in [0, vocab)."""
    codes = torch.as_tensor(codes).long().reshape(-1).cpu()
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= vocab):
        raise ValueError(f"codes must lie in [0, {vocab}), got [{int(codes.min())}, {int(codes.max())}]")
    return codes


class Glm4VoiceStreamingSession(StreamingSession):
    """Codes in, final 22,050 Hz samples out (see the module docstring). Cost of a chunk: one flow call on at
    most `context_tokens + chunk_tokens` tokens and vocoder calls on `block + 2 * context` frames."""

    def __init__(self, det: Glm4VoiceDetokenizer):
        self.det, self.flow, self.hift = det, det.flow, det.hift
        fc = self.flow.cfg
        self.C, self.K = det.context_tokens, det.chunk_tokens
        self.tokens = torch.zeros(0, dtype=torch.long)  # the last <= C processed tokens + the pending ones
        self.base = 0  # absolute index of self.tokens[0]
        self.done_tokens = 0  # tokens turned into mel
        self.mel = torch.zeros(1, fc.output_size, 0)  # mel frames from absolute frame self.mel_base on
        self.mel_base = 0
        # vocoder state
        H = self.hift.cfg.nb_harmonics + 1
        self.phase = torch.zeros(1, H)
        self.offsets = det.start_phases()
        self.src = torch.zeros(1, 1, 0)  # source samples from absolute frame self.mel_base on
        self.src_frames = 0  # frames with their source computed
        self.out_frames = 0  # frames turned into samples
        #: (tokens, mel frames) of each flow call and frames of each vocoder call (the count-based cost check)
        self.flow_log: list[tuple[int, int]] = []
        self.vocoder_log: list[int] = []
        self.finished = False

    # -- flow ---------------------------------------------------------------------------------------------------
    def _flow_chunk(self, n1: int) -> None:
        """Tokens done_tokens .. n1 -> their mel frames (appended to self.mel)."""
        fc, n0 = self.flow.cfg, self.done_tokens
        a = max(0, n0 - self.C)
        ctx = self.tokens[a - self.base:n0 - self.base]  # (<= C,) tokens whose mel is the prompt
        new = self.tokens[n0 - self.base:n1 - self.base]  # (n1 - n0,)
        f_a, f0, f1 = fc.mel_frames(a), fc.mel_frames(n0), fc.mel_frames(n1)
        prompt = self.mel[:, :, f_a - self.mel_base:f0 - self.mel_base]
        noise = self.det.flow_noise(f_a, f1)  # (1, 80, f1 - f_a): the prompt frames get the noise they had
        dev = self.flow.input_embedding.weight.device
        mel = self.flow.inference(new[None].to(dev), ctx[None].to(dev), prompt.to(dev), f1 - f0, noise.to(dev),
                                  self.det.n_timesteps).float().cpu()
        self.flow_log.append((int(ctx.numel() + new.numel()), f1 - f_a))
        self.mel = torch.cat([self.mel, mel], dim=2)
        self.done_tokens = n1
        keep_from = max(0, n1 - self.C)  # drop tokens no later chunk reads
        self.tokens, self.base = self.tokens[keep_from - self.base:], keep_from

    # -- vocoder ------------------------------------------------------------------------------------------------
    def _frames(self) -> int:
        return self.mel_base + self.mel.shape[-1]

    def _source_until(self, t1: int, final: bool) -> None:
        """Compute f0 + source for frames src_frames .. t1 (f0 from a window with 5 frames of context)."""
        ctx, t0 = self.hift.f0_predictor.context, self.src_frames
        if t1 <= t0:
            return
        w0, w1 = max(self.mel_base, t0 - ctx), self._frames() if final else min(self._frames(), t1 + ctx)
        dev = self.hift.conv_pre.bias.device
        f0 = self.hift.f0_predictor(self.mel[:, :, w0 - self.mel_base:w1 - self.mel_base].to(dev))
        f0 = f0[:, t0 - w0:t1 - w0]
        noise = self.det.source_noise(t0, t1).to(dev)
        s, phase = self.hift.source(f0, self.phase.to(dev), self.offsets.to(dev), noise)
        self.phase = phase.cpu()
        self.src = torch.cat([self.src, s.float().cpu()], dim=2)
        self.src_frames = t1

    def _vocode(self, final: bool) -> torch.Tensor:
        """Every block of frames whose right context (mel + source) is ready -> samples."""
        B, L, f0ctx, hop = self.det.vocoder_block_frames, self.det.vocoder_context, self.hift.f0_predictor.context, \
            self.hift.cfg.hop
        out = []
        while True:
            a = self.out_frames
            b = min(a + B, self._frames()) if final else a + B
            if b <= a or (not final and b + L + f0ctx > self._frames()):
                break
            w1 = min(b + L, self._frames())
            self._source_until(w1, final and w1 == self._frames())
            w0 = max(self.mel_base, a - L)
            dev = self.hift.conv_pre.bias.device
            mel = self.mel[:, :, w0 - self.mel_base:w1 - self.mel_base].to(dev)
            src = self.src[:, :, (w0 - self.mel_base) * hop:(w1 - self.mel_base) * hop].to(dev)
            with torch.no_grad():
                wav = self.hift.generate(mel, src)[0].float().cpu()
            self.vocoder_log.append(w1 - w0)
            out.append(wav[(a - w0) * hop:(b - w0) * hop])
            self.out_frames = b
            self._trim()
        return torch.cat(out) if out else torch.zeros(0)

    def _trim(self) -> None:
        """Drop mel / source frames that neither a later flow prompt nor a vocoder window reads."""
        fc = self.flow.cfg
        keep = min(fc.mel_frames(max(0, self.done_tokens - self.C)),
                   self.out_frames - self.det.vocoder_context - self.hift.f0_predictor.context)
        cut = max(0, keep - self.mel_base)
        if cut:
            self.mel, self.src = self.mel[:, :, cut:], self.src[:, :, cut * self.hift.cfg.hop:]
            self.mel_base += cut

    # -- interface ----------------------------------------------------------------------------------------------
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("push() after finish()")
        codes = _checked(codes, self.flow.cfg.vocab_size)
        if codes.numel() == 0:
            return torch.zeros(0)
        self.tokens = torch.cat([self.tokens, codes])
        received = self.base + self.tokens.numel()
        while received - self.done_tokens >= self.K:
            self._flow_chunk(self.done_tokens + self.K)
        return self._vocode(final=False)

    def finish(self) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        received = self.base + self.tokens.numel()
        if received > self.done_tokens:
            self._flow_chunk(received)
        return self._vocode(final=True)


class Glm4VoiceDetokenizer(AudioDetokenizer):
    """The published `glm-4-voice-decoder` directory as an `AudioDetokenizer`.

    n_timesteps: Euler steps of the flow (reference 10). chunk_tokens / context_tokens: token chunk and the
    prompt window (multiples of the flow encoder's block size, so its blocks stay on the grid from token 0).
    vocoder_block_frames / vocoder_context: HiFT blocks and the frames of context on each side (the generator
    sees about 14 frames either way; fewer changes the audio at block joins). seed: the noise of flow and source.
    """

    frame_rate = 12.5

    def __init__(self, path: str | Path, expected_codebook_size: int | None = None,
                 expected_frame_rate: float | None = None, device: str = "cpu", n_timesteps: int = 10,
                 chunk_tokens: int = 10, context_tokens: int = 50, vocoder_block_frames: int = 32,
                 vocoder_context: int = 16, seed: int = 0):
        self.path = Path(path).expanduser()
        self.flow, self.hift = load_decoder(self.path, device)
        fc = self.flow.cfg
        self.codebook_size, self.frame_rate = fc.vocab_size, fc.input_frame_rate
        self.sample_rate = self.hift.cfg.sampling_rate
        if expected_codebook_size is not None and int(expected_codebook_size) != fc.vocab_size:
            raise ValueError(f"{self.path}: the decoder reads {fc.vocab_size} codes, the config expects "
                             f"{expected_codebook_size} (audio.codebook_size)")
        if expected_frame_rate is not None and abs(float(expected_frame_rate) - fc.input_frame_rate) > 1e-6:
            raise ValueError(f"{self.path}: the decoder reads {fc.input_frame_rate:g} codes/s, the config expects "
                             f"{expected_frame_rate} (audio.frame_rate)")
        bs = fc.enc_block_size  # flow.encoder.block_size of config.yaml (10 in the published file)
        if chunk_tokens < 1 or chunk_tokens % bs:
            raise ValueError(f"chunk_tokens={chunk_tokens} must be a positive multiple of the flow encoder's "
                             f"block_size ({bs})")
        if context_tokens < 0 or context_tokens % bs:
            raise ValueError(f"context_tokens={context_tokens} must be a multiple (>= 0) of the flow encoder's "
                             f"block_size ({bs})")
        if n_timesteps < 1 or vocoder_block_frames < 1 or vocoder_context < 0:
            raise ValueError("n_timesteps and vocoder_block_frames must be >= 1, vocoder_context >= 0")
        self.n_timesteps, self.chunk_tokens, self.context_tokens = int(n_timesteps), int(chunk_tokens), \
            int(context_tokens)
        self.vocoder_block_frames, self.vocoder_context, self.seed = int(vocoder_block_frames), \
            int(vocoder_context), int(seed)

    @property
    def identity(self) -> str:
        """Changes with any byte of the config or weights (whole-file digests, not a prefix)."""
        h = hashlib.sha256()
        for f in (CONFIG_FILE, FLOW_FILE, HIFT_FILE):
            h.update(weights_digest(self.path / f).encode())
        return f"glm4voice-decoder-{h.hexdigest()[:16]}"

    # -- noise (a function of absolute position: see the module docstring) ------------------------------------
    def flow_noise(self, f0: int, f1: int) -> torch.Tensor:
        """x0 of mel frames f0 .. f1: (1, 80, f1 - f0)."""
        return position_noise(self.seed, FLOW_NOISE, f0, f1, self.flow.cfg.output_size, MEL_NOISE_BLOCK)[None]

    def source_noise(self, t0: int, t1: int) -> torch.Tensor:
        """Source noise of the samples of mel frames t0 .. t1: (1, 256 (t1 - t0), harmonics + 1)."""
        hop, H = self.hift.cfg.hop, self.hift.cfg.nb_harmonics + 1
        return position_noise(self.seed, SOURCE_NOISE, t0 * hop, t1 * hop, H, SOURCE_NOISE_BLOCK).T[None]

    def start_phases(self) -> torch.Tensor:
        """The harmonics' random start phases: (1, harmonics + 1)."""
        return self.hift.start_phases(1, _gen(self.seed, PHASE_NOISE, 0))

    # -- decoding -----------------------------------------------------------------------------------------------
    def stream(self) -> Glm4VoiceStreamingSession:
        return Glm4VoiceStreamingSession(self)

    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        s = self.stream()
        head = s.push(codes)
        return torch.cat([head, s.finish()]), self.sample_rate

    @torch.no_grad()
    def decode_whole(self, codes: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The whole utterance at once: flow matching over all the tokens in one pass (no prompt, no context
        window), then HiFT over the whole mel. Cost and memory grow with the length (the reference the stream
        is measured against, not a serving path); same length and noise as `decode`."""
        codes = _checked(codes, self.flow.cfg.vocab_size)
        if codes.numel() == 0:
            return torch.zeros(0), self.sample_rate
        dev, frames = self.flow.input_embedding.weight.device, self.flow.cfg.mel_frames(codes.numel())
        none = torch.zeros(1, 0, dtype=torch.long, device=dev)
        mel = self.flow.inference(codes[None].to(dev), none, torch.zeros(1, self.flow.cfg.output_size, 0, device=dev),
                                  frames, self.flow_noise(0, frames).to(dev), self.n_timesteps)  # (1, 80, M)
        hdev = self.hift.conv_pre.bias.device
        wav = self.hift(mel.float().to(hdev), self.start_phases().to(hdev), self.source_noise(0, frames).to(hdev))
        return wav[0].float().cpu(), self.sample_rate
