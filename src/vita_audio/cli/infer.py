"""Run a checkpoint on one input: `python infer.py task=s2s|asr|tts input=... ckpt_path=... [mode=boost]`.

checkpoint -> SpeechLM.from_pretrained (model + the codec halves the task needs, from conf/audio) -> prompt ->
streamed decode -> answer.txt / answer.wav

Defaults come from the checkpoint's generation config: its schedule when neither `mode` nor `schedule` is given
(`inference.schedule.resolve_decode`), its sampling keys where `sampling.*` is null. A Plus checkpoint
(`plus_stage*`: final.ckpt or hf/) reads the input wav with its own encoder (frames scattered at
`<|context_of_audio|>`); the codec is only needed for its spoken output (tts, s2s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from vita_audio.audio.io import AudioError, write_audio
from vita_audio.checkpoint.codec import CodecParts
from vita_audio.checkpoint.generation import sampling_defaults
from vita_audio.cli.common import CONFIG_DIR, log, set_runtime_env
from vita_audio.inference import AudioChunk, Finished, Sampling, SpeechLM, TextDelta, default_schedule
from vita_audio.inference.api import TASKS
from vita_audio.inference.schedule import resolve_decode


def decode_options(cfg: DictConfig, speech: SpeechLM) -> dict:
    """schedule / verify / sampling keyword arguments of `stream`: the config over the checkpoint's defaults."""
    lm = speech.lm
    schedule = None if cfg.get("schedule") is None else list(cfg.schedule)
    decode = resolve_decode(cfg.get("mode"), schedule, default_schedule(lm), lm.num_mctp_modules, cfg.get("drafting"))
    asked = {k: v for k, v in OmegaConf.to_container(cfg.sampling, resolve=True).items() if v is not None}
    stored = sampling_defaults(getattr(lm, "generation_config", None))
    if asked.get("do_sample") is False and "repetition_penalty" not in asked:
        stored.pop("repetition_penalty", None)  # greedy is unpenalised unless the command asks for a penalty
    sampling = Sampling(**{**stored, **asked})
    stop_ids = None if cfg.get("stop_ids") is None else [int(i) for i in cfg.stop_ids]
    return dict(schedule=decode.schedule, verify=decode.verify, drafting=decode.drafting,
                max_new_tokens=int(cfg.max_new_tokens), stop_ids=stop_ids, sampling=sampling)


def infer(cfg: DictConfig) -> Finished:
    set_runtime_env()
    task = str(cfg.task.name)
    if task not in TASKS:
        raise ValueError(f"infer.py runs task={'|'.join(TASKS)}, not {task!r} (eval.py runs the others)")
    speech = SpeechLM.from_pretrained(cfg.ckpt_path, audio=CodecParts.from_config(cfg.audio, hydra.utils.instantiate),
                                      task=task, dtype=cfg.get("dtype"))
    opts = decode_options(cfg, speech)
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
            "schedule": opts["schedule"], "verify": opts["verify"], "drafting": opts["drafting"],
            "new_tokens": len(result.tokens),
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
