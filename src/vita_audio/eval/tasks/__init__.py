"""Evaluation tasks on generated outputs: `run_asr`, `run_tts`, `run_sqa`, and `run_speed` (each over several
decode modes)."""

from vita_audio.eval.tasks.asr import run_asr
from vita_audio.eval.tasks.common import DECODE_MODES, TaskResult, write_results
from vita_audio.eval.tasks.speed import run_speed
from vita_audio.eval.tasks.sqa import run_sqa
from vita_audio.eval.tasks.tts import run_tts

TASKS = {"asr": run_asr, "tts": run_tts, "sqa": run_sqa}

__all__ = ["DECODE_MODES", "TASKS", "TaskResult", "run_asr", "run_speed", "run_sqa", "run_tts", "write_results"]
