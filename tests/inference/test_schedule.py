"""Schedule expansion for every mode, and the errors of malformed schedules."""

from __future__ import annotations

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
