"""The demo recipe's stage-1 levers one at a time (issue 22): `demo/align` trained from scratch with one change
each, then ASR (and with --tts, TTS) in Vanilla mode on the demo's test subsets, as a table.

    # the demo's corpus, codec and token cache first (make demo, or its first steps), then:
    python experiments/bench_levers.py --artifacts artifacts --out outputs/levers
    python experiments/bench_levers.py --levers demo corpus_tokenizer lr_2e-3 --steps 300 --jobs 2 --tts
    python experiments/bench_levers.py --levers corpus_2x+asr_rows_2x --steps 700   # two levers at once
    python experiments/bench_levers.py --list

Each lever is a list of Hydra overrides on top of `+experiment=demo/align` (the demo recipe as shipped is the lever
`demo`), so any row can be re-run by hand: the commands are printed. Runs go `--jobs` at a time, each with
OMP_NUM_THREADS=`--threads` (on 2 cores, two 1-thread runs train about 1.1x the tokens/s in total of one 2-thread
run). Every run writes under `<out>/<lever>/` (stage checkpoint, train and eval logs); a lever whose eval metrics
exist is not re-run (delete its folder to redo it). Levers that need artefacts the demo does not make (the
acoustic codec and its cache) say what to build first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vita_audio.data.corpus import CorpusConfig

# name -> (what changes against the demo recipe's stage 1, overrides; "{tokenizer}" = the corpus text tokenizer,
# "{big}" = the folder of the doubled corpus and its token cache: big_corpus())
LEVERS: dict[str, tuple[str, list[str]]] = {
    "demo": ("the demo's stage 1 as shipped (at --steps)", []),
    "corpus_tokenizer": ("a text tokenizer trained on the corpus (1.26 pieces / word)",
                         ["model.backbone.tokenizer={tokenizer}"]),
    "rows_1024": ("rows of 4 x 1024 tokens (boost_stage1's) instead of 16 x 256: the same tokens a step",
                  ["data.max_len=1024", "data.batch_size=4"]),
    "lr_2e-3": ("peak LR 2e-3 instead of 1e-3", ["model.optimizer.lr=2e-3"]),
    "lr_3e-3": ("peak LR 3e-3 instead of 1e-3", ["model.optimizer.lr=3e-3"]),
    "tts_rows_2x": ("TTS rows at ratio 2.0 instead of 1.0 (more text-to-speech and text-copy practice)",
                    ["data.train_sources.1.ratio=2.0"]),  # conf/data/corpus.yaml: asr, tts, text
    "asr_rows_2x": ("ASR rows at ratio 2.0 instead of 1.0 (an ASR row supervises ~10 text tokens, a TTS row ~75 codes)",
                    ["data.train_sources.0.ratio=2.0"]),
    "tiny_shape": ("the 4 x 256 tiny preset instead of the 16 x 128 demo shape", ["model/backbone=tiny"]),
    "acoustic_codec": ("the acoustic built-in codec (audio=builtin) instead of the semantic one", ["audio=builtin"]),
    "shape_8x192": ("8 layers x hidden 192 (4.7 M) instead of 16 x 128: between the demo's and the tiny preset's",
                    ["model.backbone.config.num_hidden_layers=8", "model.backbone.config.hidden_size=192",
                     "model.backbone.config.intermediate_size=576"]),
    "corpus_2x": ("a corpus of twice the demo's hours (2x the unique ASR / TTS sentences and spoken QA rows; the "
                  "text QA rows stay, so their share falls), the same codec",
                  ["paths.corpus_dir={big}/corpus", "paths.cache_dir={big}/cache"]),
}
DEFAULT_LEVERS = ("demo", "rows_1024", "corpus_tokenizer", "lr_2e-3", "tiny_shape")


def audio_of(overrides: list[str]) -> str:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith("audio=")), "builtin_semantic")


def lever_spec(lever: str) -> tuple[str, list[str]]:
    """(what changes, overrides) of a lever, or of levers joined by "+" (`corpus_2x+asr_rows_2x`: both at once)."""
    parts = lever.split("+")
    unknown = [p for p in parts if p not in LEVERS]
    if unknown:
        raise SystemExit(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)} (join with '+')")
    return "; ".join(LEVERS[p][0] for p in parts), [o for p in parts for o in LEVERS[p][1]]


def big_corpus(artifacts: Path) -> Path:
    """Where the `corpus_2x` lever's corpus and token cache live: beside the demo's artefacts."""
    return artifacts.parent / f"{artifacts.name}_corpus_2x"


def doubled_hours(artifacts: Path) -> float:
    """Twice the hours of the demo's corpus (its stats.json; the corpus default where there is none yet)."""
    stats = artifacts / "corpus" / "stats.json"
    hours = json.loads(stats.read_text())["config"]["hours"] if stats.is_file() else CorpusConfig().hours
    return 2 * hours


def commands(lever: str, artifacts: Path, out: Path, steps: int,
             tts: bool) -> list[tuple[str, list[str], Path, Path]]:
    """(name, command, log file, the output that marks it done) of one lever: train, eval asr, [eval tts]. Training
    reads the lever's overrides; the evaluations always read the demo's test splits (`artifacts`)."""
    overrides = [o.format(tokenizer=artifacts / "text_tokenizer", big=big_corpus(artifacts))
                 for o in lever_spec(lever)[1]]
    audio = audio_of(overrides)
    run = out / lever
    py = sys.executable
    common = [f"paths.artifacts_dir={artifacts}", f"audio={audio}"]
    train = [py, "-m", "vita_audio.cli.train", "+experiment=demo/align", *common, f"paths.stages_dir={run}/stages",
             f"hydra.run.dir={run}/train", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
             *[o for o in overrides if not o.startswith("audio=")]]
    ckpt = run / "stages" / "demo" / "align" / "hf"
    cmds = [("train", train, run / "train.log", ckpt / "config.json")]
    for task, limit in (("asr", 30), *((("tts", 20),) if tts else ())):
        cmds.append((f"eval_{task}", [py, "-m", "vita_audio.cli.eval", f"task={task}", f"ckpt_path={ckpt}",
                                      f"hydra.run.dir={run}/eval_{task}", *common, "task.modes=[vanilla]",
                                      f"dataset.limit={limit}"], run / f"eval_{task}.log",
                     run / f"eval_{task}" / "metrics.json"))
    return cmds


def check_artifacts(lever: str, artifacts: Path) -> None:
    overrides = lever_spec(lever)[1]
    audio = audio_of(overrides)
    codec = artifacts / "codec" / audio
    cache = artifacts / "cache" / audio / "meta.json"
    if not codec.is_dir() or not cache.is_file():
        raise SystemExit(f"lever {lever!r} needs the {audio} codec and its token cache under {artifacts}: "
                         f"python -m vita_audio.cli.train_codec paths.artifacts_dir={artifacts} audio={audio} && "
                         f"python -m vita_audio.cli.tokenize --data corpus --audio {audio} "
                         f"paths.artifacts_dir={artifacts}")
    if any("{tokenizer}" in o for o in overrides) and not (artifacts / "text_tokenizer").is_dir():
        raise SystemExit(f"lever {lever!r} needs the corpus text tokenizer: python -m vita_audio.cli.text_tokenizer "
                         f"--corpus {artifacts / 'corpus'} --out {artifacts / 'text_tokenizer'}")
    big = big_corpus(artifacts)
    if any("{big}" in o for o in overrides) and not (big / "cache" / audio / "meta.json").is_file():
        raise SystemExit(f"lever {lever!r} needs a corpus of twice the hours and its token cache (the demo's codec) in "
                         f"{big}: python -m vita_audio.data.corpus --hours {doubled_hours(artifacts):g} "
                         f"--out {big / 'corpus'} && mkdir -p {big}/codec "
                         f"&& ln -s {codec} {big}/codec/{audio} && python -m vita_audio.cli.tokenize --data corpus "
                         f"paths.artifacts_dir={big} audio={audio}")


def run_lever(lever: str, artifacts: Path, out: Path, steps: int, tts: bool, threads: int) -> dict:
    """Train and evaluate one lever (skipped where its metrics exist); its row of the table."""
    run = out / lever
    run.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "disabled", "DS_ACCELERATOR": "cpu"}
    timing = run / "timing.json"
    times = json.loads(timing.read_text()) if timing.is_file() else {}
    for name, cmd, log, done in commands(lever, artifacts, out, steps, tts):
        if done.is_file():
            continue
        sys.stdout.write(f"[{lever}] {' '.join(cmd)}\n")  # one write: runs print from several threads
        sys.stdout.flush()
        start = time.monotonic()
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if rc:
            raise RuntimeError(f"lever {lever!r}: {name} failed (exit {rc}); see {log}")
        times[name] = time.monotonic() - start
        timing.write_text(json.dumps(times, indent=2))
    return row(lever, run, times)


def row(lever: str, run: Path, times: dict) -> dict:
    metrics = dict(line.split("\t") for line in (run / "stages/demo/align/final_metrics.txt").read_text().splitlines())
    speeds = re.findall(r"([\d,]+) tok/s", (run / "train.log").read_text())
    r = {"lever": lever, "what": lever_spec(lever)[0], "train_min": times.get("train", float("nan")) / 60,
         "tok_s": float(speeds[-1].replace(",", "")) if speeds else float("nan"),
         "train_loss": float(metrics["train/loss"]), "val_loss": float(metrics["val/loss"])}
    asr = json.loads((run / "eval_asr/metrics.json").read_text())["modes"]["vanilla"]
    r.update(asr=asr["wer"], hibari=asr.get("wer_voice_hibari"), espeak=asr.get("wer_voice_espeak"))
    tts = run / "eval_tts/metrics.json"
    m = json.loads(tts.read_text())["modes"]["vanilla"] if tts.is_file() else {}
    r.update(tts=m.get("judge_wer"), text_wer=m.get("text_wer"), copied=m.get("text_copied"))
    return r


def table(rows: list[dict], steps: int, threads: int) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"demo/align, {steps} steps from scratch, OMP_NUM_THREADS={threads} per run; Vanilla mode, ASR on 30 "
             "test utterances, TTS on 20 sentences (judge WER)", "",
             "| lever | change | train min | tokens/s | train loss | val loss | ASR WER | hibari | espeak "
             "| TTS judge WER | TTS text WER | TTS text copied |", "|---|---|" + "---:|" * 10]
    for r in rows:
        lines.append(f"| {r['lever']} | {r['what']} | {r['train_min']:.1f} | {r['tok_s']:,.0f} | {r['train_loss']:.3f} "
                     f"| {r['val_loss']:.3f} | {pct(r['asr'])} | {pct(r['hibari'])} | {pct(r['espeak'])} "
                     f"| {pct(r['tts'])} | {pct(r['text_wer'])} | {pct(r['copied'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="the demo's corpus, codec, cache")
    p.add_argument("--out", type=Path, default=Path("outputs/levers"))
    p.add_argument("--levers", nargs="+", default=list(DEFAULT_LEVERS),
                   help=f"levers to run, each one of {', '.join(LEVERS)}, or several joined by '+' (applied together)")
    p.add_argument("--steps", type=int, default=300, help="demo/align steps of every run (the demo runs 700)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    p.add_argument("--tts", action="store_true", help="also the TTS judge WER (about 0.6 min per lever)")
    p.add_argument("--list", action="store_true", help="print the levers and their overrides, then exit")
    args = p.parse_args(argv)
    if args.list:
        for name, (what, overrides) in LEVERS.items():
            print(f"{name:18s} {what}: {' '.join(overrides) or '(none)'}")
        return
    artifacts, out = args.artifacts.resolve(), args.out.resolve()
    for lever in args.levers:
        check_artifacts(lever, artifacts)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda lv: run_lever(lv, artifacts, out, args.steps, args.tts, args.threads),
                             args.levers))
    text = table(rows, args.steps, args.threads)
    (out / "levers.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
