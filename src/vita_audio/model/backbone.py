"""The LLM backbone: any HF causal LM from a local directory, or a named preset built with random weights.

    tokenizer (local dir or "tiny") --extend_tokenizer--> + audio vocabulary
    model (local dir or config dict) --resize_token_embeddings(pad_to_multiple_of=8)--> Backbone

Nothing is downloaded: `from_pretrained` runs with `local_files_only=True` and `trust_remote_code=False`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from vita_audio.model.masking import packed_attention_kwargs
from vita_audio.model.text_tokenizer import load_text_tokenizer
from vita_audio.model.vocab import AudioVocab, extend_tokenizer


class Backbone(nn.Module):
    """An HF causal LM with the audio vocabulary, exposing hidden states and its shared parts.

    Args:
        audio_codebook_size: codes of the configured audio tokenizer (one vocabulary entry each).
        pretrained: local directory of an HF checkpoint; mutually exclusive with `config`.
        config: HF config fields (with `model_type`) for a randomly initialised model (named presets).
        tokenizer: "tiny" or a local tokenizer directory; defaults to `pretrained`.
        attn_implementation: "sdpa" (default, CPU and GPU), "eager", or "flash_attention_2" where installed.
        gradient_checkpointing: trade compute for activation memory.
        pad_vocab_to_multiple_of: the embedding rows are padded to a multiple of this (8, as the reference).
        special_tokens: the special tokens added before the audio codes, in order: a layout name of
            `vita_audio.model.vocab.SPECIAL_TOKEN_LAYOUTS` ("audio_markers", "vita_audio" = the reference's 20,
            "vita_audio_plus") or an explicit list holding the three audio markers.
        extra_special_tokens: superseded by `special_tokens`; only the empty default is accepted (configs
            stored in older checkpoints carry it).
        seed: seed of the random initialisation of config-built models (keeps presets reproducible).
        dtype: dtype the weights are built / loaded in ("float32", "bfloat16", ...): the training dtype. A real
            checkpoint is read straight into it (bf16 weights of a 7B model: 15 GB of host memory per rank
            instead of 30 GB in float32). Keep float32 with `precision=*-mixed` under DDP (its master weights
            are the parameters); DeepSpeed (which casts the model to bf16 and keeps fp32 master weights in the
            optimizer) and `precision=bf16-true` can load in bfloat16.
    """

    def __init__(
        self,
        audio_codebook_size: int,
        pretrained: str | None = None,
        config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        attn_implementation: str = "sdpa",
        gradient_checkpointing: bool = False,
        pad_vocab_to_multiple_of: int = 8,
        special_tokens: str | list[str] = "audio_markers",
        extra_special_tokens: tuple[str, ...] | list[str] = (),
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ValueError("Backbone needs exactly one of `pretrained` (a local directory) or `config` (a preset)")
        if pretrained is not None and not (Path(pretrained).expanduser() / "config.json").is_file():
            raise FileNotFoundError(
                f"no HF checkpoint at {pretrained!r} (config.json missing). Download the weights yourself and "
                "point model.backbone.pretrained at the local directory: nothing is fetched at run time."
            )
        tok_source = tokenizer or pretrained
        if tok_source is None:
            raise ValueError("a config-built backbone needs `tokenizer` ('tiny' or a local directory)")
        if extra_special_tokens:
            raise ValueError(
                "extra_special_tokens is superseded by special_tokens: give the whole ordered list (or a layout "
                "name such as 'vita_audio', the reference's 20 specials) as model.backbone.special_tokens"
            )
        torch_dtype = getattr(torch, str(dtype).removeprefix("torch."), None)
        if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
            raise ValueError(f"Backbone dtype {dtype!r} is not a floating-point torch dtype ('float32', 'bfloat16')")
        self.tokenizer = load_text_tokenizer(str(tok_source))
        self.audio_vocab: AudioVocab = extend_tokenizer(self.tokenizer, audio_codebook_size, special_tokens)

        if pretrained is not None:
            path = Path(pretrained).expanduser()
            self.model = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False, attn_implementation=attn_implementation,
                dtype=torch_dtype,
            )
        else:
            fields = dict(config)
            model_type = fields.pop("model_type")
            hf_config = AutoConfig.for_model(model_type, **fields)
            hf_config._attn_implementation = attn_implementation
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = AutoModelForCausalLM.from_config(hf_config, dtype=torch_dtype)

        if len(self.tokenizer) > self.model.get_input_embeddings().num_embeddings or pretrained is None:
            self.model.resize_token_embeddings(
                len(self.tokenizer), pad_to_multiple_of=pad_vocab_to_multiple_of, mean_resizing=False
            )
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # -- shared parts (used by the MCTP stack) -------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().num_embeddings

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def final_norm(self) -> nn.Module:
        return self.model.model.norm

    @property
    def lm_head(self) -> nn.Linear:
        return self.model.get_output_embeddings()

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.model.layers

    @property
    def rotary_emb(self) -> nn.Module:
        return self.model.model.rotary_emb

    # -- forward -------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor | None = None,  # (B, T), restart at 0 per packed sample
        sample_ids: torch.Tensor | None = None,  # (B, T), packed sample index per token, -1 for padding
    ) -> torch.Tensor:
        """Final-normed hidden states (B, T, H); logits are left to the caller (chunked loss or `lm_head`).

        With `sample_ids`, attention stays inside each packed sample whatever the attention implementation and
        batch size (`masking.packed_attention_kwargs`: transformers' packed mask from the positions for sdpa /
        eager, varlen boundaries for flash attention).
        """
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        attention: dict = {"attention_mask": None}
        if sample_ids is not None:
            impl = self.model.config._attn_implementation
            attention = packed_attention_kwargs(sample_ids, position_ids, impl, self.embed_tokens.weight.dtype)
        out = self.model.model(input_ids=input_ids, position_ids=position_ids, use_cache=False, **attention)
        return out.last_hidden_state  # (B, T, H), already through the final norm

    def step(
        self,
        input_ids: torch.Tensor,  # (B, q) the tokens the cache has not seen yet
        attention_mask: torch.Tensor,  # (B, S + q) 1 = real token, 0 = (left) padding; S = tokens in `cache`
        position_ids: torch.Tensor,  # (B, q)
        cache,  # a transformers Cache (DynamicCache), extended in place
    ) -> torch.Tensor:
        """One cached forward for decoding: final-normed hidden states (B, q, H) of the new tokens.

        The 2-D padding mask goes to transformers' own mask builder (it sizes the causal mask against the cache,
        so a block of q > 1 new tokens is causal inside itself and sees all S cached ones).
        """
        out = self.model.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               cache=cache, use_cache=True)
        return out.last_hidden_state  # (B, q, H)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the HF model and the extended tokenizer to a local directory."""
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
