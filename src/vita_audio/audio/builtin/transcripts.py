"""Each audio file's transcript and voice, read from VITA jsonl files (what the semantic codec trains on).

Which text an audio speaks follows from the row's task (the corpus's layout, vita_audio.data.corpus):

    asr  audios[0] (user turn)       -> the assistant's text
    tts  audios[0] (assistant turn)  -> the user's text after its first line ("Convert the text to speech.")
    sqa  audios[0] (user turn)       -> the row's "question"; audios[1] (assistant turn) -> the assistant's text

The voice of a user-turn audio is the row's "voice"; an assistant-turn audio is spoken by `assistant_voice` (the
corpus answers in one voice). An audio met twice (the same wav in an ASR and a TTS row) is kept once. A row of
another task, or one whose audios do not fit its task, is a counted skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

AUDIO = "<|audio|>"


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str
    voice: str


def _content(row: dict, role: str) -> str:
    msgs = row.get("messages") or row.get("conversations") or []
    return next((m["content"] for m in msgs if m.get("role") == role), "")


def _row_utterances(row: dict, base: Path, assistant_voice: str) -> list[Utterance]:
    """The (audio, text, voice) triples of one row; ValueError when the row does not fit its task."""
    task, audios, voice = row.get("task"), row.get("audios", []), row.get("voice", "unknown")
    paths = [Path(a) if Path(a).is_absolute() else base / a for a in audios]
    user, assistant = _content(row, "user"), _content(row, "assistant")
    if task == "asr" and len(paths) == 1:
        return [Utterance(paths[0], assistant.strip(), voice)]
    if task == "tts" and len(paths) == 1:
        return [Utterance(paths[0], user.split("\n", 1)[-1].strip(), assistant_voice)]
    if task == "sqa" and len(paths) == 2 and "question" in row:
        return [Utterance(paths[0], row["question"].strip(), voice),
                Utterance(paths[1], assistant.replace(AUDIO, " ").strip(), assistant_voice)]
    raise ValueError(f"task {task!r} with {len(paths)} audios: no transcript rule (asr: 1, tts: 1, sqa: 2 + question)")


def read_utterances(sources: str | Path | list, assistant_voice: str = "hibari") -> tuple[list[Utterance], list]:
    """All utterances of one or more jsonl files -> (utterances sorted by path, skipped [(file:line, reason)])."""
    files = [Path(s) for s in (sources if isinstance(sources, (list, tuple)) else [sources])]
    seen, skipped = {}, []
    for f in files:
        if f.suffix != ".jsonl" or not f.is_file():
            raise ValueError(f"{f}: the semantic codec trains on VITA jsonl files (each audio's transcript and voice "
                             "come from its row); give wavs=[<corpus>/asr/train.jsonl, ...]")
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}:{i}: not JSON ({e})") from e
            if not row.get("audios"):
                continue  # a text-only row has nothing to say about audio
            try:
                for u in _row_utterances(row, f.parent, assistant_voice):
                    seen.setdefault(u.path.resolve(), u)
            except ValueError as e:
                skipped.append((f"{f}:{i}", str(e)))
    return [seen[k] for k in sorted(seen)], skipped
