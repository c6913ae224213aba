"""ASR judges: transcribe waveforms to score speech output. `PocketSphinxJudge` is offline (English model in
the pocketsphinx wheel), 16 kHz; inputs at other rates are resampled."""

from __future__ import annotations

import torch

from vita_audio.audio.io import check_audio, resample, to_int16_bytes


class PocketSphinxJudge:
    """`transcribe(wav, sample_rate) -> str` with pocketsphinx's default US-English acoustic + language model.

    Deterministic; about 5-10x faster than real time on one core. Silence or NaN input raises `AudioError`."""

    sample_rate = 16000

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # an optional dependency (extra `speech`)
            raise ImportError("PocketSphinxJudge needs `pip install pocketsphinx==5.1.1` (extra: speech)") from e
        self._decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL")

    def transcribe(self, wav: torch.Tensor, sample_rate: int, name: str = "<waveform>") -> str:
        wav = check_audio(torch.as_tensor(wav).float(), sample_rate, name=name)
        wav = resample(wav, sample_rate, self.sample_rate)
        d = self._decoder
        d.start_utt()
        d.process_raw(to_int16_bytes(wav), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""

    def transcribe_batch(self, wavs: list[torch.Tensor], sample_rate: int) -> list[str]:
        return [self.transcribe(w, sample_rate) for w in wavs]
