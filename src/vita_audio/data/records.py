"""Reader and validator of the VITA jsonl format (method spec, section 6).

One JSON object per line::

    {"messages": [{"role": "user", "content": "Convert the speech to text.\\n<|audio|>"},
                  {"role": "assistant", "content": "the transcript"}],
     "audios": ["path/to/question.wav"]}

`conversations` is accepted for `messages`; each `<|audio|>` takes the next entry of `audios`, in order. Relative
audio paths are resolved against the jsonl file's directory (or `audio_root`). Other keys (e.g. `answers`, the
evaluator's answer aliases) are kept in `Record.extra`.

Every problem raises a `DataError` that names the file, the line, what was found and what was expected, and has
a short `reason` (the key of the skip counters). `read_jsonl(..., on_error="skip")` counts and skips instead;
nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vita_audio.model.vocab import AUDIO_PLACEHOLDER

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
ON_ERROR = ("error", "skip")


class DataError(ValueError):
    """A bad input: `reason` is a short key (counted when skipping), the message says where and what to do."""

    def __init__(self, reason: str, message: str, source: str = "?", line: int = 0) -> None:
        self.reason, self.source, self.line = reason, source, line
        super().__init__(f"{source}:{line}: {message}")


@dataclass(frozen=True)
class Record:
    """One validated sample: ChatML messages, the audio files in placeholder order, and where it came from."""

    messages: tuple[tuple[str, str], ...]  # ((role, content), ...)
    audios: tuple[str, ...]  # resolved paths, one per <|audio|> in order of appearance
    source: str = "?"
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class SkipCounter:
    """Counts skipped samples per reason; `report()` logs them. Picklable (crosses worker processes)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, err: DataError) -> None:
        self.counts[err.reason] += 1
        self.examples.setdefault(err.reason, str(err))

    def merge(self, other: SkipCounter) -> None:
        self.counts.update(other.counts)
        for k, v in other.examples.items():
            self.examples.setdefault(k, v)

    def total(self) -> int:
        return sum(self.counts.values())

    def report(self, what: str = "data") -> str:
        if not self.counts:
            return f"{what}: no samples skipped"
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        msg = f"{what}: skipped {self.total()} samples ({parts}); first of each: " + " | ".join(
            self.examples[k] for k in sorted(self.examples)
        )
        log.warning(msg)
        return msg


def handle(err: DataError, on_error: str, skips: SkipCounter | None) -> None:
    """Raise `err` (on_error="error") or count it (on_error="skip")."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if on_error == "error" or skips is None:
        raise err
    skips.add(err)


def parse_record(
    obj: Any,
    source: str = "?",
    line: int = 0,
    audio_root: str | Path | None = None,
    check_audio_exists: bool = True,
) -> Record:
    """Validate one decoded JSON object and return a `Record`; raises `DataError` naming `source:line`."""

    def fail(reason: str, message: str) -> DataError:
        return DataError(reason, message, source, line)

    if not isinstance(obj, dict):
        raise fail("bad_record", f"expected a JSON object, got {type(obj).__name__}")
    key = "messages" if "messages" in obj else "conversations" if "conversations" in obj else None
    if key is None:
        raise fail("bad_record", f"expected a 'messages' (or 'conversations') list, found keys {sorted(obj)}")
    msgs = obj[key]
    if not isinstance(msgs, list) or not msgs:
        raise fail("bad_record", f"'{key}' must be a non-empty list of {{'role', 'content'}} objects")
    messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise fail("bad_record", f"{key}[{i}] must be an object with 'role' and 'content', got {m!r:.80}")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise fail("unknown_role", f"{key}[{i}] has role {role!r}; expected one of {list(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise fail("empty_content", f"{key}[{i}] ({role}) content must be a non-empty string, got {content!r:.80}")
        messages.append((role, content))
    if not any(r == "assistant" for r, _ in messages):
        raise fail("bad_record", "no assistant message: nothing to supervise")

    audios = obj.get("audios", [])
    if audios is None:
        audios = []
    if not isinstance(audios, list) or not all(isinstance(a, str) and a for a in audios):
        raise fail("bad_record", f"'audios' must be a list of path strings, got {audios!r:.80}")
    n_ph = sum(c.count(AUDIO_PLACEHOLDER) for _, c in messages)
    if n_ph != len(audios):
        raise fail(
            "audio_count",
            f"{n_ph} {AUDIO_PLACEHOLDER} placeholder(s) in the messages but {len(audios)} entr(ies) in 'audios'; "
            "each placeholder takes the next audio, so the counts must match",
        )
    base = Path(audio_root) if audio_root is not None else Path(source).parent
    resolved = []
    for a in audios:
        p = Path(a).expanduser()
        p = Path(os.path.normpath(p if p.is_absolute() else base / p))  # one spelling per file
        if check_audio_exists and not p.is_file():
            raise fail("audio_missing", f"audio file {str(p)!r} does not exist (from {a!r})")
        resolved.append(str(p))
    extra = {k: v for k, v in obj.items() if k not in (key, "audios")}
    return Record(tuple(messages), tuple(resolved), source, line, extra)


CORPUS_LAYOUT = (("asr", "tts", "sqa", "text"), ("train", "val", "test"))  # <corpus dir>/<task>/<split>.jsonl


def missing_file_message(path: Path) -> str:
    """What to say when a data file does not exist: the path, and how to produce it."""
    msg = f"data file {str(path)!r} does not exist (a source of the data config)."
    corpus = path.parent.parent
    if path.parent.name in CORPUS_LAYOUT[0] and path.stem in CORPUS_LAYOUT[1]:
        return (f"{msg} It belongs to the offline corpus at {str(corpus)!r} (paths.corpus_dir): build it with "
                f"python -m vita_audio.data.corpus --out {corpus}, or point paths.corpus_dir at a built corpus")
    return (f"{msg} Write it in the VITA jsonl format (docs/data.md), fix the path in data.train_sources / "
            "data.val_sources, or build the offline corpus: python -m vita_audio.data.corpus --out <dir>")


def read_jsonl(
    path: str | Path,
    on_error: str = "error",
    skips: SkipCounter | None = None,
    audio_root: str | Path | None = None,
    check_audio_exists: bool = True,
) -> Iterator[Record]:
    """Records of one VITA jsonl file, validated. Blank lines are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(missing_file_message(path))
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError("not_utf8", f"line is not valid UTF-8 ({e.reason} at byte {e.start})", str(path), line_no)
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise DataError("malformed_json", f"malformed JSON ({e.msg} at column {e.colno})", str(path), line_no)
                yield parse_record(obj, str(path), line_no, audio_root, check_audio_exists)
            except DataError as err:
                handle(err, on_error, skips)
