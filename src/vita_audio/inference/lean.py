"""Lean model calls for the decoder's steps: the same arithmetic as `Backbone.step` and `MCTPStack.level_step`,
without transformers' per-call machinery.

A decode step at the demo's shape (4 layers, hidden 256) spent about a quarter of a backbone step outside the
layers' own work (`experiments/profile_step.py`; RESULTS.md, "Per-step overhead"): the HF model forward's wrappers
(config defaults, output capture, keyword deprecation) and transformers' general mask builder, which re-derives at
every call what the decoder already knows. Here:

    backbone step   embed -> mask -> rotary -> each decoder layer (with the KV cache) -> final norm
                    = Qwen2Model.forward's own sequence of calls, on the same modules with the same arguments
    MCTP level      mask -> `MCTPStack.module_forward` (the module's own forward) with the level's cache
    mask            rows without padding under SDPA: None for one new token or an empty cache (transformers
                    returns None there too: `_ignore_causal_mask_sdpa`), else the same (B, 1, q, S + q) boolean
                    causal block transformers builds; any other case (padding, eager attention): transformers'
                    `create_causal_mask` itself

so every layer sees bit for bit the tensors it saw through transformers, and the outputs are unchanged (tests:
`tests/inference/test_lean.py`). `lean_supported` says when the backbone is one whose forward this mirrors
(Qwen2 / Qwen3 / Llama decoders with full attention everywhere); otherwise the decoder calls transformers.
"""

from __future__ import annotations

import torch
from transformers.masking_utils import create_causal_mask

LEAN_MODEL_TYPES = ("qwen2", "qwen3", "llama")  # base models whose forward is embed -> layers -> norm, nothing else


def lean_supported(lm) -> bool:
    """True when the backbone's HF model is one of `LEAN_MODEL_TYPES` with every layer on full attention, under
    SDPA or eager attention, with the usual parts (embed_tokens, layers, norm, rotary_emb)."""
    hf = getattr(lm.backbone.model, "model", None)
    cfg = getattr(hf, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in LEAN_MODEL_TYPES:
        return False
    if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or ()):
        return False
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    return all(hasattr(hf, part) for part in ("embed_tokens", "layers", "norm", "rotary_emb"))


def causal_mask(config, embeds: torch.Tensor, mask2d: torch.Tensor, cache, positions: torch.Tensor,
                cached: int, unpadded: bool, layer_idx: int | None = None) -> torch.Tensor | None:
    """The attention mask of q new rows after `cached` cached ones, as transformers would build it.

    embeds (B, q, H); mask2d (B, cached + q) 1 = real; `unpadded`: every entry of mask2d is 1 (the caller knows)."""
    B, q = embeds.shape[:2]
    if unpadded and getattr(config, "_attn_implementation", None) == "sdpa":
        if q == 1 or cached == 0:
            return None  # SDPA's own (is_causal) masking, as transformers does
        kv = cached + q
        keys = torch.arange(kv, device=embeds.device)  # (kv,)
        block = keys[None, :] <= torch.arange(cached, kv, device=embeds.device)[:, None]  # (q, kv) causal
        return block[None, None].expand(B, 1, q, kv).contiguous()  # (B, 1, q, kv) bool
    kwargs = {} if layer_idx is None else {"layer_idx": layer_idx}
    return create_causal_mask(config=config, inputs_embeds=embeds, attention_mask=mask2d, cache=cache,
                              position_ids=positions, **kwargs)


def backbone_step(lm, input_ids: torch.Tensor, mask2d: torch.Tensor, positions: torch.Tensor, cache, cached: int,
                  unpadded: bool) -> torch.Tensor:
    """`Backbone.step` (final-normed hidden states (B, q, H) of the q new tokens), called part by part.

    input_ids (B, q); mask2d (B, cached + q); positions (B, q); `cache` is extended in place."""
    hf = lm.backbone.model.model
    x = hf.embed_tokens(input_ids)  # (B, q, H)
    attn = causal_mask(hf.config, x, mask2d, cache, positions, cached, unpadded)
    pe = hf.rotary_emb(x, positions)  # 2 x (B, q, head_dim)
    for layer in hf.layers[: hf.config.num_hidden_layers]:
        x = layer(x, attention_mask=attn, position_embeddings=pe, position_ids=positions, cache=cache,
                  use_cache=True)  # (B, q, H)
    return hf.norm(x)  # (B, q, H)


def level_step(lm, k: int, token_embeds: torch.Tensor, h_prev: torch.Tensor, positions: torch.Tensor,
               window_mask: torch.Tensor, cache, cached: int, unpadded: bool) -> torch.Tensor:
    """`MCTPStack.level_step` (level k on its W backlog windows after `cached` ones -> (B, W, H)) with the
    decoder's own mask: token_embeds, h_prev (B, W, H); positions (B, W); window_mask (B, cached + W)."""
    mctp, bb = lm.mctp, lm.backbone
    attn = causal_mask(mctp.config, token_embeds, window_mask, cache, positions, cached, unpadded,
                       layer_idx=mctp.num_backbone_layers + k)
    return mctp.module_forward(k, token_embeds, h_prev, positions, attn, bb.final_norm, bb.rotary_emb, cache=cache,
                               use_cache=True)
