"""The slow decoder: the spec's rules with no cache at all, kept as the test oracle of the fast one.

At every step the whole sequence so far goes through the backbone and the MCTP cascade from scratch
(`VitaAudioLM.hidden_states`); a backbone step reads h^0 at the last position, the k-th MCTP step of a run reads
level k's last window (t = n-k-2, which predicts x[n]). Greedy only, one row at a time.

Drafting "audio" (`schedule.py`), written out here on its own: a scheduled MCTP step outside an audio span is a
backbone step, and k counts the MCTP steps since the last backbone step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vita_audio.inference.decoder import _default_stop_ids
from vita_audio.inference.heads import Heads
from vita_audio.inference.schedule import DEFAULT_DRAFTING, check_drafting, resolve_schedule, schedule_steps
from vita_audio.model.lm import VitaAudioLM


@torch.inference_mode()
def slow_generate(
    lm: VitaAudioLM,
    prompt: Sequence[int],
    *,
    schedule: str | Sequence[int],
    max_new_tokens: int,
    stop_ids: Sequence[int] | None = None,
    restrict_mctp: bool = True,
    drafting: str = DEFAULT_DRAFTING,
) -> tuple[list[int], list[torch.Tensor]]:
    """(new ids, logits (1, V) of every step) of one prompt, by full recomputation."""
    schedule = resolve_schedule(schedule, lm.num_mctp_modules)
    audio_only = check_drafting(drafting) == "audio"
    stops = set(_default_stop_ids(lm.backbone.tokenizer) if stop_ids is None else stop_ids)
    heads = Heads(lm, sorted(stops), restrict_mctp)
    seq, new, logits_per_step = list(prompt), [], []
    device = lm.backbone.embed_tokens.weight.device
    in_span = torch.zeros(1, dtype=torch.bool, device=device)
    run = 0  # MCTP steps since the last backbone step
    for kind, _ in schedule_steps(schedule):
        if len(new) >= max_new_tokens:
            break
        if audio_only and not bool(in_span):
            kind = "M"
        k, run = (run, run + 1) if kind == "m" else (0, 0)
        x = torch.tensor([seq], device=device)
        h0, levels = lm.hidden_states(x, num_levels=0 if kind == "M" else k + 1)
        logits = heads.full(h0[:, -1]) if kind == "M" else heads.mctp(levels[k][:, -1], in_span)
        tok = int(logits.argmax(-1))
        in_span = heads.span_update(in_span, torch.tensor([tok], device=device))
        logits_per_step.append(logits)
        seq.append(tok)
        new.append(tok)
        if tok in stops:
            break
    return new, logits_per_step
