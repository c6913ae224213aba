"""The VITA-Audio language model: a backbone plus an optional MCTP stack sharing its embedding, norm and head."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from vita_audio.model.adapter import AudioAdapter, scatter_audio
from vita_audio.model.backbone import Backbone
from vita_audio.model.masking import packed_attention_kwargs
from vita_audio.model.mctp import MCTPStack


class VitaAudioLM(nn.Module):
    """Backbone + MCTP stack (None = plain backbone, as in stage 1 or a Vanilla model).

    Training uses `hidden_states` with the chunked losses; `forward` returns full logits (inference, export checks).

    Plus variants add a continuous audio encoder (frozen, e.g. SenseVoice-Small) and an adapter (encoder frames ->
    input embeddings): `audio_features` (N, D), the encoder frames of every placeholder position of the batch in
    row-major order, are mapped by the adapter and scattered at the `<|context_of_audio|>` positions of the input
    embeddings (which the backbone and the MCTP cascade then read instead of the token embeddings). In training the
    frames come from the feature cache; the encoder runs at inference (`encode_audio`) and is stored on export.
    """

    def __init__(
        self,
        backbone: Backbone,
        mctp: MCTPStack | None = None,
        audio_encoder: nn.Module | None = None,
        audio_adapter: AudioAdapter | Callable[[int, int], AudioAdapter] | None = None,
    ) -> None:
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
        if (audio_encoder is None) != (audio_adapter is None):
            raise ValueError("a Plus model needs both audio_encoder and audio_adapter (or neither)")
        if audio_encoder is not None:
            if not isinstance(audio_adapter, nn.Module):  # a factory (encoder_dim, hidden_size) -> adapter
                audio_adapter = audio_adapter(audio_encoder.dim, backbone.hidden_size)
            if (audio_adapter.encoder_dim, audio_adapter.hidden_size) != (audio_encoder.dim, backbone.hidden_size):
                raise ValueError(f"adapter maps {audio_adapter.encoder_dim} -> {audio_adapter.hidden_size}, the "
                                 f"encoder gives {audio_encoder.dim}, the backbone's width is {backbone.hidden_size}")
            if getattr(backbone.audio_vocab, "context", None) is None:
                raise ValueError("a Plus model needs <|context_of_audio|> in its vocabulary: use a Plus special-token "
                                 "layout (model.backbone.special_tokens=vita_audio_plus or audio_markers_plus)")
            audio_encoder.requires_grad_(False)  # frozen in every stage
        self.audio_encoder = audio_encoder
        self.audio_adapter = audio_adapter

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | str | None = None,
                        device: torch.device | str | None = None, attn_implementation: str = "sdpa",
                        device_map: str | dict | None = None, max_memory: dict | None = None,
                        offload_dir: str | Path | None = None) -> VitaAudioLM:
        """Load any checkpoint (exported / published directory, .ckpt, weights .safetensors, DeepSpeed directory),
        weights straight onto `device` (None = the CPU) or spread by `device_map` ("auto" within `max_memory`, or a
        dict module prefix -> device / "disk" with `offload_dir`), with its `generation_config`:
        `vita_audio.checkpoint.load_model`."""
        from vita_audio.checkpoint import load_model

        return load_model(path, dtype=dtype, device=device, attn_implementation=attn_implementation,
                          device_map=device_map, max_memory=max_memory, offload_dir=offload_dir)

    def save_pretrained(self, path: str | Path, max_shard_size: int | str = "5GB") -> Path:
        """Write an HF-style directory in the reference layout (sharded above `max_shard_size`) with this model's
        `generation_config`: `vita_audio.checkpoint.export_pretrained`."""
        from vita_audio.checkpoint import export_pretrained

        return export_pretrained(self, path, max_shard_size=max_shard_size)

    @property
    def is_plus(self) -> bool:
        return self.audio_encoder is not None

    def train(self, mode: bool = True) -> VitaAudioLM:
        super().train(mode)
        if self.audio_encoder is not None:
            self.audio_encoder.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def encode_audio(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Plus: encoder frames (N, D) of a waveform (one placeholder position each)."""
        if self.audio_encoder is None:
            raise ValueError("this model has no continuous audio encoder (not a Plus variant): its audio inputs "
                             "are audio tokens")
        return self.audio_encoder.encode(wav, sample_rate)

    def input_embeddings(self, input_ids: torch.Tensor, audio_features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, H) token embeddings, with the adapter's image of `audio_features` (N, D) at the placeholders."""
        embeds = self.backbone.embed_tokens(input_ids)
        if audio_features is None:
            return embeds
        if self.audio_adapter is None:
            raise ValueError("audio_features given to a model without an audio adapter (not a Plus variant)")
        w = self.audio_adapter.mlp[0].weight
        audio = self.audio_adapter(audio_features.to(device=w.device, dtype=w.dtype))  # (N, H)
        return scatter_audio(embeds, input_ids, self.backbone.audio_vocab.context, audio)

    def backbone_hidden(
        self,
        inputs_embeds: torch.Tensor,  # (B, T, H)
        position_ids: torch.Tensor,  # (B, T)
        sample_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`Backbone.forward` from input embeddings: final-normed hidden states (B, T, H), packed rows kept apart."""
        bb = self.backbone
        attention: dict = {"attention_mask": None}
        if sample_ids is not None:
            impl = bb.model.config._attn_implementation
            attention = packed_attention_kwargs(sample_ids, position_ids, impl, bb.embed_tokens.weight.dtype)
        out = bb.model.model(inputs_embeds=inputs_embeds, position_ids=position_ids, use_cache=False, **attention)
        return out.last_hidden_state

    def step_embeds(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                    cache) -> torch.Tensor:
        """`Backbone.step` from input embeddings (the prefill of a Plus prompt): (B, q, H)."""
        out = self.backbone.model.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                        position_ids=position_ids, cache=cache, use_cache=True)
        return out.last_hidden_state

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
        audio_features: torch.Tensor | None = None,  # (N, D) Plus: encoder frames of the placeholders
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
            if audio_features is not None:  # Plus: adapter frames scattered into the embeddings
                embeds = self.input_embeddings(input_ids, audio_features)  # (B, T, H)
                h0 = self.backbone_hidden(embeds, position_ids, sample_ids)  # (B, T, H)
            else:
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
        audio_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits (B, T, V), [logits_k (B, T-k-1, V)]): full-vocabulary logits of the backbone and every module."""
        h0, levels = self.hidden_states(input_ids, position_ids, sample_ids, audio_features=audio_features)
        head = self.backbone.lm_head
        return head(h0), [head(h) for h in levels]
