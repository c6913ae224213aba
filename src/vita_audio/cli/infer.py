"""Run a checkpoint on one input: `python infer.py task=s2s|asr|tts input=... ckpt_path=... [mode=boost]`.

checkpoint -> model -> (audio codec from conf/audio) -> prompt -> streamed decode -> answer.txt / answer.wav

A Plus checkpoint (`plus_stage*`: final.ckpt or hf/) reads the input wav with its own encoder (frames scattered
at `<|context_of_audio|>`); the codec is only needed for its spoken output (tts, s2s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from vita_audio.audio.io import AudioError, write_audio
from vita_audio.cli.common import CONFIG_DIR, log, set_runtime_env
from vita_audio.inference import AudioChunk, Finished, Sampling, SpeechLM, TextDelta, load_model
from vita_audio.inference.api import TASKS
from vita_audio.inference.schedule import MODES


def decode_options(cfg: DictConfig) -> dict:
    """schedule / verify / sampling keyword arguments of `stream` from the config."""
    mode = cfg.get("mode")
    if mode is not None and mode != "verified" and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join([*MODES, 'verified'])} or null")
    schedule = list(cfg.schedule) if cfg.get("schedule") is not None else (None if mode in (None, "verified")
                                                                          else mode)
    stop_ids = None if cfg.get("stop_ids") is None else [int(i) for i in cfg.stop_ids]
    return dict(schedule=schedule, verify=mode == "verified", max_new_tokens=int(cfg.max_new_tokens), stop_ids=stop_ids,
                sampling=Sampling(**OmegaConf.to_container(cfg.sampling, resolve=True)))


def build_speech(cfg: DictConfig, task: str) -> SpeechLM:
    """The checkpoint with the codec parts the task needs. A Plus checkpoint reads input audio with its own
    encoder, so it needs no audio tokenizer (asr on a Plus checkpoint needs no codec at all)."""
    lm = load_model(cfg.ckpt_path, dtype=cfg.get("dtype"))
    needs_in, needs_out = task in ("s2s", "asr") and not lm.is_plus, task in ("s2s", "tts")
    tokenizer = hydra.utils.instantiate(cfg.audio.tokenizer) if needs_in else None
    detokenizer = hydra.utils.instantiate(cfg.audio.detokenizer) if needs_out else None
    return SpeechLM(lm, tokenizer, detokenizer)


def infer(cfg: DictConfig) -> Finished:
    set_runtime_env()
    task = str(cfg.task.name)
    if task not in TASKS:
        raise ValueError(f"infer.py runs task={'|'.join(TASKS)}, not {task!r} (eval.py runs the others)")
    opts = decode_options(cfg)
    speech = build_speech(cfg, task)
    out_dir = Path(cfg.paths.output_dir)
    result = None
    for event in speech.stream(task, str(cfg.input), **opts):
        if isinstance(event, TextDelta):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, AudioChunk):
            pass  # the chunks are concatenated in Finished.wav
        else:
            result = event
    print()
    (out_dir / "answer.txt").write_text(result.text + "\n")
    info = {"task": task, "input": str(cfg.input), "ckpt_path": str(cfg.ckpt_path), "text": result.text,
            "input_audio": ("encoder frames" if speech.is_plus else "audio tokens") if task != "tts" else None,
            "schedule": opts["schedule"], "verify": opts["verify"], "new_tokens": len(result.tokens),
            "audio_codes": int(result.codes.numel()), "backbone_forwards": result.backbone_forwards,
            "mctp_steps": result.mctp_steps, "first_audio_s": result.first_audio_s, "elapsed_s": result.elapsed}
    if result.wav is not None:
        write_audio(out_dir / "answer.wav", result.wav, result.sample_rate)
        info["audio_seconds"] = result.wav.numel() / result.sample_rate
        log.info("speech written to %s (%.2f s)", out_dir / "answer.wav", info["audio_seconds"])
    (out_dir / "result.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("text and result.json written under %s", out_dir)
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def main(cfg: DictConfig) -> None:
    try:
        infer(cfg)
    except (ValueError, FileNotFoundError, AudioError) as err:  # bad input: the message says what to do
        sys.exit(f"infer.py: {err}")


if __name__ == "__main__":
    main()
