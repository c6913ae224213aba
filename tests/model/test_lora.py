"""LoRA through PEFT: only adapters + the audio-token rows + MCTP train; export merges to identical logits."""

import pytest
import torch
from hydra.errors import InstantiationException

from tests.training.helpers import fit, logits
from vita_audio.cli.common import build_model
from vita_audio.checkpoint import export_pretrained, load_pretrained
from vita_audio.model.lora import BackboneLoRA, adapter_layers, audio_rows, has_adapters, merged_adapters

STAGE4_LORA = ["model=stage4", "model/lora=backbone", "model.lora.rank=4", "model.lora.dropout=0.0",
               "data=synthetic", "audio.codebook_size=64", "model.mctp.num_modules=2",
               "callbacks.publish_stage.export=false", "trainer.limit_val_batches=0"]


def _randomise_adapters(lm, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(lm):
            w = layer.lora_B["default"].weight
            w.copy_(0.05 * torch.randn(w.shape, generator=g))  # lora_B starts at 0: make the adapters matter


def test_config_composes_and_counts_trainable_parameters(make_cfg):
    cfg = make_cfg(STAGE4_LORA)
    assert cfg.model.lora.target_modules[-1] == "down_proj" and make_cfg(["model=stage4"]).model.lora == {}
    module = build_model(cfg)
    lm, H = module.lm, module.backbone.hidden_size
    adapter = sum(p.numel() for n, p in lm.named_parameters() if ".lora_" in n)
    mctp = sum(p.numel() for p in lm.mctp.parameters())
    rows = len(audio_rows(module.backbone.audio_vocab))
    assert rows == 64 + 3
    # 2 layers x 7 projections, each r x (in + out)
    assert sum(1 for _ in adapter_layers(lm)) == 2 * 7 and adapter == module.lora_report.adapter_params
    assert module.freeze_report.trainable == adapter + mctp + 2 * rows * H  # untied embedding and head
    names = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("mctp.") or n.endswith(("embed_tokens.weight", "lm_head.weight"))
               for n in names)
    assert not any(p.requires_grad for n, p in lm.backbone.named_parameters() if "base_layer" in n or "norm" in n)


def test_unknown_target_module_and_frozen_stage_are_errors(make_cfg):
    with pytest.raises(InstantiationException, match=r"target modules \['qkv'\]"):
        build_model(make_cfg([*STAGE4_LORA, "model.lora.target_modules=[qkv]"]))
    with pytest.raises(InstantiationException, match="model/lora=none"):
        build_model(make_cfg(["model=stage2", "model/lora=backbone", "audio.codebook_size=64"]))


def test_training_moves_only_adapters_audio_rows_and_mctp(make_cfg):
    cfg = make_cfg([*STAGE4_LORA, "trainer.max_steps=3", "model.optimizer.lr=1e-2"])
    before = {k: v.clone() for k, v in build_model(cfg).lm.state_dict().items()}
    module, _, losses = fit(cfg)
    assert len(losses) == 3
    after = module.lm.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    rows = audio_rows(module.backbone.audio_vocab)
    text = torch.ones(after["backbone.model.lm_head.weight"].shape[0], dtype=torch.bool)
    text[rows] = False
    for name in ("backbone.model.model.embed_tokens.weight", "backbone.model.lm_head.weight"):
        assert name in changed
        assert torch.equal(after[name][text], before[name][text]), name  # weight decay 0.1 did not touch them
        assert not torch.equal(after[name][rows], before[name][rows]), name
    assert any(".lora_B." in k for k in changed) and any(k.startswith("mctp.") for k in changed)
    allowed = (".lora_", "mctp.", "embed_tokens", "lm_head")
    stray = [k for k in changed if not any(a in k for a in allowed)]
    assert stray == []


def test_export_merges_to_identical_logits(make_cfg, tmp_path):
    module = build_model(make_cfg(STAGE4_LORA))
    _randomise_adapters(module.lm)
    adapted = logits(module)
    with merged_adapters(module.lm):
        assert not has_adapters(module.lm)
        merged = logits(module)
    assert has_adapters(module.lm)  # back as it was
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)

    out = export_pretrained(module.lm, tmp_path / "hf")
    loaded = load_pretrained(out)
    keys = set(loaded.state_dict())
    assert not any("lora" in k or "base_layer" in k for k in keys)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, loaded.backbone.vocab_size, (2, 12), generator=g)
    with torch.no_grad():
        main, levels = loaded(x)
    torch.testing.assert_close(torch.cat([main.flatten(), *[lv.flatten() for lv in levels]]), adapted,
                               rtol=1e-5, atol=1e-5)
    # the adapters did change the model (the test above is not vacuous)
    plain = build_model(make_cfg(["model=stage4", "data=synthetic", "audio.codebook_size=64",
                                  "model.mctp.num_modules=2"]))
    assert not torch.allclose(logits(plain), adapted, atol=1e-3)


def test_init_from_plain_checkpoint_loads_base_weights(make_cfg, tmp_path):
    plain = build_model(make_cfg(["model=stage4", "data=synthetic", "audio.codebook_size=64",
                                  "model.mctp.num_modules=2", "model.backbone.seed=3"]))
    export_pretrained(plain.lm, tmp_path / "pred")
    module = build_model(make_cfg(STAGE4_LORA))
    module.initialize(str(tmp_path / "pred"))
    # lora_B = 0: the adapted model starts exactly as its predecessor
    torch.testing.assert_close(logits(module), logits(plain), rtol=1e-6, atol=1e-6)


def test_merge_is_a_no_op_without_adapters(tiny_backbone):
    from vita_audio.model.lm import VitaAudioLM

    lm = VitaAudioLM(tiny_backbone)
    with merged_adapters(lm):
        pass
    assert not has_adapters(lm) and BackboneLoRA(rank=2).rank == 2
