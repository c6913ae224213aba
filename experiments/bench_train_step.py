"""Framework overhead of a stage-1 training step: Lightning (our module, callbacks, logging) vs a bare loop.

Both sides train the same tiny model (the `tiny` preset: Qwen2, hidden 256, 4 layers) on the same in-memory
synthetic packed batches, with the same optimiser groups, schedule and gradient clipping. They run alternately,
`--rounds` times, so machine noise hits both alike; the table gives tokens/s per round and the median ratio.

    python experiments/bench_train_step.py [--rounds 3 --steps 12 --batch 4 --seq 512]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from functools import partial

import lightning as L
import torch

from vita_audio.data.synthetic import SyntheticStream
from vita_audio.model.backbone import Backbone
from vita_audio.training.callbacks import TokenThroughput
from vita_audio.training.module import SpeechLMModule
from vita_audio.training.optim import param_groups, warmup_cosine_scheduler

TINY = dict(model_type="qwen2", hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=False)
WARMUP = 2  # steps excluded from timing on both sides


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
