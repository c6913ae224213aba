"""Evaluate a checkpoint: `python eval.py task=loss|asr|tts|sqa|speed ckpt_path=PATH [data=... | dataset=...]`.

    loss            checkpoint -> training module (rebuilt from its stored config through the checkpoint allowlist,
                     `training.init.restore_module`) -> data -> trainer.validate -> metrics.json
    asr | tts | sqa  checkpoint -> SpeechLM (+ codec, judge) -> dataset adapter -> decode per mode -> metrics.json,
                     metrics.md, predictions.jsonl (+ a few generated wavs under audio/<mode>/)
    speed           checkpoint -> timed decodes per mode (eval/tasks/speed.py) -> metrics.json, metrics.md,
                     predictions.jsonl (every figure of the benchmark row)

The judge of tts / sqa is a config group: `judge=pocketsphinx` (default, offline) or `judge=whisper
judge.path=/local/whisper`. Metrics also go to the configured loggers (`logger=wandb`, `logger=csv`).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from vita_audio.cli.common import CONFIG_DIR, build_datamodule, build_trainer, log, set_runtime_env

TASKS = ("loss", "asr", "tts", "sqa", "speed")


def log_to_loggers(cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The figures of a generation task to the configured loggers (none by default), as `eval/<mode>/<metric>`."""
    from vita_audio.cli.common import instantiate_list

    for lg in instantiate_list(cfg.get("logger")):
        try:
            lg.log_metrics({f"eval/{cfg.task.name}/{k}": v for k, v in metrics.items()}, step=0)
            lg.finalize("success")
        finally:
            if type(lg).__name__ == "WandbLogger":
                import wandb

                wandb.finish()


def finish(cfg: DictConfig, result) -> dict[str, float]:
    from vita_audio.eval.tasks import write_results

    out = write_results(result, cfg.paths.output_dir)
    log.info("metrics, table and predictions written under %s", out)
    print((out / "metrics.md").read_text())
    metrics = {f"{mode}/{k}": float(v) for mode, m in result.metrics.items() for k, v in m.items()}
    log_to_loggers(cfg, metrics)
    return metrics


def evaluate_speed(cfg: DictConfig) -> dict[str, float]:
    """speed: the decoding benchmark's figures for this checkpoint, per mode."""
    from vita_audio.checkpoint import load_model
    from vita_audio.eval.tasks.speed import run_speed

    lm = load_model(cfg.ckpt_path, dtype=cfg.get("dtype"))
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items() if k != "name"}
    result = run_speed(lm, log=log.info, label=str(cfg.ckpt_path), **kwargs)
    result.info["ckpt_path"] = str(cfg.ckpt_path)
    return finish(cfg, result)


def evaluate_generation(cfg: DictConfig) -> dict[str, float]:
    """asr / tts / sqa: decode the dataset in every mode of `task.modes`, score, write the run's files."""
    from vita_audio.checkpoint.codec import CodecParts
    from vita_audio.checkpoint.generation import sampling_defaults
    from vita_audio.eval.tasks import TASKS as RUNNERS
    from vita_audio.inference import Sampling, SpeechLM

    task = cfg.task.name
    adapter = hydra.utils.instantiate(cfg.dataset)
    samples = adapter.samples()
    if not samples:
        raise ValueError(f"dataset {cfg.dataset.get('path') or cfg.dataset} has no {task} samples")
    # sqa reads and speaks; tts with `resynthesis` also encodes the original recordings (both codec halves)
    both = task == "sqa" or (task == "tts" and cfg.task.get("resynthesis", False))
    speech = SpeechLM.from_pretrained(cfg.ckpt_path, audio=CodecParts.from_config(cfg.audio, hydra.utils.instantiate),
                                      task="s2s" if both else task, dtype=cfg.get("dtype"))
    judge = hydra.utils.instantiate(cfg.judge) if task in ("tts", "sqa") else None
    # greedy (the spec's protocol), or the checkpoint's sampling defaults
    sampling = Sampling.greedy() if cfg.greedy else Sampling(**{
        **sampling_defaults(speech.lm.generation_config), "seed": cfg.seed})
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items() if k != "name"}
    result = RUNNERS[task](speech, samples, judge=judge, sampling=sampling,
                           audio_dir=str(Path(cfg.paths.output_dir) / "audio"), **kwargs)
    result.info["ckpt_path"] = str(cfg.ckpt_path)
    where = next((cfg.dataset.get(k) for k in ("path", "root", "meta") if cfg.dataset.get(k)), None)
    if where:  # which file or folder the samples came from
        result.info["dataset"] = str(where)
    if judge is not None:
        result.info["judge"] = cfg.judge._target_.rsplit(".", 1)[-1] + (f" ({cfg.judge.path})" if "path" in cfg.judge
                                                                         else "")
    skips = getattr(adapter, "skips", None)
    if skips is not None and skips.total():
        result.info["invalid_records_skipped"] = skips.total()
        log.warning(skips.report(str(cfg.dataset.get("path"))))
    return finish(cfg, result)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    set_runtime_env()
    if cfg.task.name not in TASKS:
        raise ValueError(f"unknown task {cfg.task.name!r}; available: {', '.join(TASKS)}")
    L.seed_everything(cfg.seed)
    if cfg.task.name == "speed":
        return evaluate_speed(cfg)
    if cfg.task.name != "loss":
        return evaluate_generation(cfg)
    from vita_audio.training.init import restore_module

    model = restore_module(cfg.ckpt_path)
    if cfg.data_like_training:  # the sequences the model was trained on: its interleave ratio and row length
        trained = model.hparams["config"]
        cfg.interleave.ratio = trained["interleave"]["ratio"]
        cfg.data.max_len = trained["data"]["max_len"]
        log.info("data as in training: interleave %s, max_len %d", list(cfg.interleave.ratio), cfg.data.max_len)
    datamodule = build_datamodule(cfg, model)
    trainer = build_trainer(cfg)
    results = trainer.validate(model, datamodule=datamodule)[0]
    metrics = {k: float(v) for k, v in results.items()}
    out = Path(cfg.paths.output_dir) / "metrics.json"
    out.write_text(json.dumps({"task": cfg.task.name, "ckpt_path": str(cfg.ckpt_path), "metrics": metrics}, indent=2))
    log.info("metrics written to %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    for k, v in sorted(evaluate(cfg).items()):
        print(f"{k:28s} {v:.4f}")


if __name__ == "__main__":
    main()
