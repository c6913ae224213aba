"""MCTP: a cascade of N small predictors on top of the backbone (method spec, section 2).

Module k (k = 0..N-1) is one decoder layer of the backbone's own class plus two RMSNorms and a 2H -> H projection;
the token embedding, the final norm and the LM head are shared with the backbone and passed in at call time.

Alignment, for a row of T tokens x[0..T-1] (h^0 = the backbone's final-normed hidden, h^0[t] predicts x[t+1]):

    level k, window t = 0..T-k-2:  h^(k+1)[t] = module_k( E(x[t+k+1]), h^k[t] )   predicts x[t+k+2]
                                   rotary position = position_ids[t+k+1]; attention over windows 0..t

so module k has T-k-1 windows. In packed rows a window is valid only when its whole chain x[t..t+k+1] lies in one
sample; valid windows attend only to valid windows of the same sample, invalid ones only to themselves (their
targets are masked by `mctp_targets`), so a packed row gives exactly what each sample gives alone.
"""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoModel, PretrainedConfig
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask

from vita_audio.model.masking import attention_mask_for


def decoder_layer_class(config: PretrainedConfig) -> type[nn.Module]:
    """The decoder-layer class of an HF config's model type (Qwen2DecoderLayer, LlamaDecoderLayer, ...).

    Found through the base model class that AutoModel maps the config to: its `_no_split_modules` names the layer,
    which lives in the same modeling module.
    """
    try:
        model_cls = AutoModel._model_mapping[type(config)]
    except KeyError as err:
        raise ValueError(
            f"no HF base model is registered for config type {type(config).__name__} "
            f"(model_type={getattr(config, 'model_type', None)!r}); pass `layer_cls` to MCTPStack explicitly"
        ) from err
    module = sys.modules[model_cls.__module__]
    for name in getattr(model_cls, "_no_split_modules", None) or ():
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and name.endswith("DecoderLayer"):
            return cls
    raise ValueError(
        f"could not find the decoder layer class of {model_cls.__name__}; pass `layer_cls` to MCTPStack explicitly"
    )


def segment_index(sample_ids: torch.Tensor) -> torch.Tensor:
    """Index of the contiguous run of equal sample ids each token is in: (B, T) -> (B, T), 0, 1, 2, ... per row.

    Two positions t <= u lie in one packed sample (with nothing else in between) iff their segment indices agree.
    """
    change = (sample_ids[:, 1:] != sample_ids[:, :-1]).long()  # (B, T-1)
    return torch.cat([torch.zeros_like(sample_ids[:, :1]), change.cumsum(1)], dim=1)  # (B, T)


def window_sample_ids(segments: torch.Tensor, level: int) -> torch.Tensor:
    """Attention-group id of each window of `level`: (B, T) segment indices -> (B, T-level-1).

    Window t of level k uses tokens x[t..t+k+1]; it keeps its segment index when all of them are in one segment,
    otherwise it gets a unique negative id, so that it attends (and is attended by) nothing but itself.
    """
    W = segments.shape[1] - level - 1
    start, end = segments[:, :W], segments[:, level + 1 : level + 1 + W]  # (B, W) each
    lonely = -1 - torch.arange(W, device=segments.device).expand_as(start)  # (B, W) unique ids < 0
    return torch.where(start == end, start, lonely)  # (B, W)


def _rms_norm_like(layer: nn.Module, hidden_size: int, eps: float) -> nn.Module:
    """An RMSNorm of the backbone's kind (the class of the layer's own input norm), weight 1."""
    norm_cls = type(layer.input_layernorm)
    return norm_cls(hidden_size, eps=eps)


class MCTPStack(nn.Module):
    """N MCTP modules; parameters: `layers[k]`, `embed_norms[k]`, `hidden_norms[k]`, `projs[k]`.

    Args:
        backbone_config: the backbone's HF config (hidden size, norms, attention, rotary settings).
        num_modules: N (reference 10).
        layer_cls: decoder-layer class; found from the config's model type when None.
        gradient_checkpointing: recompute each module's decoder layer in the backward pass.
    """

    def __init__(
        self,
        backbone_config: PretrainedConfig,
        num_modules: int = 10,
        layer_cls: type[nn.Module] | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if num_modules < 1:
            raise ValueError(f"num_modules must be >= 1, got {num_modules}")
        L, H = backbone_config.num_hidden_layers, backbone_config.hidden_size
        self.num_backbone_layers = L
        self.num_modules = num_modules
        self.hidden_size = H
        self.gradient_checkpointing = gradient_checkpointing
        # The layers sit after the backbone's L layers (layer_idx L + k, as in the reference layout): extend the
        # per-layer fields of a private copy of the config so the layer classes find their entries.
        config = copy.deepcopy(backbone_config)
        config.num_hidden_layers = L + num_modules
        if getattr(config, "layer_types", None) is not None:
            config.layer_types = list(backbone_config.layer_types)[:L] + ["full_attention"] * num_modules
        self.config = config
        layer_cls = layer_cls or decoder_layer_class(backbone_config)
        eps = getattr(config, "rms_norm_eps", 1e-6)
        self.init_std = getattr(config, "initializer_range", 0.02)

        self.layers = nn.ModuleList([layer_cls(config, L + k) for k in range(num_modules)])
        self.embed_norms = nn.ModuleList([_rms_norm_like(self.layers[k], H, eps) for k in range(num_modules)])
        self.hidden_norms = nn.ModuleList([_rms_norm_like(self.layers[k], H, eps) for k in range(num_modules)])
        self.projs = nn.ModuleList([nn.Linear(2 * H, H, bias=False) for _ in range(num_modules)])
        self.reset_parameters()

    @classmethod
    def for_backbone(cls, backbone: nn.Module, num_modules: int = 10, gradient_checkpointing: bool = False):
        """Build a stack matching a `Backbone` (convenience for configs: `MCTPStack.for_backbone(bb, 10)`)."""
        return cls(backbone.config, num_modules=num_modules, gradient_checkpointing=gradient_checkpointing)

    # -- initialisation ------------------------------------------------------------------------------------
    def _init_linear(self, linear: nn.Linear) -> None:
        nn.init.normal_(linear.weight, mean=0.0, std=self.init_std)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """HF-style init: every Linear N(0, initializer_range) with zero bias, every norm weight 1."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                self._init_linear(module)
            elif hasattr(module, "weight") and isinstance(module.weight, nn.Parameter) and module.weight.dim() == 1:
                nn.init.ones_(module.weight)

    @torch.no_grad()
    def init_module_from_layer(self, k: int, layer: nn.Module) -> None:
        """Stage 2: module k's decoder layer = a copy of `layer` (the backbone's last); proj random, norms at 1."""
        self.layers[k].load_state_dict(layer.state_dict())
        self._init_linear(self.projs[k])
        nn.init.ones_(self.embed_norms[k].weight)
        nn.init.ones_(self.hidden_norms[k].weight)

    @torch.no_grad()
    def clone_first_module(self) -> None:
        """Stage 3: every module = a clone of (trained) module 0: layer, both norms and proj."""
        for k in range(1, self.num_modules):
            for parts in (self.layers, self.embed_norms, self.hidden_norms, self.projs):
                parts[k].load_state_dict(parts[0].state_dict())

    # -- forward -------------------------------------------------------------------------------------------
    def _attention_mask(self, window_ids: torch.Tensor | None, W: int, dtype: torch.dtype, device) -> torch.Tensor:
        """The mask in the form the configured attention implementation takes: (B, 1, W, W) or None."""
        impl = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if window_ids is None and impl != "eager":
            return None  # one sample per row, every window valid: the kernel's own causal mask
        if window_ids is None:
            window_ids = torch.zeros(1, W, dtype=torch.long, device=device)
        if impl.startswith("flash_attention"):  # windows whose chain crosses a sample must attend only to themselves
            raise ValueError("MCTP with packed rows (sample_ids) needs attn_implementation 'sdpa' or 'eager'")
        return attention_mask_for(window_ids, impl, dtype)  # (B, 1, W, W)

    def module_forward(
        self,
        k: int,
        token_embeds: torch.Tensor,  # (B, W, H) E(x[t+k+1]) for the windows
        h_prev: torch.Tensor,  # (B, W, H) h^k of the same windows
        position_ids: torch.Tensor,  # (B, W) rotary positions of the embedded tokens
        attention_mask: torch.Tensor | None,  # as `_attention_mask` returns
        final_norm: nn.Module,
        rotary_emb: nn.Module,
        **layer_kwargs,
    ) -> torch.Tensor:
        """One module on a block of windows: final_norm(layer_k(proj_k([embed_norm_k(e), hidden_norm_k(h)])))."""
        x = torch.cat([self.embed_norms[k](token_embeds), self.hidden_norms[k](h_prev)], dim=-1)  # (B, W, 2H)
        x = self.projs[k](x)  # (B, W, H)
        cos_sin = rotary_emb(x, position_ids)  # 2 x (B, W, head_dim)
        layer = self.layers[k]
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            def run(x_, cos_, sin_):
                return layer(x_, attention_mask=attention_mask, position_ids=position_ids,
                             position_embeddings=(cos_, sin_), **layer_kwargs)

            x = checkpoint(run, x, *cos_sin, use_reentrant=False)
        else:
            x = layer(x, attention_mask=attention_mask, position_ids=position_ids, position_embeddings=cos_sin,
                      **layer_kwargs)  # (B, W, H)
        return final_norm(x)  # (B, W, H)

    def forward(
        self,
        hidden: torch.Tensor,  # (B, T, H) final-normed backbone output h^0
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor | None,  # (B, T); None = 0..T-1
        sample_ids: torch.Tensor | None,  # (B, T) packed sample index, -1 padding; None = one sample per row
        embed_tokens: nn.Module,
        final_norm: nn.Module,
        rotary_emb: nn.Module,
        num_levels: int | None = None,
        inputs_embeds: torch.Tensor | None = None,  # (B, T, H) E(x) if already computed (e.g. detached)
    ) -> list[torch.Tensor]:
        """The cascade; returns [h^1, ..., h^n], level k of shape (B, T-k-1, H) (n = num_levels or N; fewer when
        T <= n, as a level needs at least one window).

            x[t+1]..x[T-1] --E--> embed_norm_0 --+
                                                 cat -> proj_0 -> layer_0 (pos of x[t+1]) -> final_norm -> h^1[t]
            h^0[t]  (t = 0..T-2) -- hidden_norm_0 -+                                                      |
                                                                                                          v
            x[t+2]..x[T-1] --E--> embed_norm_1 --+                                                 (first T-2)
                                                 cat -> proj_1 -> layer_1 (pos of x[t+2]) -> final_norm -> h^2[t]
            h^1[t]  (t = 0..T-3) -- hidden_norm_1 -+                                                   ...
        """
        n = self.num_modules if num_levels is None else num_levels
        if not 0 <= n <= self.num_modules:
            raise ValueError(f"num_levels must be in [0, {self.num_modules}], got {num_levels}")
        T = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand_as(input_ids)
        if inputs_embeds is None:
            inputs_embeds = embed_tokens(input_ids)  # (B, T, H)
        segments = None if sample_ids is None else segment_index(sample_ids)  # (B, T)
        h = hidden  # (B, T, H)
        levels: list[torch.Tensor] = []
        for k in range(n):
            W = T - k - 1  # windows of level k
            if W <= 0:
                break
            window_ids = None if segments is None else window_sample_ids(segments, k)  # (B, W)
            mask = self._attention_mask(window_ids, W, h.dtype, h.device)
            h = self.module_forward(
                k,
                inputs_embeds[:, k + 1 :],  # (B, W, H) E(x[t+k+1])
                h[:, :W],  # (B, W, H) h^k[t]
                position_ids[:, k + 1 :],  # (B, W)
                mask,
                final_norm,
                rotary_emb,
            )  # (B, W, H) = h^(k+1)
            levels.append(h)
        return levels

    # -- incremental decoding --------------------------------------------------------------------------------
    def level_step(
        self,
        k: int,
        token_embeds: torch.Tensor,  # (B, W, H) E(x[t+k+1]) of the backlog windows t
        h_prev: torch.Tensor,  # (B, W, H) h^k of the same windows
        position_ids: torch.Tensor,  # (B, W) rotary positions of the embedded tokens
        window_mask: torch.Tensor,  # (B, S + W) 1 = a real window (S windows already in `cache`), 0 = padding
        cache: Cache,
        final_norm: nn.Module,
        rotary_emb: nn.Module,
    ) -> torch.Tensor:
        """Level k on its backlog of unseen windows, attending to the S windows in its own `cache` -> (B, W, H).

        The mask comes from transformers' builder sized against this level's cache layer (`layer_idx` L + k):
        the backlog is a block of W queries after S cached keys, causal inside the block (equal to a full
        recompute of the level, which `forward` does).
        """
        mask = create_causal_mask(
            config=self.config, inputs_embeds=token_embeds, attention_mask=window_mask, cache=cache,
            position_ids=position_ids, layer_idx=self.num_backbone_layers + k,
        )
        return self.module_forward(k, token_embeds, h_prev, position_ids, mask, final_norm, rotary_emb,
                                   cache=cache, use_cache=True)
