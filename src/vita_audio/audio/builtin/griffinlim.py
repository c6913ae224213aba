"""Streaming Griffin-Lim by fixed blocks: the offline decode *is* this algorithm, so stream == offline.

Frames (magnitudes, hop h, Hann window n = 4h, frame f centred on sample f*h) are finalised `block` at a time.
For the block of new frames [a, b) the working set is the frames [a - C, b + R) (C = n/h - 1 frames of left
context whose first samples are already final, R lookahead frames). Griffin-Lim ("fast", with momentum) runs on
that segment with the already-final samples clamped at every iteration, so the new audio continues the old
waveform without a phase jump; the samples [a*h, b*h) are then final. The lookahead part of the estimate warm-
starts the next block. Block boundaries depend only on absolute frame indices, never on how frames were pushed.

Cost per block: iters x (C + block + R) frames, whatever the history length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BlockGriffinLim:
    """Incremental phase reconstruction. `push(mag (f, K))` -> final samples; `finish()` -> the rest.

    Output sample s corresponds to time s / sr with frame f centred on s = f * hop; a sequence of F frames
    yields exactly F * hop samples."""

    def __init__(self, n_fft: int, hop: int, iters: int = 32, momentum: float = 0.99, block: int = 16,
                 lookahead: int = 4, seed: int = 0):
        if n_fft % hop:
            raise ValueError(f"n_fft {n_fft} must be a multiple of hop {hop}")
        self.n, self.h, self.iters, self.momentum = n_fft, hop, iters, momentum
        self.context = n_fft // hop - 1
        if block < self.context:
            raise ValueError(f"block ({block}) must be at least the left context ({self.context} frames)")
        self.block, self.lookahead, self.seed = block, lookahead, seed
        self.window = torch.hann_window(n_fft, periodic=True)
        self.mags = torch.zeros(0, n_fft // 2 + 1)  # frames [self.first, ...)
        self.first = 0  # absolute index of self.mags[0]
        self.a = 0  # next frame to finalise
        self.committed = torch.zeros(0)  # final samples of buffer [(a - C) h, a h) (or fewer at the start)
        self.warm = torch.zeros(0)  # last estimate of buffer [a h, ...)
        self.emitted = 0  # buffer samples handed out (buffer index = output sample + n/2)
        self.total_frames = 0
        self.finished = False
        #: frames in each Griffin-Lim call (the count-based cost check)
        self.work_log: list[int] = []

    # -- STFT helpers on a segment whose first sample is a frame start -------------------------------------
    def _stft(self, x: torch.Tensor, nframes: int) -> torch.Tensor:
        fr = x.unfold(0, self.n, self.h)[:nframes] * self.window  # (f, n)
        return torch.fft.rfft(fr, dim=1)  # (f, K)

    def _istft(self, spec: torch.Tensor, length: int, wsum: torch.Tensor) -> torch.Tensor:
        fr = torch.fft.irfft(spec, n=self.n, dim=1) * self.window  # (f, n)
        ola = F.fold(fr.T[None], output_size=(1, length), kernel_size=(1, self.n), stride=(1, self.h))
        return ola.reshape(length) / wsum

    def _wsum(self, nframes: int, length: int) -> torch.Tensor:
        w2 = (self.window ** 2)[:, None].expand(self.n, nframes)
        s = F.fold(w2[None], output_size=(1, length), kernel_size=(1, self.n), stride=(1, self.h)).reshape(length)
        return s.clamp(min=1e-3)

    # -- one block ------------------------------------------------------------------------------------------
    def _run_block(self, b: int, la_end: int, final: bool) -> torch.Tensor:
        n, h, a = self.n, self.h, self.a
        w0 = max(0, a - self.context)
        nf = la_end - w0
        length = (nf - 1) * h + n
        mag = self.mags[w0 - self.first: la_end - self.first]  # (nf, K)
        clamp = (a - w0) * h
        x = torch.zeros(length)
        x[:clamp] = self.committed[-clamp:] if clamp else x[:0]
        warm = self.warm[: length - clamp]
        x[clamp: clamp + warm.numel()] = warm
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + a)
        rnd = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=g, dtype=torch.float64)).to(torch.complex64)
        spec0 = self._stft(x, nf)
        angles = spec0 + rnd * (1e-4 * (mag.max() + 1e-8))  # new frames start from random phases
        angles = angles / angles.abs().clamp(min=1e-12)
        wsum = self._wsum(nf, length)
        prev = torch.zeros_like(angles)
        fixed = x[:clamp].clone()
        for _ in range(self.iters):
            y = self._istft(mag * angles, length, wsum)
            y[:clamp] = fixed
            rebuilt = self._stft(y, nf)
            angles = rebuilt - prev * (self.momentum / (1 + self.momentum))
            angles = angles / angles.abs().clamp(min=1e-12)
            prev = rebuilt
        y = self._istft(mag * angles, length, wsum)
        y[:clamp] = fixed
        self.work_log.append(nf)
        end = length if final else (b - w0) * h
        new = y[clamp:end]  # buffer [a h, end)
        keep_from = max(0, (b - self.context - w0) * h)
        self.committed = y[keep_from:(b - w0) * h].clone()
        self.warm = y[(b - w0) * h:].clone()
        self.a = b
        drop = max(0, b - self.context) - self.first  # frames no longer needed
        if drop > 0:
            self.mags, self.first = self.mags[drop:], self.first + drop
        return new

    def _emit(self, new: torch.Tensor, buf_start: int, limit: int) -> torch.Tensor:
        """Map buffer samples [buf_start, buf_start + len) to output samples, dropping the n/2 pre-roll."""
        lo = max(buf_start, self.n // 2)
        hi = min(buf_start + new.numel(), limit)
        if hi <= lo:
            return new[:0]
        self.emitted = hi
        return new[lo - buf_start: hi - buf_start]

    def push(self, mag: torch.Tensor) -> torch.Tensor:
        """mag: (f, K) linear magnitudes of the next frames -> the samples that became final."""
        if self.finished:
            raise RuntimeError("push() after finish()")
        self.mags = torch.cat([self.mags, mag.float()])
        self.total_frames += mag.shape[0]
        out = []
        while self.a + self.block + self.lookahead <= self.total_frames:
            start = self.a * self.h
            new = self._run_block(self.a + self.block, self.a + self.block + self.lookahead, final=False)
            out.append(self._emit(new, start, 10**18))
        return torch.cat(out) if out else torch.zeros(0)

    def finish(self) -> torch.Tensor:
        """Finalise the remaining frames (shorter lookahead at the end); total output = frames * hop samples."""
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        end = self.total_frames * self.h + self.n // 2  # buffer index just past the last output sample
        out = []
        while self.a < self.total_frames:
            b = min(self.a + self.block, self.total_frames)
            start = self.a * self.h
            new = self._run_block(b, min(self.total_frames, b + self.lookahead), final=b == self.total_frames)
            out.append(self._emit(new, start, end))
        return torch.cat(out) if out else torch.zeros(0)


def griffin_lim_whole(mag: torch.Tensor, n_fft: int, hop: int, iters: int = 32, momentum: float = 0.99,
                      seed: int = 0) -> torch.Tensor:
    """Griffin-Lim over all the frames at once: mag (F, K) -> F * hop samples. One block longer than the
    utterance, so nothing is final before `finish` and the iterations see every frame together (the offline
    reference that BlockGriffinLim's blocks approximate)."""
    gl = BlockGriffinLim(n_fft, hop, iters, momentum, block=max(mag.shape[0] + 1, n_fft // hop - 1), lookahead=0,
                         seed=seed)
    head = gl.push(mag)  # (0,): shorter than one block
    return torch.cat([head, gl.finish()])
