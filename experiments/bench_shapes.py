"""Which model shape shows MCTP's speed-up: decode step costs and training throughput per candidate shape.

    python experiments/bench_shapes.py [--shapes 4x256,8x192,16x128 --rounds 2 --threads 1 --train-steps 2
                                        --json out.json]

Times are CPU seconds of this process (`time.process_time`, one torch thread), so other jobs on a shared machine do
not inflate them. Per shape `LxH` (L layers, hidden H, 4 heads / 2 KV heads, intermediate 3H, the demo tokenizer
with 2,048 codes, 10 MCTP modules, random weights):

    decode   `eval/tasks/speed.py`'s benchmark of Vanilla / Boost / Turbo (batch 1, 32-token TTS prompt, 165 greedy
             tokens, no stop), MCTP steps on the audio-only head at every step and `drafting="all"` (random
             weights never open an audio span: this times every MCTP step as one inside a span, as a trained
             checkpoint's audio answers are). Figures: the median single-token backbone step M (Vanilla), the
             median MCTP step m, r = m / M, the median backbone forward right after an MCTP run, the ideal speed-up
             from the step counts and r (tokens / (backbone forwards + MCTP steps x r)) and the measured one
             (tokens/s over Vanilla's in the same round).
    train    forward + backward + AdamW tokens/s of the demo's stage 1 (backbone only) and stage 4 (backbone + 10
             modules) steps (`bench_train_step.py`'s builders) on synthetic packed batches of `--train-batch` rows x
             `--train-seq` tokens (the demo: 4 x 1024), and their cost per token relative to the first shape.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import MODES as TRAIN_MODES  # noqa: E402
from bench_decode import shape_config  # noqa: E402
from bench_train_step import make_batches, tokens  # noqa: E402

from vita_audio.eval.tasks.speed import bench, summarize  # noqa: E402
from vita_audio.model.backbone import Backbone  # noqa: E402
from vita_audio.model.lm import VitaAudioLM  # noqa: E402
from vita_audio.model.mctp import MCTPStack  # noqa: E402

CODES = 2048  # the demo's codebook


def decode_figures(cfg: dict, rounds: int, new_tokens: int) -> dict:
    bb = Backbone(CODES, config=dict(cfg), tokenizer="tiny", seed=0)
    torch.manual_seed(0)
    lm = VitaAudioLM(bb, MCTPStack.for_backbone(bb, 10)).eval()
    runs = bench(lm, 1, ["vanilla", "boost", "turbo"], rounds, new_tokens, 32, log=lambda *a: None,
                 restrict_mctp="always", compare_hf=False, drafting="all", clock=time.process_time)
    rows = {d["mode"]: d for d in summarize("shape", "", 1, runs)}
    after = statistics.median(t for r in runs["turbo"] for t in r.times["M"])  # Turbo: every forward follows a run
    out = {"backbone_step_ms": rows["vanilla"]["step_M_ms"], "backbone_after_run_ms": 1e3 * after,
           "params_backbone_M": sum(p.numel() for p in bb.parameters()) / 1e6}
    for m in ("boost", "turbo"):
        d = rows[m]
        out[m] = {"mctp_step_ms": d["r"] * d["step_M_ms"], "r": d["r"], "ideal": d["ideal"],
                  "measured": d["achieved"], "forwards_per_token": d["forwards_per_token"]}
    return out


def cpu_steps(module, batches: list, warmup: int = 1) -> list[float]:
    """CPU seconds of each training step after `warmup` (forward, backward, clipping, AdamW)."""
    opt = module.configure_optimizers()["optimizer"]
    module.train()
    times = []
    for i, batch in enumerate(batches):
        t0 = time.process_time()
        loss = module.compute_losses(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.process_time() - t0)
    return times


def train_figures(cfg: dict, batch: int, seq: int, steps: int) -> dict:
    out = {}
    proto = TRAIN_MODES["stage1"].build(cfg, None, 0)
    batches = make_batches(proto, 1 + steps, batch, seq)
    n_tok = sum(tokens(b) for b in batches[1:]) / steps
    del proto
    for name in ("stage1", "stage4"):
        module = TRAIN_MODES[name].build(cfg, None, 10)
        sec = statistics.median(cpu_steps(module, batches))
        out[f"{name}_tokens_per_s"] = n_tok / sec
        del module
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="4x256,8x192,12x192,8x256,16x128,12x160,24x128")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=165)
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--train-seq", type=int, default=1024)
    ap.add_argument("--train-steps", type=int, default=2, help="timed training steps per stage (0: no training)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # CPU seconds of one thread = its work, whatever else runs
    results = {}
    for name in [s.strip() for s in args.shapes.split(",") if s.strip()]:
        cfg = shape_config(name)
        res = decode_figures(cfg, args.rounds, args.new_tokens)
        if args.train_steps:
            res.update(train_figures(cfg, args.train_batch, args.train_seq, args.train_steps))
        res["load_average"] = os.getloadavg()[0]
        results[name] = res
        print(name, json.dumps(res), flush=True)
    first = next(iter(results.values()))
    print("| shape | backbone params (M) | M: backbone step (ms) | after a run (ms) | m: MCTP step (ms) | r = m / M | "
          "Boost ideal / measured | Turbo ideal / measured | stage 1 tok/s | stage 4 tok/s | stage-4 cost x first |")
    print("|---|" + "---:|" * 10)
    for name, r in results.items():
        b, t = r["boost"], r["turbo"]
        s1, s4 = r.get("stage1_tokens_per_s"), r.get("stage4_tokens_per_s")
        cost = first["stage4_tokens_per_s"] / s4 if s4 else float("nan")
        print(f"| {name} | {r['params_backbone_M']:.1f} | {r['backbone_step_ms']:.2f} | "
              f"{r['backbone_after_run_ms']:.2f} | {t['mctp_step_ms']:.2f} | {t['r']:.3f} | {b['ideal']:.2f}x / {b['measured']:.2f}x | "
              f"{t['ideal']:.2f}x / {t['measured']:.2f}x | {s1 or float('nan'):,.0f} | {s4 or float('nan'):,.0f} | "
              f"{cost:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
