"""Spoken question answering sets (LLaMA Questions, Web Questions, TriviaQA, spoken), as jsonl::

    {"id": "q1", "question": "What is the capital of Greece?", "audio": "wavs/q1.wav",
     "answers": ["Athens", "Athína"]}

`audio` is relative to the jsonl's directory; `answer` (one string) is accepted for `answers`.

Parquet copies (`*.parquet`, one row per question, the same columns) are read with pyarrow (extra `parquet`:
`pip install -e '.[parquet]'`). Their `audio` column may be a path (relative to the file's directory), a
`{"path": ..., "bytes": ...}` struct as Hugging Face datasets store audio (the bytes are written once to
`<cache_dir>/<safe_name(id)>.wav`, default: a `<name>_audio/` folder beside the parquet file), and `answers` a list
or a string.
"""

from __future__ import annotations

import json
from pathlib import Path

from vita_audio.eval.adapters.sample import EvalSample, check_layout
from vita_audio.eval.filenames import safe_name

LAYOUT = 'a jsonl of {"question", "audio", "answers": [...]} objects'


def read_parquet_rows(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(f"{path}: reading parquet needs pyarrow: pip install -e '.[parquet]' (or convert the file "
                          f"to jsonl: {LAYOUT})") from err
    return pq.read_table(path).to_pylist()


class SpokenQA:
    def __init__(self, path: str | Path, limit: int | None = None, cache_dir: str | Path | None = None) -> None:
        self.path, self.limit = Path(path).expanduser(), limit
        self.cache_dir = Path(cache_dir) if cache_dir else self.path.parent / f"{self.path.stem}_audio"

    def rows(self) -> list[tuple[str, dict]]:
        """(where, record) of every row: "file:line" for jsonl, "file:row N" for parquet."""
        if self.path.suffix == ".parquet":
            return [(f"{self.path}:row {n}", r) for n, r in enumerate(read_parquet_rows(self.path))]
        out = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append((f"{self.path}:{n}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.path}:{n}: malformed JSON ({err.msg})") from err
        return out

    def audio_path(self, where: str, sid: str, audio) -> Path:
        if isinstance(audio, dict):  # Hugging Face datasets' audio struct
            if audio.get("bytes"):
                target = self.cache_dir / f"{safe_name(sid)}.wav"
                if not target.is_file():
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(audio["bytes"])
                return target
            audio = audio.get("path")
        if not isinstance(audio, str) or not audio:
            raise ValueError(f"{where}: 'audio' must be a path or a {{'path', 'bytes'}} struct, got {audio!r}")
        return self.path.parent / audio

    def samples(self) -> list[EvalSample]:
        check_layout(self.path, "spoken QA", LAYOUT)
        out: list[EvalSample] = []
        for n, (where, obj) in enumerate(self.rows(), start=1):
            answers = obj.get("answers", obj.get("answer"))
            answers = [answers] if isinstance(answers, str) else list(answers or [])
            if obj.get("audio") is None or not answers:
                raise ValueError(f"{where}: needs 'audio' and 'answers' ({LAYOUT})")
            sid = str(obj.get("id") or n)
            out.append(EvalSample(id=sid, text=answers[0], audio=self.audio_path(where, sid, obj["audio"]),
                                  answers=tuple(str(a) for a in answers), extra={"question": obj.get("question", "")}))
        return out[: self.limit] if self.limit else out
