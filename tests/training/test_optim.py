import math

import pytest
import torch
from torch import nn

from vita_audio.model.freeze import apply_freeze
from vita_audio.model.weighting import LossWeighting
from vita_audio.training.optim import param_groups, warmup_cosine, warmup_cosine_scheduler


def test_warmup_then_cosine_to_tenth():
    total = 100  # warm-up = 3 steps
    assert warmup_cosine(0, total) == pytest.approx(1 / 3)
    assert warmup_cosine(2, total) == pytest.approx(1.0)
    assert warmup_cosine(3, total) == pytest.approx(1.0)
    mid = 3 + (100 - 3) / 2
    assert warmup_cosine(math.floor(mid), total) == pytest.approx(0.55, abs=0.02)
    assert warmup_cosine(100, total) == pytest.approx(0.1)
    values = [warmup_cosine(s, total) for s in range(3, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone after warm-up


def test_scheduler_drives_optimizer():
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = warmup_cosine_scheduler(opt, total_steps=10, warmup_ratio=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] > 0.1 and lrs[-1] < lrs[2]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.mctp = nn.Linear(4, 4, bias=False)


def test_param_groups_decay_and_lr_scales():
    m = Toy()
    groups = param_groups(m.named_parameters(), lr=1e-3, weight_decay=0.1, lr_scales={r"^mctp\.": 10.0})
    by_names = {tuple(g["names"]): (g["lr"], g["weight_decay"]) for g in groups}
    assert by_names[("backbone.0.weight",)] == (1e-3, 0.1)
    assert by_names[("backbone.0.bias", "backbone.1.weight", "backbone.1.bias")] == (1e-3, 0.0)
    assert by_names[("mctp.weight",)] == (pytest.approx(1e-2), 0.1)


def test_param_groups_skip_frozen_and_fail_when_empty():
    m = Toy()
    apply_freeze(m, frozen=[r"^backbone\."])
    groups = param_groups(m.named_parameters(), lr=1e-3, weight_decay=0.0)
    assert [g["names"] for g in groups] == [["mctp.weight"]]
    apply_freeze(m, frozen=[".*"])
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(m.named_parameters(), lr=1e-3, weight_decay=0.0)


def test_freeze_counts_trainable_and_warns_on_unmatched():
    m = Toy()
    with pytest.warns(UserWarning, match="matched no parameter"):
        report = apply_freeze(m, frozen=[r"^backbone\.", r"^typo\."])
    assert report.trainable == 16 and report.total == 16 + 20 + 8
    assert report.unmatched == (r"^typo\.",)
    assert not any(p.requires_grad for p in m.backbone.parameters())
    report = apply_freeze(m, trainable=[r"^backbone\.0\."])
    assert report.trainable == 20 and not m.mctp.weight.requires_grad


def test_loss_weighting():
    main, mods = torch.tensor(2.0), [torch.tensor(1.0), torch.tensor(3.0)]
    assert LossWeighting().combine(main, mods).item() == pytest.approx(4.0)
    assert LossWeighting(mctp_weight=0.5).combine(main, mods).item() == pytest.approx(3.0)
    assert LossWeighting().combine(None, mods).item() == pytest.approx(2.0)
    decay = LossWeighting(decay=0.5)
    assert decay.weights(3) == [1.0, 0.5, 0.25]
    assert decay.combine(None, mods).item() == pytest.approx((1 + 1.5) / 1.5)
    assert LossWeighting(module_weights=[0, 1]).combine(None, mods).item() == pytest.approx(3.0)
    with pytest.raises(ValueError):
        LossWeighting(module_weights=[1.0]).weights(2)
    with pytest.raises(ValueError):
        LossWeighting(mctp_tokens="text")
