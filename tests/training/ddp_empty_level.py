"""A rank of the DDP empty-level test (tests/training/test_losses.py runs this file as a script).

Run as `python -m tests.training.ddp_empty_level OUT_DIR RANK`, once per rank (the test starts both): two gloo
ranks meet through a file under OUT_DIR (no port to race for), train three steps each and save what the test checks
under OUT_DIR. A rank that fails exits non-zero; a peer that waits on it gives up after the process group's
timeout; a rank stuck anywhere else prints every thread's stack and exits after HANG_S.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

HANG_S = 240  # far above the ~10 s a healthy run takes on 2 cores


class _Loss(nn.Module):
    """DDP needs the loss computed inside a forward of the wrapped module."""

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch):
        return self.module.compute_losses(batch)["loss"]


def run_rank(rank: int, world: int, out_dir: str) -> None:
    from tests.training.test_losses import FROZEN, make_module, text_batch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world,
                            timeout=timedelta(seconds=90))
    try:
        m = make_module(2, FROZEN)
        ddp = DistributedDataParallel(_Loss(m), find_unused_parameters=False)
        opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.1)
        steps = 0
        for step in range(3):
            # only labels[2] supervised: module 1 (targets labels[t+3]) has none, on both ranks
            batch = text_batch(m, seed=10 * step + rank, supervised=slice(2, 3))
            opt.zero_grad(set_to_none=True)
            ddp(batch).backward()
            g1 = [p.grad for p in m.lm.mctp.layers[1].parameters()]
            g0 = [p.grad for p in m.lm.mctp.projs[0].parameters()]
            opt.step()
            steps += 1
        torch.save({"steps": steps, "module1_grad_zero": all(g is not None and not g.any() for g in g1),
                    "module0_grad_nonzero": all(g is not None and g.any() for g in g0),
                    "proj0": m.lm.mctp.projs[0].weight.detach().clone()}, f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # both ranks are done communicating before either tears its group down
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    run_rank(int(sys.argv[2]), 2, sys.argv[1])
    # The results are on disk. Leave without running destructors: tearing down the DDP reducer's gloo state after
    # the peer has exited blocked a rank for minutes in CI (stack dump: past the end of run_rank).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
