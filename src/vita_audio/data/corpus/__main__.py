"""Build the offline speech corpus.

    python -m vita_audio.data.corpus --out artifacts/corpus                 # default: about 1.7 h of audio
    python -m vita_audio.data.corpus --out /tmp/corpus_tiny --tiny          # a few dozen files, seconds
    python -m vita_audio.data.corpus --out artifacts/corpus --hours 3 --jobs 2 --seed 1

A finished build leaves `<out>/DONE` with the config hash; running the same command again does nothing, an
interrupted one resumes (finished wav files are kept). `--force` rebuilds over a corpus of another config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from vita_audio.data.corpus.build import build_corpus
from vita_audio.data.corpus.config import TINY, CorpusConfig


def main(argv: list[str] | None = None) -> dict:
    d = CorpusConfig()
    p = argparse.ArgumentParser(prog="python -m vita_audio.data.corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="artifacts/corpus", help="output folder (default: artifacts/corpus)")
    p.add_argument("--tiny", action="store_true", help=f"a test-sized corpus ({TINY.hours} h)")
    p.add_argument("--hours", type=float, default=None, help=f"approximate hours of audio (default {d.hours})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--eval-fraction", type=float, default=d.eval_fraction,
                   help="share of the template sentences in val, and in test")
    p.add_argument("--espeak-fraction", type=float, default=d.espeak_fraction)
    p.add_argument("--qa-share", type=float, default=d.qa_share)
    p.add_argument("--qa-test", type=int, default=None, help=f"spoken test questions (default {d.qa_test})")
    p.add_argument("--jobs", type=int, default=2, help="synthesis processes")
    p.add_argument("--force", action="store_true", help="rebuild over a corpus of another config")
    a = p.parse_args(argv)
    base = TINY if a.tiny else d
    cfg = dataclasses.replace(base, seed=a.seed, eval_fraction=a.eval_fraction, espeak_fraction=a.espeak_fraction,
                              qa_share=a.qa_share, qa_test=a.qa_test if a.qa_test is not None else base.qa_test,
                              hours=a.hours if a.hours is not None else base.hours)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vita_audio.audio.io").setLevel(logging.WARNING)  # peak-scaling notes, one per file
    stats = build_corpus(a.out, cfg, jobs=a.jobs, force=a.force)
    print(json.dumps(stats, indent=1))
    return stats


if __name__ == "__main__":
    main()
