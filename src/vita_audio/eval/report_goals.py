"""The demo's goals (issue 22), checked against the figures of the metrics files and marked met / missed / not
measured, never hidden:

    ASR WER <= 15 %                                      every mode
    TTS judge WER <= the codec's resynthesis WER + 10     every mode, on the sentences the resynthesis was judged on
    SQA S->T >= 70 %, S->S within 10 points of S->T       every mode, on the transfer split (`st_accuracy`,
                                                          `ss_accuracy`; without them the whole split's s2t / s2s,
                                                          said so)
    Boost and Turbo within 2 points of Vanilla            every quality figure above
    Boost >= 2x, Turbo >= 2.5x Vanilla's tokens/s; Boost's first audio chunk <= 0.5x Vanilla's
    make demo <= 30 minutes

A figure a metrics file does not carry makes its goal "not measured". The goals judge free decoding: rows of a
decode with forced text (`<mode>_forced_text`, TTS) are reported beside it in the tables, not checked here. A missed
goal says by how much (`Goal.short`: the worst mode's distance to the goal); why is `report_diagnosis.py`'s, by
`Goal.key`.
"""

from __future__ import annotations

from typing import NamedTuple

from vita_audio.eval.report_tables import resynthesis_keys

BUDGET_MIN = 30.0
TTS_MARGIN = 0.10  # TTS judge WER at most the codec's resynthesis WER + this
SQA_ST_GOAL = 0.70  # S->T at least this on the transfer split
FORCED = "_forced_text"  # a TTS row decoded with the input text forced into its text chunks


class Goal(NamedTuple):
    name: str
    met: bool | None  # None: not measured
    figures: str
    short: str = ""  # by how much the worst mode misses it ("" when met or not measured)
    key: str = ""  # which goal, for its measured reasons (report_diagnosis.reasons)


def _points(v: float, what: str) -> str:
    return f"{100 * v:.1f} points {what}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def value(doc: dict | None, mode: str, key: str):
    """The figure `key` of `mode` in a metrics file, or None where it has none."""
    v = (doc or {}).get("modes", {}).get(mode, {}).get(key)
    return v if isinstance(v, (int, float)) else None


def free_modes(doc: dict | None) -> list[str]:
    """The decode modes of `doc` that decode freely (no forced text)."""
    return [m for m in (doc or {}).get("modes", {}) if not m.endswith(FORCED)]


def per_mode(name: str, doc: dict | None, key: str, limit: float, at_most: bool, goal: str) -> Goal:
    """A goal every free mode of `doc` must meet on `key` (<= `limit` when `at_most`, else >=); not measured where
    no mode has the figure."""
    vals = {m: value(doc, m, key) for m in free_modes(doc)}
    if not vals or all(v is None for v in vals.values()):
        return Goal(name, None, "not measured", key=goal)
    figs = ", ".join(f"{m} {_pct(v)}" for m, v in vals.items())
    known = [v for v in vals.values() if v is not None]
    gap = max(known) - limit if at_most else limit - min(known)
    met = len(known) == len(vals) and gap <= 1e-12
    short = "" if met else _points(gap, "over" if at_most else "short") if gap > 1e-12 else "a mode not measured"
    return Goal(name, met, figs, short, goal)


def near_vanilla(doc: dict | None, key: str, what: str, goal: str, points: float = 2.0) -> Goal:
    name = f"Boost and Turbo within {points:g} points of Vanilla: {what}"
    van = value(doc, "vanilla", key)
    diffs = {m: value(doc, m, key) for m in ("boost", "turbo") if m in (doc or {}).get("modes", {})}
    diffs = {m: v - van for m, v in diffs.items() if v is not None and van is not None}
    if not diffs:
        return Goal(name, None, "not measured", key=goal)
    worst = max(abs(d) for d in diffs.values()) - points / 100
    met = worst <= 1e-12
    return Goal(name, met, ", ".join(f"{m} {100 * d:+.1f} points" for m, d in diffs.items()),
                "" if met else _points(worst, "beyond"), goal)


def ratio_goal(name: str, v: float | None, want: float, at_most: bool, goal: str) -> Goal:
    """A speed ratio (x Vanilla) that must reach `want` (or stay under it when `at_most`)."""
    if v is None:
        return Goal(name, None, "not measured", key=goal)
    met = v <= want if at_most else v >= want
    return Goal(name, met, f"{v:.2f}x", "" if met else f"{abs(v - want):.2f}x {'over' if at_most else 'short'}",
                goal)


def sqa_keys(sqa: dict | None) -> tuple[str, str, str]:
    """(S->T key, S->S key, where): the transfer split's when the metrics carry them, else the whole split's."""
    modes = (sqa or {}).get("modes", {}).values()
    if any("st_accuracy" in m for m in modes):
        return "st_accuracy", "ss_accuracy", "on the transfer split"
    return "s2t_accuracy", "s2s_accuracy", "on the whole test split (no transfer-split keys)"


def goals(asr: dict | None, tts: dict | None, sqa: dict | None, total_min: float | None,
          speed: dict | None = None) -> list[Goal]:
    """Every goal of the demo: met (None: not measured), its figures and, when missed, by how much."""
    rows = [per_mode("ASR WER <= 15%", asr, "wer", 0.15, True, "asr")]
    resynth = resynthesis_keys(tts or {})
    if resynth:
        base = tts[resynth[0]]
        key = "judge_wer_on_baseline_samples" if any("judge_wer_on_baseline_samples" in m
                                                     for m in tts["modes"].values()) else "judge_wer"
        rows.append(per_mode(f"TTS judge WER <= codec resynthesis ({_pct(base)}, `{resynth[0]}`) + 10 points",
                             tts, key, base + TTS_MARGIN, True, "tts"))
    else:
        rows.append(Goal("TTS judge WER <= codec resynthesis + 10 points", None,
                         "not measured (no resynthesis figure in the TTS metrics)", key="tts"))
    st, ss, where = sqa_keys(sqa)
    rows.append(per_mode(f"SQA S->T >= {100 * SQA_ST_GOAL:.0f}% {where}", sqa, st, SQA_ST_GOAL, False, "sqa_st"))
    gaps = {m: (value(sqa, m, st), value(sqa, m, ss)) for m in free_modes(sqa)}
    gaps = {m: t - s for m, (t, s) in gaps.items() if t is not None and s is not None}
    worst = max(gaps.values(), default=0.0) - 0.10
    met = (worst <= 1e-12) if gaps else None
    rows.append(Goal(f"SQA S->S within 10 points of S->T {where}", met,
                     ", ".join(f"{m} S->S {-100 * g:+.1f} points" for m, g in gaps.items()) or "not measured",
                     _points(worst, "beyond") if met is False else "", "sqa_ss"))
    for doc, key, what, goal in ((asr, "wer", "ASR WER", "near_asr"), (tts, "judge_wer", "TTS judge WER", "near_tts"),
                                 (sqa, st, "SQA S->T", "near_sqa_st"), (sqa, ss, "SQA S->S", "near_sqa_ss")):
        rows.append(near_vanilla(doc, key, what, goal))
    for mode, want in (("boost", 2.0), ("turbo", 2.5)):
        rows.append(ratio_goal(f"{mode.capitalize()} >= {want:g}x Vanilla's tokens/s",
                               value(speed, mode, "speedup_vs_vanilla"), want, False, f"speed_{mode}"))
    rows.append(ratio_goal("Boost's first audio chunk <= 0.5x Vanilla's", value(speed, "boost",
                                                                                 "first_chunk_vs_vanilla"),
                           0.5, True, "first_chunk"))
    if total_min is None:
        rows.append(Goal(f"make demo <= {BUDGET_MIN:.0f} min", None, "not measured", key="budget"))
    else:
        met = total_min <= BUDGET_MIN
        rows.append(Goal(f"make demo <= {BUDGET_MIN:.0f} min (wall time of the steps, install not included)", met,
                         f"{total_min:.1f} min", "" if met else f"{total_min - BUDGET_MIN:.1f} min over", "budget"))
    return rows
