"""What every evaluation task shares: decode modes, results, and the files a run writes.

    metrics.json        {"task", "normalizer", "decodes": {mode: {"schedule", "verify"[, "drafting"]}}, ...,
                         "modes": {mode: {metric: value}}}
    metrics.md          the same as a markdown table, one row per mode, then what each column means
                        (`eval/columns.py`: one meaning per column name, the same in every task)
    predictions.jsonl   one line per (mode, sample): id, reference, prediction, per-sample score, error

A mode name becomes a decode through `inference.schedule.resolve_decode`, as in infer.py and the server. A sample
that cannot be decoded (unreadable or too short input, no audio output) stays in every denominator and scores as a
miss; the count is in the metrics (`failed`, `no_audio`) and its reason in the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vita_audio.eval.columns import legend
from vita_audio.eval.filenames import safe_name
from vita_audio.inference.generate import default_schedule
from vita_audio.inference.heads import check_span_drafting
from vita_audio.inference.schedule import MODES, Decode, resolve_decode

DECODE_MODES = (*MODES, "verified")


def check_modes(modes: Sequence[str], num_modules: int) -> list[str]:
    """The mode names, checked with `resolve_decode` (the one rule infer.py and the server use), lower-cased."""
    out = []
    for m in modes:
        name = str(m).strip().lower()
        if name in DECODE_MODES and name != "vanilla" and num_modules == 0:
            raise ValueError(f"mode {m!r} needs MCTP modules; this checkpoint has none (use modes=[vanilla])")
        resolve_decode(name, None, "vanilla", num_modules)
        out.append(name)
    return out


def resolve_modes(modes: Sequence[str], lm, drafting: str | None = None) -> dict[str, Decode]:
    """mode name -> the decode it runs, by `resolve_decode` with the checkpoint's stored schedule as the default
    (what `verified` drafts with): eval decodes a mode exactly as infer.py and the server do. `drafting` (None =
    the decoder's default) applies to every mode; one the checkpoint cannot honour fails here, before any work."""
    default = default_schedule(lm)
    decodes = {m: resolve_decode(m, None, default, lm.num_mctp_modules, drafting)
               for m in check_modes(modes, lm.num_mctp_modules)}
    for d in decodes.values():
        check_span_drafting(lm, d.drafting, d.schedule, d.verify)
    return decodes


def describe_modes(decodes: dict[str, Decode]) -> dict[str, dict]:
    """What each mode ran, for metrics.json: {"schedule": [...], "verify": bool, "drafting": "audio" | "all"}
    (no drafting for verified modes, which check every draft whatever it is)."""
    return {m: {"schedule": list(d.schedule), "verify": d.verify, **({} if d.verify else {"drafting": d.drafting})}
            for m, d in decodes.items()}


@dataclass
class TaskResult:
    task: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> metric -> value
    predictions: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # task-level figures (e.g. the judge on the original audio)


def save_wav(audio_dir: str | Path | None, mode: str, sample_id: str, wav, sample_rate: int) -> str | None:
    """Write one generated waveform to `<audio_dir>/<mode>/<safe_name(sample id)>.wav` (distinct ids, distinct
    files); its path, or None without a dir."""
    if audio_dir is None or wav is None:
        return None
    from vita_audio.audio.io import write_audio

    path = Path(audio_dir) / mode / f"{safe_name(sample_id)}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, wav, sample_rate)
    return str(path)


def markdown_table(result: TaskResult) -> str:
    """One row per mode, the task-level figures, then what each column means (`eval/columns.py`)."""
    keys = sorted({k for m in result.metrics.values() for k in m})
    lines = [f"| mode | {' | '.join(keys)} |", "|---|" + "---:|" * len(keys)]
    for mode, m in result.metrics.items():
        cells = [f"{m[k]:.4g}" if isinstance(m.get(k), float) else str(m.get(k, "")) for k in keys]
        lines.append(f"| {mode} | {' | '.join(cells)} |")
    extra = "".join(f"\n- {k}: {v:.4g}" if isinstance(v, float) else f"\n- {k}: {v}" for k, v in result.info.items())
    columns = "\n\nColumns:\n\n" + "\n".join(legend(keys)) if keys else ""
    return f"### {result.task}\n\n" + "\n".join(lines) + ("\n" + extra if extra else "") + columns + "\n"


def write_results(result: TaskResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"task": result.task, **result.info, "modes": result.metrics},
                                                 indent=2) + "\n")
    (out / "metrics.md").write_text(markdown_table(result))
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in result.predictions:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    return out
