"""Any VITA jsonl (the training format, `data/records.py`) as evaluation samples of one task:

    asr   user "...<|audio|>" with the ASR prompt, assistant text          -> (audio, transcript)
    tts   user "Convert the text to speech.\\n<text>", assistant <|audio|>  -> (text, original audio)
    sqa   records with `answers` and user audio                            -> (question audio, aliases)

The task of each record is read from its `task` field when present, else from its shape; records of other tasks are
left out (counted in `other_tasks`). A record's `language` field names its language (else "zh" for text with Han
characters, "en" otherwise): Chinese rows are scored by CER, the others by WER. Invalid records are counted and
reported by reason, never silently dropped. `limit` keeps the first rows, or with `spread` rows spread evenly over
the file (row i * n // limit): a subset of every part of a file written in order (the corpus writes its training
questions fact by fact).
"""

from __future__ import annotations

from pathlib import Path

from vita_audio.data.prompt import ASR_PROMPT, TTS_PROMPT
from vita_audio.data.records import SkipCounter, read_jsonl
from vita_audio.eval.adapters.sample import EvalSample, check_layout, text_language
from vita_audio.model.vocab import AUDIO_PLACEHOLDER


# row fields the tasks report by: the speaker (ASR by voice) and the spoken-QA transfer split (eval/tasks/sqa.py)
CARRIED = ("voice", "fact_id", "kind", "transfer")


def _carried(extra: dict) -> dict:
    return {k: extra[k] for k in CARRIED if k in extra}


def record_task(messages, extra) -> str | None:
    if extra.get("task"):
        return str(extra["task"])
    user = next((c for r, c in messages if r == "user"), "")
    if user.startswith(TTS_PROMPT):
        return "tts"
    if extra.get("answers"):
        return "sqa"
    if user.startswith(ASR_PROMPT):
        return "asr"
    return None


class VitaJsonl:
    def __init__(self, path: str | Path, task: str, limit: int | None = None, on_error: str = "skip",
                 spread: bool = False) -> None:
        if task not in ("asr", "tts", "sqa"):
            raise ValueError(f"VitaJsonl task must be asr, tts or sqa, got {task!r}")
        self.path, self.task, self.limit, self.on_error = Path(path).expanduser(), task, limit, on_error
        self.spread = spread
        self.skips = SkipCounter()
        self.other_tasks = 0

    def samples(self) -> list[EvalSample]:
        check_layout(self.path, "VITA jsonl", "a .jsonl file of {'messages': [...], 'audios': [...]} lines")
        out: list[EvalSample] = []
        for rec in read_jsonl(self.path, on_error=self.on_error, skips=self.skips):
            if record_task(rec.messages, rec.extra) != self.task:
                self.other_tasks += 1
                continue
            answer = next((c for r, c in rec.messages if r == "assistant"), "")
            text = answer.replace(AUDIO_PLACEHOLDER, "").strip()
            sid = f"{Path(rec.source).stem}:{rec.line}"
            if self.task == "tts":
                user = next(c for r, c in rec.messages if r == "user")
                spoken = user[len(TTS_PROMPT):].strip()
                out.append(EvalSample(id=sid, text=spoken, ref_audio=Path(rec.audios[0]) if rec.audios else None,
                                      language=str(rec.extra.get("language") or text_language(spoken)),
                                      extra=_carried(rec.extra)))
            else:
                answers = tuple(rec.extra.get("answers") or ())
                out.append(EvalSample(id=sid, text=text, audio=Path(rec.audios[0]), answers=answers,
                                      language=str(rec.extra.get("language") or text_language(text)),
                                      extra={"question": rec.extra.get("question", ""), **_carried(rec.extra)}))
        if not self.limit or self.limit >= len(out):
            return out
        if self.spread:
            return [out[i * len(out) // self.limit] for i in range(self.limit)]
        return out[: self.limit]
