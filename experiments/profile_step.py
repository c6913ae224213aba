"""Where one decoder step's time goes: a Vanilla (backbone) step and an MCTP step, part by part.

    python experiments/profile_step.py [--ckpt artifacts/stages/demo/mctp_all/hf] [--tokens 165] [--clock cpu]
                                       [--config '{"num_hidden_layers": 8, "hidden_size": 192, ...}'] [--hf]

One greedy decode per mode of a 32-token TTS prompt (`stop_ids=[]`, so every decode does the same work): Vanilla
gives the backbone steps, Turbo with `drafting="all"` and the audio-only head at every MCTP step
(`restrict_mctp="always"`, as inside an audio span) gives the MCTP steps (10 per backbone forward). Every part of a
step is wrapped in a clock (inclusive times: a part's figure contains its sub-parts'), and the table gives the mean
milliseconds per step of each kind, after the prefill. One torch thread; `--clock cpu` (the default) reads the
process's CPU time, which other jobs on a shared machine do not inflate, `--clock wall` elapsed time. `--hf` runs the
model calls through transformers' forward (the decoder before `inference/lean.py`). The parts:

    step                 one `Decoder.steps()` iteration: plan + logits + sampling + bookkeeping
      plan               StepPlanner.next and the (B,) tensor of modules
      backbone forward   `Backbone.step` (HF Qwen2Model.forward: mask builder, rotary, layers, final norm)
        mask             transformers' `create_causal_mask`
        rotary           the rotary embedding's cos / sin
        layers           the decoder layers (attention with its KV-cache update + MLP)
          kv update      `DynamicCache.update` (the cache grows by `torch.cat`)
          sdpa           the attention kernel
      MCTP level         `Decoder._level` (the module forward on the level's backlog + the level's buffers)
        mask             transformers' `create_causal_mask` (on the level's cache)
        module           norms + projection + rotary + the decoder layer + final norm
      head               `Heads.full` / `Heads.mctp` (the restricted head over the audio codes)
      sampling           `Sampler.pick`
      bookkeeping        appending the token (ids, mask, positions) and `_emit` (span state, stop check, Step)

Beside the clocks: `torch.profiler`'s operator table for 20 steps of each kind (`--ops`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "artifacts" / "stages" / "demo" / "mctp_all" / "hf"


class Clocks:
    """Inclusive seconds per part, per step (`begin_step` starts a step of one kind)."""

    def __init__(self, clock=time.process_time) -> None:
        self.steps: dict[str, list[dict[str, float]]] = defaultdict(list)
        self.cur: dict[str, float] | None = None
        self.clock = clock

    def begin_step(self, kind: str) -> None:
        self.cur = defaultdict(float)
        self.steps[kind].append(self.cur)

    @contextmanager
    def part(self, name: str):
        t0 = self.clock()
        try:
            yield
        finally:
            if self.cur is not None:
                self.cur[name] += self.clock() - t0

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        def timed(*a, **k):
            with self.part(name):
                return fn(*a, **k)

        setattr(obj, attr, timed)

    def table(self, parts: list[str]) -> dict[str, dict[str, float]]:
        """{kind: {part: mean ms per step}} (the first step of each kind, the prefill, left out for "M")."""
        out = {}
        for kind, rows in self.steps.items():
            rows = rows[1:] if kind == "M" else rows
            out[kind] = {p: 1e3 * statistics.fmean(r.get(p, 0.0) for r in rows) for p in parts}
            out[kind]["steps"] = len(rows)
            out[kind]["step (median)"] = 1e3 * statistics.median(r.get("step", 0.0) for r in rows)
        return out


PARTS = ["step", "plan", "backbone forward", "MCTP level", "mask", "rotary", "module", "layers", "kv update",
         "sdpa", "head", "sampling", "bookkeeping"]


def instrument(dec, clocks: Clocks) -> None:
    """Wrap the parts of one `Decoder` (and the shared modules, once per process: see `instrument_model`)."""
    clocks.wrap(dec.planner, "next", "plan")
    clocks.wrap(dec, "_backbone", "backbone forward")
    clocks.wrap(dec, "_level", "MCTP level")
    clocks.wrap(dec.heads, "full", "head")
    clocks.wrap(dec.heads, "mctp", "head")
    clocks.wrap(dec.sampler, "pick", "sampling")
    clocks.wrap(dec, "_append", "bookkeeping")
    clocks.wrap(dec, "_emit", "bookkeeping")


def instrument_model(lm, clocks: Clocks) -> None:
    import transformers.masking_utils as mu
    import transformers.models.qwen2.modeling_qwen2 as q2
    from transformers import cache_utils
    from transformers.integrations import sdpa_attention

    import vita_audio.model.mctp as mctp_mod

    for mod in (q2, mctp_mod):
        if hasattr(mod, "create_causal_mask"):
            clocks.wrap(mod, "create_causal_mask", "mask")
    clocks.wrap(lm.backbone.rotary_emb, "forward", "rotary")
    for layer in lm.backbone.model.model.layers:
        clocks.wrap(layer, "forward", "layers")
    if lm.mctp is not None:
        for layer in lm.mctp.layers:
            clocks.wrap(layer, "forward", "layers")
        clocks.wrap(lm.mctp, "module_forward", "module")
    clocks.wrap(cache_utils.DynamicLayer, "update", "kv update")
    fn = sdpa_attention.sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def timed_sdpa(*a, **k):
        with clocks.part("sdpa"):
            return fn(*a, **k)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = timed_sdpa
    _ = mu  # the masks of both callers are wrapped through their own module's name


def decode(lm, ids, mode: str, tokens: int, clocks: Clocks | None, hf: bool = False):
    from vita_audio.inference.decoder import Decoder

    dec = Decoder(lm, ids, schedule=mode, max_new_tokens=tokens, stop_ids=[], restrict_mctp="always",
                  drafting="all")
    dec._lean = dec._lean and not hf
    if clocks is not None:
        instrument(dec, clocks)
    it = dec.steps()
    n = 0
    clock = clocks.clock if clocks is not None else time.perf_counter
    while True:
        t0 = clock()
        if clocks is not None:
            clocks.begin_step("pending")
        try:
            step = next(it)
        except StopIteration:
            break
        dt = clock() - t0
        n += 1
        if clocks is not None:
            cur = clocks.steps["pending"].pop()
            cur["step"] = dt
            clocks.steps[step.kind].append(cur)
            clocks.cur = None
    return n


def op_table(lm, ids, mode: str, kind: str, steps: int = 20, top: int = 14) -> str:
    """torch.profiler's self-CPU table over `steps` steps of one kind, after the prefill."""
    from torch.profiler import ProfilerActivity, profile

    from vita_audio.inference.decoder import Decoder

    dec = Decoder(lm, ids, schedule=mode, max_new_tokens=10 * steps + 12, stop_ids=[], restrict_mctp="always",
                  drafting="all")
    it = dec.steps()
    next(it)  # prefill
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        done = 0
        for step in it:
            done += step.kind == kind
            if done >= steps:
                break
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def build(args):
    from vita_audio.eval.tasks.speed import make_prompts

    if args.config:
        from vita_audio.model.backbone import Backbone
        from vita_audio.model.lm import VitaAudioLM
        from vita_audio.model.mctp import MCTPStack

        cfg = dict(model_type="qwen2", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, rope_theta=10000.0,
                   rms_norm_eps=1e-6, tie_word_embeddings=False)
        cfg.update(json.loads(args.config))
        bb = Backbone(2048, config=cfg, tokenizer="tiny", seed=0)
        torch.manual_seed(0)
        lm = VitaAudioLM(bb, MCTPStack.for_backbone(bb, 10)).eval()
        label = f"random weights, {json.dumps(json.loads(args.config))}"
    else:
        from vita_audio.checkpoint import load_model

        lm = load_model(args.ckpt).eval()
        label = args.ckpt
    return lm, make_prompts(lm, 1, args.prefill), label


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=str(DEMO))
    ap.add_argument("--config", default=None, help="JSON overrides of the tiny Qwen2 shape (random weights)")
    ap.add_argument("--tokens", type=int, default=165)
    ap.add_argument("--prefill", type=int, default=32)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--hf", action="store_true", help="model calls through transformers' forward (no lean calls)")
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's operator tables")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    lm, ids, label = build(args)
    decode(lm, ids, "turbo", 24, None)  # warm-up
    decode(lm, ids, "vanilla", 24, None)
    clocks = Clocks(time.process_time if args.clock == "cpu" else time.perf_counter)
    instrument_model(lm, clocks)
    decode(lm, ids, "vanilla", args.tokens, clocks, args.hf)
    van = clocks.table(PARTS)["M"]
    clocks.steps.clear()
    decode(lm, ids, "turbo", args.tokens, clocks, args.hf)
    turbo = clocks.table(PARTS)
    rows = {"backbone step (Vanilla)": van, "MCTP step (Turbo)": turbo["m"],
            "backbone step after an MCTP run (Turbo)": turbo["M"]}
    print(f"model: {label}; 1 thread, {args.clock} clock, {'transformers forward' if args.hf else 'lean calls'}; "
          "mean ms per step (inclusive)")
    print("| part | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for p in [*PARTS, "step (median)", "steps"]:
        print(f"| {p} | " + " | ".join(f"{r[p]:.3f}" if p != "steps" else str(r[p]) for r in rows.values()) + " |")
    if args.ops:
        print(op_table(lm, ids, "vanilla", "M"))
        print(op_table(lm, ids, "turbo", "m"))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": label, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
