"""Lightning checkpoint -> exported directory -> next stage's init_from: the weights survive both ways."""

import json

import torch

from tests.conftest import TEST_SIZE, compose_cfg
from tests.training.helpers import fit, logits
from vita_audio.checkpoint import load_model, load_pretrained
from vita_audio.cli.export import main as export_main

SMALL = ["trainer=cpu", "data=synthetic", "audio.codebook_size=64", *TEST_SIZE, "callbacks.publish_stage.force=true"]


def test_lightning_to_hf_and_back(tmp_path):
    cfg = compose_cfg(tmp_path, ["+experiment=boost_stage2", *SMALL, "trainer.fast_dev_run=true", "init_from=null"])
    model, _, _ = fit(cfg)
    final = tmp_path / "artifacts" / "stages" / "boost_stage2" / "final.ckpt"
    assert export_main([str(final), str(tmp_path / "exported")]) == 0

    lm = load_pretrained(tmp_path / "exported")
    x = torch.randint(0, lm.backbone.vocab_size, (1, 10))
    model.eval()
    with torch.no_grad():
        ref_main, ref_levels = model.lm(x)
        main, levels = lm(x)
    torch.testing.assert_close(main, ref_main, rtol=0, atol=0)
    torch.testing.assert_close(levels[0], ref_levels[0], rtol=0, atol=0)
    gen = json.loads((tmp_path / "exported" / "generation_config.json").read_text())
    assert gen["mtp_inference_mode"] == [1, 10, 4, 10]  # the Boost interleave is the default decode schedule
    assert gen["audio_codec"]["kind"] == "builtin" and gen["audio_codec"]["codebook_size"] == 64

    # the .ckpt itself and the stage's own hf/ export (written by PublishStage from the live module) decode alike:
    # the same weights, the same generation config
    published = load_model(final.parent / "hf")
    direct = load_model(final)
    with torch.no_grad():
        torch.testing.assert_close(direct(x)[0], ref_main, rtol=0, atol=0)
        torch.testing.assert_close(published(x)[0], ref_main, rtol=0, atol=0)
    assert direct.generation_config.to_diff_dict() == published.generation_config.to_diff_dict() == \
        lm.generation_config.to_diff_dict()

    # the exported directory starts the next stage (init_from accepts it), giving the same model
    nxt = compose_cfg(tmp_path / "b", ["+experiment=boost_stage3", *SMALL, "trainer.fast_dev_run=true",
                                        f"init_from={tmp_path / 'exported'}"])
    stage3, _, _ = fit(nxt)
    with torch.no_grad():
        torch.testing.assert_close(stage3.lm.backbone(x), model.lm.backbone(x), rtol=0, atol=0)
