"""The datamodule inside Lightning: a resumed run continues mid-epoch; configs compose and instantiate."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import EnergyTokenizer
from test_packing import make_dm
from vita_audio.data.cache import CacheError
from vita_audio.model.vocab import AudioVocab

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


def compose_data(name: str, *overrides: str):
    """`data=<name>` with the test tokenizer as the configured audio tokenizer (`audio.tokenizer`)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=[f"data={name}", "interleave=balance",
                                                       "++audio.tokenizer={_target_: conftest.EnergyTokenizer}",
                                                       *overrides])


@pytest.mark.parametrize("name", ["corpus", "corpus_sft", "vita_jsonl"])
def test_configs_compose_and_instantiate(tok_av, filled_cache, name):
    root, files = filled_cache
    tok, av = tok_av
    cfg = compose_data(name)
    assert cfg.data._target_ == "vita_audio.data.datamodule.VitaDataModule"
    assert list(cfg.data.interleave_ratio) == [1, 4, 3, 8, 4, 10]
    if name == "corpus_sft":
        assert {s.name: s.ratio for s in cfg.data.train_sources} == {"sqa": 2.0, "asr": 0.05, "tts": 0.05,
                                                                     "text": 0.05}
    dm = instantiate(cfg.data, tokenizer=tok, audio_vocab=av, train_sources=[{"path": files["asr"]}],
                     val_sources=[{"path": files["tts"]}], cache_dir=str(root / "cache"), cache_name="energy")
    assert type(dm.audio_vocab) is AudioVocab and dm.audio_vocab == av  # `_convert_: object`, no DictConfig
    assert dm.audio_identity == "energy-1024-v1"  # read from ${audio.tokenizer}
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] == cfg.data.max_len and batch["input_ids"].shape[0] <= cfg.data.batch_size
    assert next(iter(dm.val_dataloader()))["labels"].shape[1] == cfg.data.max_len


@pytest.mark.parametrize("on_error", ["error", "skip"])
def test_cache_of_another_tokenizer_is_refused(tok_av, filled_cache, on_error):
    """The cache was filled by energy-1024-v1; the configured audio tokenizer is a retrained v2 of the same size."""
    root, files = filled_cache
    tok, av = tok_av
    cfg = compose_data("corpus", "++audio.tokenizer.tag=v2")
    dm = instantiate(cfg.data, tokenizer=tok, audio_vocab=av, train_sources=[{"path": files["asr"]}],
                     cache_dir=str(root / "cache"), cache_name="energy", on_error=on_error)
    with pytest.raises(CacheError, match=r"filled by audio tokenizer 'energy-1024-v1' .* is 'energy-1024-v2'.*"
                                         r"python -m vita_audio.cli.tokenize --data"):
        dm.setup("fit")  # never turned into per-sample skips
    ok = make_dm(tok_av, root, files, audio_tokenizer=EnergyTokenizer(tag="v1"))
    assert ok.skip_counts() == {} and len(ok.train_set.store.records) == 17


def test_setup_reads_no_audio_with_a_manifest(tok_av, filled_cache, monkeypatch):
    """filled_cache was written by build_cache, which leaves a manifest: setup takes every hash from it."""
    import vita_audio.data.cache as cache_mod

    def no_hashing(path):
        raise AssertionError(f"{path} was opened to hash it")

    root, files = filled_cache
    monkeypatch.setattr(cache_mod, "content_hash", no_hashing)
    dm = make_dm(tok_av, root, files)
    assert len(dm.train_set.store.records) == 17 and not dm.cache().hashed
    assert sum(len(b["input_ids"]) for b in dm.train_dataloader()) > 0


def test_audio_vocab_must_not_arrive_as_a_config(tok_av):
    from omegaconf import OmegaConf

    from vita_audio.data.datamodule import VitaDataModule

    tok, av = tok_av
    with pytest.raises(TypeError, match="_convert_: object"):
        VitaDataModule(tok, OmegaConf.structured(av))
