"""Schedule expansion for every mode, and the errors of malformed schedules."""

from __future__ import annotations

from itertools import islice

import pytest

from vita_audio.inference.schedule import MODES, expand, max_run, resolve_schedule


@pytest.mark.parametrize(
    "mode, head",
    [
        ("vanilla", "M" * 30),
        ("turbo", ("M" + "m" * 10) * 3),
        ("boost", "M" + "m" * 10 + "MMMM" + "m" * 10 + "MMMM" + "m" * 10),
        ("balance", "M" + "m" * 4 + "MMM" + "m" * 8 + "MMMM" + "m" * 10 + "MMMM" + "m" * 10),
    ],
)
def test_expansion_of_every_mode(mode, head):
    assert expand(mode, len(head)) == head


def test_custom_lists_and_spec_vanilla():
    assert expand([2, 3], 10) == "MMmmmMMmmm"
    assert expand([8192, 0], 12) == "M" * 12  # the spec's Vanilla
    assert resolve_schedule("Boost") == MODES["boost"] == [1, 10, 4, 10]
    assert max_run(MODES["balance"]) == 10 and max_run(MODES["vanilla"]) == 0


@pytest.mark.parametrize(
    "bad, match",
    [("fast", "unknown decode mode"), ([1, 10, 4], "even length"), ([], "even length"), ([1, -2], ">= 0"),
     ([0, 4], "at least one backbone step"), (["a", 1], "list of integers")],
)
def test_malformed_schedules_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        resolve_schedule(bad)


def test_run_longer_than_the_modules_is_an_error():
    with pytest.raises(ValueError, match="1 MCTP module"):
        resolve_schedule("boost", num_modules=1)
    assert resolve_schedule("vanilla", num_modules=0) == [1, 0]


def test_resolve_decode_precedence():
    from vita_audio.inference.schedule import Decode, resolve_decode

    assert resolve_decode(None, None, [1, 2, 2, 4], 4) == Decode([1, 2, 2, 4], False)  # the checkpoint's default
    assert resolve_decode("turbo", None, [1, 2], 10) == Decode([1, 10], False)  # a mode beats the default
    assert resolve_decode("turbo", [1, 3], [1, 2], 10) == Decode([1, 3], False)  # a schedule beats the mode
    assert resolve_decode("Verified", None, "boost", 10) == Decode([1, 10, 4, 10], True)
    with pytest.raises(ValueError, match="takes no schedule"):
        resolve_decode("verified", [1, 3], "boost", 10)
    with pytest.raises(ValueError, match="has none"):
        resolve_decode("verified", None, "vanilla", 0)
    with pytest.raises(ValueError, match="unknown decode mode"):
        resolve_decode("fast", None, "boost", 10)
    with pytest.raises(ValueError, match="MCTP module"):
        resolve_decode("boost", None, "vanilla", 2)


def _plan(schedule, drafting, answer: str) -> str:
    """The steps a decode takes writing `answer` (t = text, B / E = the audio markers, c = a code), one character
    per token: M for a backbone step, the module index for an MCTP step."""
    from vita_audio.inference.schedule import StepPlanner

    planner, inside, out = StepPlanner(resolve_schedule(schedule), drafting), False, []
    for tok in answer:
        (k,) = planner.next([inside])
        out.append("M" if k < 0 else str(k))
        inside = (inside or tok == "B") and tok != "E"
    return "".join(out)


def test_audio_drafting_runs_mctp_steps_inside_audio_spans_only():
    """The schedule module's example: Turbo writing text, a 12-code span, text."""
    answer = "ttB" + "c" * 12 + "Et"
    assert _plan("turbo", "all", answer) == "M0123456789M01234"
    assert _plan("turbo", "audio", answer) == "MMM01234567M0123M"
    assert _plan("boost", "audio", answer) == "MMM01234567MMMM0M"  # after 4 backbone steps: module 0 again
    assert _plan("boost", "audio", "t" * 20) == "M" * 20  # no span: every step is the backbone's (Vanilla)
    assert _plan([1, 3], "AUDIO", "Bcccccccc") == "M012M012M"


def test_rows_are_planned_on_their_own():
    """"all" takes the schedule's own steps whatever the spans, the same for every row; under "audio", with spans
    opening and closing at random, each row's plan is the one it gets alone: after each of its backbone steps,
    modules 0, 1, 2, ..., no run longer than the schedule's."""
    import random

    from vita_audio.inference.schedule import StepPlanner, schedule_steps

    rng = random.Random(0)
    for schedule in ([1, 4], [1, 10, 4, 10], [2, 3, 1, 5], [1, 4, 3, 8, 4, 10]):
        spans = [[rng.random() < 0.7 for _ in range(3)] for _ in range(300)]  # (steps, rows)
        want = list(islice(schedule_steps(schedule), 300))
        every = StepPlanner(schedule, "all", rows=3)
        assert [every.next(s) for s in spans] == [[k if kind == "m" else -1] * 3 for kind, k in want]
        batch = StepPlanner(schedule, "audio", rows=3)
        alone = [StepPlanner(schedule, "audio") for _ in range(3)]
        runs = [0, 0, 0]
        for s, (kind, k) in zip(spans, want):
            got = batch.next(s)
            assert got == [a.next([x])[0] for a, x in zip(alone, s)]
            for r, (x, m) in enumerate(zip(s, got)):
                assert m == (runs[r] if kind == "m" and x else -1) and m <= k
                runs[r] = runs[r] + 1 if m >= 0 else 0
                assert runs[r] <= max_run(schedule)


def test_drafting_names_are_checked():
    from vita_audio.inference.schedule import Decode, StepPlanner, check_drafting, resolve_decode

    assert check_drafting(" Audio ") == "audio" and check_drafting("all") == "all"
    with pytest.raises(ValueError, match="unknown drafting 'text'.*'audio'.*'all'"):
        StepPlanner([1, 4], "text")
    with pytest.raises(ValueError, match="unknown drafting"):
        resolve_decode("boost", None, "vanilla", 10, drafting="some")
    assert resolve_decode("turbo", None, "vanilla", 10, drafting="audio") == Decode([1, 10], False, "audio")
    assert resolve_decode("verified", None, "boost", 10, drafting="all") == Decode([1, 10, 4, 10], True, "all")
