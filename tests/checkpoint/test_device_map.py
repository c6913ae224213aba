"""`device_map`: "auto" on a CPU-only machine and a map that offloads decoder layers and the MCTP stack to disk give
the plain load's logits and its greedy tokens through the KV-cached decoder; bad maps are clear errors."""

from __future__ import annotations

import pytest
import torch

from tests.checkpoint.conftest import tiny
from vita_audio.checkpoint import export_pretrained, load_model
from vita_audio.inference import generate
from vita_audio.model.lm import VitaAudioLM

RATIO = [1, 10, 4, 10]
DISK = {"": "cpu", "backbone.model.model.layers.1": "disk", "mctp": "disk"}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return export_pretrained(tiny(10), tmp_path_factory.mktemp("dm") / "hf", interleave_ratio=RATIO)


def _logits(lm) -> torch.Tensor:
    ids = torch.randint(0, lm.backbone.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        main, levels = lm(ids)
    return torch.cat([main.flatten(), *[lv.flatten() for lv in levels]])


def _tokens(lm) -> dict[str, list]:
    return {s: generate(lm, [[5, 6, 7, 8]], schedule=s, drafting="all", max_new_tokens=12, stop_ids=[]).rows()
            for s in ("vanilla", "boost")}


def test_auto_on_cpu_matches_the_plain_load(hf):
    plain, auto = load_model(hf), VitaAudioLM.from_pretrained(hf, device_map="auto")
    assert auto.hf_device_map == {"": torch.device("cpu")} or set(map(str, auto.hf_device_map.values())) == {"cpu"}
    torch.testing.assert_close(_logits(auto), _logits(plain), rtol=0, atol=0)


def test_disk_offload_matches_the_plain_load(hf, tmp_path):
    plain = load_model(hf)
    off = load_model(hf, device_map=DISK, offload_dir=tmp_path / "offload")
    assert off.mctp.layers[0].self_attn.q_proj.weight.device.type == "meta"  # on disk, not in memory
    assert (tmp_path / "offload" / "index.json").is_file()
    torch.testing.assert_close(_logits(off), _logits(plain), rtol=0, atol=0)
    assert _tokens(off) == _tokens(plain)


def test_auto_that_would_put_the_head_on_disk_is_refused(hf, tmp_path):
    """The fast decoder reads the embedding and LM head weights directly: "auto" spilling them to disk is refused."""
    with pytest.raises(ValueError, match="LM head directly"):
        load_model(hf, device_map="auto", max_memory={"cpu": "300KB"}, offload_dir=tmp_path / "off")


@pytest.mark.parametrize("kwargs, match", [
    (dict(device_map={"": "cpu", "backbone.no_such_layer": "cpu"}), "not modules of this model"),
    (dict(device_map={"mctp": "cpu"}), "places no device"),
    (dict(device_map="everywhere"), "must be 'auto' or a dict"),
    (dict(device_map="auto", device="cpu"), "not both"),
    (dict(device_map={"": "cpu", "mctp": "disk"}), "give offload_dir"),
    (dict(device_map={"": "cpu", "backbone.model.lm_head": "disk"}, offload_dir="unused"), "LM head directly"),
    (dict(device_map={"": "tpu"}), "device_map"),
])
def test_bad_maps_are_clear_errors(hf, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_model(hf, **kwargs)


def test_speechlm_passes_the_map_through(hf):
    from vita_audio.inference import SpeechLM

    with pytest.raises(ValueError, match="places no device"):
        SpeechLM.from_pretrained(hf, device_map={"mctp": "cpu"})
