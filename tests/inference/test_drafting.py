"""Audio-only MCTP drafting (`drafting="audio"`): the backbone writes every token outside audio spans, so a greedy
answer without audio is exactly Vanilla's; MCTP steps still write the audio spans; the slow oracle agrees; a model
without audio markers is refused by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.inference.conftest import N_MODULES, tiny_lm
from vita_audio.inference import Decoder, Sampling, generate, stream
from vita_audio.inference.heads import Heads
from vita_audio.inference.oracle import slow_generate
from vita_audio.inference.schedule import schedule_steps
from vita_audio.inference.stream import collect

SCHEDULES = [[1, N_MODULES], [1, 2, 2, 4], [2, 4, 1, 1]]
RESTART_PROMPTS = [[48, 237, 167, 110], [214, 194, 170]]  # `span_lm` opens a span in the middle of an MCTP run


@pytest.fixture(scope="module")
def lm10():
    return tiny_lm(num_modules=10)


def _steps(lm, prompt, schedule, n, **kw) -> list[tuple[str, int, bool]]:
    """(kind, token, inside an audio span when it was picked) of each step of one row."""
    av = lm.backbone.audio_vocab
    out, inside = [], False
    for s in Decoder(lm, [prompt], schedule=schedule, max_new_tokens=n, **kw).steps():
        tok = int(s.tokens[0])
        out.append((s.kind, tok, inside))
        inside = (inside or tok == av.begin_of_audio) and tok != av.end_of_audio
    return out


@pytest.mark.parametrize("schedule", ["turbo", "boost", "balance"])
def test_an_answer_without_audio_is_vanillas(lm10, prompts, schedule):
    """A model that never opens an audio span: batch and single rows give Vanilla's tokens, with no MCTP step."""
    bov = lm10.backbone.audio_vocab.begin_of_audio
    kw = dict(max_new_tokens=24)
    vanilla = generate(lm10, prompts, schedule="vanilla", **kw)
    assert all(bov not in r for r in vanilla.rows())  # the premise: no audio span in any answer
    batch = generate(lm10, prompts, schedule=schedule, drafting="audio", **kw)
    assert batch.rows() == vanilla.rows() and batch.mctp_steps == 0
    for p, want in zip(prompts, vanilla.rows()):
        assert generate(lm10, [p], schedule=schedule, drafting="audio", **kw).rows()[0] == want
    assert generate(lm10, prompts, schedule=schedule, drafting="all", **kw).rows() != vanilla.rows()  # MCTP text


def test_sampled_answers_without_audio_are_vanillas(lm10, prompts):
    """Sampling: a row draws from its own seed and logits only, so with every token from the backbone the draws
    are Vanilla's too."""
    kw = dict(max_new_tokens=20, stop_ids=[], sampling=Sampling(temperature=1.3, seed=0), seeds=[4, 5, 6])
    assert generate(lm10, prompts, schedule="turbo", drafting="audio", **kw).rows() == \
        generate(lm10, prompts, schedule="vanilla", **kw).rows()


def test_span_model_text_is_the_backbones_and_spans_are_mctps(spans, span_prompts):
    """A model whose head opens audio spans: rows without a span equal Vanilla's, rows with one equal Vanilla's up to
    its first <|begin_of_audio|>; every token picked outside a span is a backbone step's and is the backbone's
    greedy token for its prefix (a full forward); MCTP steps write the spans, at far fewer backbone forwards per
    audio token than Vanilla's one."""
    av = spans.backbone.audio_vocab
    heads = Heads(spans, [], restrict_mctp=False)
    vanilla = generate(spans, span_prompts, schedule="vanilla", max_new_tokens=40).rows()
    with_span = [av.begin_of_audio in r for r in vanilla]
    assert any(with_span) and not all(with_span)  # the premises
    audio_tokens = audio_forwards = mctp_in_span = 0
    for schedule in SCHEDULES:
        for p, want in zip(span_prompts, vanilla):
            steps = _steps(spans, p, schedule, 40, drafting="audio")
            got = [t for _, t, _ in steps]
            if av.begin_of_audio in want:
                cut = want.index(av.begin_of_audio) + 1
                assert got[:cut] == want[:cut]
            else:
                assert got == want
            assert all(kind == "M" for kind, _, inside in steps if not inside)
            with torch.inference_mode():
                h0, _ = spans.hidden_states(torch.tensor([p + got]), num_levels=0)
                picks = heads.full(h0[0, len(p) - 1 : -1]).argmax(-1).tolist()  # the backbone's pick at each step
            assert all(t == picks[i] for i, (kind, t, _) in enumerate(steps) if kind == "M")
            audio = [kind for kind, t, inside in steps if inside or t == av.begin_of_audio]
            audio_tokens += len(audio)
            audio_forwards += audio.count("M")
            mctp_in_span += sum(1 for kind, _, inside in steps if kind == "m" and inside)
    assert mctp_in_span > 0 and audio_forwards / audio_tokens < 0.5


@pytest.mark.parametrize("schedule", SCHEDULES, ids=str)
def test_fast_equals_slow_oracle_with_audio_drafting(spans, span_prompts, schedule):
    """The cached decoder against the oracle's own statement of the rule: tokens and every step's logits, on
    answers that enter and leave audio spans, some opening one in the middle of a scheduled MCTP run (a backbone
    step there consumes the run's tokens, and the run's next MCTP steps use modules 0, 1, ... on the levels'
    carried-over backlogs)."""
    restarts = n_mctp = 0
    for p in [*span_prompts, *RESTART_PROMPTS]:
        slow, slow_logits = slow_generate(spans, p, schedule=schedule, max_new_tokens=30, drafting="audio")
        dec = Decoder(spans, [p], schedule=schedule, max_new_tokens=30, drafting="audio", record_logits=True)
        planned = schedule_steps(dec.schedule)
        steps = [(s, next(planned)) for s in dec.steps()]
        assert [int(s.tokens[0]) for s, _ in steps] == slow
        for a, b in zip(dec.logits, slow_logits):
            assert torch.equal(a.isinf(), b.isinf())
            torch.testing.assert_close(a[a.isfinite()], b[b.isfinite()], rtol=1e-4, atol=1e-5)
        n_mctp += dec.mctp_steps
        restarts += sum(1 for s, (kind, k) in steps if s.kind == "m" and s.level != k)
    assert n_mctp > 0 and restarts > 0  # the premises


@pytest.mark.parametrize("sampling", [None, Sampling(temperature=1.2, seed=0)], ids=["greedy", "sampled"])
def test_a_row_decodes_the_same_alone_and_in_a_batch(spans, span_prompts, sampling):
    """Each row follows its own plan: in a batch a step may give one row the backbone's token and another an MCTP
    module's (rows in and out of spans, at different modules, some stopped), and every row equals decoding it alone."""
    kw = dict(schedule=[1, N_MODULES], max_new_tokens=40, drafting="audio", sampling=sampling)
    prompts = [*span_prompts, *RESTART_PROMPTS]
    seeds = list(range(len(prompts)))
    dec = Decoder(spans, prompts, seeds=seeds, **kw)
    steps = list(dec.steps())
    rows = [[int(s.tokens[i]) for s in steps if s.active[i]] for i in range(len(prompts))]
    assert rows == [generate(spans, [p], seeds=[i], **kw).rows()[0] for i, p in enumerate(prompts)]
    mixed = [s for s in steps if len(set(s.modules[s.active].tolist())) > 1]  # rows on different steps
    assert any((s.modules[s.active] < 0).any() for s in mixed)  # the premises: the backbone beside a module ...
    assert any(not s.active.all() for s in mixed)  # ... with a stopped row
    two_modules = any(len(set(s.modules[s.active].tolist()) - {-1}) > 1 for s in mixed)
    assert two_modules or sampling is not None  # ... and (greedy) two modules at one step


def test_stream_decodes_with_the_drafting_asked(spans, span_prompts):
    p = span_prompts[2]
    for drafting in ("audio", "all"):
        out = generate(spans, [p], schedule=[1, N_MODULES], max_new_tokens=30, drafting=drafting)
        done = collect(stream(spans, p, schedule=[1, N_MODULES], max_new_tokens=30, drafting=drafting))
        assert done.tokens == out.rows()[0] and done.mctp_steps == out.mctp_steps


def test_audio_drafting_needs_audio_markers():
    """A tokenizer whose audio markers have no row in the head, or no audio vocabulary at all: "audio" drafting is
    refused by name with the alternative; "all", Vanilla and verified mode (which checks every draft) decode."""
    lm = tiny_lm(seed=2)
    bb = lm.backbone
    bb.audio_vocab = dataclasses.replace(bb.audio_vocab, begin_of_audio=bb.vocab_size + 3)
    for bad in (bb.audio_vocab, None):
        bb.audio_vocab = bad
        with pytest.raises(ValueError, match="drafting='audio'.*no <\\|begin_of_audio\\|>.*drafting='all'"):
            generate(lm, [[1, 2, 3]], schedule=[1, 2], max_new_tokens=4, drafting="audio")
    bb.audio_vocab = dataclasses.replace(tiny_lm(seed=2).backbone.audio_vocab, begin_of_audio=bb.vocab_size + 3)
    out = generate(lm, [[1, 2, 3]], schedule=[1, 2], max_new_tokens=6, stop_ids=[], drafting="all", restrict_mctp=False)
    assert out.mctp_steps > 0
    free = dict(max_new_tokens=3, drafting="audio", restrict_mctp=False)
    assert generate(lm, [[1, 2, 3]], schedule="vanilla", **free).lengths == [3]
    assert generate(lm, [[1, 2, 3]], verify=True, **free).lengths == [3]
    with pytest.raises(ValueError, match="unknown drafting 'text'"):
        generate(tiny_lm(), [[1, 2]], schedule=[1, 2], max_new_tokens=2, drafting="text")
