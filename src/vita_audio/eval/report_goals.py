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
decode with forced text (`<mode>_forced_text`, TTS) are reported beside it in the tables, not checked here.
"""

from __future__ import annotations

from collections.abc import Callable

from vita_audio.eval.report_tables import resynthesis_keys

BUDGET_MIN = 30.0
FORCED = "_forced_text"  # a TTS row decoded with the input text forced into its text chunks
Goal = tuple[str, bool | None, str]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _value(doc: dict | None, mode: str, key: str):
    v = (doc or {}).get("modes", {}).get(mode, {}).get(key)
    return v if isinstance(v, (int, float)) else None


def free_modes(doc: dict | None) -> list[str]:
    """The decode modes of `doc` that decode freely (no forced text)."""
    return [m for m in (doc or {}).get("modes", {}) if not m.endswith(FORCED)]


def per_mode(name: str, doc: dict | None, key: str, ok: Callable[[float], bool]) -> Goal:
    """A goal every free mode of `doc` must meet on `key`; not measured where no mode has the figure."""
    vals = {m: _value(doc, m, key) for m in free_modes(doc)}
    if not vals or all(v is None for v in vals.values()):
        return name, None, "not measured"
    figs = ", ".join(f"{m} {_pct(v)}" for m, v in vals.items())
    return name, all(v is not None and ok(v) for v in vals.values()), figs


def near_vanilla(doc: dict | None, key: str, what: str, points: float = 2.0) -> Goal:
    name = f"Boost and Turbo within {points:g} points of Vanilla: {what}"
    van = _value(doc, "vanilla", key)
    diffs = {m: _value(doc, m, key) for m in ("boost", "turbo") if m in (doc or {}).get("modes", {})}
    diffs = {m: v - van for m, v in diffs.items() if v is not None and van is not None}
    if not diffs:
        return name, None, "not measured"
    return name, all(abs(d) <= points / 100 for d in diffs.values()), ", ".join(
        f"{m} {100 * d:+.1f} points" for m, d in diffs.items())


def sqa_keys(sqa: dict | None) -> tuple[str, str, str]:
    """(S->T key, S->S key, where): the transfer split's when the metrics carry them, else the whole split's."""
    modes = (sqa or {}).get("modes", {}).values()
    if any("st_accuracy" in m for m in modes):
        return "st_accuracy", "ss_accuracy", "on the transfer split"
    return "s2t_accuracy", "s2s_accuracy", "on the whole test split (no transfer-split keys)"


def goals(asr: dict | None, tts: dict | None, sqa: dict | None, total_min: float | None,
          speed: dict | None = None) -> list[Goal]:
    """(goal, met (None: not measured), figures) for every goal of the demo."""
    rows = [per_mode("ASR WER <= 15%", asr, "wer", lambda v: v <= 0.15)]
    resynth = resynthesis_keys(tts or {})
    if resynth:
        base = tts[resynth[0]]
        key = "judge_wer_on_baseline_samples" if any("judge_wer_on_baseline_samples" in m
                                                     for m in tts["modes"].values()) else "judge_wer"
        rows.append(per_mode(f"TTS judge WER <= codec resynthesis ({_pct(base)}, `{resynth[0]}`) + 10 points",
                             tts, key, lambda v: v <= base + 0.10))
    else:
        rows.append(("TTS judge WER <= codec resynthesis + 10 points", None,
                     "not measured (no resynthesis figure in the TTS metrics)"))
    st, ss, where = sqa_keys(sqa)
    rows.append(per_mode(f"SQA S->T >= 70% {where}", sqa, st, lambda v: v >= 0.70))
    gaps = {m: (_value(sqa, m, st), _value(sqa, m, ss)) for m in free_modes(sqa)}
    gaps = {m: t - s for m, (t, s) in gaps.items() if t is not None and s is not None}
    rows.append((f"SQA S->S within 10 points of S->T {where}", all(g <= 0.10 for g in gaps.values()) if gaps else None,
                 ", ".join(f"{m} S->S {-100 * g:+.1f} points" for m, g in gaps.items()) or "not measured"))
    for doc, key, what in ((asr, "wer", "ASR WER"), (tts, "judge_wer", "TTS judge WER"), (sqa, st, "SQA S->T"),
                           (sqa, ss, "SQA S->S")):
        rows.append(near_vanilla(doc, key, what))
    for mode, want in (("boost", 2.0), ("turbo", 2.5)):
        v = _value(speed, mode, "speedup_vs_vanilla")
        rows.append((f"{mode.capitalize()} >= {want:g}x Vanilla's tokens/s", None if v is None else v >= want,
                     "not measured" if v is None else f"{v:.2f}x"))
    v = _value(speed, "boost", "first_chunk_vs_vanilla")
    rows.append(("Boost's first audio chunk <= 0.5x Vanilla's", None if v is None else v <= 0.5,
                 "not measured" if v is None else f"{v:.2f}x"))
    if total_min is None:
        rows.append((f"make demo <= {BUDGET_MIN:.0f} min", None, "not measured"))
    else:
        rows.append((f"make demo <= {BUDGET_MIN:.0f} min (wall time of the steps, install not included)",
                     total_min <= BUDGET_MIN, f"{total_min:.1f} min"))
    return rows
