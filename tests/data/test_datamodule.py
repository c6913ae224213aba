"""The datamodule inside Lightning: a resumed run continues mid-epoch; configs compose and instantiate."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from test_packing import make_dm

CONF = Path(__file__).resolve().parents[2] / "conf"


class Recorder(L.LightningModule):
    """A tiny model that records the batches it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(4096, 4)
        self.seen: list[int] = []

    def training_step(self, batch, idx):
        self.seen.append(int((batch["input_ids"] * (1 + batch["position_ids"])).sum()))
        return self.emb(batch["input_ids"]).float().pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(tmp, max_steps):
    return L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     default_root_dir=str(tmp))


class SaveAt(L.Callback):
    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_lightning_resume_mid_epoch(tok_av, filled_cache, tmp_path):
    root, files = filled_cache
    per_epoch = len(make_dm(tok_av, root, files, batch_size=1).train_dataloader())
    total = per_epoch + 3  # crosses into the second epoch
    ref = Recorder()
    ckpt = tmp_path / "mid.ckpt"
    t = _trainer(tmp_path / "a", total)
    t.callbacks.append(SaveAt(3, ckpt))
    t.fit(ref, datamodule=make_dm(tok_av, root, files, batch_size=1))
    assert len(ref.seen) == total and ckpt.is_file()
    resumed = Recorder()
    _trainer(tmp_path / "b", total).fit(resumed, datamodule=make_dm(tok_av, root, files, batch_size=1),
                                        ckpt_path=str(ckpt))
    assert ref.seen[:3] + resumed.seen == ref.seen  # continues with batch 3 of epoch 0, then epoch 1 as before


@pytest.mark.parametrize("name", ["corpus", "corpus_sft", "vita_jsonl"])
def test_configs_compose_and_instantiate(tok_av, filled_cache, name):
    root, files = filled_cache
    tok, av = tok_av
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={name}", "interleave=balance"])
    assert cfg.data._target_ == "vita_audio.data.datamodule.VitaDataModule"
    assert list(cfg.data.interleave_ratio) == [1, 4, 3, 8, 4, 10]
    if name == "corpus_sft":
        assert {s.name: s.ratio for s in cfg.data.train_sources} == {"sqa": 2.0, "asr": 0.05, "tts": 0.05,
                                                                     "text": 0.05}
    dm = instantiate(cfg.data, tokenizer=tok, audio_vocab=av, train_sources=[{"path": files["asr"]}],
                     val_sources=[{"path": files["tts"]}], cache_dir=str(root / "cache"), cache_name="energy")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] == cfg.data.max_len and batch["input_ids"].shape[0] <= cfg.data.batch_size
    assert next(iter(dm.val_dataloader()))["labels"].shape[1] == cfg.data.max_len
