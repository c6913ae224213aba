"""The main job of `make demo`: the embedded default recipe, end to end, offline, on CPU, speech in to speech out.

    corpus (hibari-tts + espeak-ng) -> built-in codec -> audio-token cache -> the recipe's four stages
        -> eval.py on the corpus test split (never seen in training), Vanilla / Boost / Turbo of the final checkpoint:
           asr (WER, by voice), tts (judge WER vs the originals), sqa (S->T, S->S), speed (tokens/s, first chunk);
           spoken QA in Vanilla mode on 30 questions trained in speech (beside the transfer split's);
           ASR and TTS in Vanilla mode after the intermediate stages that train the backbone (per-stage quality)
        -> outputs/demo/report.md: tables, PNG plots, a spoken question and its spoken answers linked

The recipes (`--recipe`; the experiments under conf/experiment/):

    demo       (Boost, the default; the semantic built-in codec, audio=builtin_semantic, and the 16 x 128 backbone,
               model/backbone=demo) demo/align -> demo/sft -> demo/mctp_one -> demo/mctp_all: stage 1 (alignment,
               longer than boost_stage1), an SFT of the backbone only on spoken QA with ASR at 1.0, TTS / text at 0.5,
               then the MCTP modules on the frozen final backbone (module 0 from its last layer, then ten clones). The
               figures favour it (issue 22: ASR kept at about 51 % instead of 66 %, about 4 minutes saved, spent on
               stage-1 steps). The demo checkpoint: artifacts/stages/demo/mctp_all/hf.
    reference  <variant>_stage1..4: the method's order (MCTP stages 2-3, then a joint SFT of everything at 0.05).
               Balance and Plus run this one.

    python -m vita_audio.cli.demo                  # the Boost variant, the demo recipe; finished steps are skipped
    python -m vita_audio.cli.demo --recipe reference   # boost_stage1..4 -> outputs/demo_reference
    python -m vita_audio.cli.demo --variant balance
    python -m vita_audio.cli.demo --variant plus   # continuous input audio (tiny encoder) -> outputs/demo_plus; each
                                                   # report puts the other variants' ASR WER beside its own
    python -m vita_audio.cli.demo --force-training # retrain the four stages (keeps corpus, codec and cache)
    python -m vita_audio.cli.demo --force-eval     # re-run the evaluations (keeps the checkpoints)
    python -m vita_audio.cli.demo --smoke --artifacts /tmp/a --out /tmp/o   # tiny sizes, a couple of minutes
    python -m vita_audio.cli.demo --dry-run        # print the commands only
    python -m vita_audio.cli.demo --eval-jobs 1    # evaluations one after the other (default: two at a time)

Every step is an ordinary command (printed before it runs), so any of them can be re-run by hand with other
options. The steps are the package's modules (`python -m vita_audio.cli.train` is `python train.py`), run in the
current directory: artifacts/ and outputs/ are relative to it, and no source checkout is needed. A step whose
output exists is skipped, so an interrupted demo resumes where it stopped. The wall time of every step is kept in
`<out>/timings.json` (across resumed runs; for the steps that skip by themselves, the longest run, i.e. the one that
did the work) and shown in the report.

Evaluations next to each other in the pipeline (the per-stage ones, and the final asr / tts / sqa) run `--eval-jobs`
at a time, the CPU threads shared between them, each writing its output to `<out>/logs/<step>.log`; the speed
evaluation, which times decoding, and every training step run alone. `timings.json` keeps each evaluation's own
minutes and its share of their common wall time (`counted`), which the report's total adds.

When stdout is not a terminal (CI, `make demo > log`), the children's progress bars (carriage-return frames) are
turned into one line at most every `--progress-every` seconds, so the log stays readable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vita_audio.eval.report_tables import stage_eval_dir, stage_key

# the final evaluations in running order: the longest first, so that two at a time finish about together; speed
# last and alone (it times decoding)
EVAL_TASKS = ("sqa", "tts", "asr", "speed")
STAGE_EVAL_TASKS = ("asr", "tts")  # after the intermediate stages, in Vanilla mode (the per-stage quality table)
# the speed on whole spoken answers: 4 TTS prompts, each decoded until its answer stops (at most 300 tokens; the
# demo's answers are 75-100), not 165 tokens with no stop, which timed what the model writes after its answer too
SPEED_ON_ANSWERS = ["task.stop=true", "task.batch=4", "task.new_tokens=300"]
# spoken QA on questions the model was trained on in speech (Vanilla, rows spread over the training split): beside
# the transfer split's S->T, it tells a spoken-QA skill not learned from knowledge that does not transfer
TRAINED_SQA, TRAINED_SQA_ROWS = "sqa_trained", 30

# the demo's codec trains shorter than conf/train_codec.yaml's 3,000 steps: the codec was the cheapest place to
# find time for the evaluations inside the 30-minute budget (see RESULTS.md, "The main job")
CODEC_STEPS = 1500

# tiny sizes for the smoke run (CI): the test-size backbone, 64 codes, a few steps per stage
SMOKE_MODEL = ["model/backbone=tiny", "model.backbone.config.hidden_size=64",
               "model.backbone.config.intermediate_size=128", "model.backbone.config.num_hidden_layers=2",
               "model.backbone.config.num_attention_heads=4", "model.backbone.config.num_key_value_heads=2",
               "data.max_len=512", "data.batch_size=2",
               "trainer.limit_val_batches=1"]
SMOKE_STEPS = (4, 2, 2, 2)  # the recipe's four stages, in order; validated once, at the last step
SMOKE_CODEC_STEPS = 20


@dataclass(frozen=True)
class Recipe:
    """A chain of four experiments, in training order, and the intermediate ones evaluated in Vanilla mode (those
    after which the backbone has changed: an MCTP-only stage decodes in Vanilla exactly as its predecessor)."""

    stages: tuple[str, ...]
    checked: tuple[str, ...]
    audio: str = "builtin"  # the audio group (conf/audio/) its experiments use: the codec, cache and evals follow

    @property
    def final(self) -> str:
        return self.stages[-1]


DEMO_RECIPE = Recipe(("demo/align", "demo/sft", "demo/mctp_one", "demo/mctp_all"), ("demo/align", "demo/sft"),
                     audio="builtin_semantic")
RECIPES = ("demo", "reference")


def recipe_for(variant: str, recipe: str | None = None) -> Recipe:
    """The demo recipe (Boost only) or the reference's stage order of `variant`; None: the variant's default."""
    recipe = recipe or ("demo" if variant == "boost" else "reference")
    if recipe == "demo":
        if variant != "boost":
            raise ValueError(f"--recipe demo exists for the boost variant only (conf/experiment/demo/); "
                             f"--variant {variant} runs --recipe reference")
        return DEMO_RECIPE
    if recipe != "reference":
        raise ValueError(f"unknown recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
    return Recipe(tuple(f"{variant}_stage{k}" for k in (1, 2, 3, 4)), (f"{variant}_stage1",))


@dataclass
class Step:
    name: str
    cmd: list[str]
    done: Path | None  # the output that marks it finished; None: the command skips by itself (or always runs)
    kind: str = "build"  # build | train | eval | report (what --force-training / --force-eval re-run)
    beside: bool = False  # may run at the same time as the neighbouring `beside` steps (see `batches`)


VARIANTS = ("boost", "balance", "plus")  # plus: input audio through the (tiny) continuous encoder, not codes


def out_dir(outputs: Path, variant: str, recipe: str | None = None) -> Path:
    """Where a run's evaluations and report go by default: outputs/demo (boost, its default recipe),
    outputs/demo_<variant> for the other variants, outputs/demo_reference for Boost in the reference's order."""
    if variant == "boost":
        return outputs / ("demo_reference" if recipe == "reference" else "demo")
    return outputs / f"demo_{variant}"


def eval_cmd(task: str, ckpt: Path, run_dir: Path, common: list[str], modes: tuple[str, ...],
             limit: int | None, smoke: bool) -> list[str]:
    """One eval.py run of a generation task (asr | tts | sqa) on the corpus test split."""
    cmd = [sys.executable, "-m", "vita_audio.cli.eval", f"task={task}", f"ckpt_path={ckpt}",
           f"hydra.run.dir={run_dir}", *common, f"task.modes=[{','.join(modes)}]"]
    if limit:
        cmd += [f"dataset.limit={limit}"]
    if task in ("tts", "sqa"):
        cmd += ["task.save_audio=3"]
    if smoke:
        cmd += ["task.max_new_tokens=24"]
    return cmd


def steps(variant: str, artifacts: Path, out: Path, codec_steps: int = CODEC_STEPS,
          limits: dict[str, int | None] | None = None, smoke: bool = False,
          modes: tuple[str, ...] = ("vanilla", "boost", "turbo"),
          stage_steps: list[int] | None = None, recipe: Recipe | None = None,
          stage_evals: tuple[str, ...] = STAGE_EVAL_TASKS) -> list[Step]:
    """The pipeline, in order. `stage_steps`: trainer.max_steps of the recipe's four stages instead of the
    experiments' own; `stage_evals`: the tasks run in Vanilla mode after each of the recipe's checked stages."""
    py = sys.executable
    limits = limits or {}
    recipe = recipe or recipe_for(variant)
    paths = [f"paths.artifacts_dir={artifacts}"]
    # every override of the codec's training (train_codec.py), in one list
    codec = [f"train.steps={SMOKE_CODEC_STEPS if smoke else codec_steps}"]
    corpus = ["--tiny"] if smoke else []
    audio = [f"audio={recipe.audio}"]
    if smoke:  # a small codec and codebook; the token cache and every stage follow the audio group
        audio += ["audio.codebook_size=64"]
        codec += ["train.batch_size=4", "codec.enc_channels=32", "codec.dec_channels=32", "codec.enc_blocks=1",
                  "codec.dec_blocks=1", "train.warmup_steps=2", "codec.gl_iters=4"]
    out_steps = [
        Step("corpus", [py, "-m", "vita_audio.data.corpus", "--out", str(artifacts / "corpus"), *corpus], None),
        Step("codec", [py, "-m", "vita_audio.cli.train_codec", *paths, *audio, *codec], None),
        Step("cache", [py, "-m", "vita_audio.cli.tokenize", "--data", "corpus", *paths, *audio], None),
        Step("cache_sft", [py, "-m", "vita_audio.cli.tokenize", "--data", "corpus_sft", *paths, *audio], None),
    ]
    stages = artifacts / "stages"
    common = [*paths, *audio]
    for k, name in enumerate(recipe.stages):
        extra = [*SMOKE_MODEL, f"trainer.max_steps={SMOKE_STEPS[k]}", f"trainer.val_check_interval={SMOKE_STEPS[k]}"] \
            if smoke else []
        if stage_steps:  # validate once, at the end, so every stage reports its final validation losses
            extra += [f"trainer.max_steps={stage_steps[k]}", f"trainer.val_check_interval={stage_steps[k]}"]
        cmd = [py, "-m", "vita_audio.cli.train", f"+experiment={name}", *common, *extra]
        out_steps.append(Step(stage_key(name), cmd, stages / name / "final.ckpt", "train"))
        if name in recipe.checked:  # its quality now, beside the final checkpoint's (Vanilla mode, same subsets)
            for task in stage_evals:
                run_dir = stage_eval_dir(out, name) / task
                out_steps.append(Step(f"eval_{task}_{stage_key(name)}",
                                      eval_cmd(task, stages / name / "hf", run_dir, common, ("vanilla",),
                                               limits.get(task), smoke), run_dir / "metrics.json", "eval", True))
    final = stages / recipe.final / "hf"
    for task in EVAL_TASKS:
        run_dir = out / "eval" / task
        if task == "speed":
            cmd = [py, "-m", "vita_audio.cli.eval", "task=speed", f"ckpt_path={final}", f"hydra.run.dir={run_dir}",
                   *common, f"task.modes=[{','.join(modes)},verified]", *SPEED_ON_ANSWERS]
            if smoke:
                cmd += ["task.rounds=1", "task.new_tokens=24"]
        else:
            cmd = eval_cmd(task, final, run_dir, common, modes, limits.get(task), smoke)
            if task == "tts":  # beside free decoding: the input text forced into the answer's text chunks
                cmd += ["task.force_text=true"]
        out_steps.append(Step(f"eval_{task}", cmd, run_dir / "metrics.json", "eval", task != "speed"))
        if task == "sqa":  # the same skill on questions trained in speech: separates transfer from spoken QA itself
            run_dir = out / "eval" / TRAINED_SQA
            cmd = eval_cmd("sqa", final, run_dir, common, ("vanilla",), TRAINED_SQA_ROWS, smoke)
            cmd += [f"dataset.path={artifacts / 'corpus' / 'sqa' / 'train.jsonl'}", "dataset.spread=true"]
            out_steps.append(Step(f"eval_{TRAINED_SQA}", cmd, run_dir / "metrics.json", "eval", True))
    # the other variants' and recipes' demo runs beside this one (if run): their ASR figures go next to this one's
    runs = [*(out_dir(out.parent, v) for v in VARIANTS), out_dir(out.parent, "boost", "reference")]
    others = [str(d) for d in runs if d != out]
    out_steps.append(Step("report", [py, "-m", "vita_audio.eval.report", "--out", str(out), "--stages",
                                     str(stages), "--variant", variant, "--stage-names", *recipe.stages,
                                     "--corpus", str(artifacts / "corpus"), "--compare", *others], None, "report"))
    return out_steps


# -- running a step with readable output -------------------------------------------------------------------------
class Relay:
    """Copies a child's output to `sink`. On a terminal: as is. Otherwise carriage-return frames (progress bars)
    become lines, at most one every `every` seconds (the last frame before a newline is always kept)."""

    def __init__(self, sink, tty: bool, every: float = 30.0) -> None:
        self.sink, self.tty, self.every = sink, tty, every
        self.buf, self.last = "", float("-inf")

    def feed(self, text: str) -> None:
        if self.tty:
            self.sink.write(text)
            self.sink.flush()
            return
        self.buf += text
        while True:
            i = min((j for j in (self.buf.find("\r"), self.buf.find("\n")) if j >= 0), default=-1)
            if i < 0:
                break
            seg, sep, self.buf = self.buf[:i], self.buf[i], self.buf[i + 1:]
            if sep == "\n":
                if seg.strip():
                    self._line(seg)
            elif seg.strip() and time.monotonic() - self.last >= self.every:
                self._line(seg)
                self.last = time.monotonic()
        self.sink.flush()

    def close(self) -> None:
        if self.buf.strip():
            self._line(self.buf)
        self.buf = ""
        self.sink.flush()

    def _line(self, seg: str) -> None:
        self.sink.write(seg.rstrip() + "\n")


def run_step(cmd: list[str], tty: bool, every: float) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if tty:
        return subprocess.call(cmd, env=env)
    relay = Relay(sys.stdout, tty=False, every=every)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        while True:
            chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
            if not chunk:
                break
            relay.feed(chunk.decode("utf-8", errors="replace"))
        relay.close()
        return proc.wait()


def batches(todo: list[Step]) -> list[list[Step]]:
    """`todo` in runs: a `beside` step joins the run of the `beside` steps right before it, any other runs alone."""
    out: list[list[Step]] = []
    for step in todo:
        if step.beside and out and out[-1][-1].beside:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def run_beside(batch: list[Step], jobs: int, logs: Path) -> tuple[dict[str, tuple[int, float]], float]:
    """Run `batch` `jobs` at a time, each with its share of the CPU threads and its output in `logs/<name>.log`.
    Returns ({name: (exit code, seconds)}, wall seconds of the whole batch)."""
    logs.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads)

    def one(step: Step) -> tuple[int, float]:
        log = logs / f"{step.name}.log"
        sys.stdout.write(f"[demo] {step.name}: started, {jobs} steps at a time (log: {log})\n")
        sys.stdout.flush()
        t0 = time.perf_counter()
        with open(log, "w") as f:
            rc = subprocess.call(step.cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - t0
        tail = "" if rc == 0 else "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        sys.stdout.write(f"[demo] {step.name}: {'done' if rc == 0 else f'failed (exit {rc})'} in "
                         f"{seconds / 60:.1f} min\n{tail}")
        sys.stdout.flush()
        return rc, seconds

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        results = dict(zip((s.name for s in batch), pool.map(one, batch)))
    return results, time.perf_counter() - t0


def step_timing(seconds: float, counted: float | None = None, beside: list[str] | None = None) -> dict:
    """One step's entry of timings.json; steps run beside others also keep `counted`, their share of the batch's
    wall time (the report's total adds `counted` where present, so a batch counts its wall time once)."""
    entry = {"seconds": round(seconds, 1),
             "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
             "load_average": [round(x, 2) for x in os.getloadavg()]}
    if beside:
        entry.update(counted=round(counted, 1), beside=beside)
    return entry


def load_timings(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="boost", choices=list(VARIANTS))
    p.add_argument("--recipe", default=None, choices=list(RECIPES),
                   help="demo (Boost's default): backbone-only SFT, then the MCTP stages; reference: the method's "
                        "stage order (the default of balance and plus)")
    p.add_argument("--artifacts", default="artifacts", help="corpus, codec, cache and stage checkpoints")
    p.add_argument("--out", default=None, help="evaluations and the report (default: outputs/demo for boost, "
                   "outputs/demo_<variant> for the others, so that the reports can compare the variants)")
    p.add_argument("--codec-steps", type=int, default=CODEC_STEPS)
    p.add_argument("--limit-asr", type=int, default=30, help="test samples per mode (0 = the whole split)")
    p.add_argument("--limit-tts", type=int, default=20)
    p.add_argument("--limit-sqa", type=int, default=60,
                   help="spoken questions per mode (the test split is ordered so that any prefix of 4k is balanced)")
    p.add_argument("--stage-steps", default=None,
                   help="comma list of 4 step counts for the recipe's stages (default: the experiments' own)")
    p.add_argument("--stage-evals", default=",".join(STAGE_EVAL_TASKS),
                   help="tasks evaluated in Vanilla mode after the intermediate stages that train the backbone "
                        "(comma list of asr,tts; empty: none)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes everywhere (CI): proves the pipeline, not quality")
    p.add_argument("--force-training", action="store_true", help="retrain the four stages (then re-evaluate)")
    p.add_argument("--force-eval", action="store_true", help="re-run the evaluations")
    p.add_argument("--progress-every", type=float, default=30.0,
                   help="seconds between progress lines when stdout is not a terminal")
    p.add_argument("--eval-jobs", type=int, default=2,
                   help="evaluations run this many at a time, the CPU threads shared (1: one after the other); "
                        "the speed evaluation always runs alone")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    try:
        recipe = recipe_for(args.variant, args.recipe)
    except ValueError as e:
        p.error(str(e))
    if args.eval_jobs < 1:
        p.error(f"--eval-jobs must be at least 1 (1: the evaluations one after the other), got {args.eval_jobs}")
    stage_evals = tuple(t.strip() for t in args.stage_evals.split(",") if t.strip())
    if set(stage_evals) - set(STAGE_EVAL_TASKS):
        p.error(f"--stage-evals takes tasks among {','.join(STAGE_EVAL_TASKS)}, got {args.stage_evals!r}")
    artifacts = Path(args.artifacts).resolve()
    out = Path(args.out).resolve() if args.out else out_dir(Path("outputs").resolve(), args.variant, args.recipe)
    limits = {"asr": args.limit_asr or None, "tts": args.limit_tts or None, "sqa": args.limit_sqa or None}
    tty = sys.stdout.isatty()
    stage_steps = [int(x) for x in args.stage_steps.split(",")] if args.stage_steps else None
    if stage_steps is not None and len(stage_steps) != 4:
        p.error(f"--stage-steps needs 4 comma-separated counts ({', '.join(recipe.stages)}), got {args.stage_steps!r}")

    out.mkdir(parents=True, exist_ok=True)
    timings_file = out / "timings.json"
    timings = load_timings(timings_file)
    forced = {"train": args.force_training, "eval": args.force_training or args.force_eval}
    t_start = time.perf_counter()
    todo = []
    for step in steps(args.variant, artifacts, out, args.codec_steps, limits, args.smoke, stage_steps=stage_steps,
                      recipe=recipe, stage_evals=stage_evals):
        if step.done is not None and step.done.exists() and not forced.get(step.kind, False):
            print(f"[demo] {step.name}: already done ({step.done}), skipping", flush=True)
            continue
        todo.append(step)
    for batch in batches(todo):
        for step in batch:
            shown = step.cmd[1:] if step.cmd[0] == sys.executable else step.cmd
            print(f"[demo] {step.name}: {' '.join(shown)}", flush=True)
        if args.dry_run:
            continue
        if len(batch) > 1 and args.eval_jobs > 1:
            results, wall = run_beside(batch, args.eval_jobs, out / "logs")
            own = sum(seconds for _, seconds in results.values())
            for step in batch:
                rc, seconds = results[step.name]
                if rc == 0:
                    timings[step.name] = step_timing(seconds, wall * seconds / own,
                                                     [s.name for s in batch if s is not step])
            timings_file.write_text(json.dumps(timings, indent=2) + "\n")
            failed = [(name, rc) for name, (rc, _) in results.items() if rc != 0]
            if failed:
                print(f"[demo] step {failed[0][0]!r} failed (exit {failed[0][1]}); its log is under {out / 'logs'}; "
                      "fix it and re-run: finished steps are skipped", file=sys.stderr, flush=True)
                return failed[0][1]
            continue
        for step in batch:
            t0 = time.perf_counter()
            rc = run_step(step.cmd, tty, args.progress_every)
            seconds = time.perf_counter() - t0
            if rc != 0:
                print(f"[demo] step {step.name!r} failed (exit {rc}) after {seconds:.0f} s; fix it and re-run: "
                      "finished steps are skipped", file=sys.stderr, flush=True)
                return rc
            # a step without an output marker skips by itself when finished (corpus, codec, cache): its longest run
            # is the one that did the work, so a re-run's few seconds never replace it
            keep = step.done is None and timings.get(step.name, {}).get("seconds", 0) > seconds
            if step.kind != "report" and not keep:
                timings[step.name] = step_timing(seconds)
                timings_file.write_text(json.dumps(timings, indent=2) + "\n")
            print(f"[demo] {step.name}: done in {seconds / 60:.1f} min", flush=True)
    if args.dry_run:
        return 0

    print(f"\n[demo] this run: {(time.perf_counter() - t_start) / 60:.1f} min; wall time per step (all runs):")
    for name, t in timings.items():
        print(f"  {name:18s} {t['seconds'] / 60:7.1f} min")
    print(f"\n[demo] exported checkpoint (reference layout): {artifacts / 'stages' / recipe.final / 'hf'}")
    print(f"[demo] report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
