"""Decode schedules (method spec, section 4): tokens per cycle as `[a1, b1, a2, b2, ...]`.

Each pair (a, b) expands to "M" * a then "m" * b: a backbone ("M") steps, then b MCTP ("m") steps, the k-th
consecutive MCTP step using module k. The last pair repeats forever; the first "M" is the prefill.

    vanilla  [1, 0]                 MMMMMMMMMMMM...          (the spec's [inf, 0]: any [a, 0] is the same)
    balance  [1, 4, 3, 8, 4, 10]    Mmmmm MMMmmmmmmmm MMMMmmmmmmmmmm MMMMmmmmmmmmmm ...
    boost    [1, 10, 4, 10]         Mmmmmmmmmmm MMMMmmmmmmmmmm MMMMmmmmmmmmmm ...
    turbo    [1, 10]                Mmmmmmmmmmm Mmmmmmmmmmm ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

MODES: dict[str, list[int]] = {
    "vanilla": [1, 0],
    "balance": [1, 4, 3, 8, 4, 10],
    "boost": [1, 10, 4, 10],
    "turbo": [1, 10],
}


def resolve_schedule(schedule: str | Sequence[int], num_modules: int | None = None) -> list[int]:
    """A mode name or a list -> a validated list of ints.

    Raises ValueError for an unknown name, an odd-length or empty list, a negative entry, a pair with no backbone
    step, or an MCTP run longer than the `num_modules` the model has (when given).
    """
    if isinstance(schedule, str):
        key = schedule.strip().lower()
        if key not in MODES:
            raise ValueError(f"unknown decode mode {schedule!r}; choose one of {', '.join(MODES)} or give a list "
                             "[a1, b1, a2, b2, ...] (a backbone steps then b MCTP steps per pair)")
        values = list(MODES[key])
    else:
        try:
            values = [int(v) for v in schedule]
        except (TypeError, ValueError) as err:
            raise ValueError(f"a decode schedule is a list of integers [a1, b1, ...], got {schedule!r}") from err
        if not values or len(values) % 2:
            raise ValueError(f"a decode schedule needs pairs [a1, b1, a2, b2, ...] (even length), got {values}")
        if any(v < 0 for v in values):
            raise ValueError(f"decode schedule entries must be >= 0, got {values}")
        if any(a == 0 for a in values[::2]):
            raise ValueError(f"every pair needs at least one backbone step (a >= 1), got {values}")
    runs = values[1::2]
    if num_modules is not None and max(runs) > num_modules:
        raise ValueError(f"schedule {values} runs {max(runs)} MCTP steps in a row but the model has "
                         f"{num_modules} MCTP module(s): use mode 'vanilla' or a schedule with runs <= {num_modules}")
    return values


@dataclass(frozen=True)
class Decode:
    """A resolved decode request: the schedule to run, and whether MCTP tokens are drafts the backbone checks."""

    schedule: list[int]
    verify: bool = False


def resolve_decode(mode: str | None, schedule: str | Sequence[int] | None, default: str | Sequence[int],
                   num_modules: int) -> Decode:
    """The one rule every entry point (infer.py, eval.py, the server) uses to turn (mode, schedule) into a decode.

    Precedence: an explicit `schedule` > a named `mode` > the checkpoint's `default` (its stored schedule).
    `mode="verified"` drafts with every module and checks the drafts, so it takes no schedule: both together are
    refused (ValueError) rather than one silently ignored. Raises ValueError for an unknown mode, a malformed
    schedule, a schedule longer than the model's `num_modules`, or verified mode on a model without modules.
    """
    if mode is not None:
        mode = str(mode).strip().lower()
        if mode != "verified" and mode not in MODES:
            raise ValueError(f"unknown decode mode {mode!r}; choose one of {', '.join([*MODES, 'verified'])}")
    if mode == "verified":
        if schedule is not None:
            raise ValueError("mode 'verified' drafts with every MCTP module and takes no schedule: give one of "
                             f"mode='verified' or schedule={list(schedule) if not isinstance(schedule, str) else schedule!r}")
        if num_modules == 0:
            raise ValueError("mode 'verified' needs MCTP modules to draft with; this model has none")
        return Decode(resolve_schedule(default if default is not None else "vanilla"), verify=True)
    chosen = schedule if schedule is not None else (mode if mode is not None else default)
    return Decode(resolve_schedule(chosen, num_modules), verify=False)


def max_run(schedule: Sequence[int]) -> int:
    """The longest MCTP run of a schedule (how many MCTP levels it uses)."""
    return max(schedule[1::2])


def schedule_steps(schedule: Sequence[int]) -> Iterator[tuple[str, int]]:
    """Infinite steps: ("M", 0) for a backbone step, ("m", k) for the k-th MCTP step of a run (module k)."""
    pairs = [(schedule[i], schedule[i + 1]) for i in range(0, len(schedule), 2)]
    i = 0
    while True:
        a, b = pairs[min(i, len(pairs) - 1)]
        for _ in range(a):
            yield "M", 0
        for k in range(b):
            yield "m", k
        i += 1


def expand(schedule: str | Sequence[int], length: int) -> str:
    """The first `length` steps as a string of "M" / "m" (for docs, tests and logs)."""
    return "".join(kind for kind, _ in islice(schedule_steps(resolve_schedule(schedule)), length))
