"""The demo's report, built from the files the pipeline wrote (nothing is recomputed):

    <out>/eval/{asr,tts,sqa,speed}/metrics.json    eval.py runs of the final checkpoint (one row per decode mode)
    <out>/eval/stages/<stage>/{asr,tts}/metrics.json   Vanilla runs of intermediate stages (the per-stage table)
    <out>/eval/{asr,tts,sqa}/predictions.jsonl      transcripts, spoken questions and answers (wavs linked)
    <out>/timings.json                              wall time of every demo step (vita_audio.cli.demo)
    <stages>/<stage>/final_metrics.txt              the last validation losses of every stage of the recipe

    -> <out>/report.md, <out>/plots/{val_loss,speed,quality}.png, <out>/wavs/ (the inputs, copied)

    python -m vita_audio.eval.report --out outputs/demo --stages artifacts/stages \
        --stage-names demo/align demo/sft demo/mctp_one demo/mctp_all     # default: <variant>_stage1..4

Missing inputs (a step not run yet) leave their section saying so; the goals of the demo (the evaluation issue's
item 4, updated by issue 22: `eval/report_goals.py`) are checked against the figures and marked met / missed /
not measured, never hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from urllib.parse import quote

from vita_audio.eval.columns import COLUMNS
from vita_audio.eval.filenames import safe_name
from vita_audio.eval.report_diagnosis import reasons
from vita_audio.eval.report_goals import goals, sqa_keys
from vita_audio.eval.report_tables import (examples, one_line, resynthesis_keys, stage_eval_dir, stage_quality,
                                           transfer_columns, tts_baselines, voice_table)

MODE_ORDER = ("vanilla", "balance", "boost", "turbo", "verified", "transformers_generate")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def default_stage_names(variant: str) -> list[str]:
    """The reference's stage order of a variant: <variant>_stage1..4."""
    return [f"{variant}_stage{k}" for k in (1, 2, 3, 4)]


def stage_losses(stages: Path, names: list[str]) -> dict[str, dict[str, float]]:
    """stage name -> {"main": val/loss_main, "mctp_0": ..., "loss": val/loss, "train": train/loss} from each stage's
    final_metrics.txt (the stages in training order; those not trained yet are left out)."""
    out: dict[str, dict[str, float]] = {}
    for k in names:
        f = stages / k / "final_metrics.txt"
        if not f.is_file():
            continue
        vals = {}
        for line in f.read_text().splitlines():
            name, _, v = line.partition("\t")
            if name.startswith("val/loss"):
                vals[name.removeprefix("val/loss").lstrip("_") or "loss"] = float(v)
            elif name == "train/loss":
                vals["train"] = float(v)
        out[k] = vals
    return out


def heads_of(losses: dict[str, dict[str, float]]) -> list[str]:
    mctp = sorted({h for v in losses.values() for h in v if h.startswith("mctp_")}, key=lambda h: int(h[5:]))
    return ["main", *mctp]


def modes_of(*metrics: dict | None) -> list[str]:
    seen = {m for d in metrics if d for m in d.get("modes", {})}
    return [m for m in MODE_ORDER if m in seen] + sorted(seen - set(MODE_ORDER))


def fmt(v, spec: str = ".3f", pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if spec == "d":
        return str(int(v))
    return f"{100 * v:.1f}%" if pct else format(v, spec)


# -- plots -----------------------------------------------------------------------------------------------------
def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def plot_val_loss(losses: dict[str, dict[str, float]], path: Path) -> Path | None:
    plt = _plt()
    if plt is None or not losses:
        return None
    heads = heads_of(losses)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, vals in losses.items():
        xs = [i for i, h in enumerate(heads) if h in vals]
        ax.plot(xs, [vals[heads[i]] for i in xs], marker="o", label=k)
    ax.set_xticks(range(len(heads)), ["main"] + [h.removeprefix("mctp_") for h in heads[1:]], fontsize=8)
    ax.set_xlabel("head (main, then MCTP module k)")
    ax.set_ylabel("validation CE (nats)")
    ax.set_title("validation loss per stage and per MCTP module", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_speed(speed: dict | None, path: Path) -> Path | None:
    plt = _plt()
    if plt is None or not speed:
        return None
    modes = [m for m in modes_of(speed)]
    ms = speed["modes"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    axes[0].bar(modes, [ms[m].get("tokens_per_s", 0) for m in modes], color="tab:blue")
    axes[0].set_ylabel("tokens / s")
    axes[1].bar(modes, [ms[m].get("first_chunk_s", 0) * 1e3 for m in modes], color="tab:green")
    axes[1].set_ylabel("first audio chunk (ms)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle(f"decoding speed per mode (batch {speed.get('batch')}, {speed.get('new_tokens')} tokens)",
                 fontsize=10)
    return _save(fig, plt, path)


def plot_quality(asr: dict | None, tts: dict | None, sqa: dict | None, path: Path) -> Path | None:
    plt = _plt()
    series = [(asr, "wer", "ASR WER"), (tts, "judge_wer", "TTS judge WER"), (sqa, "s2t_accuracy", "SQA S->T acc"),
              (sqa, "s2s_accuracy", "SQA S->S acc")]
    series = [s for s in series if s[0]]
    if plt is None or not series:
        return None
    modes = modes_of(asr, tts, sqa)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(modes), 1)
    for j, m in enumerate(modes):
        vals = [100 * doc["modes"].get(m, {}).get(key, float("nan")) for doc, key, _ in series]
        ax.bar([i + j * width for i in range(len(series))], vals, width, label=m)
    base = (tts or {}).get("judge_wer_on_original_audio")
    if base is not None and tts:
        i = [s[2] for s in series].index("TTS judge WER")
        ax.hlines(100 * base, i - width / 2, i + width * (len(modes) - 0.5), colors="black", linestyles=":",
                  label="judge on originals")
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(series))], [s[2] for s in series])
    ax.set_ylabel("%")
    ax.set_title("quality per decode mode (WER: lower is better; accuracy: higher)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# -- the report ------------------------------------------------------------------------------------------------
def table(doc: dict, cols: list[tuple[str, str, str]]) -> list[str]:
    """cols: (metric key, header, format: a spec or "pct")."""
    lines = ["| mode | " + " | ".join(h for _, h, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for m in modes_of(doc):
        v = doc["modes"][m]
        lines.append(f"| {m} | " + " | ".join(fmt(v.get(k), pct=f == "pct") if f == "pct" else fmt(v.get(k), f)
                                              for k, _, f in cols) + " |")
    return lines


def present(doc: dict, cols: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The columns some mode of `doc` has (e.g. CER only for a set with Chinese rows)."""
    return [c for c in cols if any(c[0] in m for m in doc["modes"].values())]


def compare_variants(variant: str, asr: dict | None, others: list[Path]) -> list[str]:
    """ASR WER per decode mode of this variant beside the other variants' demo runs (their report dirs) that have
    an ASR evaluation."""
    rows = [(variant, asr, "this report")]
    for d in others:
        doc = read_json(Path(d) / "eval" / "asr" / "metrics.json")
        if doc is not None:  # a run dir: outputs/demo (boost), outputs/demo_<variant>, outputs/demo_reference
            name = Path(d).name.removeprefix("demo").lstrip("_") or "boost"
            rows.append(("boost, reference order" if name == "reference" else name, doc, str(d)))
    modes = [m for m in ("vanilla", "boost", "turbo") if any(doc and m in doc.get("modes", {}) for _, doc, _ in rows)]
    md = ["## ASR per variant (same corpus test split)", "", "| variant | " + " | ".join(modes) + " | run |",
          "|---|" + "---:|" * len(modes) + "---|"]
    for name, doc, where in rows:
        if doc is None:
            md.append(f"| {name} | " + " | ".join("not run" for _ in modes) + f" | `{where}` |")
            continue
        vals = [fmt(doc["modes"].get(m, {}).get("wer"), pct=True) if m in doc.get("modes", {}) else "-"
                for m in modes]
        md.append(f"| {name} | " + " | ".join(vals) + f" | `{where}` |")
    md += ["", "Plus reads the input audio with its continuous encoder (frames through the adapter); Boost and "
           "Balance read it as audio tokens of the codec. Run another variant with `python -m vita_audio.cli.demo "
           "--variant boost|balance|plus` (it reuses the corpus, codec and cache); re-running this variant's demo "
           "(every finished step is skipped) refreshes the table.", ""]
    return md


def build_report(out: Path, stages: Path, variant: str = "boost", corpus: Path | None = None,
                 compare: list[Path] | None = None, stage_names: list[str] | None = None) -> Path:
    """`stage_names`: the recipe's stages in training order, the last one the evaluated checkpoint (default: the
    reference's <variant>_stage1..4)."""
    out = Path(out)
    ev = out / "eval"
    asr, tts, sqa, speed = (read_json(ev / t / "metrics.json") for t in ("asr", "tts", "sqa", "speed"))
    timings = read_json(out / "timings.json") or {}
    names = list(stage_names or default_stage_names(variant))
    losses = stage_losses(Path(stages), names)
    plots = out / "plots"
    made = {"val_loss": plot_val_loss(losses, plots / "val_loss.png"), "speed": plot_speed(speed, plots / "speed.png"),
            "quality": plot_quality(asr, tts, sqa, plots / "quality.png")}
    # a step run beside others counts its share of their common wall time (`counted`), so the total is wall time
    total_min = sum(t.get("counted", t["seconds"]) for t in timings.values()) / 60 if timings else None

    def img(name: str, alt: str) -> list[str]:
        return [f"![{alt}](plots/{name}.png)", ""] if made[name] else [f"({alt}: no plot, matplotlib missing or no "
                                                                     "data)", ""]

    md = [f"# Demo report: {variant}, the tiny offline recipe", "",
          f"Built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node() or 'this machine'} "
          f"({os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}); load average now "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}. Checkpoint: "
          f"`{(asr or tts or sqa or speed or {}).get('ckpt_path', '?')}`. Every figure below is read from the files "
          "the pipeline wrote under this folder (`eval/<task>/metrics.json`, `predictions.jsonl`).", ""]

    sqa_trained = read_json(ev / "sqa_trained" / "metrics.json")
    why = reasons(asr, tts, sqa, speed, asr_predictions=read_jsonl(ev / "asr" / "predictions.jsonl"),
                  sqa_trained=sqa_trained, losses=losses, corpus=corpus, st_key=sqa_keys(sqa)[0])
    md += ["## Goals", "", "A missed goal says by how much (the worst mode) and why, from the measured figures of this "
           "run (`eval/report_diagnosis.py`).", "", "| goal | met | figures | short by | why (measured) |",
           "|---|---|---|---|---|"]
    for g in goals(asr, tts, sqa, total_min, speed):
        met = "yes" if g.met else "not measured" if g.met is None else "**no**"
        md.append(f"| {g.name} | {met} | {g.figures} | {g.short or '-'} | "
                  f"{one_line(why.get(g.key) or '-') if g.met is False else ''} |")
    md.append("")

    md += ["## Wall time per step", ""]
    if timings:
        md += ["| step | minutes | ran beside | finished | load average (1, 5, 15 min) |", "|---|---:|---|---|---|"]
        for name, t in timings.items():
            md.append(f"| {name} | {t['seconds'] / 60:.1f} | {', '.join(t.get('beside', [])) or '-'} | "
                      f"{t.get('finished', '')} | {', '.join(str(x) for x in t.get('load_average', []))} |")
        md += [f"| **total (wall time)** | **{total_min:.1f}** | | | |", "",
               "Steps skipped because they had finished in an earlier run keep the time of that run. Steps that ran "
               "beside others (`--eval-jobs`, the CPU threads shared) count their common wall time once in the "
               "total.", ""]
    else:
        md += ["(no timings.json: the steps were not run by `python -m vita_audio.cli.demo`)", ""]

    md += ["## Training: validation loss per stage and per MCTP module", ""]
    if losses:
        heads = heads_of(losses)
        md += ["| stage | train/loss | val/loss | " + " | ".join(heads) + " |",
               "|---|---:|---:|" + "---:|" * len(heads)]
        for k, vals in losses.items():
            md.append(f"| {k} | {fmt(vals.get('train'))} | {fmt(vals.get('loss'))} | "
                      + " | ".join(fmt(vals.get(h)) for h in heads) + " |")
        md += ["", "Cross-entropy per supervised token (nats) on each stage's validation split (its data config's "
               "`val_sources`: ASR + TTS for alignment, spoken QA for an SFT, plus ASR + TTS for the demo recipe's "
               "mix); stages that train MCTP modules only keep the main head frozen. train/loss: the loss of the "
               "stage's last training step (one batch), beside val/loss.", ""]
        md += img("val_loss", "validation loss per stage and head")
    else:
        md += [f"(no final_metrics.txt under {stages})", ""]

    per_stage = [(n, *(read_json(stage_eval_dir(out, n) / t / "metrics.json") for t in ("asr", "tts")))
                 for n in names[:-1]]
    md += stage_quality([*per_stage, (names[-1], asr, tts)])

    if compare:
        md += compare_variants(variant, asr, list(compare))

    md += ["## Quality per decode mode (corpus test split, never seen in training)", ""]
    speed_cols = [("lm_tokens_per_s", "LM tokens/s", ".1f"), ("e2e_tokens_per_s", "end-to-end tokens/s", ".1f")]
    if asr or tts or sqa:
        md += ["Failed samples (input that could not be prompted) and samples without audio stay in every "
               "denominator as misses. " + " ".join(f"{h}: {COLUMNS[k]}." for k, h, _ in speed_cols), ""]
    if asr:
        md += [f"### ASR (normaliser `{asr.get('normalizer')}`, {asr.get('samples')} utterances)", ""]
        md += table(asr, [*present(asr, [("wer", "WER", "pct"), ("cer", "CER (Chinese rows)", "pct")]),
                          ("failed", "failed", "d"), *speed_cols]) + [""]
        md += voice_table(asr, modes_of(asr))
    if tts:
        md += [f"### TTS (judge {tts.get('judge', '?')}, normaliser `{tts.get('normalizer')}`, "
               f"{tts.get('samples')} sentences)", ""]
        md += tts_baselines(tts)
        resynth = sorted({k for m in tts["modes"].values() for k in resynthesis_keys(m)})
        md += table(tts, [("judge_wer", "judge WER", "pct"), ("judge_wer_on_baseline_samples", "same sentences", "pct"),
                          *[(k, k.replace("_", " "), "pct") for k in resynth],
                          *present(tts, [("judge_cer", "judge CER (Chinese rows)", "pct"),
                                         ("text_wer", "text channel WER", "pct"),
                                         ("text_copied", "text copied", "pct")]),
                          ("failed", "failed", "d"), ("no_audio", "no audio", "d"), *speed_cols]) + [""]
    if sqa:
        md += [f"### Spoken QA ({sqa.get('samples')} questions, {sqa.get('rule')}, normaliser "
               f"`{sqa.get('normalizer')}`, judge {sqa.get('judge', '?')})", "",
               "A question without a spoken answer counts as wrong for S->S and stays in the denominator.", ""]
        md += table(sqa, [("s2t_accuracy", "S->T", "pct"), ("s2s_accuracy", "S->S", "pct"),
                          *present(sqa, [("t2t_accuracy", "T->T", "pct")]),
                          ("no_audio", "no audio", "d"), ("failed", "failed", "d"), *speed_cols]) + [""]
        trained = (sqa_trained or {}).get("modes", {}).get("vanilla", {})
        if trained:
            md += [f"Questions trained in speech ({sqa_trained.get('samples')} of the training split, spread over it, "
                   f"Vanilla; `eval/sqa_trained`): S->T {fmt(trained.get('s2t_accuracy'), pct=True)}, S->S "
                   f"{fmt(trained.get('s2s_accuracy'), pct=True)}, T->T {fmt(trained.get('t2t_accuracy'), pct=True)}: "
                   "the skill on what it was taught, beside the transfer split below.", ""]
        md += ["#### Transfer split (facts learned as text only, asked in speech)", ""]
        transfer = transfer_columns(sqa)
        md += table(sqa, transfer) + [""] if transfer else [
            "T->T / S->T / S->S on the transfer split: not measured (no `tt_*` / `st_*` / `ss_*` keys).", ""]
    skipped = {t: d.get("invalid_records_skipped") for t, d in (("asr", asr), ("tts", tts), ("sqa", sqa))
               if d and d.get("invalid_records_skipped")}
    if skipped:
        md += ["Invalid dataset records skipped (counted): " + ", ".join(f"{t} {n}" for t, n in skipped.items()), ""]
    if not (asr or tts or sqa):
        md += ["(no evaluation has run yet)", ""]
    else:
        md += img("quality", "quality per mode")

    md += ["## Speed per decode mode", ""]
    if speed:
        what = (f"{speed.get('batch')} TTS prompts of {speed.get('prefill_tokens')} tokens, each decoded alone "
                f"until its spoken answer stops (at most {speed.get('new_tokens')} tokens)" if speed.get("stop") else
                f"Batch {speed.get('batch')}, {speed.get('prefill_tokens')}-token TTS prompts, "
                f"{speed.get('new_tokens')} new tokens (no stop)")
        md += [f"{what}, greedy, medians of {speed.get('rounds')} rounds in rotated order; "
               f"{speed.get('torch_threads')} torch threads; load average {speed.get('load_average_start')} at the "
               "start.", ""]
        md += [f"tokens/s: {COLUMNS['tokens_per_s']}.", ""]
        md += table(speed, [("tokens_per_s", "tokens/s", ".1f"), ("speedup_vs_vanilla", "x Vanilla", ".2f"),
                            *present(speed, [("ideal_speedup", "ideal x Vanilla (from step costs)", ".2f")]),
                            ("backbone_forwards_per_token", "forwards / token", ".3f"),
                            ("first_chunk_s", "first chunk (s)", ".3f"),
                            ("first_chunk_vs_vanilla", "first chunk x Vanilla", ".2f"),
                            ("accepted", "accepted / forward", ".2f"),
                            *present(speed, [("tokens_per_answer", "tokens / answer", ".1f")])]) + [""]
        md += img("speed", "speed per mode")
    else:
        md += ["(the speed evaluation has not run yet)", ""]

    md += listen(out, sqa, tts, corpus)
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def listen(out: Path, sqa: dict | None, tts: dict | None, corpus: Path | None) -> list[str]:
    """One example of each task in each mode, then links to a few spoken questions (copied next to the report)
    and the spoken answers of every mode."""
    by_task = {t: read_jsonl(out / "eval" / t / "predictions.jsonl") for t in ("asr", "tts", "sqa")}
    md = ["## Listen", "", *examples(out, by_task, modes_of(*(read_json(out / "eval" / t / "metrics.json")
                                                              for t in by_task)))]
    preds = [p for p in by_task["sqa"] if p.get("wav")]
    by_id: dict[str, list[dict]] = {}
    for p in preds:
        by_id.setdefault(p["id"], []).append(p)
    wavs = out / "wavs"
    for sid, ps in by_id.items():
        q = ps[0]
        link = None
        if q.get("question_audio") and Path(q["question_audio"]).is_file():
            wavs.mkdir(parents=True, exist_ok=True)
            name = f"question_{safe_name(sid)}.wav"
            shutil.copyfile(q["question_audio"], wavs / name)
            link = quote(f"wavs/{name}")
        md.append(f"- **Question** {sid}: {q.get('question') or ''} " + (f"([listen]({link}))" if link else ""))
        for p in ps:
            rel = quote(os.path.relpath(p["wav"], out))
            md.append(f"  - {p['mode']}: \"{one_line(p.get('text'))}\" ([listen]({rel})); the judge heard "
                      f"\"{p.get('judge_heard', '')}\"; S->T {'right' if p.get('s2t') else 'wrong'}, "
                      f"S->S {'right' if p.get('s2s') else 'wrong'}")
    for p in (p for p in by_task["tts"] if p.get("wav")):
        rel = quote(os.path.relpath(p["wav"], out))
        md.append(f"- **TTS** {p['mode']}: \"{p.get('text')}\" ([listen]({rel})); the judge heard "
                  f"\"{p.get('judge_heard', '')}\"")
    return md + [""]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m vita_audio.eval.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--stages", default="artifacts/stages")
    p.add_argument("--variant", default="boost")
    p.add_argument("--stage-names", nargs="*", default=None,
                   help="the recipe's stages in training order, the last one evaluated (default: <variant>_stage1..4)")
    p.add_argument("--corpus", default=None)
    p.add_argument("--compare", nargs="*", default=[], help="other variants' demo dirs: their ASR WER beside this one")
    args = p.parse_args(argv)
    path = build_report(Path(args.out), Path(args.stages), args.variant, Path(args.corpus) if args.corpus else None,
                        [Path(c) for c in args.compare], args.stage_names)
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    main()
