"""Bad checkpoints and bad load requests: each a clear error naming the file and what was expected."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.checkpoint.conftest import tiny
from tests.model.test_plus import plus_lm
from vita_audio.checkpoint import export_pretrained, load_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_pretrained(tiny(2), tmp_path_factory.mktemp("hf") / "hf", interleave_ratio=[1, 2],
                             max_shard_size=200_000)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_directory_missing_a_shard_or_a_tensor(exported, tmp_path):
    index = json.loads((exported / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    broken = _copy(exported, tmp_path / "no_shard")
    (broken / shard).unlink()
    with pytest.raises(FileNotFoundError, match=rf"names shard files that are not in .*{shard}"):
        load_model(broken)
    broken = _copy(exported, tmp_path / "no_tensor")
    name = next(k for k, v in index["weight_map"].items() if k.startswith("mtp_projs.1"))
    index["weight_map"].pop(name)
    from safetensors import safe_open
    from safetensors.torch import save_file

    file = broken / json.loads((exported / "model.safetensors.index.json").read_text())["weight_map"][name]
    with safe_open(str(file), framework="pt") as f:
        kept = {k: f.get_tensor(k) for k in f.keys() if k != name}
    save_file(kept, str(file), metadata={"format": "pt"})
    with pytest.raises(KeyError, match=rf"{broken}.*missing keys: {name}"):
        load_model(broken)


def test_a_plus_directory_missing_its_encoder_files(tmp_path):
    hf = export_pretrained(plus_lm(num_modules=0), tmp_path / "plus")
    (hf / "am.mvn").unlink()
    with pytest.raises(FileNotFoundError, match="has no am.mvn"):
        load_model(hf)


def test_a_dtype_or_device_the_weights_cannot_take(exported):
    with pytest.raises(ValueError, match=rf"{exported}: dtype 'int8' is not a floating-point dtype"):
        load_model(exported, dtype="int8")
    with pytest.raises(ValueError, match="float8_e4m3fn.*not a floating-point dtype the weights can take"):
        load_model(exported, dtype=torch.float8_e4m3fn)
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"{exported}: device 'cuda:{n}' is not available here"):
        load_model(exported, device=f"cuda:{n}")
    with pytest.raises(ValueError, match="is not a device"):
        load_model(exported, device="warp-drive")
    assert {p.dtype for p in load_model(exported, dtype="bfloat16").parameters()} == {torch.bfloat16}


@pytest.mark.gpu
def test_weights_go_straight_to_the_gpu(exported):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    lm = load_model(exported, dtype="bfloat16", device="cuda")
    assert {p.device.type for p in lm.parameters()} == {"cuda"} and {b.device.type for b in lm.buffers()} == {"cuda"}
    ids = torch.randint(0, lm.backbone.vocab_size, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(lm(ids.cuda())[0].float().cpu(), tiny(2)(ids)[0], atol=0.05, rtol=0.05)
