"""The report's per-skill tables, from the metrics files eval.py wrote (nothing recomputed):

    quality per stage   ASR / TTS in Vanilla mode after each evaluated stage (`<out>/eval/stages/<stage>/<task>/`,
                        written by the demo for the stages that train the backbone) and for the final checkpoint
                        (`<out>/eval/<task>/`), on the same test subsets
    ASR by voice        `wer_voice_<family>` per mode (eval/tasks/asr.py), one column per voice family
    TTS baselines       the judge on the original recordings and, where the TTS metrics carry one, on the codec's
                        resynthesis of them (any `*resynth*` key): the ceiling the model's speech is measured against
    SQA transfer        any `tt_*`, `st_*`, `ss_*` keys of the spoken-QA metrics (T->T, S->T, S->S on the transfer
                        split), shown as they come
    examples            one listenable wav per task and mode (ASR: the input; TTS / SQA: the generated speech)

Each table leaves out what was not measured and says so, never a made-up figure.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

from vita_audio.eval.filenames import safe_name

TRANSFER = re.compile(r"^(tt|st|ss)_")
DIRECTIONS = {"tt": "T->T", "st": "S->T", "ss": "S->S"}


def stage_key(name: str) -> str:
    """An experiment name as one path / step component: demo/align -> demo_align."""
    return name.replace("/", "_")


def stage_eval_dir(out: Path, name: str) -> Path:
    """Where the demo evaluates an intermediate stage: <out>/eval/stages/<stage_key>/ (one folder per task)."""
    return Path(out) / "eval" / "stages" / stage_key(name)


def pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else f"{100 * v:.1f}%"


def one_line(text) -> str:
    """Model output as one table-safe line: whitespace runs (newlines included) collapsed, pipes escaped."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def voice_families(*docs: dict | None) -> list[str]:
    """The voice families any mode of the ASR metrics has a `wer_voice_<family>` for, sorted."""
    return sorted({k.removeprefix("wer_voice_") for d in docs if d for m in d.get("modes", {}).values() for k in m
                   if k.startswith("wer_voice_")})


def stage_quality(stage_docs: list[tuple[str, dict | None, dict | None]]) -> list[str]:
    """Rows (stage, its ASR metrics, its TTS metrics) -> a table of the Vanilla figures of each stage."""
    rows = [(n, a, t) for n, a, t in stage_docs if a or t]
    md = ["## Quality per stage (Vanilla mode, the same test subsets)", ""]
    if not rows:
        return md + ["(no stage has been evaluated yet)", ""]
    voices = voice_families(*(a for _, a, _ in rows))
    md += ["| stage | ASR WER | " + "".join(f"ASR {v} | " for v in voices) + "TTS judge WER | TTS same sentences |",
           "|---|---:|" + "---:|" * len(voices) + "---:|---:|"]
    for name, asr, tts in rows:
        a = (asr or {}).get("modes", {}).get("vanilla", {})
        t = (tts or {}).get("modes", {}).get("vanilla", {})
        md.append(f"| {name} | {pct(a.get('wer'))} | " + "".join(f"{pct(a.get(f'wer_voice_{v}'))} | " for v in voices)
                  + f"{pct(t.get('judge_wer'))} | {pct(t.get('judge_wer_on_baseline_samples'))} |")
    md += ["", "The last row is the final checkpoint. Stages that train MCTP modules only decode in Vanilla exactly "
           "as the stage before them, so they are not evaluated again. \"-\": not measured.", ""]
    return md


def voice_table(asr: dict | None, modes: list[str]) -> list[str]:
    """ASR WER per decode mode and voice family (with the rows each family has)."""
    voices = voice_families(asr)
    if not asr or not voices:
        return ["ASR by voice: not measured (the ASR samples carry no voice; `wer_voice_<family>` keys absent).", ""]
    md = ["#### ASR WER by voice", "", "| mode | all | " + " | ".join(
        f"{v} ({asr.get(f'voice_{v}_samples', '?')})" for v in voices) + " |", "|---|---:|" + "---:|" * len(voices)]
    for m in modes:
        vals = asr["modes"].get(m, {})
        md.append(f"| {m} | {pct(vals.get('wer'))} | " + " | ".join(pct(vals.get(f"wer_voice_{v}")) for v in voices)
                  + " |")
    return md + [""]


def resynthesis_keys(doc: dict) -> list[str]:
    """Keys of a metrics mapping that measure the codec's resynthesis (named with "resynth")."""
    return sorted(k for k, v in doc.items() if "resynth" in k and isinstance(v, (int, float)))


def tts_baselines(tts: dict) -> list[str]:
    """The judge on the originals and on the codec's resynthesis, beside which the model's TTS is read."""
    line = (f"The judge's WER on the original recordings of {tts.get('baseline_samples', 0)} of the sentences: "
            f"**{pct(tts.get('judge_wer_on_original_audio'))}**")
    resynth = resynthesis_keys(tts)
    if resynth:
        line += "; on the codec's resynthesis of them: " + ", ".join(f"`{k}` **{pct(tts[k])}**" for k in resynth)
    else:
        line += "; on the codec's resynthesis: not measured (no `*resynth*` key in the TTS metrics)"
    return [line + ". The model's WER on the same sentences is the column \"same sentences\".", ""]


def transfer_columns(sqa: dict) -> list[tuple[str, str, str]]:
    """(key, header, format) for every `tt_*` / `st_*` / `ss_*` key some mode of the SQA metrics has, T->T first,
    each direction's accuracies first: accuracies and rates as percentages, counts as integers, anything else with
    three decimals."""
    keys = sorted({k for m in sqa.get("modes", {}).values() for k, v in m.items()
                   if TRANSFER.match(k) and isinstance(v, (int, float))},
                  key=lambda k: (list(DIRECTIONS).index(k[:2]), "accuracy" not in k, k))
    cols = []
    for k in keys:
        head = f"{DIRECTIONS[k[:2]]} {k[3:].replace('_', ' ')}".strip()
        values = [m[k] for m in sqa["modes"].values() if k in m]
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        cols.append((k, head, "d" if whole else "pct" if "accuracy" in k or "rate" in k else ".3f"))
    return cols


def examples(out: Path, preds: dict[str, list[dict]], modes: list[str]) -> list[str]:
    """One listenable example per task and mode: a table of links (ASR: the input utterance, copied next to the
    report, and the transcript of each mode; TTS / SQA: the generated wav)."""
    out = Path(out)
    rows = []
    asr = [p for p in preds.get("asr", []) if p.get("audio") and Path(p["audio"]).is_file()]
    if asr:
        first = asr[0]
        rows.append(("asr", lambda m: _asr_cell(out, first, [p for p in asr if p["id"] == first["id"]], m)))
    for task in ("tts", "sqa"):
        with_wav = [p for p in preds.get(task, []) if p.get("wav") and Path(p["wav"]).is_file()]
        if with_wav:
            rows.append((task, lambda m, ps=with_wav: _wav_cell(out, ps, m)))
    if not rows:
        return ["(no example audio yet)", ""]
    md = ["| task | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for task, cell in rows:
        md.append(f"| {task} | " + " | ".join(cell(m) for m in modes) + " |")
    return md + [""]


def _asr_cell(out: Path, first: dict, same: list[dict], mode: str) -> str:
    p = next((p for p in same if p["mode"] == mode), None)
    if p is None:
        return "-"
    wavs = out / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    name = f"asr_{safe_name(first['id'])}.wav"
    if not (wavs / name).is_file():
        shutil.copyfile(first["audio"], wavs / name)
    voice = f" ({first['voice']})" if first.get("voice") else ""
    return f"[input]({quote(f'wavs/{name}')}){voice} -> \"{one_line(p.get('prediction'))}\""


def _wav_cell(out: Path, preds: list[dict], mode: str) -> str:
    p = next((p for p in preds if p["mode"] == mode), None)
    if p is None:
        return "-"
    return f"[listen]({quote(os.path.relpath(p['wav'], out))}): \"{one_line(p.get('judge_heard'))}\""

