"""ASR judges: transcribe waveforms to score speech output; inputs at other rates than 16 kHz are resampled.

    PocketSphinxJudge()            offline, English model inside the pocketsphinx wheel (the default judge)
    WhisperJudge(path)             a Whisper checkpoint from a local directory through transformers
                                   (e.g. a copy of whisper-large-v3, the Seed-TTS-eval judge); nothing is downloaded;
                                   clips over 30 s by Whisper's long-form transcription

Both: `transcribe(wav, sample_rate) -> str`, `transcribe_batch(wavs, sample_rate) -> list[str]`; silent or NaN
audio raises `AudioError` (the tasks score it as heard "").
"""

from __future__ import annotations

from pathlib import Path

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


PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # transformers 4 / 5 names
WINDOW_S = 30  # Whisper hears 30-s windows; longer clips go through its long-form transcription


class WhisperJudge:
    """A local Whisper checkpoint (`WhisperForConditionalGeneration` + `WhisperProcessor`, as `save_pretrained`
    writes them) transcribing at 16 kHz, greedy, `language` forced (None: detected). Clips longer than 30 s are
    transcribed whole, by Whisper's sequential long-form algorithm (never cut at 30 s)."""

    sample_rate = 16000

    def __init__(self, path: str | Path, language: str | None = "en", device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8, max_new_tokens: int = 128) -> None:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"Whisper judge: {p} is not a directory; give a local copy of a Whisper model "
                                    "(judge.path=/data/whisper-large-v3): nothing is downloaded")
        missing = [f for f in ("config.json",) if not (p / f).is_file()]
        if not any((p / f).is_file() for f in PROCESSOR_FILES):
            missing.append(" or ".join(PROCESSOR_FILES))
        if missing or not (any(p.glob("*.safetensors")) or any(p.glob("*.bin"))):
            raise FileNotFoundError(f"Whisper judge: {p} lacks {', '.join(missing) or 'the weights'}; expected what "
                                    "WhisperForConditionalGeneration.save_pretrained and WhisperProcessor."
                                    "save_pretrained write")
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(str(p), local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(
            str(p), local_files_only=True, dtype=getattr(torch, dtype)).to(device).eval()
        self.language, self.device, self.batch_size = language, device, batch_size
        self.max_new_tokens = max_new_tokens

    def transcribe(self, wav: torch.Tensor, sample_rate: int, name: str = "<waveform>") -> str:
        return self.transcribe_batch([wav], sample_rate, names=[name])[0]

    def transcribe_batch(self, wavs: list[torch.Tensor], sample_rate: int,
                         names: list[str] | None = None) -> list[str]:
        """Clips up to 30 s in batches of one padded 30-s window each; longer clips in batches of their own through
        Whisper's long-form transcription (`_generate`). Transcripts come back in the order of `wavs`."""
        names = names or [f"<waveform {i}>" for i in range(len(wavs))]
        audio = [resample(check_audio(torch.as_tensor(w).float(), sample_rate, name=n), sample_rate,
                          self.sample_rate).numpy() for w, n in zip(wavs, names)]
        window = WINDOW_S * self.sample_rate
        out = [""] * len(audio)
        for long_form in (False, True):
            group = [i for i, a in enumerate(audio) if (len(a) > window) == long_form]
            for k in range(0, len(group), self.batch_size):
                rows = group[k : k + self.batch_size]
                for i, text in zip(rows, self._generate([audio[i] for i in rows], long_form)):
                    out[i] = text
        return out

    def _generate(self, audio: list, long_form: bool) -> list[str]:
        """One batch of 16 kHz clips -> transcripts.

        short: each clip padded to one 30-s window (B, mel bins, 3000 frames), one greedy decode, no timestamps.
        long:  every frame of every clip (B, mel bins, frames of the longest) with its attention mask; transformers
               runs Whisper's sequential long-form algorithm: decode a 30-s window with timestamps, move the window
               to the last timestamp (or by 30 s), repeat to the end; `max_new_tokens` bounds each window."""
        fe = self.processor.feature_extractor
        kwargs = {"task": "transcribe", "return_timestamps": long_form}
        if self.language:
            kwargs["language"] = self.language
        if long_form:
            inputs = fe(audio, sampling_rate=self.sample_rate, return_tensors="pt", truncation=False,
                        padding="longest", return_attention_mask=True)
            kwargs["attention_mask"] = inputs.attention_mask.to(self.device)
        else:
            inputs = fe(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        feats = inputs.input_features.to(self.device, self.model.dtype)
        with torch.inference_mode():
            ids = self.model.generate(feats, max_new_tokens=self.max_new_tokens, do_sample=False, **kwargs)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
