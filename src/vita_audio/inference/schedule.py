"""Decode schedules (method spec, section 4): tokens per cycle as `[a1, b1, a2, b2, ...]`.

Each pair (a, b) expands to "M" * a then "m" * b: a backbone ("M") steps, then b MCTP ("m") steps, the k-th
consecutive MCTP step using module k. The last pair repeats forever; the first "M" is the prefill.

    vanilla  [1, 0]                 MMMMMMMMMMMM...          (the spec's [inf, 0]: any [a, 0] is the same)
    balance  [1, 4, 3, 8, 4, 10]    Mmmmm MMMmmmmmmmm MMMMmmmmmmmmmm MMMMmmmmmmmmmm ...
    boost    [1, 10, 4, 10]         Mmmmmmmmmmm MMMMmmmmmmmmmm MMMMmmmmmmmmmm ...
    turbo    [1, 10]                Mmmmmmmmmmm Mmmmmmmmmmm ...

Drafting (which tokens an MCTP step may emit; `StepPlanner` turns the schedule into the steps a decode takes):

    "all"    the reference's behaviour: every "m" of the schedule is an MCTP step, whatever it emits (text too,
             unverified)
    "audio"  an "m" is an MCTP step only for a row inside an audio span (after <|begin_of_audio|>, up to and
             including the step that emits <|end_of_audio|>); elsewhere the row's token comes from a backbone step
             (which consumes every unseen token, as any backbone step does), and the run's later "m" steps count
             their module from 0 again. The backbone writes all text, so a greedy answer without audio is exactly
             Vanilla's, while audio spans keep the schedule's MCTP steps. The rule is applied row by row: in a batch
             one step may give some rows a backbone token and others an MCTP token (the decoder then runs both).

Turbo [1, 10] writing `t1 t2 <boa> c1 .. c12 <eoa> t3` (M = a backbone step, a digit = the module of an MCTP step):

    tokens    t1 t2 <boa> c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11 c12 <eoa> t3
    all       M  0  1     2  3  4  5  6  7  8  9  M  0   1   2   3     4
    audio     M  M  M     0  1  2  3  4  5  6  7  M  0   1   2   3     M
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
DRAFTING = ("audio", "all")  # see the module docstring
DEFAULT_DRAFTING = "audio"  # measured on the demo checkpoint: experiments/RESULTS.md, "Audio-only MCTP drafting"


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


def check_drafting(drafting: str) -> str:
    """A drafting name ("audio" | "all", any case) -> its lower-case form; ValueError for anything else."""
    key = str(drafting).strip().lower()
    if key not in DRAFTING:
        raise ValueError(f"unknown drafting {drafting!r}; choose 'audio' (MCTP steps inside audio spans only, the "
                         "backbone writes the text) or 'all' (MCTP steps emit any token, the reference's behaviour)")
    return key


@dataclass(frozen=True)
class Decode:
    """A resolved decode request: the schedule to run, whether MCTP tokens are drafts the backbone checks, and
    which tokens unverified MCTP steps may emit (`drafting`; verified mode checks every draft and ignores it)."""

    schedule: list[int]
    verify: bool = False
    drafting: str = DEFAULT_DRAFTING


def resolve_decode(mode: str | None, schedule: str | Sequence[int] | None, default: str | Sequence[int],
                   num_modules: int, drafting: str | None = None) -> Decode:
    """The one rule every entry point (infer.py, eval.py, the server) uses to turn (mode, schedule) into a decode.

    Precedence: an explicit `schedule` > a named `mode` > the checkpoint's `default` (its stored schedule).
    `mode="verified"` drafts with every module and checks the drafts, so it takes no schedule: both together are
    refused (ValueError) rather than one silently ignored. Raises ValueError for an unknown mode, a malformed
    schedule, a schedule longer than the model's `num_modules`, verified mode on a model without modules, or an
    unknown `drafting` (None = `DEFAULT_DRAFTING`).
    """
    drafting = check_drafting(DEFAULT_DRAFTING if drafting is None else drafting)
    if mode is not None:
        mode = str(mode).strip().lower()
        if mode != "verified" and mode not in MODES:
            raise ValueError(f"unknown decode mode {mode!r}; choose one of {', '.join([*MODES, 'verified'])}")
    if mode == "verified":
        if schedule is not None:
            shown = schedule if isinstance(schedule, str) else list(schedule)
            raise ValueError("mode 'verified' drafts with every MCTP module and takes no schedule: give one of "
                             f"mode='verified' or schedule={shown!r}")
        if num_modules == 0:
            raise ValueError("mode 'verified' needs MCTP modules to draft with; this model has none")
        return Decode(resolve_schedule(default if default is not None else "vanilla"), True, drafting)
    chosen = schedule if schedule is not None else (mode if mode is not None else default)
    return Decode(resolve_schedule(chosen, num_modules), False, drafting)


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


class StepPlanner:
    """The steps one decode takes, row by row: the schedule's, with the drafting rule applied (module docstring).

    `next(in_span)` -> one entry per row: -1 for a backbone step, k for MCTP module k, k = the row's MCTP steps
    since its last backbone step (under "all" that is the schedule's own k, the same for every row; under "audio"
    it restarts after each backbone step a row took in place of an "m", so no run is longer than the schedule's).
    `in_span` (one bool per row) is read only for an "m" under "audio". Each row's plan depends on its own span
    states only, so a row decodes the same alone and in any batch.
    """

    def __init__(self, schedule: Sequence[int], drafting: str = DEFAULT_DRAFTING, rows: int = 1) -> None:
        self.drafting = check_drafting(drafting)
        self._steps = schedule_steps(schedule)
        self._runs = [0] * rows  # per row: MCTP steps since its last backbone step

    def next(self, in_span: Sequence[bool], backbone: Sequence[bool] | None = None) -> list[int]:
        """`backbone` (one bool per row, None = none): rows that must take a backbone step now whatever the schedule
        says (after a forced token, which no model has consumed; `forcing.py`); their run restarts too."""
        kind, _ = next(self._steps)
        backbone = backbone if backbone is not None else [False] * len(in_span)
        mctp = [kind == "m" and (self.drafting == "all" or bool(s)) and not b for s, b in zip(in_span, backbone)]
        modules = [run if m else -1 for run, m in zip(self._runs, mctp)]
        self._runs = [run + 1 if m else 0 for run, m in zip(self._runs, mctp)]
        return modules


def expand(schedule: str | Sequence[int], length: int) -> str:
    """The first `length` steps as a string of "M" / "m" (for docs, tests and logs)."""
    return "".join(kind for kind, _ in islice(schedule_steps(resolve_schedule(schedule)), length))
