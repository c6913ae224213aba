"""Stage 3 (frozen LLM, MCTP modules train): the backbone's forward records no autograd graph and keeps no
activations for backward; only the MCTP modules get gradients. Stage 4 on the same batch is the contrast."""

from __future__ import annotations

import pytest
import torch

from tests.training.test_losses import make_module
from vita_audio.data.synthetic import SyntheticStream

FROZEN = {"frozen": [r"^backbone\."]}


def _batch(m):
    tok = m.backbone.tokenizer
    v = tok.get_vocab()
    stream = SyntheticStream(m.backbone.audio_vocab, m.backbone.audio_vocab.begin_of_audio,
                             (v["<|im_start|>"], v["<|im_end|>"], tok.pad_token_id), 2, 48, seed=0)
    return stream.batch(0)


def _step(m, batch):
    """One training step's forward + backward, recording (while the backbone's own forward runs: its decoder
    stack) every submodule's output and every tensor autograd saves for backward."""
    top = m.backbone.model.model  # embedding, decoder layers, final norm (the MCTP stack calls the norm later)
    outputs, saved, inside = [], [], [False]

    def enter(mod, args, kwargs):
        inside[0] = True

    def leave(mod, args, kwargs, out):
        inside[0] = False
        outputs.append(out.last_hidden_state)

    def record(mod, args, out):
        if inside[0]:
            outputs.extend(t for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor))

    def pack(t):
        if inside[0]:
            saved.append(t)
        return t

    handles = [top.register_forward_pre_hook(enter, with_kwargs=True),
               top.register_forward_hook(leave, with_kwargs=True)]
    handles += [mod.register_forward_hook(record) for mod in top.modules() if mod is not top]
    m.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = m.compute_losses(batch)
    finally:
        for h in handles:
            h.remove()
    out["loss"].backward()
    return out, outputs, saved


def test_stage3_backbone_runs_without_graph_and_gets_no_grad():
    m = make_module(3, FROZEN)
    out, outputs, saved = _step(m, _batch(m))
    assert "loss_main" not in out  # the frozen main head is never computed in training
    assert len(outputs) > 10, "no backbone forward seen"
    assert all(not o.requires_grad and o.grad_fn is None for o in outputs), "backbone output carries a graph"
    assert not saved, f"{len(saved)} backbone activations kept for backward"
    assert all(p.grad is None for p in m.backbone.parameters()), "a frozen backbone parameter got a gradient"
    grads = [p.grad for p in m.lm.mctp.parameters()]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_stage4_contrast_backbone_records_its_graph():
    """The same probe sees the graph when the backbone trains: it is sensitive to what stage 3 must not do."""
    m = make_module(3)
    out, outputs, saved = _step(m, _batch(m))
    assert "loss_main" in out
    assert any(o.requires_grad and o.grad_fn is not None for o in outputs)
    assert len(saved) > 10
    assert all(p.grad is not None for p in m.backbone.model.model.layers.parameters())


@pytest.mark.parametrize("grad_into_backbone", [True, False])
def test_stage3_ignores_grad_into_backbone_switch(grad_into_backbone):
    """`mctp_grad_into_backbone` only matters when the backbone trains: stage 3 stays graph-free either way."""
    m = make_module(2, FROZEN, mctp_grad_into_backbone=grad_into_backbone)
    _, outputs, _ = _step(m, _batch(m))
    assert all(not o.requires_grad for o in outputs)
    assert all(p.grad is None for p in m.backbone.parameters())
