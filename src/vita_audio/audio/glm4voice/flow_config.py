"""The `flow:` section of the decoder's config.yaml as a typed config (published field names)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """The `flow:` section of config.yaml (published field names; defaults = the GLM-4-Voice decoder's)."""

    input_size: int = 512
    output_size: int = 80
    spk_embed_dim: int = 192
    vocab_size: int = 16384
    input_frame_rate: float = 12.5
    # encoder (BlockConformerEncoder)
    enc_input_size: int = 512
    enc_output_size: int = 512
    enc_attention_heads: int = 8
    enc_linear_units: int = 2048
    enc_num_blocks: int = 6
    enc_block_size: int = 10
    enc_key_bias: bool = True
    # length_regulator (InterpolateRegulator)
    lr_channels: int = 80
    lr_sampling_ratios: tuple = (1, 1, 1, 1)
    lr_groups: int = 1
    # decoder (ConditionalCFM) and its estimator (ConditionalDecoder)
    sigma_min: float = 1e-6
    t_scheduler: str = "cosine"
    inference_cfg_rate: float = 0.7
    est_in_channels: int = 320
    est_out_channels: int = 80
    est_channels: tuple = (256, 256)
    est_attention_head_dim: int = 64
    est_n_blocks: int = 4
    est_num_mid_blocks: int = 12
    est_num_heads: int = 8

    @classmethod
    def from_yaml(cls, flow: dict[str, Any], source: str = "config.yaml") -> FlowConfig:
        """`flow` = the plain mapping under `flow:` (see yaml_config.plain)."""
        enc, lr = flow.get("encoder") or {}, flow.get("length_regulator") or {}
        dec = flow.get("decoder") or {}
        est, cfm = dec.get("estimator") or {}, dec.get("cfm_params") or {}
        for key, want in (("input_layer", "linear"), ("pos_enc_layer_type", "rel_pos_espnet"),
                          ("selfattention_layer_type", "block_rel_selfattn")):
            if key in enc and enc[key] != want:
                raise ValueError(f"{source}: flow.encoder.{key}={enc[key]!r}; only {want!r} (the GLM-4-Voice "
                                 "decoder's) is implemented")
        for key in ("use_cnn_module", "macaron_style"):
            if enc.get(key):
                raise ValueError(f"{source}: flow.encoder.{key}=True is not part of the GLM-4-Voice decoder")
        for where, sub, key, want in (("encoder", enc, "normalize_before", True),
                                      ("encoder", enc, "activation_type", "swish"),
                                      ("decoder.estimator", est, "act_fn", "gelu")):
            if key in sub and sub[key] != want:
                raise ValueError(f"{source}: flow.{where}.{key}={sub[key]!r}; only {want!r} (the GLM-4-Voice "
                                 "decoder's) is implemented")
        if cfm.get("solver", "euler") != "euler":
            raise ValueError(f"{source}: flow.decoder.cfm_params.solver={cfm['solver']!r}; only 'euler' exists")
        names = {f.name for f in dataclasses.fields(cls)}
        raw = {k: v for k, v in {**flow, **cfm}.items() if k in names}
        for prefix, sub in (("enc_", enc), ("lr_", lr), ("est_", est)):  # nested sections, prefixed here
            raw.update({prefix + k: v for k, v in sub.items() if prefix + k in names})
        cfg = cls(**raw)
        if cfg.enc_input_size != cfg.input_size:
            raise ValueError(f"{source}: flow.encoder.input_size={cfg.enc_input_size} differs from flow.input_size="
                             f"{cfg.input_size} (the token embedding feeds the encoder)")
        return dataclasses.replace(
            cfg, input_frame_rate=float(cfg.input_frame_rate), sigma_min=float(cfg.sigma_min),
            inference_cfg_rate=float(cfg.inference_cfg_rate), lr_sampling_ratios=tuple(cfg.lr_sampling_ratios),
            est_channels=tuple(int(c) for c in cfg.est_channels))

    def mel_frames(self, tokens: int) -> int:
        """Mel frames (22,050 Hz, hop 256) for the first `tokens` tokens: int(n / rate * 22050 / 256)."""
        return int(tokens / self.input_frame_rate * 22050 / 256)
