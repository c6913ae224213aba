"""ChatML token ids and labels of one record (method spec, section 6).

    <|im_start|>system\\n{content}<|im_end|>\\n        labels -100
    <|im_start|>user\\n{content}<|im_end|>\\n          labels -100
    <|im_start|>assistant\\n                          labels -100
    {assistant content, interleaved}<|im_end|>\\n     supervised (labels = ids, unshifted)

Each `<|audio|>` becomes `<|begin_of_audio|> audio ids <|end_of_audio|>`; audio codes are mapped to ids with
`AudioVocab.codes_to_ids` and inserted as ids (never as `<|audio_i|>` strings). With an interleave ratio,
assistant content with exactly one audio span is interleaved with its text (`interleave.py`: the text on both
sides of the span, in order, is cut into chunks, spec section 3); without one (`interleave_ratio=None`) every
message keeps its own order, text after an audio span included. A TTS sample (user content = `tts_prompt` +
text, assistant content = one `<|audio|>`) gets the text prepended to the assistant audio first.

Plus variants (continuous input audio): an audio entry that is a float tensor (N, D) of encoder frames becomes
`<|begin_of_audio|>` + N `<|context_of_audio|>` placeholders + `<|end_of_audio|>`; the frames are scattered there
by the model's adapter. Placeholders are inputs only: their labels are always -100. Output audio (assistant
turns) stays discrete codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.data.interleave import interleave
from vita_audio.model.loss import IGNORE_INDEX
from vita_audio.model.vocab import AUDIO_PLACEHOLDER, AudioVocab

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TTS_PROMPT = "Convert the text to speech."
ASR_PROMPT = "Convert the speech to text."


def is_continuous(audio: torch.Tensor) -> bool:
    """True for encoder frames (N, D) float (Plus inputs), False for audio codes (N,) integer."""
    return audio.dim() == 2 and audio.is_floating_point()


class PromptBuilder:
    """Builds (input_ids, labels) of records and generation prompts.

    Args:
        tokenizer: HF tokenizer holding the ChatML specials and the audio vocabulary.
        audio_vocab: ids of the audio markers and codes.
        interleave_ratio: `[T1, A1, ...]` for assistant text/audio interleaving, None to keep them apart.
        tts_prompt: first line of a TTS user message (its text is prepended to the assistant audio).
    """

    def __init__(
        self,
        tokenizer,
        audio_vocab: AudioVocab,
        interleave_ratio: Sequence[int] | None = None,
        tts_prompt: str = TTS_PROMPT,
    ) -> None:
        self.tokenizer, self.vocab = tokenizer, audio_vocab
        self.ratio = None if interleave_ratio is None else [int(r) for r in interleave_ratio]
        self.tts_prompt = tts_prompt
        vocab = tokenizer.get_vocab()
        for tok in (IM_START, IM_END):
            if tok not in vocab:
                raise KeyError(f"tokenizer has no ChatML token {tok!r}: use a ChatML tokenizer (Qwen2.5 or 'tiny')")
        self.im_start, self.im_end = vocab[IM_START], vocab[IM_END]
        self._newline = self._encode(["\n"])[0]
        self._headers = {r: self._encode([f"{r}\n"])[0] for r in ("system", "user", "assistant")}

    def _encode(self, pieces: list[str]) -> list[list[int]]:
        if not pieces:
            return []
        return self.tokenizer(pieces, add_special_tokens=False)["input_ids"]

    def header(self, role: str) -> list[int]:
        """`<|im_start|>{role}\\n`"""
        return [self.im_start, *(self._headers.get(role) or self._encode([f"{role}\n"])[0])]

    def _audio(self, codes: torch.Tensor) -> list[int]:
        if is_continuous(codes):  # Plus: one placeholder position per encoder frame
            if self.vocab.context is None:
                raise ValueError("continuous audio features need <|context_of_audio|> in the vocabulary (a Plus "
                                 "special-token layout)")
            return [self.vocab.context] * int(codes.shape[0])
        return self.vocab.codes_to_ids(codes).tolist()

    def _content(self, role: str, content: str, codes: list[torch.Tensor]) -> list[int]:
        """Ids of one message's content; consumes entries of `codes` in order."""
        parts = content.split(AUDIO_PLACEHOLDER)
        texts = self._encode([p for p in parts if p])
        it = iter(texts)
        text_ids = [next(it) if p else [] for p in parts]
        if role == "assistant" and len(parts) == 2 and self.ratio is not None:  # one audio span: interleave
            if is_continuous(codes[0]):
                raise ValueError("an assistant audio must be audio codes (output audio is discrete), got "
                                 "continuous features")
            return interleave(
                text_ids[0] + text_ids[1], self._audio(codes.pop(0)), self.ratio,
                self.vocab.begin_of_audio, self.vocab.end_of_audio,
            )
        out = list(text_ids[0])
        for t in text_ids[1:]:
            out += [self.vocab.begin_of_audio, *self._audio(codes.pop(0)), self.vocab.end_of_audio, *t]
        return out

    def _tts_text(self, messages: Sequence[tuple[str, str]], i: int) -> str | None:
        """The text to prepend when message i is the audio-only answer of a TTS request."""
        if i == 0 or messages[i][1].strip() != AUDIO_PLACEHOLDER or messages[i - 1][0] != "user":
            return None
        user = messages[i - 1][1]
        if not user.startswith(self.tts_prompt) or AUDIO_PLACEHOLDER in user:
            return None
        return user[len(self.tts_prompt) :].lstrip("\n")

    def build(
        self, messages: Sequence[tuple[str, str]], codes: Sequence[torch.Tensor]
    ) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of a whole conversation; `codes` holds one LongTensor per `<|audio|>`, in order."""
        queue = list(codes)
        ids: list[int] = []
        labels: list[int] = []
        for i, (role, content) in enumerate(messages):
            head = self.header(role)
            if role == "assistant":
                tts_text = self._tts_text(messages, i)
                if tts_text:
                    content = tts_text + content.strip()
            body = self._content(role, content, queue) + [self.im_end, *self._newline]
            ids += head + body
            labels += [IGNORE_INDEX] * len(head)
            if role == "assistant":
                ctx = self.vocab.context
                labels += body if ctx is None else [IGNORE_INDEX if t == ctx else t for t in body]
            else:
                labels += [IGNORE_INDEX] * len(body)
        if queue:
            raise ValueError(f"{len(queue)} audio code sequence(s) left over: more codes than <|audio|> placeholders")
        return ids, labels

    def generation_prompt(
        self, messages: Sequence[tuple[str, str]], codes: Sequence[torch.Tensor] = ()
    ) -> list[int]:
        """Ids of a conversation followed by `<|im_start|>assistant\\n`, for decoding."""
        ids, _ = self.build(messages, codes) if messages else ([], [])
        return ids + self.header("assistant")
