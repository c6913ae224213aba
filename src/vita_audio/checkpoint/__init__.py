"""Every checkpoint format in and out; nothing about Lightning or Hydra.

    from vita_audio.checkpoint import load_model, export_pretrained
    lm = load_model("artifacts/stages/demo/mctp_all/hf")          # or final.ckpt, final.safetensors, a ZeRO dir,
    lm = load_model(path, dtype="bfloat16", device="cuda")       # a published VITA-Audio directory
    export_pretrained(lm, "exported/")                           # == lm.save_pretrained("exported/")

    formats      one dispatcher: Lightning .ckpt, DeepSpeed directory, weights .safetensors, HF / published directory
    deepspeed    ZeRO directories: the client state, consolidation (DeepSpeed imported only there)
    names        the reference-layout name map, LoRA merging
    registry     the allowlist of constructors a stored training config may name
    record       what training stores to rebuild the model from the file alone (backbone config, tokenizer, ...)
    build        rebuilding the model from stored configs, parameters on the meta device
    generation   the checkpoint's GenerationConfig (default schedule, sampling defaults, codec)
    codec        the audio codec a model was trained with, and the check of the one it is given
    load         the one loader: meta skeleton, tensors streamed straight to the device
    export       save_pretrained: huggingface_hub's sharded safetensors + config + generation config + tokenizer
    weights      the weights-only training file (final.safetensors)
    convert      a training checkpoint -> a weights file and / or an exported directory

`load_pretrained` is `load_model` (one loader for every format).
"""

from vita_audio.checkpoint.export import export_pretrained, reference_state_dict
from vita_audio.checkpoint.formats import Checkpoint, open_checkpoint
from vita_audio.checkpoint.load import load_model

load_pretrained = load_model

__all__ = ["Checkpoint", "export_pretrained", "load_model", "load_pretrained", "open_checkpoint",
           "reference_state_dict"]
