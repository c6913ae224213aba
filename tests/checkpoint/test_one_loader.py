"""One export, every public loader: the same logits and the same default schedule (the checkpoint's), also for a
4-module [1, 2, 2, 4] export (Boost does not fit it) and a 10-module Balance export (not to be decoded as Boost);
the training formats of the same weights load to the same model."""

from __future__ import annotations

import pytest
import torch

from tests.audio.conftest import TINY as TINY_CODEC
from tests.checkpoint.conftest import record_of, tiny, training_config, write_ckpt, write_weights
from vita_audio.audio.builtin import save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.checkpoint import export_pretrained
from vita_audio.inference import default_schedule, generate

CASES = {"four modules [1, 2, 2, 4]": (4, [1, 2, 2, 4]), "Balance, ten modules": (10, [1, 4, 3, 8, 4, 10])}


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    torch.manual_seed(0)
    return save_codec(CodecModel(TINY_CODEC).eval(), tmp_path_factory.mktemp("codec") / "codec")


def _loaders(codec_dir):
    from vita_audio import checkpoint, inference
    from vita_audio.inference import SpeechLM
    from vita_audio.model.lm import VitaAudioLM

    return {
        "checkpoint.load_model": checkpoint.load_model,
        "checkpoint.load_pretrained": checkpoint.load_pretrained,
        "inference.load_model": inference.load_model,
        "VitaAudioLM.from_pretrained": VitaAudioLM.from_pretrained,
        "SpeechLM.from_pretrained": lambda p: SpeechLM.from_pretrained(p, audio="builtin", codec_dir=codec_dir).lm,
    }


def _logits(lm) -> torch.Tensor:
    ids = torch.randint(0, lm.backbone.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        main, levels = lm(ids)
    return torch.cat([main.flatten(), *[lv.flatten() for lv in levels]])


@pytest.mark.parametrize("case", list(CASES))
def test_every_public_loader_decodes_one_export_alike(case, tmp_path, codec_dir):
    num_modules, ratio = CASES[case]
    lm = tiny(num_modules)
    hf = export_pretrained(lm, tmp_path / "hf", interleave_ratio=ratio)
    files = {"exported directory": hf,
             ".ckpt": write_ckpt(tmp_path / "final.ckpt", lm, training_config(num_modules, ratio), record_of(lm)),
             "weights file": write_weights(tmp_path / "final.safetensors", lm, training_config(num_modules, ratio),
                                           record_of(lm))}
    ref = _logits(lm)
    prompt = [[5, 6, 7, 8]]
    want = generate(lm, prompt, schedule=ratio, max_new_tokens=12, stop_ids=[]).rows()
    configs = {}
    loaders = _loaders(codec_dir)
    runs = [("exported directory", name, hf) for name in loaders]  # every public loader on the export
    runs += [(kind, "checkpoint.load_model", path) for kind, path in files.items() if path != hf]  # and the formats
    for kind, name, path in runs:
        got = loaders[name](path)
        assert default_schedule(got) == ratio, (kind, name)
        torch.testing.assert_close(_logits(got), ref, rtol=0, atol=0, msg=f"{kind} via {name}")
        out = generate(got, prompt, max_new_tokens=12, stop_ids=[])  # the stored schedule by default
        assert out.schedule == ratio and out.rows() == want, (kind, name)
        configs[(kind, name)] = {k: v for k, v in got.generation_config.to_diff_dict().items() if k != "audio_codec"}
    assert len({repr(sorted(c.items())) for c in configs.values()}) == 1, configs


def test_save_pretrained_keeps_the_generation_config(tmp_path):
    from vita_audio.model.lm import VitaAudioLM

    lm = tiny(4)
    first = VitaAudioLM.from_pretrained(export_pretrained(lm, tmp_path / "a", interleave_ratio=[1, 2, 2, 4],
                                                          extra_generation_config={"temperature": 0.6}))
    again = VitaAudioLM.from_pretrained(first.save_pretrained(tmp_path / "b", max_shard_size=100_000))
    assert (tmp_path / "b" / "model.safetensors.index.json").is_file()  # sharded by huggingface_hub
    assert again.generation_config.to_diff_dict() == first.generation_config.to_diff_dict()
    assert default_schedule(again) == [1, 2, 2, 4] and again.generation_config.temperature == 0.6
    torch.testing.assert_close(_logits(again), _logits(lm), rtol=0, atol=0)


def test_a_loaded_model_owns_its_weights(tmp_path):
    """The parameters are copies, not views of the files' memory maps: rewriting a checkpoint in place (a training
    run saving over last.ckpt, a re-export) leaves a loaded model as it was."""
    from vita_audio.checkpoint import load_model

    lm = tiny(2)
    hf = export_pretrained(lm, tmp_path / "hf")
    ckpt = write_ckpt(tmp_path / "last.ckpt", lm, training_config(2, [1, 2]), record_of(lm))
    loaded = {p: load_model(p) for p in (hf, ckpt)}
    ref = _logits(lm)
    with open(hf / "model.safetensors", "r+b") as f:  # the same inode, every weight byte overwritten
        header = 8 + int.from_bytes(f.read(8), "little")
        f.seek(header)
        f.write(b"\x00" * ((hf / "model.safetensors").stat().st_size - header))
    write_ckpt(ckpt, tiny(2, seed=5), training_config(2, [1, 2]), record_of(lm))
    for path, got in loaded.items():
        torch.testing.assert_close(_logits(got), ref, rtol=0, atol=0, msg=str(path))
