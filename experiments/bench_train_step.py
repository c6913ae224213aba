"""Training-step benchmarks: the cost of each stage's step, and Lightning's overhead over a bare loop.

`--section modes` (the default runs both sections): one bare training step (forward, backward, gradient clipping,
AdamW) of each stage's configuration on the same in-memory synthetic packed batches, modes run alternately
`--rounds` times so machine noise hits them alike. Tokens/s, ms per step and the cost relative to the stage-4 step
per mode; where a CUDA GPU is present (bf16 autocast) also the model FLOPs utilisation against the card's bf16
peak (`torch.cuda.get_device_name`, table below; gradient-checkpoint recomputation is not counted: MFU, not HFU).

    stage4        everything trains, 10 MCTP modules, MCTP at 10 x LR (conf/model/stage4.yaml)
    stage3        frozen LLM (its forward under no_grad, no main head), 10 MCTP modules train (stage3.yaml)
    stage4+gc     stage 4 with gradient checkpointing in the backbone and the MCTP modules
    stage3+gc     stage 3 with gradient checkpointing in the MCTP modules (the frozen backbone keeps nothing)
    stage4+lora   stage 4 with model/lora=backbone (PEFT adapters, audio rows; MCTP trains fully)
    stage1        the backbone alone (no MCTP), for scale
    stage1+lora   stage 1 with model/lora=backbone

Shapes: `tiny` (the `tiny` preset: hidden 256, 4 layers) and `0.5b` (Qwen2.5-0.5B's decoder: hidden 896,
24 layers, 14 / 2 heads, intermediate 4864) with the offline tiny tokenizer; `--vocab N` pads the vocabulary to
N rows (168072 = Qwen2.5 + VITA specials + 16384 GLM-4-Voice codes, where the 11 LM heads dominate the step).

`--section overhead`: a stage-1 step through Lightning (our module, callbacks, logging) vs the same bare loop.

    python experiments/bench_train_step.py --section modes --shape 0.5b --batch 2 --seq 128 --steps 3
    python experiments/bench_train_step.py --section modes --modes stage4,stage3 --vocab 168072
    python experiments/bench_train_step.py --section overhead [--rounds 3 --steps 12 --batch 4 --seq 512]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import lightning as L
import torch

from vita_audio.data.synthetic import SyntheticStream
from vita_audio.model.backbone import Backbone
from vita_audio.model.lora import BackboneLoRA, trainable_parameter_count
from vita_audio.model.mctp import MCTPStack
from vita_audio.training.callbacks import TokenThroughput
from vita_audio.training.module import SpeechLMModule
from vita_audio.training.optim import param_groups, warmup_cosine_scheduler

TINY = dict(model_type="qwen2", hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=False)
WARMUP = 2  # steps excluded from timing on both sides (overhead section)
SHAPES = {
    "tiny": TINY,
    "0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=8192,
                 tie_word_embeddings=False),
}
FROZEN = {"frozen": [r"^backbone\."]}
# dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets; the first name found in the device name wins
PEAK_BF16 = [
    ("GH200", 989e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("H800", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("A6000", 155e12), ("A10", 125e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
]


def make_module() -> SpeechLMModule:
    backbone = Backbone(1024, config=dict(TINY), tokenizer="tiny", seed=0)
    opt = partial(torch.optim.AdamW, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    return SpeechLMModule(backbone, optimizer=opt, scheduler=partial(warmup_cosine_scheduler))


def make_batches(module: SpeechLMModule, n: int, batch: int, seq: int) -> list[dict[str, torch.Tensor]]:
    tok = module.backbone.tokenizer
    v = tok.get_vocab()
    stream = SyntheticStream(module.backbone.audio_vocab, module.backbone.audio_vocab.begin_of_audio,
                             (v["<|im_start|>"], v["<|im_end|>"], tok.pad_token_id), batch, seq, seed=0)
    return [stream.batch(i) for i in range(n)]


def tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["sample_ids"] >= 0).sum())


def bare_loop(module: SpeechLMModule, batches: list) -> float:
    groups = param_groups(module.lm.named_parameters(), lr=1e-3, weight_decay=0.0)
    for g in groups:
        g.pop("names")
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    sched = warmup_cosine_scheduler(opt, total_steps=len(batches))
    module.train()
    t0, n_tok = 0.0, 0
    for i, batch in enumerate(batches):
        if i == WARMUP:
            t0, n_tok = time.perf_counter(), 0
        loss = module.compute_losses(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        sched.step()
        n_tok += tokens(batch)
    return n_tok / (time.perf_counter() - t0)


class _Clock(L.Callback):
    def __init__(self) -> None:
        self.t0, self.t1, self.tokens = 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == WARMUP:
            self.t0, self.tokens = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= WARMUP:
            self.tokens += tokens(batch)
            self.t1 = time.perf_counter()


def lightning_loop(module: SpeechLMModule, batches: list) -> float:
    clock = _Clock()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), gradient_clip_val=1.0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[clock, TokenThroughput(window=5)], limit_val_batches=0, num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return clock.tokens / (clock.t1 - clock.t0)


# -- stage modes -------------------------------------------------------------------------------------------------
class Mode:
    """One row of the modes table: how to build the stage's module."""

    def __init__(self, name: str, mctp: bool = True, frozen: bool = False, gc: bool = False, lora: bool = False):
        self.name, self.mctp, self.frozen, self.gc, self.lora = name, mctp, frozen, gc, lora

    def build(self, shape: dict, vocab: int | None, modules: int) -> SpeechLMModule:
        pad = max(8, vocab) if vocab else 8
        backbone = Backbone(1024, config=dict(shape), tokenizer="tiny", seed=0, pad_vocab_to_multiple_of=pad,
                            gradient_checkpointing=self.gc and not self.frozen)
        mctp = partial(MCTPStack.for_backbone, num_modules=modules, gradient_checkpointing=self.gc) \
            if self.mctp else None
        wd = 0.0 if self.frozen else 0.1
        opt = partial(torch.optim.AdamW, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd)
        lora = BackboneLoRA(rank=16, alpha=32) if self.lora else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return SpeechLMModule(backbone, optimizer=opt, mctp=mctp, freeze=FROZEN if self.frozen else None,
                                  lr_scales=None if self.frozen or not self.mctp else {r"^mctp\.": 10.0},
                                  lora=lora)


MODES = {m.name: m for m in [
    Mode("stage4"), Mode("stage3", frozen=True), Mode("stage4+gc", gc=True), Mode("stage3+gc", frozen=True, gc=True),
    Mode("stage4+lora", lora=True), Mode("stage1", mctp=False), Mode("stage1+lora", mctp=False, lora=True),
]}


def model_flops(module: SpeechLMModule, batch: dict[str, torch.Tensor]) -> float:
    """Model FLOPs of one training step (matmuls and attention scores; recomputation not counted).

    Per token and decoder layer 2 x params + 2 x T x H (causal QK^T and AV); the LM head on supervised rows
    only (the chunked CE never computes the others): 2 x H x V per row. Backward: 2 x forward where the weights
    train, 1 x (input gradients only) where they are frozen but on the gradient path, 0 under no_grad.
    """
    bb = module.backbone
    B, T = batch["input_ids"].shape
    H, V = bb.hidden_size, bb.lm_head.weight.shape[0]
    layer = sum(p.numel() for n, p in bb.layers[0].named_parameters() if "lora_" not in n)
    with torch.no_grad():
        out = module.compute_losses(batch, with_main=True)
    per_layer = B * T * (2 * layer + 2 * T * H)
    base_trains = any(p.requires_grad for n, p in bb.layers.named_parameters() if "lora_" not in n)
    bb_mult = 1 if not module.backbone_trainable else (3 if base_trains else 2)
    head_mult = 3 if bb.lm_head.weight.requires_grad else 2
    flops = bb_mult * len(bb.layers) * per_layer
    if module.backbone_trainable:
        flops += head_mult * 2 * H * V * float(out["count_main"])
    if module.lm.mctp is not None:
        mod = sum(p.numel() for p in module.lm.mctp.parameters()) / module.num_mctp
        for k in range(module.num_mctp):
            rows = B * (T - k - 1)
            flops += 3 * rows * (2 * mod + 2 * T * H) + head_mult * 2 * H * V * float(out[f"count_mctp_{k}"])
    return float(flops)


def peak_flops(name: str) -> float | None:
    return next((f for key, f in PEAK_BF16 if key.lower() in name.lower()), None)


def time_steps(module: SpeechLMModule, batches: list, device: torch.device, warmup: int) -> list[float]:
    """Seconds of each training step after `warmup` (bare loop: forward, backward, clip, AdamW)."""
    module.to(device)
    opt = module.configure_optimizers()["optimizer"]
    module.train()
    cuda = device.type == "cuda"
    autocast: Callable = partial(torch.autocast, "cuda", dtype=torch.bfloat16) if cuda else contextlib_null
    times = []
    for i, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast():
            loss = module.compute_losses(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def contextlib_null():
    import contextlib

    return contextlib.nullcontext()


def run_modes(args) -> None:
    names = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_flops(gpu) if gpu else None
    shape = SHAPES[args.shape]
    proto = MODES["stage1"].build(shape, args.vocab, 0)
    batches = make_batches(proto, args.warmup + args.steps, args.batch, args.seq)
    n_tok = sum(tokens(b) for b in batches[args.warmup:]) / args.steps
    vocab = proto.backbone.lm_head.weight.shape[0]
    del proto
    print(f"shape {args.shape} ({shape['num_hidden_layers']} layers x hidden {shape['hidden_size']}, vocab {vocab:,}), "
          f"{args.modules} MCTP modules, batch {args.batch} x {args.seq} ({n_tok:.0f} tokens/step), "
          f"{args.steps} timed steps after {args.warmup} warm-up, {args.rounds} alternating rounds, "
          f"device {gpu or f'cpu ({args.threads} threads)'}, load {os.getloadavg()[0]:.2f}", flush=True)
    step_s: dict[str, list[float]] = {n: [] for n in names}
    info: dict[str, tuple[int, int, float]] = {}
    for r in range(args.rounds):
        for n in names if r % 2 == 0 else reversed(names):  # alternate the order: no mode always runs first
            module = MODES[n].build(shape, args.vocab, args.modules)
            if n not in info:
                total = sum(p.numel() for p in module.parameters())
                info[n] = (trainable(module), total, model_flops(module, batches[0]))
            step_s[n].append(statistics.median(time_steps(module, batches, device, args.warmup)))
            print(f"  round {r} {n}: {1000 * step_s[n][-1]:.1f} ms/step", flush=True)
            del module
            if device.type == "cuda":
                torch.cuda.empty_cache()
    ref = "stage4" if "stage4" in names else names[0]
    head = f"{'mode':<12} | {'trainable':>13} | {'ms/step':>9} | {'tokens/s':>9} | {'x ' + ref:>10}"
    print(head + (f" | {'MFU':>6}" if peak else ""))
    print("-" * len(head) + ("-" * 9 if peak else ""))
    for n in names:
        per_round = [a / b for a, b in zip(step_s[n], step_s[ref])]
        sec = statistics.median(step_s[n])
        tr, total, flops = info[n]
        line = (f"{n:<12} | {tr:>13,} | {1000 * sec:>9.1f} | {n_tok / sec:>9,.0f} | "
                f"{statistics.median(per_round):>10.3f}")
        if peak:
            line += f" | {100 * flops / sec / peak:>5.1f}%"
        print(line)
    if gpu and not peak:
        print(f"MFU: no bf16 peak known for {gpu!r} (add it to PEAK_BF16)")
    if "stage3" in names and "stage4" in names:
        ratios = [a / b for a, b in zip(step_s["stage3"], step_s["stage4"])]
        print(f"stage-3 step / stage-4 step: {statistics.median(ratios):.3f} (per round: "
              f"{', '.join(f'{x:.3f}' for x in ratios)}; goal <= 0.6), load {os.getloadavg()[0]:.2f}")


def trainable(module: SpeechLMModule) -> int:
    """Trainable parameters (LoRA's row-masked embedding / head count their trainable rows only)."""
    return trainable_parameter_count(module.lm)


def run_overhead(args) -> None:
    L.seed_everything(0, verbose=False)
    proto = make_module()
    batches = make_batches(proto, args.steps, args.batch, args.seq)
    print(f"tiny stage 1: {sum(p.numel() for p in proto.parameters()):,} params, batch {args.batch} x {args.seq}, "
          f"{args.steps} steps ({WARMUP} warm-up excluded), {args.threads} threads")
    print(f"{'round':>5} | {'bare tok/s':>11} | {'lightning tok/s':>15} | {'overhead':>8}")
    ratios = []
    for r in range(args.rounds):
        bare = bare_loop(copy.deepcopy(proto), batches)
        lit = lightning_loop(copy.deepcopy(proto), batches)
        ratios.append(bare / lit)
        print(f"{r:>5} | {bare:>11,.0f} | {lit:>15,.0f} | {100 * (bare / lit - 1):>7.1f}%")
    print(f"median overhead of Lightning vs bare loop: {100 * (statistics.median(ratios) - 1):.1f}%")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=["all", "modes", "overhead"], default="all")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (modes: 2, overhead: 3)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (modes: 3; overhead: 12 incl. warm-up)")
    p.add_argument("--batch", type=int, default=None, help="rows per batch (modes: 2, overhead: 4)")
    p.add_argument("--seq", type=int, default=None, help="tokens per row (modes: 128, overhead: 512)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    p.add_argument("--shape", choices=list(SHAPES), default="0.5b", help="modes: model shape")
    p.add_argument("--modules", type=int, default=10, help="modes: MCTP modules")
    p.add_argument("--vocab", type=int, default=None, help="modes: pad the vocabulary to this many rows")
    p.add_argument("--warmup", type=int, default=1, help="modes: untimed steps per mode and round")
    p.add_argument("--cpu", action="store_true", help="modes: stay on the CPU even with a GPU present")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.section in ("all", "modes"):
        run_modes(argparse.Namespace(**{**vars(args), "rounds": args.rounds or 2, "steps": args.steps or 3,
                                        "batch": args.batch or 2, "seq": args.seq or 128}))
    if args.section in ("all", "overhead"):
        run_overhead(argparse.Namespace(**{**vars(args), "rounds": args.rounds or 3, "steps": args.steps or 12,
                                           "batch": args.batch or 4, "seq": args.seq or 512}))


if __name__ == "__main__":
    main()
