"""`generate`: the token-level entry point. Needs a `VitaAudioLM` and ids, nothing else (no tokenizer, codec or
files), so tests and users can drive any model, including one loaded from a reference-layout directory.

    from vita_audio.inference import generate
    out = generate(lm, [prompt_ids], schedule="boost", max_new_tokens=200)
    out.sequences      # (B, T) new ids per row, padded with the tokenizer's pad id after a row's end
    out.rows()         # [list of ids per row] (cut at `out.lengths`)
    lm.backbone.tokenizer.batch_decode(out.sequences, skip_special_tokens=True)   # the pad id decodes to nothing
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from vita_audio.checkpoint.generation import stored_schedule
from vita_audio.inference.decoder import Decoder, left_pad
from vita_audio.inference.sampling import Sampling
from vita_audio.inference.schedule import DEFAULT_DRAFTING
from vita_audio.model.lm import VitaAudioLM


@dataclass
class GenerationOutput:
    """The new tokens per row and what producing them cost."""

    sequences: torch.Tensor  # (B, T) new ids, `pad_id` after each row's end
    lengths: list[int]  # new tokens per row (a row's stop token included)
    schedule: list[int]
    backbone_forwards: int = 0  # summed over rows when rows were decoded one by one
    mctp_steps: int = 0
    accepted: list[int] = field(default_factory=list)  # verified mode: tokens kept per backbone forward
    logits: list[torch.Tensor] | None = None  # per step (record_logits=True)
    pad_id: int = 0  # what fills `sequences` after a row's end: the tokenizer's pad id (else its eos id)
    seeds: list[int] = field(default_factory=list)  # the seed each row sampled with (reproduces it)

    def rows(self) -> list[list[int]]:
        return [self.sequences[i, :n].tolist() for i, n in enumerate(self.lengths)]

    @property
    def mean_accepted(self) -> float:
        """Verified mode: mean tokens per backbone forward (1.0 = every draft rejected)."""
        return sum(self.accepted) / len(self.accepted) if self.accepted else float("nan")


def default_schedule(lm: VitaAudioLM) -> list[int] | str:
    """Vanilla for a model without MCTP modules; else the schedule stored with the checkpoint
    (`mtp_inference_mode`), else Boost."""
    if lm.num_mctp_modules == 0:
        return "vanilla"  # a stage-1 or Vanilla checkpoint stores its data's interleave ratio, not a schedule
    return stored_schedule(getattr(lm, "generation_config", None)) or "boost"


def pad_token_id(tokenizer) -> int:
    """The id that pads `GenerationOutput.sequences`: the tokenizer's pad token, else its eos token."""
    for name in ("pad_token_id", "eos_token_id"):
        i = getattr(tokenizer, name, None)
        if isinstance(i, int):
            return i
    raise ValueError("the tokenizer has neither a pad nor an eos token, so generated rows cannot be padded: set "
                     "tokenizer.pad_token (Qwen2.5 tokenizers use <|endoftext|>)")


def run_decoder(dec: Decoder) -> GenerationOutput:
    """Drive a `Decoder` to the end and collect its tokens per row."""
    per_row: list[list[int]] = [[] for _ in range(dec.batch_size)]
    for step in dec.steps():
        for i in torch.nonzero(step.active).flatten().tolist():
            per_row[i].append(int(step.tokens[i]))
    return _collect(per_row, dec.schedule, dec.backbone_forwards, dec.mctp_steps, dec.accepted, dec.logits,
                    pad_token_id(dec.lm.backbone.tokenizer), dec.seeds)


def _collect(per_row, schedule, forwards, mctp_steps, accepted, logits, pad_id, seeds) -> GenerationOutput:
    T = max((len(r) for r in per_row), default=0)
    seq = torch.full((len(per_row), T), pad_id, dtype=torch.long)
    for i, r in enumerate(per_row):
        seq[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return GenerationOutput(seq, [len(r) for r in per_row], list(schedule), forwards, mctp_steps, list(accepted),
                            logits, pad_id, list(seeds))


def generate(
    lm: VitaAudioLM,
    input_ids: Sequence[Sequence[int]] | torch.Tensor,
    *,
    schedule: str | Sequence[int] | None = None,
    max_new_tokens: int | Sequence[int] = 256,
    sampling: Sampling | None = None,
    stop_ids: Sequence[int] | None = None,
    attention_mask: torch.Tensor | None = None,
    restrict_mctp: bool | str = True,
    verify: bool = False,
    record_logits: bool = False,
    audio_features: torch.Tensor | None = None,
    seeds: Sequence[int | None] | None = None,
    drafting: str = DEFAULT_DRAFTING,
    force_text: Sequence[Sequence[int] | None] | None = None,
    interleave_ratio: Sequence[int] | None = None,
) -> GenerationOutput:
    """Decode new tokens for each prompt row.

    Args:
        lm: any `VitaAudioLM` (put it in eval mode).
        input_ids: (B, P) ids (with `attention_mask` when padded) or a list of id lists (left-padded here).
        schedule: "vanilla" | "balance" | "boost" | "turbo" or a list [a1, b1, ...]; None = the checkpoint's.
        max_new_tokens: new tokens per row at most (one number, or a list with one per row).
        sampling: a `Sampling`; None = greedy.
        stop_ids: a row ends after emitting one of these; None = `<|im_end|>` and eos; [] = never stop early.
        restrict_mctp: MCTP steps compute logits over the audio span tokens (and stop ids) only.
        verify: MCTP tokens are drafts that the backbone verifies (greedy output = Vanilla's). Rows are decoded
            one at a time (their accepted lengths differ).
        record_logits: keep the logits of every step (batch decoding only; for tests).
        audio_features: Plus models: (N, D) encoder frames of every `<|context_of_audio|>` of the prompts, in
            row-major order (`lm.encode_audio`).
        seeds: one seed per row (None entries: `sampling.seed`, else fresh); a row samples the same tokens alone
            and inside any batch. The seeds used are in `out.seeds`.
        drafting: "audio" (the default) = MCTP steps inside audio spans only (the backbone writes the text: a
            greedy answer without audio is Vanilla's); "all" = MCTP steps emit any token (the reference's; needed
            for MCTP steps on random weights, which never open a span). See `schedule.py`.
        force_text: per row, the text ids of its interleaved answer (a TTS request's text), or None: the decoder
            emits them chunk by chunk (`interleave_ratio`, default the checkpoint's) and the model writes
            only the audio; the rows' text is then exactly these ids (`forcing.py`). Not with `verify`.
    """
    schedule = default_schedule(lm) if schedule is None else schedule
    kwargs = dict(schedule=schedule, sampling=sampling, stop_ids=stop_ids, restrict_mctp=restrict_mctp, verify=verify,
                  record_logits=record_logits, drafting=drafting, force_text=force_text,
                  interleave_ratio=interleave_ratio)
    if not verify:
        return run_decoder(Decoder(lm, input_ids, attention_mask=attention_mask, audio_features=audio_features,
                                   max_new_tokens=max_new_tokens, seeds=seeds, **kwargs))
    ids, mask = left_pad(input_ids, attention_mask)
    rows = [r[m.bool()].tolist() for r, m in zip(ids, mask)]
    budgets = list(max_new_tokens) if isinstance(max_new_tokens, Sequence) else [max_new_tokens] * len(rows)
    seeds = list(seeds) if seeds is not None else [None] * len(rows)
    if len(budgets) != len(rows) or len(seeds) != len(rows):
        raise ValueError(f"{len(rows)} prompt rows but {len(budgets)} max_new_tokens values and {len(seeds)} seeds: "
                         "give one per row")
    feats: list[torch.Tensor | None] = [None] * len(rows)
    if audio_features is not None:  # each row's own frames: as many as its placeholders, in order
        ctx = getattr(lm.backbone.audio_vocab, "context", None)
        counts = [sum(t == ctx for t in r) for r in rows]
        if sum(counts) != audio_features.shape[0]:
            raise ValueError(f"{sum(counts)} audio placeholder position(s) in the prompts but "
                             f"{audio_features.shape[0]} encoder frame(s)")
        feats = [f if n else None for f, n in zip(audio_features.split(counts), counts)]
    outs = [run_decoder(Decoder(lm, [r], audio_features=f, max_new_tokens=n, seeds=[s], **kwargs))
            for r, f, n, s in zip(rows, feats, budgets, seeds)]
    return _collect([o.rows()[0] for o in outs], outs[0].schedule, sum(o.backbone_forwards for o in outs),
                    sum(o.mctp_steps for o in outs), [a for o in outs for a in o.accepted], None, outs[0].pad_id,
                    [o.seeds[0] for o in outs])
