"""What every evaluation task shares: decode modes, the per-mode loop, and the files a run writes.

    metrics.json        {"task", "normalizer", "modes": {mode: {metric: value}}, ...}
    metrics.md          the same as a markdown table, one row per mode
    predictions.jsonl   one line per (mode, sample): id, reference, prediction, per-sample score, timings

A sample that cannot be decoded (unreadable audio, no audio output) stays in every denominator and scores as a
miss; the count is in the metrics (`failed`) and its reason in the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vita_audio.inference.schedule import MODES

DECODE_MODES = (*MODES, "verified")


def decode_kwargs(mode: str) -> dict:
    """`stream` keyword arguments of a decode mode name."""
    if mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {mode!r}; choose from {', '.join(DECODE_MODES)}")
    return {"verify": True} if mode == "verified" else {"schedule": mode}


def check_modes(modes: Sequence[str], num_modules: int) -> list[str]:
    modes = [str(m) for m in modes]
    for m in modes:
        decode_kwargs(m)
        if m != "vanilla" and num_modules == 0:
            raise ValueError(f"mode {m!r} needs MCTP modules; this checkpoint has none (use modes=[vanilla])")
    return modes


@dataclass
class TaskResult:
    task: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> metric -> value
    predictions: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # task-level figures (e.g. the judge on the original audio)


def speed_metrics(results) -> dict[str, float]:
    """Decoding figures of a list of `Finished` events."""
    tokens = sum(len(r.tokens) for r in results)
    seconds = sum(r.elapsed for r in results)
    forwards = sum(r.backbone_forwards for r in results)
    first = [r.first_audio_s for r in results if r.first_audio_s is not None]
    out = {"tokens_per_s": tokens / seconds if seconds else 0.0,
           "backbone_forwards_per_token": forwards / tokens if tokens else 0.0}
    if first:
        out["first_audio_s"] = sorted(first)[len(first) // 2]  # median
    return out


def save_wav(audio_dir: str | Path | None, mode: str, sample_id: str, wav, sample_rate: int) -> str | None:
    """Write one generated waveform to `<audio_dir>/<mode>/<sample id>.wav`; its path, or None without a dir."""
    if audio_dir is None or wav is None:
        return None
    from vita_audio.audio.io import write_audio

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample_id))
    path = Path(audio_dir) / mode / f"{safe}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, wav, sample_rate)
    return str(path)


def markdown_table(result: TaskResult) -> str:
    keys = sorted({k for m in result.metrics.values() for k in m})
    lines = [f"| mode | {' | '.join(keys)} |", "|---|" + "---:|" * len(keys)]
    for mode, m in result.metrics.items():
        cells = [f"{m[k]:.4g}" if isinstance(m.get(k), float) else str(m.get(k, "")) for k in keys]
        lines.append(f"| {mode} | {' | '.join(cells)} |")
    extra = "".join(f"\n- {k}: {v:.4g}" if isinstance(v, float) else f"\n- {k}: {v}" for k, v in result.info.items())
    return f"### {result.task}\n\n" + "\n".join(lines) + ("\n" + extra if extra else "") + "\n"


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
