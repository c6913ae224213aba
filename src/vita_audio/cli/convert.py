"""DeepSpeed checkpoints everywhere: a ZeRO checkpoint directory -> one weights file and / or an exported directory.

    python -m vita_audio.cli.convert artifacts/stages/boost_stage1/final.ckpt \\
        --weights boost_stage1.safetensors --export boost_stage1_hf/

Under `trainer=deepspeed` Lightning saves every checkpoint (`checkpoints/*.ckpt`, a stage's `final.ckpt`) as a
*directory* of ZeRO shards (ZeRO-2 or ZeRO-3): `latest` names the tag folder holding `mp_rank_00_model_states.pt`
(Lightning's client state: step counters, loops, `hyper_parameters` with the training config) and the optimizer
shards. The conversion consolidates the shards to fp32 (DeepSpeed's `zero_to_fp32`, in memory), rebuilds the model
from the training config stored in the directory, and writes

    --weights FILE.safetensors   the module's state dict (LoRA adapters merged), training config in its metadata:
                                 what `PublishStage` writes as `final.safetensors`
    --export DIR                 an HF-style directory in the reference layout (`vita_audio.model.checkpoint`)

Both outputs hold weights only: they start a new stage (`init_from=`), evaluate (`eval.py ckpt_path=`) and decode
(`infer.py ckpt_path=`), but cannot resume training (no optimizer state, no step counters): resume a DeepSpeed run
from its directory, `train.py ckpt_path=<ds dir>`. `eval.py`, `infer.py` and `init_from` also read the DeepSpeed
directory itself (consolidated in memory each time: convert once when it is used often).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch


MODEL_STATES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")  # ZeRO-2, ZeRO-3


def _model_states(tag: Path) -> Path | None:
    return next((tag / n for n in MODEL_STATES if (tag / n).is_file()), None)


def deepspeed_tag_dir(path: str | Path) -> Path | None:
    """The tag folder of a DeepSpeed checkpoint directory (the one `latest` names, else the only folder holding
    the model states: `mp_rank_00_model_states.pt`, under ZeRO-3 `zero_pp_rank_0_...`); None when `path` is not a
    DeepSpeed checkpoint."""
    p = Path(path)
    if not p.is_dir() or (p / "config.json").is_file():
        return None
    latest = p / "latest"
    if latest.is_file():
        tag = p / latest.read_text().strip()
        return tag if _model_states(tag) is not None else None
    tags = [d for d in p.iterdir() if d.is_dir() and _model_states(d) is not None]
    return tags[0] if len(tags) == 1 else None


def is_deepspeed_checkpoint(path: str | Path) -> bool:
    return deepspeed_tag_dir(path) is not None


def is_training_weights(path: str | Path) -> bool:
    """A checkpoint `load_lm` reads: a DeepSpeed directory or a weights-only `.safetensors` file of the module."""
    p = Path(path)
    return (p.suffix == ".safetensors" and p.is_file()) or is_deepspeed_checkpoint(p)


def deepspeed_client_state(path: str | Path) -> dict[str, Any]:
    """Lightning's client state of a DeepSpeed checkpoint (memory-mapped: the model tensors in it are not read)."""
    tag = deepspeed_tag_dir(path)
    if tag is None:
        raise ValueError(f"{str(path)!r} is not a DeepSpeed checkpoint directory (no `latest` naming a folder with "
                         f"{' or '.join(MODEL_STATES)})")
    states = _model_states(tag)
    try:
        return torch.load(states, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which and why
        raise ValueError(f"{states} is not readable ({type(err).__name__}: {err})") from err


def deepspeed_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The module's state dict of a DeepSpeed ZeRO-2 / ZeRO-3 checkpoint, consolidated to fp32 in memory (nothing
    is written); names as `SpeechLMModule.state_dict()`."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag = deepspeed_tag_dir(path)
    if tag is None:
        raise ValueError(f"{str(path)!r} is not a DeepSpeed checkpoint directory")
    state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag.name)
    return {k.removeprefix("_forward_module."): v for k, v in state.items()}


def training_config(path: str | Path) -> dict[str, Any]:
    """The training config stored with a checkpoint: a DeepSpeed directory's client state, a weights file's
    metadata (`save_weights`) or a Lightning `.ckpt`'s `hyper_parameters`. A clear error when it holds none."""
    p = Path(path)
    if is_deepspeed_checkpoint(p):
        config = (deepspeed_client_state(p).get("hyper_parameters") or {}).get("config")
        what = "DeepSpeed checkpoint directory (client state `hyper_parameters`)"
    elif p.suffix == ".safetensors" and p.is_file():
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("config")
        config = json.loads(raw) if raw else None
        what = "weights file (safetensors metadata `config`)"
    elif p.is_file():
        ckpt = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        config = (ckpt.get("hyper_parameters") or {}).get("config") if isinstance(ckpt, dict) else None
        what = "Lightning checkpoint (`hyper_parameters`)"
    else:
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (expected a .ckpt file or DeepSpeed "
                                "directory written by train.py, or a .safetensors file written by PublishStage / "
                                "python -m vita_audio.cli.convert)")
    if not config:
        raise ValueError(f"{str(path)!r}: this {what} holds no training config, so the model cannot be rebuilt. Was "
                         "it written by vita-audio's train.py? (A bare state dict can still start a stage: "
                         "init_from=PATH.)")
    return config


def load_module_from(path: str | Path, overrides: dict[str, Any] | None = None):
    """The `SpeechLMModule` of a DeepSpeed directory or a weights-only `.safetensors` file, rebuilt from the
    training config stored in it (`overrides`: backbone arguments to replace, e.g. the attention kernel). Every
    tensor of the model must be in the checkpoint (LoRA adapters excepted: a weights file holds them merged)."""
    from omegaconf import OmegaConf

    from vita_audio.cli.common import build_model
    from vita_audio.training.init import initialize_from_checkpoint

    config = training_config(path)
    config["model"]["backbone"].update(overrides or {})
    model = build_model(OmegaConf.create(config))
    initialize_from_checkpoint(model, path, allow_missing_mctp=False)
    return model


def load_lm(path: str | Path, attn_implementation: str = "sdpa", dtype: torch.dtype | str | None = None):
    """A `VitaAudioLM` for decoding (`vita_audio.inference.load_model`) from a DeepSpeed directory or a weights
    file: LoRA adapters merged for good, `generation_config` as for a Lightning checkpoint, cast to `dtype`."""
    from vita_audio.model.lora import _merged_copy, adapter_layers

    module = load_module_from(path, {"attn_implementation": attn_implementation, "gradient_checkpointing": False})
    lm = module.lm
    for name, layer in list(adapter_layers(lm)):
        parent_name, _, child = name.rpartition(".")
        setattr(lm.get_submodule(parent_name) if parent_name else lm, child, _merged_copy(layer))
    gen: dict[str, Any] = {"audio_codebook_size": lm.backbone.audio_vocab.codebook_size}
    ratio = (module.hparams["config"].get("interleave") or {}).get("ratio")
    if ratio and lm.mctp is not None:
        gen["mtp_inference_mode"] = [int(v) for v in ratio]
    lm.generation_config = gen
    if dtype is not None:
        lm = lm.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    return lm


def convert(src: str | Path, weights: str | Path | None = None, export: str | Path | None = None) -> list[Path]:
    """Write `src` (a DeepSpeed directory, or any checkpoint `eval.load_module` reads) as a weights file and / or
    an exported directory; returns what was written."""
    from vita_audio.cli.eval import load_module
    from vita_audio.model.checkpoint import export_pretrained
    from vita_audio.training.callbacks import save_weights

    if weights is None and export is None:
        raise ValueError("nothing to write: give --weights FILE.safetensors and / or --export DIR")
    if weights is not None and Path(weights).suffix != ".safetensors":
        raise ValueError(f"--weights {str(weights)!r}: the weights file must end in .safetensors")
    module = load_module(str(src))
    out = []
    if weights is not None:
        Path(weights).parent.mkdir(parents=True, exist_ok=True)
        save_weights(module, Path(weights))
        out.append(Path(weights))
    if export is not None:
        ratio = (module.hparams["config"].get("interleave") or {}).get("ratio")
        out.append(export_pretrained(module.lm, export, interleave_ratio=None if ratio is None else list(ratio)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a DeepSpeed checkpoint directory (or a .ckpt / .safetensors written by train.py)")
    p.add_argument("--weights", help="write the weights-only file here (.safetensors)")
    p.add_argument("--export", help="write the HF-style reference-layout directory here")
    args = p.parse_args(argv)
    if args.weights is None and args.export is None:
        p.error("give --weights FILE.safetensors and / or --export DIR")
    for path in convert(args.src, args.weights, args.export):
        print(f"wrote {path}")
    print("(weights only: these start a stage, evaluate and decode, but cannot resume training; resume from the "
          "DeepSpeed directory itself)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
