"""One dispatcher for every checkpoint format, each read one tensor at a time.

    open_checkpoint(path) ->
      Directory          an exported / published HF-style directory: config.json, model.safetensors or shards +
                         model.safetensors.index.json, tokenizer files (`safe_open`, one shard at a time)
      LightningFile      a `.ckpt` written by train.py: `torch.load(weights_only=True, mmap=True)`, so only the
                         tensors asked for are read (a full checkpoint's optimizer state never is)
      WeightsFile        a weights-only `.safetensors` of the training module (`final.safetensors`, convert
                         --weights): the training config and record in its metadata
      DeepSpeedDirectory a ZeRO-2 / ZeRO-3 checkpoint directory (`deepspeed`: consolidated in memory)

Every kind answers the same questions: `skeleton()` (the model with parameters on meta, see `build`), `shapes()` and
`tensors()` under `VitaAudioLM` state-dict names, `generation_config(lm)` and `default_dtype`. Training kinds hold
the stored training config, which is checked against the allowlist when the file is opened: a checkpoint naming
any other constructor is refused by every entry point before anything is imported.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import GenerationConfig

from vita_audio.checkpoint import deepspeed
from vita_audio.checkpoint.build import (
    TrainingParts,
    directory_skeleton,
    read_directory_config,
    stored_lora_scaling,
    training_parts,
    training_skeleton,
)
from vita_audio.checkpoint.generation import generation_config_for, read_generation_config
from vita_audio.checkpoint.names import EMBEDDING, TIED_HEAD, internal_name, merge_lora, reference_name
from vita_audio.checkpoint.record import KEY as RECORD_KEY
from vita_audio.checkpoint.record import read_record
from vita_audio.checkpoint.registry import check_model_config
from vita_audio.checkpoint.torchfile import load_mapping
from vita_audio.model.lm import VitaAudioLM

WEIGHTS_NAME, INDEX_NAME = "model.safetensors", "model.safetensors.index.json"
MODULE_PREFIX = "lm."  # training states: SpeechLMModule.state_dict() names


class Checkpoint(ABC):
    """A checkpoint on disk, opened (its configs read and checked, no tensor read yet)."""

    kind: str

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def skeleton(self, attn_implementation: str = "sdpa") -> VitaAudioLM:
        """The model, built from what the file stores (call under `build.on_meta()` for meta parameters)."""

    @abstractmethod
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """`VitaAudioLM` name -> shape of every stored tensor (read without reading the tensors)."""

    @abstractmethod
    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(`VitaAudioLM` name, tensor) one at a time on the CPU. A tensor may view a memory-mapped file (a `.ckpt`,
        and safetensors' own zero-copy reads): copy it (`.to(..., copy=True)`, `.copy_`) to keep it."""

    def display_name(self, internal: str) -> str:
        """How the file names a tensor (for error messages)."""
        return internal

    @abstractmethod
    def generation_config(self, lm: VitaAudioLM) -> GenerationConfig:
        """The checkpoint's generation settings (`generation`)."""

    @property
    @abstractmethod
    def default_dtype(self) -> torch.dtype:
        """The parameter dtype when the caller asks for none."""

    def __str__(self) -> str:
        return str(self.path)


def open_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at `path`, whatever its format; a clear error when it is none of them."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist: give a .ckpt or DeepSpeed directory "
                                "written by train.py, a weights .safetensors (final.safetensors, python -m "
                                "vita_audio.cli.convert --weights), an exported directory (python -m "
                                "vita_audio.cli.export) or a published VITA-Audio directory")
    if p.is_dir():
        if (p / "config.json").is_file():
            return Directory(p)
        if deepspeed.looks_like_deepspeed(p):
            return DeepSpeedDirectory(p)
        raise FileNotFoundError(f"{p} is a directory but neither an exported checkpoint (no config.json) nor a "
                                "DeepSpeed checkpoint (`latest` + <tag>/mp_rank_00_model_states.pt); a Lightning "
                                "checkpoint is a .ckpt file")
    if p.suffix == ".safetensors":
        return WeightsFile(p)
    return LightningFile(p)


# -- exported / published directories --------------------------------------------------------------------------------
class Directory(Checkpoint):
    kind = "exported / published directory"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.config = read_directory_config(path)
        self.files = _weight_files(path)
        self.num_backbone_layers = int(self.config.fields["num_hidden_layers"])
        self.tied = bool(self.config.fields.get("tie_word_embeddings", False))

    def skeleton(self, attn_implementation: str = "sdpa") -> VitaAudioLM:
        return directory_skeleton(self.path, self.config, attn_implementation)

    def _internal(self, reference: str) -> str:
        return internal_name(reference, self.num_backbone_layers)

    def display_name(self, internal: str) -> str:
        return reference_name(internal, self.num_backbone_layers)

    def _headers(self) -> dict[str, tuple[Path, tuple[int, ...]]]:
        """Reference name -> (shard, shape), from the shards' headers."""
        out = {}
        for file in self.files:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    out[name] = (file, tuple(f.get_slice(name).get_shape()))
        return out

    def _head_alias(self, stored: set[str]) -> bool:
        """A tied head is the embedding and is not stored: it is given under both names."""
        return self.tied and TIED_HEAD not in stored and EMBEDDING in stored

    def shapes(self) -> dict[str, tuple[int, ...]]:
        headers = self._headers()
        shapes = {self._internal(name): shape for name, (_, shape) in headers.items()}
        if self._head_alias(set(headers)):
            shapes[self._internal(TIED_HEAD)] = headers[EMBEDDING][1]
        return shapes

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        headers = self._headers()
        alias = self._head_alias(set(headers))
        for name, (file, _) in headers.items():
            tensor = _read_tensor(file, name)
            yield self._internal(name), tensor
            if alias and name == EMBEDDING:
                yield self._internal(TIED_HEAD), tensor

    def generation_config(self, lm: VitaAudioLM) -> GenerationConfig:
        return read_generation_config(self.path, lm)

    @property
    def default_dtype(self) -> torch.dtype:
        return _dtype_of(self.config.raw.get("torch_dtype") or self.config.raw.get("dtype"), torch.float32)


def _weight_files(path: Path) -> list[Path]:
    index = path / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{index} is not a safetensors index (a JSON object with `weight_map`): {err}") from err
        files = sorted(set(weight_map.values()))
        absent = [f for f in files if not (path / f).is_file()]
        if absent:
            raise FileNotFoundError(f"{index} names shard files that are not in {path}: {absent}")
        return [path / f for f in files]
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    raise FileNotFoundError(f"no weights in {path}: expected {WEIGHTS_NAME} or {INDEX_NAME} with its shards (only "
                            "safetensors are read); export a trained checkpoint with python -m vita_audio.cli.export")


def _read_tensor(file: Path, name: str) -> torch.Tensor:
    """One tensor of a safetensors file (a view of the file's memory map). The file is mapped for this one tensor
    only: pages a mapping has touched stay resident (and counted) while it lives, so a file kept open while all its
    tensors are read and copied would hold a second copy of the weights."""
    with safe_open(str(file), framework="pt") as f:
        return f.get_tensor(name)


def _dtype_of(name: Any, default: torch.dtype) -> torch.dtype:
    if not name or name == "auto":
        return default
    resolved = getattr(torch, str(name).removeprefix("torch."), None)
    return resolved if isinstance(resolved, torch.dtype) and resolved.is_floating_point else default


# -- training checkpoints ----------------------------------------------------------------------------------------------
class TrainingCheckpoint(Checkpoint):
    """A checkpoint of the training module: its state under `lm.` names, the training config and the record."""

    def __init__(self, path: Path, config: dict[str, Any] | None, record: Any) -> None:
        super().__init__(path)
        self.config = config if isinstance(config, dict) else None
        if self.config is not None:  # refused here, by every entry point, before anything is imported
            check_model_config(self.config.get("model"), str(path))
        self.record = read_record(record, str(path))

    def require_config(self) -> dict[str, Any]:
        if self.config is None:
            raise ValueError(f"{self.path}: this {self.kind} holds no training config, so the model cannot be rebuilt. "
                             "Was it written by vita-audio's train.py? (A bare state dict can still start a stage: "
                             "init_from=PATH.)")
        return self.config

    def parts(self, attn_implementation: str = "sdpa") -> TrainingParts:
        return training_parts(self.require_config(), self.record, str(self.path), attn_implementation)

    def skeleton(self, attn_implementation: str = "sdpa") -> VitaAudioLM:
        return training_skeleton(self.parts(attn_implementation))

    @abstractmethod
    def module_shapes(self) -> dict[str, tuple[int, ...]]:
        """Training-module name -> shape."""

    @abstractmethod
    def module_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(training-module name, tensor), one at a time."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for name, shape in self.module_shapes().items():
            if not name.startswith(MODULE_PREFIX) or ".lora_" in name:
                continue
            out[name[len(MODULE_PREFIX):].replace(".base_layer.", ".")] = shape
        return out

    def display_name(self, internal: str) -> str:
        return MODULE_PREFIX + internal

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        own = ((n[len(MODULE_PREFIX):], t) for n, t in self.module_tensors() if n.startswith(MODULE_PREFIX))
        yield from merge_lora(own, stored_lora_scaling((self.config or {}).get("model")))

    def generation_config(self, lm: VitaAudioLM) -> GenerationConfig:
        ratio = (self.require_config().get("interleave") or {}).get("ratio")
        codec = (self.record or {}).get("audio_codec")
        return generation_config_for(lm, ratio, codec)

    @property
    def default_dtype(self) -> torch.dtype:
        backbone = (((self.config or {}).get("model") or {}).get("backbone")) or {}
        return _dtype_of(backbone.get("dtype"), torch.float32)

    @property
    def publish_id(self) -> str | None:
        return (self.record or {}).get("publish_id")


class LightningFile(TrainingCheckpoint):
    kind = "Lightning checkpoint"

    def __init__(self, path: Path) -> None:
        ckpt = load_mapping(path, "checkpoint")
        self.state = ckpt["state_dict"] if "state_dict" in ckpt else ckpt  # a bare state dict: init_from only
        if not all(isinstance(v, torch.Tensor) for v in self.state.values()):
            raise ValueError(f"{path}: its `state_dict` holds non-tensor values: not a training checkpoint")
        config = (ckpt.get("hyper_parameters") or {}).get("config") if "state_dict" in ckpt else None
        super().__init__(path, config, ckpt.get(RECORD_KEY) if "state_dict" in ckpt else None)

    def module_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state.items()}

    def module_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from self.state.items()  # views of the mapped file: read when used


class WeightsFile(TrainingCheckpoint):
    kind = "weights file"

    def __init__(self, path: Path) -> None:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say which and why
            raise ValueError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from err
        config = meta.get("config")
        try:
            config = json.loads(config) if config else None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: the `config` metadata is not JSON ({err})") from err
        super().__init__(path, config, meta.get(RECORD_KEY))

    def module_shapes(self) -> dict[str, tuple[int, ...]]:
        with safe_open(str(self.path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}

    def module_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.module_shapes():
            yield name, _read_tensor(self.path, name)


class DeepSpeedDirectory(TrainingCheckpoint):
    kind = "DeepSpeed checkpoint directory"

    def __init__(self, path: Path) -> None:
        client = deepspeed.client_state(path)
        super().__init__(path, (client.get("hyper_parameters") or {}).get("config"), client.get(RECORD_KEY))
        self._state: dict[str, torch.Tensor] | None = None

    def _consolidated(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            self._state = deepspeed.consolidated_state(self.path)
        return self._state

    def module_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._consolidated().items()}

    def module_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from self._consolidated().items()
