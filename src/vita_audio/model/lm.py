"""The VITA-Audio language model: a backbone plus an optional MCTP stack sharing its embedding, norm and head."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from vita_audio.model.backbone import Backbone
from vita_audio.model.mctp import MCTPStack


class VitaAudioLM(nn.Module):
    """Backbone + MCTP stack (None = plain backbone, as in stage 1 or a Vanilla model).

    Training uses `hidden_states` with the chunked losses; `forward` returns full logits (inference, export checks).
    """

    def __init__(self, backbone: Backbone, mctp: MCTPStack | None = None) -> None:
        super().__init__()
        if mctp is not None:
            if mctp.hidden_size != backbone.hidden_size:
                raise ValueError(f"MCTP hidden size {mctp.hidden_size} != backbone hidden size {backbone.hidden_size}")
            if mctp.num_backbone_layers != len(backbone.layers):
                raise ValueError(
                    f"MCTP stack was built for {mctp.num_backbone_layers} backbone layers, backbone has "
                    f"{len(backbone.layers)}"
                )
        self.backbone = backbone
        self.mctp = mctp

    @property
    def num_mctp_modules(self) -> int:
        return 0 if self.mctp is None else self.mctp.num_modules

    def hidden_states(
        self,
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor | None = None,  # (B, T), restart at 0 per packed sample
        sample_ids: torch.Tensor | None = None,  # (B, T), -1 for padding
        backbone_grad: bool = True,
        num_levels: int | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(h^0 (B, T, H), [h^(k+1) (B, T-k-1, H) for each level]).

            input_ids -> backbone -> h^0 ------------------------> (main head)
                              \\--> E(x), h^0 -> MCTP cascade -> [h^1, ..., h^n]

        With `backbone_grad=False` (stages 2 and 3: frozen LLM) the backbone and the token embeddings run under
        `no_grad`, so the MCTP inputs are detached and no backbone activations are kept.
        """
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        frozen = contextlib.nullcontext() if backbone_grad else torch.no_grad()
        with frozen:
            h0 = self.backbone(input_ids, position_ids=position_ids, sample_ids=sample_ids)  # (B, T, H)
            embeds = None if self.mctp is None else self.backbone.embed_tokens(input_ids)  # (B, T, H)
        if self.mctp is None or num_levels == 0:
            return h0, []
        levels = self.mctp(
            h0, input_ids, position_ids, sample_ids,
            embed_tokens=self.backbone.embed_tokens,
            final_norm=self.backbone.final_norm,
            rotary_emb=self.backbone.rotary_emb,
            num_levels=num_levels,
            inputs_embeds=embeds,
        )
        return h0, levels

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor | None = None,
        sample_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits (B, T, V), [logits_k (B, T-k-1, V)]): full-vocabulary logits of the backbone and every module."""
        h0, levels = self.hidden_states(input_ids, position_ids, sample_ids)
        head = self.backbone.lm_head
        return head(h0), [head(h) for h in levels]
