"""The vector-quantiser half of a codec training step, shared by the acoustic and the semantic training loops:
quantise the encoder's output with a straight-through estimator; after the losses, the optimiser step, the EMA
codebook update and the restart of dead codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vita_audio.audio.builtin.model import CodecModel


def quantise(model: CodecModel, z: torch.Tensor, inside: torch.Tensor, step: int,
             g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z (B, L, D) encoder output, inside (B, L) bool (frames of real audio) -> codes (B, L), q (B, L, D) (the code
    vectors with z's gradient, the zero "no token" vector outside the audio) and the commitment loss. The codebook
    starts from the first batch's vectors."""
    if step == 0:
        model.vq.init_from(z[inside].detach(), g)
    codes = model.vq.nearest(z.detach())
    q = model.vq.lookup(codes)
    commit = F.mse_loss(z[inside], q[inside].detach())
    q = (z + (q - z).detach()) * inside[..., None]  # straight-through
    return codes, q, commit


def optimise(loss: torch.Tensor, opt: torch.optim.Optimizer, sched, params: list[torch.nn.Parameter],
             model: CodecModel, z: torch.Tensor, codes: torch.Tensor, inside: torch.Tensor, step: int, args,
             g: torch.Generator) -> int:
    """Backward, clipped optimiser and scheduler step, EMA update of the codebook from this batch's assignments and,
    every `args.restart_every` steps of the first 80 %, a restart of the dead codes. Returns the codes restarted."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    model.vq.update(z.detach()[inside], codes[inside])
    if step % args.restart_every == 0 and step < 0.8 * args.steps:
        return model.vq.restart_dead(z.detach()[inside], args.restart_threshold, g)
    return 0
