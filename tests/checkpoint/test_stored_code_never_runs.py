"""A checkpoint whose stored training config names code outside the allowlist is refused by every loader and entry
point, before anything is imported: the module it names would leave a marker file when imported, and none appears.

(Before the checkpoint package, `load_model` on a weights file or DeepSpeed directory, `eval.py task=loss`, convert
and a Plus `.ckpt`'s encoder went through `hydra.utils.instantiate` / importlib on the stored `_target_`.)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from tests.checkpoint.conftest import (
    record_of,
    tiny,
    training_config,
    write_ckpt,
    write_deepspeed_client,
    write_weights,
)
from tests.conftest import compose_cfg
from tests.model.test_plus import plus_lm
from vita_audio.checkpoint.registry import UnknownTargetError

EVIL = "vita_marker_module"


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """A module on sys.path whose import writes `marker`: importing it counts as running it."""
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "MARKER"
    (site / f"{EVIL}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                     "def make(*args, **kwargs):\n    open(__file__ + '.called', 'w')\n")
    monkeypatch.syspath_prepend(str(site))
    yield marker
    sys.modules.pop(EVIL, None)


def _crafted(tmp_path: Path) -> dict[str, Path]:
    """One file of each kind, each naming the marker module at a different place of its stored config."""
    lm = tiny(2)
    out = {}
    cfg = training_config(2, [1, 2])
    cfg["model"]["backbone"]["_target_"] = f"{EVIL}.make"
    out["weights .safetensors (metadata)"] = write_weights(tmp_path / "w.safetensors", lm, cfg, record_of(lm))
    cfg = training_config(2, [1, 2])
    cfg["model"]["_target_"] = f"{EVIL}.make"
    out["Lightning .ckpt"] = write_ckpt(tmp_path / "final.ckpt", lm, cfg, record_of(lm))
    plus = plus_lm(num_modules=1)
    cfg = training_config(1, [1, 2])
    cfg["model"]["audio_encoder"] = {"_target_": f"{EVIL}.make", "seed": 0}
    cfg["model"]["audio_adapter"] = {"_target_": "vita_audio.model.adapter.AudioAdapter", "_partial_": True}
    out["Plus .ckpt (audio_encoder)"] = write_ckpt(tmp_path / "plus.ckpt", plus, cfg, None)
    cfg = training_config(2, [1, 2])
    cfg["model"]["mctp"]["_target_"] = f"{EVIL}.make"
    out["DeepSpeed directory (client state)"] = write_deepspeed_client(tmp_path / "ds", cfg, record_of(lm))
    cfg = copy.deepcopy(training_config(2, [1, 2]))
    cfg["model"]["optimizer"]["_target_"] = f"{EVIL}.make"
    out["Lightning .ckpt (optimizer)"] = write_ckpt(tmp_path / "opt.ckpt", lm, cfg, record_of(lm))
    return out


def _entry_points(path: Path, tmp_path: Path):
    from vita_audio.checkpoint import load_model, load_pretrained, open_checkpoint
    from vita_audio.checkpoint.convert import convert
    from vita_audio.cli.convert import main as convert_main
    from vita_audio.cli.eval import evaluate
    from vita_audio.cli.export import main as export_main
    from vita_audio.inference import SpeechLM
    from vita_audio.inference import load_model as inference_load_model
    from vita_audio.model.lm import VitaAudioLM
    from vita_audio.training.init import initialize_from_checkpoint, load_state_dict_file, restore_module

    yield "open_checkpoint", lambda: open_checkpoint(path)
    yield "load_model", lambda: load_model(path)
    yield "load_pretrained", lambda: load_pretrained(path)
    yield "inference.load_model", lambda: inference_load_model(path)
    yield "VitaAudioLM.from_pretrained", lambda: VitaAudioLM.from_pretrained(path)
    yield "SpeechLM.from_pretrained", lambda: SpeechLM.from_pretrained(path, audio="builtin", codec_dir=tmp_path)
    yield "restore_module (eval.py task=loss)", lambda: restore_module(path)
    eval_cfg = compose_cfg(tmp_path / "eval", [f"ckpt_path={path}", "data=synthetic", "audio.codebook_size=32"],
                           config_name="eval")
    yield "eval.py task=loss", lambda: evaluate(eval_cfg)
    yield "convert", lambda: convert(path, weights=tmp_path / "out.safetensors", export=tmp_path / "out_hf")
    yield "python -m vita_audio.cli.convert", lambda: convert_main([str(path), "--export", str(tmp_path / "hf2")])
    yield "python -m vita_audio.cli.export", lambda: export_main([str(path), str(tmp_path / "hf3")])
    yield "init_from", lambda: initialize_from_checkpoint(torch.nn.Module(), path, allow_missing_mctp=True)
    yield "load_state_dict_file", lambda: load_state_dict_file(path)


def test_every_loader_refuses_a_stored_target_outside_the_allowlist(marker, tmp_path):
    for kind, path in _crafted(tmp_path).items():
        for name, call in _entry_points(path, tmp_path):
            with pytest.raises(UnknownTargetError) as err:
                call()
            msg = str(err.value)
            assert f"{EVIL}.make" in msg and str(path) in msg and "not one of vita-audio's constructors" in msg, \
                (kind, name, msg)
            assert not marker.exists() and EVIL not in sys.modules, (kind, name)


def test_the_marker_module_does_run_when_imported(marker):
    """The control: importing the named module is what would have left the marker."""
    import importlib

    importlib.import_module(EVIL)
    assert marker.exists()
