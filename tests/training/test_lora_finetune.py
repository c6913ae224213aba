"""`boost_stage4_lora`: fine-tune a published checkpoint on a user's VITA jsonl, publish a merged plain checkpoint."""

from pathlib import Path

import torch

from tests.conftest import TEST_SIZE, compose_cfg, corpus_overrides
from tests.training.helpers import fit
from vita_audio.cli.common import build_model
from vita_audio.checkpoint import export_pretrained, load_pretrained

SIZE = [*TEST_SIZE, "model.mctp.num_modules=2", "data.max_len=256"]


def test_boost_stage4_lora_on_user_jsonl(tmp_path, tiny_corpus_cache):
    corpus, _ = tiny_corpus_cache
    data = corpus_overrides(tiny_corpus_cache)
    # the "demo checkpoint": a stage-4 model published as a reference-layout directory
    demo = build_model(compose_cfg(tmp_path, ["+experiment=boost_stage4", *SIZE, *data]))
    stages = tmp_path / "artifacts" / "stages"
    export_pretrained(demo.lm, stages / "boost_stage4" / "hf")

    user = corpus / "sqa" / "train.jsonl"  # stands in for the user's own VITA jsonl
    cfg = compose_cfg(tmp_path, [
        "+experiment=boost_stage4_lora", *SIZE, *data, "trainer.max_steps=2", "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1", f"data.train_sources=[{{name: mine, path: '{user}', ratio: 1.0}}]",
        f"data.val_sources=[{{name: mine, path: '{corpus / 'sqa' / 'val.jsonl'}', ratio: 1.0}}]",
    ])
    assert cfg.init_from == str(stages / "boost_stage4" / "hf") and cfg.model.lora.rank == 16
    module, trainer, losses = fit(cfg)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert module.lora_report is not None and "val/loss" in trainer.callback_metrics

    published = Path(cfg.callbacks.publish_stage.dirpath)
    assert published == stages / "boost_stage4_lora"  # the demo checkpoint is not overwritten
    merged = load_pretrained(published / "hf")
    assert not any("lora" in k for k in merged.state_dict())
    x = torch.randint(0, merged.backbone.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.no_grad():
        want, want_levels = module.lm(x)
        got, got_levels = merged(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_levels[-1], want_levels[-1], rtol=1e-5, atol=1e-5)
