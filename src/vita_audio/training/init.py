"""Start a stage from its predecessor's weights: the stage rules, over the checkpoint package's readers.

    init_from=PATH  (any format `vita_audio.checkpoint.open_checkpoint` reads: .ckpt, final.safetensors, a DeepSpeed
                    directory, an exported / published directory; a directory's shards stream through the
                    reference-name map, no second model is built)
      -> keys and shapes checked from the headers: only MCTP tensors may be missing (the stage initialises them)
         and a predecessor's extra MCTP modules are dropped; anything else is an error naming the checkpoint
      -> tensors copied one at a time into the module's parameters (a LoRA layer's base weight from the plain name)

A missing predecessor says which experiment produces it ("train stage N first").

`restore_module` is the Lightning-side restore of `eval.py task=loss`: the training module of a training checkpoint,
rebuilt from its stored config through the checkpoint package's allowlist (no Hydra, nothing named in the file
imported), with its weights.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vita_audio.checkpoint import Checkpoint, open_checkpoint
from vita_audio.checkpoint.formats import MODULE_PREFIX, TrainingCheckpoint
from vita_audio.checkpoint.registry import plain_kwargs
from vita_audio.model.lora import BackboneLoRA
from vita_audio.model.mctp import MCTPStack
from vita_audio.model.weighting import LossWeighting
from vita_audio.training.optim import warmup_cosine_scheduler

if TYPE_CHECKING:
    from vita_audio.training.module import SpeechLMModule

log = logging.getLogger(__name__)


class MissingPredecessorError(FileNotFoundError):
    pass


def open_predecessor(path: str | Path, predecessor: str | None = None) -> Checkpoint:
    """The checkpoint at `path`; a missing file says how to produce it."""
    path = Path(path)
    if not path.exists():
        how = f"Train that stage first:\n    python train.py +experiment={predecessor}\n" if predecessor else ""
        raise MissingPredecessorError(
            f"predecessor checkpoint {str(path)!r} does not exist. {how}"
            "Or point init_from=PATH at a checkpoint of your own (.safetensors, .ckpt, exported HF directory or ZeRO "
            "directory)."
        )
    return open_checkpoint(path)


def load_state_dict_file(path: str | Path, predecessor: str | None = None) -> dict[str, torch.Tensor]:
    """The training module's state dict (`lm.*` names, LoRA adapters merged) stored at `path`, any format."""
    return {MODULE_PREFIX + k: v for k, v in open_predecessor(path, predecessor).tensors()}


def _publish_id(path: Path) -> str | None:
    ckpt = open_checkpoint(path)
    return ckpt.publish_id if isinstance(ckpt, TrainingCheckpoint) else None


def resolve_init_path(path: str | Path) -> Path:
    """The file to read for `init_from`. A published stage's `final.ckpt` is read from the weights-only
    `final.safetensors` that `PublishStage` writes beside it when the two were written together: both store the
    same publish id (a copy with `cp -p`, a re-publish or a stale file pairs differently, whatever the mtimes).
    A `final.safetensors` that is not there falls back to the `final.ckpt` beside it (stages published by an
    older version)."""
    path = Path(path)
    weights = path.with_suffix(".safetensors")
    if path.name == "final.ckpt" and path.exists() and weights.is_file():
        ckpt_id, weights_id = _publish_id(path), _publish_id(weights)
        if ckpt_id is not None and ckpt_id == weights_id:
            log.info("init_from %s: reading the weights-only %s published with it", path, weights.name)
            return weights
        without = [f.name for f, i in ((path, ckpt_id), (weights, weights_id)) if i is None]
        why = f"no publish id in {' or '.join(without)}, as in stages published by an older version" if without \
            else "publish ids differ"
        log.warning("init_from %s: %s beside it is not known to be published with it (%s): reading the .ckpt",
                    path, weights.name, why)
        return path
    if path.suffix == ".safetensors" and not path.exists() and path.with_suffix(".ckpt").exists():
        log.warning("%s not found: reading %s instead (a stage published by an older version)",
                    path, path.with_suffix(".ckpt"))
        return path.with_suffix(".ckpt")
    return path


def initialize_from_checkpoint(
    module: torch.nn.Module, path: str | Path | Checkpoint, allow_missing_mctp: bool, predecessor: str | None = None
) -> set[str]:
    """Load matching weights; only MCTP parameters may be missing (they are initialised by the stage).
    Returns the names of the tensors loaded (the stage checks that what it builds on, e.g. module 0, was there).

    Names and shapes come from the checkpoint's headers first; then one tensor at a time is copied straight into
    the module's parameters, so a rank holds the model plus one tensor (a `.ckpt` is memory-mapped: its optimizer
    state is never read; a DeepSpeed directory is consolidated in memory first).
    """
    ckpt = path if isinstance(path, Checkpoint) else open_predecessor(resolve_init_path(path), predecessor)
    own = module.state_dict()
    # a LoRA-wrapped layer (`model/lora=backbone`) keeps its weight as `<layer>.base_layer.weight`: it loads from
    # the plain name; its adapters (`.lora_*`) start fresh (lora_B = 0: the model starts as the predecessor)
    alias = {k.replace(".base_layer.", "."): k for k in own if ".base_layer." in k}

    def target(name: str) -> str:
        name = MODULE_PREFIX + name
        return name if name in own else alias.get(name, name)

    shapes = {target(k): s for k, s in ckpt.shapes().items()}
    unexpected = [k for k in shapes if k not in own]
    missing = [k for k in own if k not in shapes]
    bad_missing = [k for k in missing if not (allow_missing_mctp and k.startswith("lm.mctp.")) and ".lora_" not in k]
    # a predecessor with more MCTP modules than this stage is fine (their extra modules are dropped, logged)
    bad_unexpected = [k for k in unexpected if not k.startswith("lm.mctp.")]
    if bad_missing or bad_unexpected:
        raise ValueError(
            f"checkpoint {str(ckpt.path)!r} does not fit this stage's model.\n"
            f"  missing ({len(bad_missing)}): {bad_missing[:8]}\n  unexpected ({len(bad_unexpected)}): "
            f"{bad_unexpected[:8]}\nDid the predecessor use the same backbone preset and audio codebook size?"
        )
    shape_errors = [k for k in shapes if k in own and shapes[k] != tuple(own[k].shape)]
    if shape_errors:
        k = shape_errors[0]
        raise ValueError(
            f"checkpoint {str(ckpt.path)!r}: shape mismatch for {k}: {shapes[k]} vs {tuple(own[k].shape)} "
            "(different backbone size or vocabulary?)"
        )
    loaded = {k for k in shapes if k in own}
    with torch.no_grad():
        for name, tensor in ckpt.tensors():
            if target(name) in own:
                own[target(name)].copy_(tensor)
            del tensor
    log.info("initialised from %s (%d tensors; %d MCTP tensors left to the stage's init; %d dropped)",
             ckpt.path, len(loaded), len(missing), len(unexpected))
    return loaded


# the training-side constructors of the allowlist (`checkpoint.registry`), by their stored names
_PARTIALS: dict[str, Any] = {"torch.optim.AdamW": torch.optim.AdamW,
                             "vita_audio.training.optim.warmup_cosine_scheduler": warmup_cosine_scheduler}
_PARTS = ("backbone", "mctp", "audio_encoder", "audio_adapter", "lora", "loss", "optimizer", "scheduler")


def _stored_partial(node: dict | None, place: str, source: str) -> partial | None:
    """The stored optimizer / scheduler node as the partial the module takes (its target already allowlisted)."""
    if not node:
        return None
    if node.get("_target_") not in _PARTIALS:
        raise ValueError(f"{source}: model.{place} names {node.get('_target_')!r}, which has no training-side "
                         f"constructor here (known: {', '.join(sorted(_PARTIALS))})")
    return partial(_PARTIALS[node["_target_"]], **plain_kwargs(node))


def restore_module(path: str | Path) -> SpeechLMModule:
    """The training module of a `.ckpt`, weights `.safetensors` or DeepSpeed directory, for evaluation: rebuilt from
    the stored config (`hparams["config"]`), every target checked against the allowlist, weights loaded strictly
    (LoRA adapters of a merged weights file start at zero: the same model)."""
    from vita_audio.training.module import SpeechLMModule

    ckpt = open_checkpoint(path)
    if not isinstance(ckpt, TrainingCheckpoint):
        raise ValueError(f"{ckpt.path} is an {ckpt.kind}: it holds no training config (loss weights, freeze rules). "
                         "Evaluate the .ckpt it was exported from (task=loss), or decode it (task=asr|tts|sqa|speed)")
    config = ckpt.require_config()
    parts = ckpt.parts()
    node = config["model"]
    mctp = partial(MCTPStack.for_backbone, num_modules=parts.num_modules) if parts.num_modules else None
    settings = {k: v for k, v in plain_kwargs(node).items() if k not in _PARTS}
    module = SpeechLMModule(
        backbone=parts.backbone, optimizer=_stored_partial(node.get("optimizer"), "optimizer", str(ckpt.path)),
        scheduler=_stored_partial(node.get("scheduler"), "scheduler", str(ckpt.path)), mctp=mctp,
        loss=LossWeighting(**plain_kwargs(node["loss"])) if node.get("loss") else None,
        lora=BackboneLoRA(**plain_kwargs(node["lora"])) if node.get("lora") else None,
        audio_encoder=parts.encoder, audio_adapter=parts.adapter, **settings)
    module.hparams["config"] = config
    initialize_from_checkpoint(module, ckpt, allow_missing_mctp=False)
    return module
