"""Spoken question answering sets (LLaMA Questions, Web Questions, TriviaQA, spoken), as jsonl::

    {"id": "q1", "question": "What is the capital of Greece?", "audio": "wavs/q1.wav",
     "answers": ["Athens", "Athína"]}

`audio` is relative to the jsonl's directory; `answer` (one string) is accepted for `answers`. Parquet copies of these
sets can be converted to this jsonl with any dataframe tool (a parquet reader is not a dependency here).
"""

from __future__ import annotations

import json
from pathlib import Path

from vita_audio.eval.adapters.sample import EvalSample, check_layout

LAYOUT = 'a jsonl of {"question", "audio", "answers": [...]} objects'


class SpokenQA:
    def __init__(self, path: str | Path, limit: int | None = None) -> None:
        self.path, self.limit = Path(path).expanduser(), limit

    def samples(self) -> list[EvalSample]:
        check_layout(self.path, "spoken QA", LAYOUT)
        if self.path.suffix == ".parquet":
            raise ValueError(f"{self.path}: parquet is not read here; convert it to jsonl ({LAYOUT})")
        out: list[EvalSample] = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.path}:{n}: malformed JSON ({err.msg})") from err
            answers = obj.get("answers", obj.get("answer"))
            answers = [answers] if isinstance(answers, str) else list(answers or [])
            if "audio" not in obj or not answers:
                raise ValueError(f"{self.path}:{n}: needs 'audio' and 'answers' ({LAYOUT})")
            out.append(EvalSample(id=str(obj.get("id", n)), text=answers[0], audio=self.path.parent / obj["audio"],
                                  answers=tuple(answers), extra={"question": obj.get("question", "")}))
        return out[: self.limit] if self.limit else out
