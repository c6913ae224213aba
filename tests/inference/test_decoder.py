"""The fast decoder against the slow oracle: tokens, logits, batching, restricted heads, verified mode.

The reference's decoding (MCTP steps emit any token: `drafting="all"`) is asked for explicitly wherever a test compares
with the oracle or needs MCTP steps outside audio spans (these random models never open one); audio-only drafting
has its own tests (test_drafting.py)."""

from __future__ import annotations

import pytest
import torch

from tests.inference.conftest import N_MODULES, mixed_with_a_stopped_row, spy_mctp, tiny_lm
from vita_audio.inference import Decoder, Sampling, generate
from vita_audio.inference.generate import run_decoder
from vita_audio.inference.heads import Heads
from vita_audio.inference.oracle import slow_generate

SCHEDULES = ["vanilla", [1, N_MODULES], [1, 2, 3, N_MODULES], [1, 3, 2, 1], [2, 4, 1, 1]]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=str)
@pytest.mark.parametrize("restrict", [True, False], ids=["audio-head", "full-head"])
def test_fast_equals_slow_oracle_tokens_and_logits(lm, prompts, schedule, restrict):
    for p in prompts:
        slow, slow_logits = slow_generate(lm, p, schedule=schedule, max_new_tokens=24, stop_ids=[],
                                          restrict_mctp=restrict, drafting="all")
        fast = generate(lm, [p], schedule=schedule, max_new_tokens=24, stop_ids=[], restrict_mctp=restrict,
                        record_logits=True, drafting="all")
        assert fast.rows()[0] == slow
        assert len(fast.logits) == len(slow_logits) == 24
        for a, b in zip(fast.logits, slow_logits):  # -inf where restricted: compare the finite entries
            assert torch.equal(a.isinf(), b.isinf())
            torch.testing.assert_close(a[a.isfinite()], b[b.isfinite()], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("schedule", ["vanilla", [1, 3, 2, 4]], ids=str)
def test_batch_of_three_equals_each_row_alone(lm, prompts, schedule):
    kw = dict(schedule=schedule, max_new_tokens=20, stop_ids=[], drafting="all")
    batch = generate(lm, prompts, **kw)
    singles = [generate(lm, [p], **kw).rows()[0] for p in prompts]
    assert batch.rows() == singles
    slow = [slow_generate(lm, p, **kw)[0] for p in prompts]
    assert batch.rows() == slow


def test_batch_rows_stop_on_their_own_in_mixed_span_states(spans, span_prompts):
    """The real stop ids (<|im_end|>): rows stop at different steps while the others are in and out of audio
    spans; every row equals decoding it alone (restricted heads), and stops right after its stop token."""
    dec = Decoder(spans, span_prompts, schedule=[1, N_MODULES], max_new_tokens=30, drafting="all")  # default stops
    calls = spy_mctp(dec)
    out = run_decoder(dec)
    assert mixed_with_a_stopped_row(calls) > 0  # the premise: the mixed branch ran with a stopped row
    stop = spans.backbone.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert dec.stop_ids[0] == stop
    rows = out.rows()
    ended = [r[-1] == stop for r in rows]
    assert any(ended) and not all(ended) and len(set(out.lengths)) > 1
    assert all(stop not in r[:-1] for r in rows)
    alone = [generate(spans, [p], schedule=[1, N_MODULES], max_new_tokens=30, drafting="all").rows()[0]
             for p in span_prompts]
    assert rows == alone
    # the greedy tokens under stop_ids=[] continue the stopped rows: the stop cut them at their stop token
    free = generate(spans, span_prompts, schedule=[1, N_MODULES], max_new_tokens=30, stop_ids=[], drafting="all").rows()
    assert [f[: len(r)] for f, r in zip(free, rows)] == rows


def test_restricted_head_needs_the_audio_range_in_the_vocabulary():
    """A tokenizer whose audio ids lie past the model's head: a restricted head is refused by name, an unrestricted
    decoder builds no slice and decodes."""
    import dataclasses

    lm = tiny_lm(seed=2)
    bb = lm.backbone
    bb.audio_vocab = dataclasses.replace(bb.audio_vocab, audio_offset=bb.vocab_size + 8)
    with pytest.raises(ValueError, match="audio vocabulary inside the model's head.*restrict_mctp=False"):
        Heads(lm, [], restrict_mctp=True)
    with pytest.raises(ValueError, match="audio vocabulary inside"):
        generate(lm, [[1, 2, 3]], schedule=[1, 2], max_new_tokens=4, stop_ids=[], restrict_mctp="always")
    out = generate(lm, [[1, 2, 3]], schedule=[1, 2], max_new_tokens=6, stop_ids=[], restrict_mctp=False)
    assert out.lengths == [6]
    assert not hasattr(Heads(lm, [], restrict_mctp=False), "codes")  # no slice built when unused


def test_position_limit_is_checked_row_by_row(lm):
    """Positions restart in every row: a long prompt with a small budget and a short prompt with a large one fit
    together, though the padded length + the largest budget exceeds the model's positions."""
    n_pos = lm.backbone.config.max_position_embeddings  # 2048
    long, short = [3 + i % 250 for i in range(n_pos - 12)], [5, 6, 7]
    out = generate(lm, [long, short], schedule=[1, 2], max_new_tokens=[10, 40], stop_ids=[])
    assert out.lengths == [10, 40]  # each row stops at its own budget
    assert out.rows()[1] == generate(lm, [short], schedule=[1, 2], max_new_tokens=40, stop_ids=[]).rows()[0]
    with pytest.raises(ValueError, match="row 0: prompt of 2036 tokens \\+ max_new_tokens=13 exceeds the model's 2048"):
        generate(lm, [long, short], schedule=[1, 2], max_new_tokens=[13, 40], stop_ids=[])
    with pytest.raises(ValueError, match="one per row"):
        generate(lm, [long, short], schedule=[1, 2], max_new_tokens=[10], stop_ids=[])


def test_sequences_are_padded_with_the_tokenizer_pad_id(spans, span_prompts):
    tok = spans.backbone.tokenizer
    out = generate(spans, span_prompts, schedule=[1, N_MODULES], max_new_tokens=30)
    assert len(set(out.lengths)) > 1  # rows of different lengths: some padding
    assert out.pad_id == tok.pad_token_id
    for i, n in enumerate(out.lengths):
        assert (out.sequences[i, n:] == tok.pad_token_id).all()
    rows = out.rows()
    assert [len(r) for r in rows] == out.lengths
    assert tok.batch_decode(out.sequences, skip_special_tokens=True) == \
        [tok.decode(r, skip_special_tokens=True) for r in rows]


def test_restricted_head_equals_full_head_on_audio_spans(spans, span_prompts):
    """On every MCTP hidden state of a run: the restricted logits equal the full head's on the span tokens, are
    -inf elsewhere, and (greedy) pick what the full head picks whenever the full head picks a span token. End to
    end, inside an audio span a restricted run emits only span tokens at MCTP steps, where the full head (on this
    model) often emits text."""
    av = spans.backbone.audio_vocab
    stop = spans.backbone.tokenizer.convert_tokens_to_ids("<|im_end|>")
    span = sorted({av.begin_of_audio, av.end_of_audio, stop, *range(av.audio_offset, av.audio_end)})
    heads = Heads(spans, [stop], restrict_mctp=True)
    picked_span = in_span_steps = full_text_in_span = 0
    for p in span_prompts:
        dec = Decoder(spans, [p], schedule=[1, N_MODULES], max_new_tokens=30, restrict_mctp=False, drafting="all")
        hidden, level = [], dec._level
        dec._level = lambda k, hidden=hidden, level=level: hidden.append(level(k)) or hidden[-1]
        full_run = [(s.kind, int(s.tokens[0])) for s in dec.steps()]
        for h in hidden:
            with torch.inference_mode():
                full, restricted = heads.full(h), heads.restricted(h)
            torch.testing.assert_close(restricted[0, span], full[0, span])
            others = torch.ones(full.shape[1], dtype=torch.bool)
            others[span] = False
            assert torch.isinf(restricted[0, others]).all()
            if int(full.argmax()) in span:
                picked_span += 1
                assert int(restricted.argmax()) == int(full.argmax())
        full_text_in_span += sum(1 for kind, tok, inside in _with_span_state(full_run, av)
                                 if kind == "m" and inside and tok not in span)
        dec = Decoder(spans, [p], schedule=[1, N_MODULES], max_new_tokens=30, drafting="all")
        for kind, tok, inside in _with_span_state([(s.kind, int(s.tokens[0])) for s in dec.steps()], av):
            if kind == "m" and inside:
                in_span_steps += 1
                assert tok in span
    assert picked_span > 0 and in_span_steps > 0 and full_text_in_span > 0  # the premises


def _with_span_state(steps, av):
    """(kind, token) per step -> (kind, token, inside an audio span when the token was picked)."""
    inside = False
    for kind, tok in steps:
        yield kind, tok, inside
        inside = (inside or tok == av.begin_of_audio) and tok != av.end_of_audio


def test_mctp_steps_outside_a_span_use_the_full_head():
    """Turbo on a model that wants text after an audio chunk: outside a span the MCTP step may emit text."""
    lm = tiny_lm(seed=5)
    av = lm.backbone.audio_vocab
    with torch.no_grad():  # the head strongly prefers <|begin_of_audio|> then text token 42 over everything
        w = lm.backbone.lm_head.weight
        w[av.begin_of_audio] *= 0
        w[42] = w[42] * 0 + w.abs().max() * 3 * torch.sign(w[42] + 1e-3)
    kw = dict(schedule=[1, N_MODULES], max_new_tokens=15, stop_ids=[], drafting="all")
    full = generate(lm, [[1, 2, 3]], restrict_mctp=False, **kw)
    fast = generate(lm, [[1, 2, 3]], **kw)
    assert fast.rows() == full.rows() and fast.mctp_steps > 0  # no audio span opened: restricted never applies


def test_restricted_and_full_heads_agree_on_an_audio_trained_model():
    """A model whose LM head favours audio rows: the restricted and full-head decoders give the same tokens."""
    lm = tiny_lm(seed=3)
    av = lm.backbone.audio_vocab
    with torch.no_grad():
        lm.backbone.lm_head.weight[av.audio_offset:av.audio_end] *= 40.0
    p = list(range(10, 17))
    full = generate(lm, [p], schedule=[1, N_MODULES], max_new_tokens=25, stop_ids=[], restrict_mctp=False)
    fast = generate(lm, [p], schedule=[1, N_MODULES], max_new_tokens=25, stop_ids=[], restrict_mctp=True)
    assert all(av.audio_offset <= t < av.audio_end for t in full.rows()[0][1:])  # the premise holds
    assert fast.rows() == full.rows()


def test_padded_vocabulary_rows_are_never_sampled():
    lm = tiny_lm(seed=4)
    bb = lm.backbone
    valid = len(bb.tokenizer)
    assert bb.vocab_size > valid, "the tiny preset pads its embedding (multiple of 8)"
    with torch.no_grad():  # make the padding rows the most likely tokens by far
        bb.lm_head.weight[valid:] = bb.lm_head.weight[:valid].abs().max() * 50
    out = generate(lm, [[1, 2, 3]], schedule="vanilla", max_new_tokens=10, stop_ids=[],
                   sampling=Sampling(temperature=2.0, top_k=0, top_p=1.0, seed=0))
    assert max(out.rows()[0]) < valid


def test_sampling_is_reproducible_and_seed_dependent(lm, prompts):
    def run(seed):
        return generate(lm, prompts, schedule=[1, 3], max_new_tokens=20, stop_ids=[], drafting="all",
                        sampling=Sampling(temperature=1.5, top_k=0, top_p=1.0, seed=seed)).rows()

    assert run(0) == run(0)
    assert run(0) != run(1)
    # the reference defaults (T 0.7, top-k 20, top-p 0.8, repetition penalty 1.05): every token is among the
    # backbone's / module's top 20 and the draws are reproducible
    kw = dict(schedule=[1, 3], max_new_tokens=12, stop_ids=[], sampling=Sampling(seed=0), record_logits=True,
              drafting="all")
    a, b = generate(lm, prompts[:1], **kw), generate(lm, prompts[:1], **kw)
    assert a.rows() == b.rows()
    for tok, logits in zip(a.rows()[0], a.logits):
        assert tok in logits[0].topk(20).indices.tolist()


def test_two_interleaved_generations_equal_two_separate_ones(lm, prompts):
    kw = dict(schedule=[1, 2, 2, 4], max_new_tokens=18, stop_ids=[], sampling=Sampling(temperature=1.2, seed=5),
              drafting="all")
    alone = [generate(lm, [p], **kw).rows()[0] for p in prompts[:2]]
    a, b = (Decoder(lm, [p], **kw) for p in prompts[:2])
    got: list[list[int]] = [[], []]
    for sa, sb in zip(a.steps(), b.steps()):  # strictly alternating steps of two live generations
        got[0].append(int(sa.tokens[0]))
        got[1].append(int(sb.tokens[0]))
    assert got == alone


def test_backbone_forwards_per_schedule(lm):
    """After an MCTP run the backbone consumes the whole run in one forward: forwards = number of "M" steps."""
    out = generate(lm, [[5, 6, 7]], schedule=[1, 4], max_new_tokens=20, stop_ids=[], drafting="all")
    assert (out.backbone_forwards, out.mctp_steps) == (4, 16)
    out = generate(lm, [[5, 6, 7]], schedule="vanilla", max_new_tokens=20, stop_ids=[])
    assert (out.backbone_forwards, out.mctp_steps) == (20, 0)


def test_eager_attention_decodes_like_sdpa(prompts):
    sdpa, eager = tiny_lm(attn="sdpa"), tiny_lm(attn="eager")
    for p in prompts[:2]:
        a = generate(sdpa, [p], schedule=[1, 2, 2, 4], max_new_tokens=20, stop_ids=[], drafting="all").rows()
        b = generate(eager, [p], schedule=[1, 2, 2, 4], max_new_tokens=20, stop_ids=[], drafting="all").rows()
        assert a == b


# -- verified mode -------------------------------------------------------------------------------------------------
def _good_drafter(dec: Decoder, truth: list[int], wrong_every: int):
    """Patch a decoder so its MCTP heads mostly draft the true Vanilla continuation (the tiny random model's own
    drafts are almost always rejected), and check every MCTP level's output against a full recompute."""
    lm, heads, prompt_len = dec.lm, dec.heads, dec.tokens.shape[1]
    level = dec._level

    def checked_level(k):
        h = level(k)
        _, full = lm.hidden_states(dec.tokens, num_levels=k + 1)
        torch.testing.assert_close(h, full[k][:, -1], rtol=1e-4, atol=1e-5)
        return h

    def drafting_head(h, in_span=None):
        i = dec.tokens.shape[1] - prompt_len  # index of the token this step predicts
        logits = torch.full((1, heads.vocab_size), -1e4)
        want = truth[i] if i < len(truth) and i % wrong_every else (truth[i] + 1) % heads.valid if i < len(truth) else 0
        logits[0, want] = 0.0
        return logits

    dec._level = checked_level
    heads.mctp = drafting_head


@pytest.mark.parametrize("wrong_every", [2, 3, 5, 1000])
def test_verified_equals_vanilla_with_partial_acceptance(lm, prompts, wrong_every):
    for p in prompts:
        vanilla = generate(lm, [p], schedule="vanilla", max_new_tokens=40, stop_ids=[]).rows()[0]
        dec = Decoder(lm, [p], schedule="vanilla", max_new_tokens=40, stop_ids=[], verify=True)
        _good_drafter(dec, vanilla, wrong_every)
        got = [int(s.tokens[0]) for s in dec.steps()]
        assert got == vanilla
        assert sum(dec.accepted) == len(vanilla) - 1  # every token after the prefill came from a verify forward
        assert max(dec.accepted) > 1  # drafts were accepted, so the caches were rolled back partially


def test_verified_equals_vanilla_on_many_prompts(lm):
    g = torch.Generator().manual_seed(7)
    rows = [torch.randint(0, 250, (int(n),), generator=g).tolist() for n in torch.randint(2, 12, (12,), generator=g)]
    vanilla = generate(lm, rows, schedule="vanilla", max_new_tokens=25, stop_ids=[])
    verified = generate(lm, rows, max_new_tokens=25, stop_ids=[], verify=True, restrict_mctp=False)
    assert verified.rows() == vanilla.rows()


def test_verified_accepts_exactly_the_drafts_that_match_vanilla(spans, span_prompts):
    """Greedy verified mode, the model's own drafts: each cycle keeps the longest prefix of its drafts that equals
    the Vanilla continuation, plus one token (the oracle, from the drafts the backbone was shown)."""
    counts = []
    for p in span_prompts:
        vanilla = generate(spans, [p], schedule="vanilla", max_new_tokens=30, stop_ids=[]).rows()[0]
        dec = Decoder(spans, [p], schedule="vanilla", max_new_tokens=30, stop_ids=[], verify=True)
        drafts, backbone = [], dec._backbone

        def shown(dec=dec, drafts=drafts, backbone=backbone, prompt_len=len(p)):
            if dec.seen:  # a verify forward: x[n0] (new token n0 - P) and the drafts after it
                drafts.append((dec.seen - prompt_len, dec.tokens[0, dec.seen + 1 :].tolist()))
            return backbone()

        dec._backbone = shown
        assert [int(s.tokens[0]) for s in dec.steps()] == vanilla
        oracle = []
        for j0, d in drafts:
            a = 0
            while a < len(d) and j0 + 1 + a < len(vanilla) and d[a] == vanilla[j0 + 1 + a]:
                a += 1
            oracle.append(a + 1)
        assert dec.accepted == oracle
        counts += oracle
    assert 1 in counts and max(counts) > 1  # the premise: drafts were both rejected and accepted


def test_verified_sampling_is_seeded(lm, prompts):
    kw = dict(max_new_tokens=20, stop_ids=[], verify=True, sampling=Sampling(temperature=1.0, seed=3))
    assert generate(lm, prompts[:1], **kw).rows() == generate(lm, prompts[:1], **kw).rows()


def test_default_schedule_comes_from_the_checkpoint(lm):
    from transformers import GenerationConfig

    lm.generation_config = GenerationConfig(mtp_inference_mode=[1, 2])
    try:
        out = generate(lm, [[3, 4]], max_new_tokens=9, stop_ids=[], drafting="all")
        assert out.schedule == [1, 2] and out.backbone_forwards == 3
    finally:
        del lm.generation_config
    plain = tiny_lm(num_modules=0)
    plain.generation_config = GenerationConfig(mtp_inference_mode=[1, 10, 4, 10])  # a stage-1 export stores its data's ratio
    assert generate(plain, [[3, 4]], max_new_tokens=3, stop_ids=[]).schedule == [1, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(input_ids=[[]]), "empty prompt"), (dict(input_ids=[]), "empty prompt"),
     (dict(input_ids=[[1] * 2040], max_new_tokens=20), "positions"), (dict(schedule="warp"), "unknown decode mode"),
     (dict(schedule=[1, 2, 3]), "even length"), (dict(max_new_tokens=0), "max_new_tokens")],
)
def test_bad_inputs_are_clear_errors(lm, kwargs, match):
    args = dict(input_ids=[[1, 2]], schedule="vanilla", max_new_tokens=4) | kwargs
    with pytest.raises(ValueError, match=match):
        generate(lm, args.pop("input_ids"), **args)


def test_verified_needs_mctp_modules():
    with pytest.raises(ValueError, match="needs MCTP modules"):
        generate(tiny_lm(num_modules=0), [[1, 2]], max_new_tokens=4, verify=True)


def test_speculative_acceptance_keeps_the_backbone_distribution():
    """The acceptance rule: draft from q, keep-or-replace -> the token is distributed as p (Monte Carlo, 20k)."""
    from vita_audio.inference.decoder import speculative_check
    from vita_audio.inference.sampling import Sampler

    p = torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]])
    q = torch.tensor([[0.1, 0.1, 0.4, 0.2, 0.2]])  # a poor drafter: mass where p has little or none
    sampler = Sampler(Sampling(temperature=1.0, seed=0))
    n, counts = 20000, torch.zeros(5)
    for _ in range(n):
        d = sampler.draw(q)
        fix = speculative_check(p, q, d, sampler)
        counts[int(d if fix is None else fix)] += 1
    torch.testing.assert_close(counts / n, p[0], atol=0.015, rtol=0)
    # greedy: kept iff the draft is the backbone's argmax, else replaced by it
    greedy = Sampler(Sampling.greedy())
    one_hot = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    assert speculative_check(one_hot, one_hot, torch.tensor([1]), greedy) is None
    assert int(speculative_check(one_hot, one_hot, torch.tensor([3]), greedy)) == 1
