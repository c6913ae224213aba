"""LoRA fine-tuning of the backbone through PEFT, with the new audio-token rows trainable and MCTP training fully.

    backbone.model (HF causal LM) --peft.inject_adapter_in_model--> q/k/v/o/gate/up/down_proj wrapped as
        base_layer (frozen) + lora_A / lora_B (trainable), in place (no PeftModel wrapper: the Backbone's
        accessors and the MCTP stack's shared parts stay where they are)
    embed_tokens.weight, lm_head.weight   trainable, gradient masked to the audio rows (markers + codes): every
                                          other row gets an exact zero gradient (and no weight decay), so it
                                          never moves; a tied head is the same tensor, masked once
    everything else in the backbone       frozen (norms, the text rows)
    MCTP stack                            untouched: trains as the stage's freeze rules say (stage 4: fully)

Export merges: `merged_adapters(lm)` swaps every adapted layer for a plain `nn.Linear` holding
W + scaling * B @ A for as long as the context lasts, so `export_pretrained` writes a plain reference-layout
checkpoint whose logits equal the adapted model's (it does this on its own when handed an adapted model).
PEFT is imported only when adapters are applied.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAReport:
    adapter_params: int  # lora_A + lora_B of every adapted layer
    row_params: int  # trainable rows of the embedding and (untied) LM head
    adapted_layers: int
    row_param_names: tuple[str, ...]  # names (under the module LoRA was applied to) of the row-masked tensors

    def __str__(self) -> str:
        return (f"LoRA: {self.adapted_layers} adapted layers, {self.adapter_params:,} adapter parameters, "
                f"{self.row_params:,} parameters in trainable audio-token rows")


class BackboneLoRA:
    """LoRA adapters on the backbone's attention and MLP projections (a `model.lora` config node).

    Args:
        rank: LoRA rank r.
        alpha: LoRA alpha (the update is scaled by alpha / r).
        dropout: dropout on the adapter's input (training only).
        target_modules: names of the backbone's linear layers to adapt (PEFT matches the name suffix).
        train_audio_rows: keep the audio markers' and audio codes' rows of the token embedding and LM head
            trainable (the rows a speech fine-tune must move); all other rows stay frozen.
        seed: seed of the adapters' random initialisation (lora_A; lora_B starts at zero).
    """

    def __init__(self, rank: int = 16, alpha: float = 32.0, dropout: float = 0.05,
                 target_modules: list[str] | tuple[str, ...] = DEFAULT_TARGETS, train_audio_rows: bool = True,
                 seed: int = 0) -> None:
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if not target_modules:
            raise ValueError("LoRA needs at least one target module (e.g. q_proj, v_proj)")
        self.rank, self.alpha, self.dropout = int(rank), float(alpha), float(dropout)
        self.target_modules = list(target_modules)
        self.train_audio_rows, self.seed = train_audio_rows, seed

    def apply(self, lm: nn.Module) -> LoRAReport:
        """Inject the adapters into `lm.backbone` in place and set what trains there (see the module docstring)."""
        from peft import LoraConfig, inject_adapter_in_model

        backbone = lm.backbone
        present = {name.rsplit(".", 1)[-1] for name, _ in backbone.model.named_modules()}
        absent = [t for t in self.target_modules if t not in present]
        if absent:
            raise ValueError(f"LoRA target modules {absent} are not in the backbone "
                             f"({type(backbone.model).__name__}); its linear layers include "
                             f"{sorted(n for n in present if n.endswith('_proj'))}")
        for p in backbone.parameters():
            p.requires_grad_(False)
        config = LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=list(self.target_modules), bias="none")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            inject_adapter_in_model(config, backbone.model)
        adapter = sum(p.numel() for n, p in backbone.named_parameters() if ".lora_" in n)
        layers = sum(1 for _ in adapter_layers(lm))
        rows, names = 0, []
        if self.train_audio_rows:
            index = audio_rows(backbone.audio_vocab)
            seen: set[int] = set()
            for module_name, weight in (("backbone.embed_tokens", backbone.embed_tokens.weight),
                                        ("backbone.lm_head", backbone.lm_head.weight)):
                if id(weight) in seen:  # a tied head is the embedding: one tensor, one mask
                    continue
                seen.add(id(weight))
                mask_rows(weight, index)
                rows += len(index) * weight.shape[1]
                names.append(_param_name(lm, weight))
        return LoRAReport(adapter, rows, layers, tuple(names))


def audio_rows(vocab) -> torch.Tensor:
    """Ids of the audio markers and the audio codes (1-D, sorted)."""
    codes = torch.arange(vocab.audio_offset, vocab.audio_offset + vocab.codebook_size)
    markers = torch.tensor([vocab.begin_of_audio, vocab.end_of_audio, vocab.placeholder])
    return torch.unique(torch.cat([markers, codes]))


def mask_rows(weight: nn.Parameter, rows: torch.Tensor) -> None:
    """Make `weight` trainable in `rows` only: its gradient is zero in every other row (a hook on the tensor)."""
    mask = torch.zeros(weight.shape[0], 1, dtype=torch.bool)
    mask[rows] = True
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * mask.to(grad.device))
    weight._vita_trainable_rows = rows  # read by trainable-parameter counts


def trainable_parameter_count(module: nn.Module) -> int:
    """Parameters that can change: row-masked tensors count their trainable rows only."""
    n = 0
    for p in module.parameters():
        if p.requires_grad:
            rows = getattr(p, "_vita_trainable_rows", None)
            n += p.numel() if rows is None else len(rows) * p[0].numel()
    return n


def _param_name(module: nn.Module, tensor: torch.Tensor) -> str:
    return next(n for n, p in module.named_parameters() if p is tensor)


def adapter_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, layer) of every PEFT LoRA layer under `module`; nothing without PEFT loaded."""
    if "peft" not in sys.modules:
        return
    from peft.tuners.lora import LoraLayer

    for name, m in module.named_modules():
        if isinstance(m, LoraLayer):
            yield name, m


def has_adapters(module: nn.Module) -> bool:
    return next(adapter_layers(module), None) is not None


def _merged_copy(layer: nn.Module) -> nn.Module:
    """A plain copy of the layer's base module with W + sum of the active adapters' deltas (no grad)."""
    base = layer.get_base_layer()
    if layer.merged:
        raise ValueError("adapters already merged into their base layers (peft merge()): unmerge them first")
    merged = copy.copy(base)
    merged._parameters, merged._buffers, merged._modules = dict(base._parameters), dict(base._buffers), {}
    with torch.no_grad():
        weight = base.weight.detach().clone()
        for name in layer.active_adapters:
            if name in layer.lora_A:
                weight += layer.get_delta_weight(name).to(weight.dtype)
    merged._parameters["weight"] = nn.Parameter(weight, requires_grad=False)
    return merged


@contextlib.contextmanager
def merged_adapters(module: nn.Module) -> Iterator[nn.Module]:
    """Inside: every LoRA layer of `module` is replaced by a plain layer with its adapters merged in (state dict
    names as without LoRA); on exit the adapted layers are back, untouched. A no-op without adapters."""
    swapped = []
    try:
        for name, layer in list(adapter_layers(module)):
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, _merged_copy(layer))
            swapped.append((parent, child, layer))
        yield module
    finally:
        for parent, child, layer in swapped:
            setattr(parent, child, layer)
