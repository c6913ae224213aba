"""The `demo` backbone preset (16 layers x hidden 128): it builds offline and decodes in every mode."""

from __future__ import annotations

import hydra
import torch

from vita_audio.inference import generate
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack


def test_demo_backbone_preset_builds_and_decodes(make_cfg):
    cfg = make_cfg(["model/backbone=demo"], small=False)
    bb = hydra.utils.instantiate(cfg.model.backbone)
    assert (bb.config.num_hidden_layers, bb.hidden_size, bb.config.intermediate_size) == (16, 128, 384)
    torch.manual_seed(0)
    lm = VitaAudioLM(bb, MCTPStack.for_backbone(bb, 10)).eval()
    for schedule in ("vanilla", "boost", "turbo"):
        out = generate(lm, [[1, 2, 3, 4]], schedule=schedule, max_new_tokens=14, stop_ids=[], drafting="all")
        assert out.lengths == [14]
