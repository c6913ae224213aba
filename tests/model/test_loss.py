"""Chunked cross-entropy against plain full-logit cross-entropy: values, counts, accuracy and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vita_audio.model.loss import IGNORE_INDEX, chunked_cross_entropy, shifted_targets
from vita_audio.model.mctp_loss import mctp_losses, mctp_targets


def _problem(n=37, h=16, v=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = (0.3 * torch.randn(v, h, generator=g)).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = IGNORE_INDEX
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_chunked_ce_matches_plain_ce_with_gradients(chunk_rows):
    hidden, weight, targets = _problem()
    total, count, correct = chunked_cross_entropy(hidden, weight, targets, chunk_rows)
    (total / count).backward()
    g_hidden, g_weight = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    logits = hidden @ weight.t()  # (N, V)
    ref = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    keep = targets != IGNORE_INDEX
    assert int(count) == int(keep.sum())
    assert int(correct) == int((logits.argmax(-1) == targets)[keep].sum())
    torch.testing.assert_close(total, ref, atol=1e-5, rtol=1e-6)
    (ref / keep.sum()).backward()
    torch.testing.assert_close(g_hidden, hidden.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g_weight, weight.grad, atol=1e-6, rtol=1e-5)
    assert g_hidden[~keep].abs().sum() == 0  # unsupervised rows get no gradient


def test_chunked_ce_without_supervised_rows_and_without_grad():
    hidden, weight, _ = _problem(n=5)
    total, count, correct = chunked_cross_entropy(hidden, weight, torch.full((5,), IGNORE_INDEX), 2)
    assert float(total) == 0 and int(count) == 0 and int(correct) == 0
    with torch.no_grad():
        hidden2, weight2, targets = _problem()
        total, count, _ = chunked_cross_entropy(hidden2, weight2, targets, 8)
        ref = F.cross_entropy(hidden2 @ weight2.t(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
    torch.testing.assert_close(total, ref, atol=1e-5, rtol=1e-6)


def test_shifted_targets_mask_packed_boundaries():
    labels = torch.arange(8)[None]
    sids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, -1]])
    assert shifted_targets(labels, 1, sids).tolist() == [[1, 2, -100, 4, 5, 6, -100]]


def test_mctp_losses_match_full_logits_and_chunking():
    g = torch.Generator().manual_seed(1)
    B, T, H, V = 2, 12, 8, 50
    levels = [torch.randn(B, T - k - 1, H, generator=g, requires_grad=True) for k in range(3)]
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :2] = IGNORE_INDEX
    sids = torch.tensor([[0] * 5 + [1] * 7, [0] * 9 + [-1] * 3])
    labels[1, 9:] = IGNORE_INDEX
    a = mctp_losses(levels, labels, sids, weight, chunk_rows=3)
    b = mctp_losses(levels, labels, sids, weight, chunk_rows=1000)
    for k, ((sa, ca, oa), (sb, cb, ob)) in enumerate(zip(a, b)):
        tgt = mctp_targets(labels, k, sids)  # (B, T-k-1)
        ref = F.cross_entropy((levels[k] @ weight.t()).flatten(0, 1), tgt.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="sum")
        torch.testing.assert_close(sa, ref, atol=1e-4, rtol=1e-6)
        torch.testing.assert_close(sa, sb, atol=1e-4, rtol=1e-6)
        assert int(ca) == int(cb) == int((tgt != IGNORE_INDEX).sum()) and int(oa) == int(ob)
    sum(s / c for s, c, _ in a).backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in levels)
