"""The main job of `make demo`: the embedded default recipe, end to end, offline, on CPU.

    corpus (hibari-tts + espeak-ng) -> built-in codec -> audio-token cache -> <variant>_stage1 .. stage4
        -> infer.py: a spoken test question answered in speech (s2s) and a sentence read aloud (tts)

    python -m vita_audio.cli.demo                  # the Boost variant; finished steps are skipped
    python -m vita_audio.cli.demo --variant balance
    python -m vita_audio.cli.demo --force-training # retrain the four stages (keeps corpus, codec and cache)
    python -m vita_audio.cli.demo --dry-run        # print the commands only

Every step is an ordinary command (printed before it runs), so any of them can be re-run by hand with other
options. At the end it prints each stage's final losses (main head and every MCTP module), the wall time of each
step, and where the exported checkpoint is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEMO_SENTENCE = "The capital of Greece is Athens."


def steps(variant: str, artifacts: Path) -> list[tuple[str, list[str], Path | None]]:
    """(name, command, output that marks it finished or None when the command skips by itself)."""
    py = sys.executable
    out = [
        ("corpus", [py, "-m", "vita_audio.data.corpus", "--out", str(artifacts / "corpus")], None),
        ("codec", [py, "-m", "vita_audio.cli.train_codec"], None),
        ("cache", [py, "-m", "vita_audio.cli.tokenize", "--data", "corpus"], None),
        ("cache_sft", [py, "-m", "vita_audio.cli.tokenize", "--data", "corpus_sft"], None),
    ]
    for k in (1, 2, 3, 4):
        name = f"{variant}_stage{k}"
        out.append((name, [py, "train.py", f"+experiment={name}"], artifacts / "stages" / name / "final.ckpt"))
    # speak: the final checkpoint answers a spoken test question (never seen in training) and reads a sentence
    final = artifacts / "stages" / f"{variant}_stage4" / "hf"
    for task, inp in (("s2s", artifacts / "corpus" / "wavs" / "test" / "test_q00000_question_hibari.wav"),
                      ("tts", DEMO_SENTENCE)):
        run_dir = artifacts / "demo" / variant / task
        out.append((f"infer_{task}", [py, "infer.py", f"task={task}", f"input={inp}", f"ckpt_path={final}",
                                      f"hydra.run.dir={run_dir}"], run_dir / "answer.wav"))
    return out


def read_metrics(stage_dir: Path) -> dict[str, float]:
    f = stage_dir / "final_metrics.txt"
    if not f.is_file():
        return {}
    return {k: float(v) for k, v in (line.split("\t") for line in f.read_text().splitlines() if line)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="boost", choices=["boost", "balance"])
    p.add_argument("--artifacts", default=str(ROOT / "artifacts"))
    p.add_argument("--force-training", action="store_true", help="retrain the four stages")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    artifacts = Path(args.artifacts)

    timings: list[tuple[str, float, str]] = []
    for name, cmd, done in steps(args.variant, artifacts):
        if done is not None and done.exists() and not args.force_training:
            timings.append((name, 0.0, "done before (skipped)"))
            print(f"[demo] {name}: already done ({done}), skipping", flush=True)
            continue
        print(f"[demo] {name}: {' '.join(cmd[1:] if cmd[0] == sys.executable else cmd)}", flush=True)
        if args.dry_run:
            continue
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        if rc != 0:
            print(f"[demo] step {name!r} failed (exit {rc}); fix it and re-run: finished steps are skipped",
                  file=sys.stderr)
            return rc
        timings.append((name, time.perf_counter() - t0, "ran"))
    if args.dry_run:
        return 0

    print("\n[demo] wall time per step")
    for name, seconds, how in timings:
        print(f"  {name:18s} {seconds / 60:7.1f} min  {how}")
    print("\n[demo] final losses per stage (train/* = last logged step, val/* = last validation)")
    for k in (1, 2, 3, 4):
        stage_dir = artifacts / "stages" / f"{args.variant}_stage{k}"
        metrics = read_metrics(stage_dir)
        shown = "  ".join(f"{n.split('/', 1)[1]}={v:.3f}" for n, v in sorted(metrics.items()) if n.startswith("val/"))
        print(f"  stage {k}: {shown or '(no metrics)'}")
    print(f"\n[demo] exported checkpoint (reference layout): {artifacts / 'stages' / f'{args.variant}_stage4' / 'hf'}")
    for task in ("s2s", "tts"):
        run_dir = artifacts / "demo" / args.variant / task
        answer = (run_dir / "answer.txt").read_text().strip() if (run_dir / "answer.txt").is_file() else "?"
        print(f"[demo] {task}: {answer!r} -> listen: {run_dir / 'answer.wav'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
