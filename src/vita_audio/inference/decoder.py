"""The fast decoder: KV-cached backbone and MCTP levels, driven by a schedule (method spec, section 4).

A `Decoder` is one generation. It owns every piece of state (the model object holds none, so generations may
interleave in one process):

    tokens, mask, positions   (B, n)  the rows so far, left-padded; positions restart at 0 after the padding
    backbone cache            a transformers DynamicCache over the tokens the backbone has consumed
    level k (k = 0..K-1)      its own DynamicCache over the windows it has processed, and a buffer of the
                              hidden states h^k of the windows it has not processed yet (its backlog; `levels.py`)

A backbone step consumes every token it has not seen in one forward (after an MCTP run: the run's tokens and the
token before them) and appends their h^0 to level 0's backlog. The k-th MCTP step of a run processes level k's
whole backlog in one call, appends its outputs to level k+1's backlog and emits the token after the newest one.
With x[0..n-1] so far, level k's newest window is t = n-k-2: it combines E(x[n-1]) with h^k[n-k-2] and predicts
x[n], so the result equals a full recompute (`oracle.py`).

`StepPlanner` (`schedule.py`) turns the schedule into each row's steps: with `drafting="audio"` a row takes MCTP
steps only inside audio spans and backbone steps elsewhere. A step whose rows want different levels (or the
backbone and a level) runs each of them once for the whole batch, the levels deepest first (level k must not yet
see the window level k-1 adds at this step) and the backbone last, and gives each row its own: every result equals
a full recompute, so a row decodes the same alone and in any batch.

Verified mode treats an MCTP run as drafts: the next backbone forward checks them (speculative decoding), the
accepted prefix is kept, and every cache is cropped back to the accepted tokens; each level crops its own
length, since the levels hold different numbers of windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from vita_audio.inference.forcing import FORCED, forcer_for
from vita_audio.inference.heads import Heads, check_span_drafting
from vita_audio.inference.lean import backbone_step, lean_supported, level_step
from vita_audio.inference.levels import Level
from vita_audio.inference.sampling import Sampler, Sampling
from vita_audio.inference.schedule import (DEFAULT_DRAFTING, StepPlanner, check_drafting, max_run,
                                          resolve_schedule)
from vita_audio.model.lm import VitaAudioLM


@dataclass
class Step:
    """What one decoder step emitted: one token per row (`tokens` (B,)), each by the backbone, an MCTP module or
    text forcing (`modules` (B,): -1, k or -2). `kind` is "M" when a live row's token came from the backbone, else
    "m" when one came from a module, else "F" (every live row forced: no model call); `level` is the deepest module
    a live row used (0 if none). Rows differ only under audio-only drafting or text forcing in a batch."""

    kind: str
    level: int
    tokens: torch.Tensor  # (B,)
    active: torch.Tensor  # (B,) bool: rows still generating when the token was emitted (False = ignore it)
    modules: torch.Tensor  # (B,) long: -1 = the backbone's token, k = MCTP module k's, -2 = forced text


def left_pad(rows: Sequence[Sequence[int]] | torch.Tensor, attention_mask: torch.Tensor | None = None,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (ids (B, P), mask (B, P)), left-padded. The padding repeats each row's first token, so the
    repetition penalty (which looks at the ids) sees exactly the row's own tokens."""
    if isinstance(rows, torch.Tensor):
        ids = rows if rows.dim() == 2 else rows[None]
        if attention_mask is None:
            return ids.long().to(device), torch.ones_like(ids, dtype=torch.long, device=device)
        rows = [r[m.bool()].tolist() for r, m in zip(ids, attention_mask.reshape(ids.shape))]
    rows = [list(map(int, r)) for r in rows]
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("empty prompt: every row needs at least one token (e.g. the ChatML header of the "
                         "assistant turn)")
    P = max(len(r) for r in rows)
    ids = torch.tensor([[r[0]] * (P - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


class Decoder:
    """One generation over a batch of prompts. Iterate `steps()` (or use `generate`).

    Args:
        lm: the model (any `VitaAudioLM`; eval mode is the caller's business).
        input_ids: (B, P) ids (with `attention_mask` for padded rows) or a list of per-row id lists.
        schedule: a mode name or a list (see `schedule.py`).
        max_new_tokens: tokens per row at most: one number for every row, or a list with one per row (a row
            whose budget is spent stops; the position limit is checked row by row, since positions restart at 0
            in every row: a row needs its own prompt length + its own budget <= the model's positions).
        sampling: `Sampling` (None = greedy).
        seeds: one seed per row (None entries: `sampling.seed`, else a fresh seed); a row's draws depend on its
            seed and its own logits only (`sampling.py`). `self.seeds` holds the seeds used.
        stop_ids: a row stops after emitting one of these; None = `<|im_end|>` and the tokenizer's eos.
        restrict_mctp: MCTP heads over the audio span tokens only, inside audio spans (True), at every MCTP step
            ("always") or never (False); see `heads.py`.
        verify: MCTP tokens are drafts checked by the backbone (output = Vanilla's under greedy decoding);
            each cycle drafts with all N modules, whatever the schedule (and whatever `drafting`).
        drafting: "audio" (the default) = each row takes MCTP steps only inside audio spans, the backbone writes
            its text; "all" = MCTP steps emit any token (the reference's behaviour; random-weight models, which
            never open a span, need it to run MCTP steps at all); see `schedule.py`.
        force_text: per row, the text ids of its interleaved answer (e.g. a TTS request's text), or None: the
            decoder emits them chunk by chunk and the model writes only the audio (`forcing.py`). Needs a model
            with audio markers, unverified decoding, and `interleave_ratio`.
        interleave_ratio: the chunking of the forced answers [T1, A1, ...]; None = the checkpoint's stored
            interleave ratio (`mtp_inference_mode`).
        record_logits: keep each step's logits (tests compare them with full re-forwards).
        audio_features: Plus models: (N, D) encoder frames of every `<|context_of_audio|>` of the prompts, in
            row-major order; the prefill then reads the adapter's embeddings there (`VitaAudioLM.input_embeddings`),
            and so do the MCTP levels' prompt windows.
    """

    def __init__(
        self,
        lm: VitaAudioLM,
        input_ids: Sequence[Sequence[int]] | torch.Tensor,
        *,
        schedule: str | Sequence[int],
        max_new_tokens: int | Sequence[int],
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
    ) -> None:
        self.lm = lm
        bb = lm.backbone
        device = bb.embed_tokens.weight.device
        # verified mode drafts with every module each cycle; the schedule is not used there
        self.schedule = resolve_schedule(schedule, None if verify else lm.num_mctp_modules)
        if verify and lm.num_mctp_modules == 0:
            raise ValueError("verified decoding needs MCTP modules to draft with; this model has none")
        check_span_drafting(lm, check_drafting(drafting), self.schedule, verify)
        self.tokens, self.mask = left_pad(input_ids, attention_mask, device)
        B = self.tokens.shape[0]
        self.planner = StepPlanner(self.schedule, drafting, rows=B)
        self.budgets = _budgets(max_new_tokens, B, device)  # (B,) new tokens per row at most
        n_pos = getattr(bb.config, "max_position_embeddings", None)
        lengths = self.mask.sum(1)  # (B,) each row's own prompt length
        over = [] if n_pos is None else torch.nonzero(lengths + self.budgets > n_pos).flatten().tolist()
        if over:
            i = over[0]
            raise ValueError(f"row {i}: prompt of {int(lengths[i])} tokens + max_new_tokens={int(self.budgets[i])} "
                             f"exceeds the model's {n_pos} positions: shorten the prompt or lower max_new_tokens")
        self.positions = (self.mask.cumsum(1) - 1).clamp_(min=0)  # (B, P)
        self._lean = lean_supported(lm)  # transformers' forward part by part (`lean.py`), else through it
        self._unpadded = bool(self.mask.all())  # no row is padded (new tokens never are)
        ctx = getattr(bb.audio_vocab, "context", None)
        if audio_features is not None and not lm.is_plus:
            raise ValueError("audio_features given, but this model has no continuous audio encoder and adapter (not "
                             "a Plus variant): its audio inputs are audio tokens in the prompt ids")
        if audio_features is None and ctx is not None and bool((self.tokens == ctx).any()):
            raise ValueError("the prompt holds <|context_of_audio|> placeholders but no audio_features were given: "
                             "pass the encoder frames (audio_features=lm.encode_audio(wav, sample_rate))")
        with torch.no_grad():  # Plus: the prompt's input embeddings with the audio frames scattered in (B, P, H)
            self.prompt_embeds = None if audio_features is None else lm.input_embeddings(self.tokens, audio_features)
        self.stop_ids = _default_stop_ids(bb.tokenizer) if stop_ids is None else [int(i) for i in stop_ids]
        self._stop = torch.tensor(self.stop_ids, dtype=torch.long, device=device)
        self.max_new_tokens = int(self.budgets.max())
        if seeds is not None and len(seeds) != B:
            raise ValueError(f"{len(seeds)} seeds for {B} prompt rows: give one seed (or None) per row")
        self.sampler = Sampler(sampling, device, rows=B, seeds=seeds)
        self.seeds = self.sampler.seeds
        self.heads = Heads(lm, self.stop_ids, restrict_mctp)
        self.forcer = None if force_text is None else forcer_for(lm, force_text, interleave_ratio, verify, B,
                                                                 self.stop_ids)
        self._after_forced = [False] * B  # rows whose last token was forced: their next model step is the backbone
        self.verify = verify
        self.draft_len = lm.num_mctp_modules if verify else max_run(self.schedule)
        self.cache = DynamicCache()
        self.seen = 0  # tokens the backbone has consumed
        self.levels = [Level() for _ in range(self.draft_len)]
        self._keep = self.draft_len + 1 if verify else 0
        self.active = torch.ones(B, dtype=torch.bool, device=device)
        self.in_span = torch.zeros(B, dtype=torch.bool, device=device)  # inside an audio span (restricted heads)
        self.generated = 0
        self.backbone_forwards = 0
        self.mctp_steps = 0
        self.accepted: list[int] = []  # verified mode: tokens kept per backbone forward
        self.logits: list[torch.Tensor] | None = [] if record_logits else None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def done(self) -> bool:
        return self.generated >= self.max_new_tokens or not bool(self.active.any())

    # -- model calls -------------------------------------------------------------------------------------------
    def _backbone(self) -> torch.Tensor:
        """Consume every unseen token in one forward; h^0 of those positions (B, q, H) (also level 0's backlog)."""
        n = self.tokens.shape[1]
        if self.seen == 0 and self.prompt_embeds is not None:  # Plus prefill from the scattered embeddings
            h = self.lm.step_embeds(self.prompt_embeds, self.mask[:, :n], self.positions, self.cache)
        elif self._lean:
            h = backbone_step(self.lm, self.tokens[:, self.seen:], self.mask, self.positions[:, self.seen:], self.cache,
                              self.seen, self._unpadded)
        else:
            h = self.lm.backbone.step(self.tokens[:, self.seen:], self.mask, self.positions[:, self.seen:], self.cache)
        if self.levels:
            self.levels[0].append(h, self.seen)
        self.seen = n
        self.backbone_forwards += 1
        return h

    def _level(self, k: int) -> torch.Tensor:
        """Level k over its backlog; its output at the newest window (B, H), which predicts the next token."""
        lv, n = self.levels[k], self.tokens.shape[1]
        if lv.end != n - k - 1:
            raise RuntimeError(f"MCTP level {k} holds windows up to {lv.end - 1}, step needs {n - k - 2}")
        lo, hi = lv.seen, lv.end  # backlog windows
        args = (
            self._embed(lo + k + 1, hi + k + 1),  # (B, W, H) E(x[t+k+1])
            lv.buffer[:, lo - lv.start :],  # (B, W, H) h^k[t]
            self.positions[:, lo + k + 1 : hi + k + 1],  # (B, W)
            self.mask[:, :hi],  # window t is real iff token t is
            lv.cache,
        )
        if self._lean:
            out = level_step(self.lm, k, *args, cached=lo, unpadded=self._unpadded)  # (B, W, H) = h^(k+1)
        else:
            bb = self.lm.backbone
            out = self.lm.mctp.level_step(k, *args, bb.final_norm, bb.rotary_emb)  # (B, W, H) = h^(k+1)
        lv.seen = hi
        if k + 1 < len(self.levels):
            self.levels[k + 1].append(out, lo)
        lv.trim(self._keep)
        self.mctp_steps += 1
        return out[:, -1]

    def _embed(self, a: int, b: int) -> torch.Tensor:
        """Input embeddings of token positions [a, b) (B, b - a, H): the prompt's own (Plus) where it has them."""
        E = self.lm.backbone.embed_tokens
        P = 0 if self.prompt_embeds is None else self.prompt_embeds.shape[1]
        if a >= P:
            return E(self.tokens[:, a:b])
        head = self.prompt_embeds[:, a : min(b, P)]
        return head if b <= P else torch.cat([head, E(self.tokens[:, P:b])], dim=1)

    def _append(self, tok: torch.Tensor) -> None:
        self.tokens = torch.cat([self.tokens, tok[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(tok)[:, None]], dim=1)
        self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)

    def _emit(self, tok: torch.Tensor, modules: torch.Tensor) -> Step:
        live = modules[self.active]
        kind = "M" if bool((live == -1).any()) else "m" if bool((live >= 0).any()) else "F"
        step = Step(kind, max(int(live.max()), 0), tok, self.active.clone(), modules)
        self.in_span = self.heads.span_update(self.in_span, tok)
        self.generated += 1
        self.active &= ~torch.isin(tok, self._stop) & (self.generated < self.budgets)
        return step

    def _record(self, logits: torch.Tensor) -> None:
        if self.logits is not None:
            self.logits.append(logits.detach().clone())

    # -- decoding loops ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def steps(self) -> Iterator[Step]:
        """Run the generation, one `Step` per emitted token (for every row at once)."""
        if self.verify:
            yield from self._verified_steps()
            return
        while not self.done:
            in_span = self.in_span.tolist()
            plan = self.planner.next(in_span, self._after_forced)
            forced = self.forcer.tokens(in_span) if self.forcer is not None else [None] * len(plan)
            modules = torch.tensor([p if f is None else FORCED for p, f in zip(plan, forced)],
                                   device=self.tokens.device)  # (B,)
            logits = self._planned_logits(modules)  # (B, V), None when every live row is forced
            if logits is None:
                tok = torch.tensor([0 if f is None else f for f in forced], device=self.tokens.device)  # (B,)
            else:
                if self.forcer is not None:
                    logits = self.forcer.restrict(logits, in_span)
                self._record(logits)
                tok = self.sampler.pick(self.tokens, logits)
            if self.forcer is not None:
                given = torch.tensor([0 if f is None else f for f in forced], device=tok.device)  # (B,)
                tok = torch.where(modules == FORCED, given, tok)
                self.forcer.advance(forced, tok.tolist(), in_span)
                self._after_forced = [f is not None for f in forced]
            self._append(tok)
            yield self._emit(tok, modules)

    def _planned_logits(self, modules: torch.Tensor) -> torch.Tensor:
        """Each row's logits (B, V) from its planned step (`modules` (B,): -1 = backbone, k = MCTP module k, -2 =
        forced: no model call for it); None when no live row needs a model."""
        live = modules[self.active & (modules != FORCED)].tolist()
        if not live:
            return None
        logits = None
        for k in sorted({m for m in live if m >= 0}, reverse=True):  # deepest level first, the backbone last
            rows = modules == k
            lk = self.heads.mctp(self._level(k), self.in_span, self.active & rows)
            logits = lk if logits is None else torch.where(rows[:, None], lk, logits)
        if logits is None or min(live) < 0:
            lb = self.heads.full(self._backbone()[:, -1])
            logits = lb if logits is None else torch.where((modules < 0)[:, None], lb, logits)
        return logits

    def _verified_steps(self) -> Iterator[Step]:
        """Draft with the MCTP levels, check with the backbone, keep the accepted prefix plus one token.

        Acceptance is the speculative-sampling rule: keep draft d with probability min(1, p(d) / q(d)) (p the
        backbone's distribution, q the draft's), else draw from max(p - q, 0) renormalised and stop; after a
        fully accepted run draw one more token from p. Under greedy decoding p and q are one-hot, so the output
        is exactly the backbone's greedy output.
        """
        if self.batch_size != 1:
            raise ValueError("Decoder(verify=True) decodes one row; `generate` runs a batch row by row")
        logits = self.heads.full(self._backbone()[:, -1])
        self._record(logits)
        tok = self.sampler.pick(self.tokens, logits)
        self._append(tok)
        yield self._emit(tok, torch.full_like(tok, -1))
        while not self.done:
            n0 = self.tokens.shape[1] - 1  # x[n0] is the newest token, not yet seen by the backbone
            budget = self.max_new_tokens - self.generated  # tokens left, the bonus / correction token included
            drafts, q = [], []
            for k in range(min(self.draft_len, budget - 1)):
                dl = self.heads.mctp(self._level(k), self._span_after(self.in_span, drafts))
                qk = self.sampler.probs(self.tokens, dl)  # (1, V)
                d = self.sampler.draw(qk) if self.sampler.cfg.do_sample else qk.argmax(-1)
                self._append(d)
                drafts.append(d)
                q.append(qk)
            h = self._backbone()  # (1, D+1, H): x[n0] and the D drafts
            D = len(drafts)
            mains = self.heads.full(h[0])  # (D+1, V): one pass over the head for every position
            kept: list[tuple[int, torch.Tensor]] = []
            nxt = None
            for i in range(D + 1):
                main = mains[i : i + 1]  # (1, V)
                p = self.sampler.probs(self.tokens[:, : n0 + 1 + i], main)  # context x[0..n0+i]
                if i == D:  # every draft accepted: one more token from the backbone
                    self._record(main)
                    nxt = self.sampler.draw(p) if self.sampler.cfg.do_sample else p.argmax(-1)
                    break
                self._record(main)
                fix = speculative_check(p, q[i], drafts[i], self.sampler)
                if fix is None:
                    kept.append((i, drafts[i]))
                    continue
                nxt = fix
                break
            a = len(kept)
            self._rollback(n0 + a + 1)  # keep x[0..n0+a]
            self._append(nxt)
            self.accepted.append(a + 1)
            for k, d in kept:
                yield self._emit(d, torch.full_like(d, k))
                if self.done:
                    return
            yield self._emit(nxt, torch.full_like(nxt, -1))

    def _span_after(self, in_span: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        for t in tokens:
            in_span = self.heads.span_update(in_span, t)
        return in_span

    def _rollback(self, n_valid: int) -> None:
        """Forget every token from n_valid on: the rows, the backbone cache and each level's windows."""
        drop = self.tokens.shape[1] - n_valid
        if drop > 0:
            self.tokens, self.mask = self.tokens[:, :n_valid], self.mask[:, :n_valid]
            self.positions = self.positions[:, :n_valid]
        if self.seen > n_valid:
            self.cache.crop(n_valid - self.seen)
            self.seen = n_valid
        for k, lv in enumerate(self.levels):
            # level k's window t uses x[t..t+k+1]; its input h^k[t] uses x[t..t+k]
            lv.truncate(processed=max(0, n_valid - k - 1), inputs=max(0, n_valid - k))


def speculative_check(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor, sampler: Sampler) -> torch.Tensor | None:
    """Speculative-sampling acceptance of one draft: None = accepted, else the token that replaces it.

    p (1, V) the backbone's distribution, q (1, V) the one the draft was drawn from. Keep the draft d with
    probability min(1, p(d) / q(d)); otherwise draw from max(p - q, 0) renormalised. The kept-or-replaced token
    is then distributed exactly as p. Greedy (one-hot p and q): kept iff d is the backbone's argmax, else replaced
    by that argmax.
    """
    d = int(draft)
    pd, qd = float(p[0, d]), float(q[0, d])
    if not sampler.cfg.do_sample:
        return None if pd == 1.0 else p.argmax(-1)
    if sampler.uniform() * qd < pd:
        return None
    residual = (p - q).clamp_(min=0)
    return sampler.draw(residual / residual.sum())


def _budgets(max_new_tokens: int | Sequence[int], rows: int, device: torch.device | str) -> torch.Tensor:
    """max_new_tokens (one for all rows, or one per row) -> (rows,) long, each >= 1."""
    if isinstance(max_new_tokens, Sequence):
        budgets = [int(m) for m in max_new_tokens]
        if len(budgets) != rows:
            raise ValueError(f"{len(budgets)} max_new_tokens values for {rows} prompt rows: give one per row")
    else:
        budgets = [int(max_new_tokens)] * rows
    if min(budgets) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    return torch.tensor(budgets, dtype=torch.long, device=device)


def _default_stop_ids(tokenizer) -> list[int]:
    ids = []
    for tok in ("<|im_end|>", getattr(tokenizer, "eos_token", None)):
        if tok is None:
            continue
        i = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(i, int) and i != tokenizer.unk_token_id and i not in ids:
            ids.append(i)
    return ids
