"""Streaming decode == offline decode, close to a whole-utterance decode (a stated log-mel bound that broken
streaming exceeds), no clicks at chunk joins, and flat per-chunk work (counted, not timed)."""

import dataclasses
import math

import pytest
import torch

from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer
from vita_audio.audio.builtin.griffinlim import BlockGriffinLim
from vita_audio.audio.builtin.model import CodecModel

from .conftest import log_mel_distance, speechlike

TOL = 0.0  # the stream is bit-identical to the offline decode (same decoder windows, same vocoder blocks)
#: stream vs whole-utterance decode (`log_mel_distance`, 75 codes, 32 Griffin-Lim iterations). Measured: 0.099;
#: two whole decodes whose Griffin-Lim starts from other random phases differ by 0.107, so the stream is as close
#: as the vocoder's own randomness allows. Chunks of `block_tokens` decoded independently: 0.28 (chunks of 4: 0.19).
WHOLE_BOUND = 0.14


@pytest.fixture(scope="module")
def codes(codec):
    return BuiltinTokenizer(codec).encode(torch.from_numpy(speechlike(3.0, seed=11)), 16000)  # 75 codes


def _stream(det, codes, chunk):
    s, parts, sizes = det.stream(), [], []
    for i in range(0, codes.numel(), chunk):
        out = s.push(codes[i:i + chunk])
        parts.append(out)
        sizes.append(out.numel())
    parts.append(s.finish())
    return torch.cat(parts), sizes, s


@pytest.fixture(scope="module")
def codec_32_iters(codec):
    """The tiny codec with the real number of Griffin-Lim iterations (32), where any difference in the decoder's
    float rounding between chunkings would be amplified into audible differences."""
    m = CodecModel(dataclasses.replace(codec.cfg, gl_iters=32))
    m.load_state_dict(codec.state_dict())
    return m.eval()


@pytest.mark.parametrize("chunk", [1, 4, 7, 1000])
@pytest.mark.parametrize("which", ["tiny", "tiny_32_iters"])
def test_stream_equals_offline(codec, codec_32_iters, codes, chunk, which):
    det = BuiltinDetokenizer(codec if which == "tiny" else codec_32_iters)
    offline, _ = det.decode(codes)
    streamed, sizes, _ = _stream(det, codes, chunk)
    assert streamed.shape == offline.shape == (codes.numel() * 640,)
    assert (streamed - offline).abs().max() <= TOL
    if chunk < codes.numel():
        assert sum(sizes) > 0  # audio comes out before finish()


def test_stream_approximates_whole_utterance_decode(codec_32_iters, codes):
    """`decode` is one streaming session, so stream == decode says nothing about the streaming rule. Here the
    reference is `decode_whole` (decoder once over all the codes, Griffin-Lim once over all the frames): the
    decoder's frames must match it to float rounding and the audio must stay within WHOLE_BOUND, which chunks
    decoded independently (no context, vocoder restarted) exceed."""
    det = BuiltinDetokenizer(codec_32_iters)
    frames = []  # the decoder network's log-magnitude output of every call, in order
    hook = codec_32_iters.decoder.register_forward_hook(lambda m, i, out: frames.append(out[0]))
    try:
        whole, _ = det.decode_whole(codes)
        whole_frames = frames.pop()  # (N * frames_per_token, K)
        streamed, _, _ = _stream(det, codes, 3)
    finally:
        hook.remove()
    streamed_frames = torch.cat(frames)[:whole_frames.shape[0]]  # the last window's zero padding dropped
    assert streamed_frames.shape == whole_frames.shape == (codes.numel() * codec_32_iters.cfg.frames_per_token,
                                                           codec_32_iters.cfg.n_bins)
    assert (streamed_frames - whole_frames).abs().max() < 1e-4  # valid convolutions: windows lose nothing
    assert streamed.shape == whole.shape == (codes.numel() * 640,)
    assert log_mel_distance(streamed, whole, 16000) < WHOLE_BOUND
    k = det.block_tokens
    independent = torch.cat([det.decode(codes[i:i + k])[0] for i in range(0, codes.numel(), k)])
    assert independent.shape == whole.shape
    assert log_mel_distance(independent, whole, 16000) > WHOLE_BOUND
    assert det.decode_whole(codes[:0])[0].shape == (0,) == det.decode(codes[:0])[0].shape
    with pytest.raises(ValueError, match="codes must lie"):
        det.decode_whole(torch.tensor([codec_32_iters.cfg.codebook_size]))


def test_sessions_are_independent(codec, codes):
    det = BuiltinDetokenizer(codec)
    a, b = det.stream(), det.stream()
    out_a = [a.push(codes[:10])]
    b.push(codes[40:])  # interleaved use of another session changes nothing in the first
    out_a += [a.push(codes[10:]), a.finish()]
    assert (torch.cat(out_a) - det.decode(codes)[0]).abs().max() <= TOL
    with pytest.raises(RuntimeError):
        a.finish()
    with pytest.raises(RuntimeError):
        a.push(codes[:3])


def test_no_clicks_at_chunk_joins(codec, codes):
    det = BuiltinDetokenizer(codec)
    y, sizes, _ = _stream(det, codes, 3)
    joins = torch.tensor([s for s in torch.cumsum(torch.tensor(sizes), 0).tolist() if 0 < s < y.numel()])
    d = (y[1:] - y[:-1]).abs()
    assert joins.numel() >= 5
    assert float(d[joins - 1].max()) <= float(torch.quantile(d, 0.999))  # a join is an ordinary sample step


def test_block_griffin_lim_is_smooth_across_blocks():
    """A steady tone through the block vocoder: every block join is as smooth as the inside of a block."""
    sr, n, h = 16000, 640, 160
    x = 0.3 * torch.sin(2 * math.pi * 220 * torch.arange(sr) / sr)
    mag = torch.stft(x, n, h, window=torch.hann_window(n), center=True, pad_mode="constant",
                     return_complex=True).abs()[:, :-1].T  # (F, K)
    gl = BlockGriffinLim(n, h, iters=32, block=16, lookahead=4)
    y = torch.cat([gl.push(mag[:37]), gl.push(mag[37:]), gl.finish()])
    assert y.numel() == x.numel()
    d2 = (y[2:] - 2 * y[1:-1] + y[:-2]).abs()  # curvature; a phase jump makes it spike
    core = slice(2000, -2000)
    joins = torch.arange(16, mag.shape[0] - 16, 16) * h
    assert float(d2[joins - 1].max()) < 1.5 * float(d2[core].max())
    assert abs(float(y[core].pow(2).mean().sqrt()) - 0.3 / math.sqrt(2)) < 0.03  # right loudness


def test_per_chunk_work_is_flat(codec):
    """400 codes pushed 4 at a time: the decoder and the vocoder see a bounded window per call, and the number
    of vocoder calls grows linearly, whatever has been decoded before."""
    det = BuiltinDetokenizer(codec)
    codes = torch.randint(0, codec.cfg.codebook_size, (400,))
    s = det.stream()
    for i in range(0, 400, 4):
        s.push(codes[i:i + 4])
    s.finish()
    r, cfg = codec.decoder.context, codec.cfg
    assert set(s.decoder_log) == {det.block_tokens + 2 * r}  # one fixed window per decoder call
    assert len(s.decoder_log) == 400 // det.block_tokens  # each code decoded once (plus its context)
    assert s.pending.shape[0] <= det.block_tokens + 2 * r
    vocoder = s.vocoder
    bound = vocoder.context + cfg.gl_block_frames + cfg.gl_lookahead_frames
    assert max(vocoder.work_log) <= bound
    assert len(vocoder.work_log) == math.ceil(400 * cfg.frames_per_token / cfg.gl_block_frames)
    assert vocoder.mags.shape[0] <= bound  # state does not grow with the history
