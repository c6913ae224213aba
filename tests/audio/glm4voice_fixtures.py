"""Tiny random GLM-4-Voice directories in the published file formats, for the tests (nothing installed uses them).

    write_tiny_tokenizer(dir)   config.json (a full WhisperConfig + the VQ fields, as published), model.safetensors
                                (layout="published": the bare WhisperVQEncoder names + EMA buffers; layout="full":
                                `model.encoder.*` + later layers, final norm and decoder tensors, never read),
                                preprocessor_config.json (WhisperFeatureExtractor, 128 bins)
    write_tiny_decoder(dir)     config.yaml (HyperPyYAML with `!new:` / `!ref` / `!apply:` tags, like the
                                published one), flow.pt and hift.pt (plain state dicts, torch.save)

The geometry is shrunk (widths, depths) but every published field name, kernel size and rate is kept, so the
receptive fields and the 12.5 Hz / 22,050 Hz timing are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from vita_audio.audio.glm4voice.flow import FlowConfig, FlowModel
from vita_audio.audio.glm4voice.hift import HiFTConfig, HiFTGenerator
from vita_audio.audio.glm4voice.whisper_vq import ENCODER_PREFIX, WhisperVQConfig, WhisperVQEncoder

TINY_TOKENIZER = dict(
    d_model=16, encoder_attention_heads=2, encoder_ffn_dim=32, encoder_layers=4, decoder_layers=1,
    decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=128, max_source_positions=1500,
    max_target_positions=448, vocab_size=64, pooling_kernel_size=4, pooling_type="avg", pooling_position=2,
    quantize_position=2, quantize_vocab_size=16384, quantize_causal_block_size=200, quantize_causal_encoder=False,
    quantize_encoder_only=True, quantize_ema_decay=0.99, quantize_commit_coefficient=0.25, quantize_loss_scale=10.0,
    quantize_restart_interval=100, encoder_causal_attention=False, encoder_causal_convolution=True,
    skip_language_detection=True, activation_function="gelu", scale_embedding=False, model_type="whisper",
    architectures=["WhisperVQEncoder"], torch_dtype="float32",
)
LAYOUTS = ("published", "full")


def write_tiny_tokenizer(out: str | Path, seed: int = 0, layout: str = "published", **overrides) -> Path:
    """A tiny tokenizer directory; `overrides` replace config.json fields (the same seed gives the same encoder
    weights in both layouts)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {LAYOUTS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = {**TINY_TOKENIZER, **overrides}
    cfg = WhisperVQConfig.from_dict(raw)
    torch.manual_seed(seed)
    model = WhisperVQEncoder(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    d, V = cfg.d_model, cfg.quantize_vocab_size
    ema = {"ema_count": torch.ones(V), "ema_weight": model.codebook.weight.detach().clone()}
    if layout == "published":  # WhisperVQEncoder.save_pretrained: bare names, quantize_position layers only
        tensors = {**{k: v.contiguous() for k, v in model.state_dict().items()}, **ema}
    else:  # a whole WhisperVQForConditionalGeneration: every encoder layer, the final norm and a decoder
        raw = {**raw, "quantize_encoder_only": False, "architectures": ["WhisperVQForConditionalGeneration"]}
        tensors = {ENCODER_PREFIX + k: v.contiguous() for k, v in {**model.state_dict(), **ema}.items()}
        for i in range(cfg.quantize_position, raw["encoder_layers"]):
            tensors[f"{ENCODER_PREFIX}layers.{i}.fc1.weight"] = torch.randn(raw["encoder_ffn_dim"], d)
        tensors[f"{ENCODER_PREFIX}layer_norm.weight"] = torch.ones(d)
        tensors["model.decoder.embed_tokens.weight"] = torch.randn(raw["vocab_size"], d)
        tensors["model.decoder.layers.0.self_attn.k_proj.weight"] = torch.randn(d, d)
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=128).save_pretrained(str(out))
    return out


TINY_DECODER_YAML = """\
# tiny stand-in for glm-4-voice-decoder/config.yaml: the published file's sections, field names and tags
# (including its unused `llm:` section), with small widths and depths
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]
__set_seed4: !apply:torch.cuda.manual_seed_all [1986]

sample_rate: 22050
text_encoder_input_size: 16
llm_input_size: 16
llm_output_size: 16
spk_embed_dim: 8

llm: !new:cosyvoice.llm.llm.TransformerLM
    text_encoder_input_size: !ref <text_encoder_input_size>
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    text_token_size: 51866
    speech_token_size: 4096
    length_normalized_loss: True
    lsm_weight: 0
    spk_embed_dim: !ref <spk_embed_dim>
    text_encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        input_size: !ref <text_encoder_input_size>
        output_size: 16
        attention_heads: 2
        linear_units: 32
        num_blocks: 1
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        static_chunk_size: 1
    llm: !new:cosyvoice.transformer.encoder.TransformerEncoder
        input_size: !ref <llm_input_size>
        output_size: !ref <llm_output_size>
        attention_heads: 2
        linear_units: 32
        num_blocks: 1
        input_layer: 'linear_legacy'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        static_chunk_size: 1

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 16384
    input_frame_rate: 12.5
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.BlockConformerEncoder
        output_size: 16
        attention_heads: 2
        linear_units: 32
        num_blocks: 2
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'block_rel_selfattn'
        block_size: 10
        input_size: 16
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1, 1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16, 16]
            dropout: 0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 2
            num_heads: 2
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 8
"""


def write_tiny_decoder(out: str | Path, seed: int = 0) -> Path:
    from vita_audio.audio.glm4voice.yaml_config import load_plain_yaml, plain, section

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(TINY_DECODER_YAML)
    data = load_plain_yaml(out / "config.yaml")
    torch.manual_seed(seed)
    flow = FlowModel(FlowConfig.from_yaml(plain(section(data, "flow", "tiny"))))
    hift = HiFTGenerator(HiFTConfig.from_yaml(plain(section(data, "hift", "tiny"))))
    with torch.no_grad():
        for p in [*flow.encoder.parameters(), flow.spk_embed_affine_layer.bias]:
            p.normal_(0, 0.3)
        hift.f0_predictor.classifier.bias.fill_(150.0)  # voiced (f0 about 150 Hz, not ~0): the harmonic source runs
    torch.save(flow.state_dict(), out / "flow.pt")
    torch.save(hift.state_dict(), out / "hift.pt")
    return out
