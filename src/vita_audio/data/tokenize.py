"""Pure helpers of the cache-filling command (`python -m vita_audio.cli.tokenize`, which owns the Hydra part).

From Python, fill a cache with any `AudioTokenizer`::

    paths, skips = audio_paths(["data/asr.jsonl"])
    build_cache(paths, tokenizer, cache_dir, name)          # vita_audio.data.cache
"""

from __future__ import annotations

from collections.abc import Sequence

from vita_audio.data.mixing import Source, as_sources
from vita_audio.data.records import SkipCounter, read_jsonl

COMMAND = "python -m vita_audio.cli.tokenize"


def audio_paths(jsonl_files: list[str], on_error: str = "error") -> tuple[list[str], SkipCounter]:
    """Unique audio paths referenced by the records of some jsonl files (validated like training does)."""
    skips = SkipCounter()
    paths: set[str] = set()
    for f in jsonl_files:
        for rec in read_jsonl(f, on_error, skips):
            paths.update(rec.audios)
    return sorted(paths), skips


def source_files(*source_lists: Sequence[Source | dict | str] | None) -> list[str]:
    """The jsonl paths of some source lists (e.g. a data config's `train_sources` and `val_sources`), in order."""
    return [s.path for sources in source_lists for s in as_sources(list(sources or []))]


if __name__ == "__main__":
    raise SystemExit(f"the cache-filling command moved: {COMMAND} --data <data config> (see --help)")
