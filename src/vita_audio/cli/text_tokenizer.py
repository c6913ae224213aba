"""Train a corpus's text tokenizer: a byte-level BPE on the text of its training splits, saved as a local directory.

    # every <corpus>/*/train.jsonl (the embedded corpus: asr, tts, text, sqa), 1,024 pieces
    python -m vita_audio.cli.text_tokenizer --corpus artifacts/corpus --out artifacts/text_tokenizer
    # any VITA jsonl files, another size; --force retrains over an existing directory
    python -m vita_audio.cli.text_tokenizer --jsonl data/a/train.jsonl --jsonl data/b/train.jsonl \\
        --vocab-size 2048 --out tok/ --force
    # then train with it (every stage of a recipe must use the same one; it is saved beside each checkpoint)
    python train.py +experiment=demo/align model.backbone.tokenizer=artifacts/text_tokenizer

The training lines are the tiny tokenizer's text (the task prompts and common English, so prompts and unseen
words stay short) followed by every message of the training records, `<|audio|>` placeholders removed. The BPE
is the tiny tokenizer's recipe (`vita_audio.model.text_tokenizer.train_bpe`): byte-level, so any text still
encodes, with the ChatML specials. On the embedded corpus it writes a word in 1.26 pieces on average against the
tiny tokenizer's 2.19 (RESULTS.md, "The stage-1 levers"). Test splits are never read.

Records that fail validation are counted and skipped (the counts are printed); no text at all is an error.
Writes `<out>/tokenizer.json`, `tokenizer_config.json`, and `text_tokenizer.json` (the sources, line count and
pieces per word of the training text with this tokenizer and with the tiny one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vita_audio.data.records import SkipCounter, read_jsonl
from vita_audio.model.text_tokenizer import build_tiny_tokenizer, tiny_text_lines, train_bpe
from vita_audio.model.vocab import AUDIO_PLACEHOLDER

MIN_VOCAB = 512  # the 256 byte symbols, the specials and room for merges


def corpus_train_files(corpus: Path) -> list[Path]:
    """`<corpus>/<task>/train.jsonl`, sorted (the training order of the BPE, hence its merges, is fixed)."""
    if not corpus.is_dir():
        raise FileNotFoundError(f"corpus directory {str(corpus)!r} does not exist: build it first "
                                "(python -m vita_audio.data.corpus --out <dir>) or pass --jsonl files")
    files = sorted(corpus.glob("*/train.jsonl"))
    if not files:
        raise FileNotFoundError(f"no <task>/train.jsonl under {str(corpus)!r}: is it a corpus directory?")
    return files


def record_texts(files: list[Path], skips: SkipCounter) -> list[str]:
    """Every message of every valid record, placeholders removed, blank ones dropped (bad records: `skips`)."""
    texts = []
    for path in files:
        for record in read_jsonl(path, on_error="skip", skips=skips, check_audio_exists=False):
            for _role, content in record.messages:
                text = content.replace(AUDIO_PLACEHOLDER, " ").strip()
                if text:
                    texts.append(text)
    return texts


def pieces_per_word(tokenizer, texts: list[str]) -> float:
    words = sum(len(t.split()) for t in texts)
    pieces = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return pieces / max(words, 1)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.text_tokenizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="corpus directory: reads <corpus>/*/train.jsonl")
    p.add_argument("--jsonl", type=Path, action="append", default=[], help="a training jsonl file (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="the tokenizer directory to write")
    p.add_argument("--vocab-size", type=int, default=1024, help=f"pieces incl. bytes and specials (>= {MIN_VOCAB})")
    p.add_argument("--force", action="store_true", help="retrain over an existing tokenizer directory")
    args = p.parse_args(argv)

    if args.vocab_size < MIN_VOCAB:
        p.error(f"--vocab-size {args.vocab_size} is too small: the byte alphabet and the specials alone take 259; "
                f"use at least {MIN_VOCAB}")
    if args.corpus is None and not args.jsonl:
        p.error("give --corpus DIR or at least one --jsonl FILE")
    summary_path = args.out / "text_tokenizer.json"
    if (args.out / "tokenizer.json").is_file() and not args.force:
        print(f"{args.out}: a tokenizer exists, kept (--force retrains it)")
        return json.loads(summary_path.read_text()) if summary_path.is_file() else {}

    files = (corpus_train_files(args.corpus) if args.corpus else []) + list(args.jsonl)
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"jsonl file {str(path)!r} does not exist")
    skips = SkipCounter()
    texts = record_texts(files, skips)
    if skips.total():
        print(skips.report("text tokenizer: records"), file=sys.stderr)
    if not texts:
        raise ValueError(f"no text in {', '.join(map(str, files))}: nothing to train a tokenizer on")

    tokenizer = train_bpe(tiny_text_lines() + texts, args.vocab_size)
    tokenizer.save_pretrained(str(args.out))
    summary = {
        "sources": [str(f) for f in files], "lines": len(texts), "skipped": skips.total(),
        "vocab_size": len(tokenizer),
        "pieces_per_word": round(pieces_per_word(tokenizer, texts), 3),
        "pieces_per_word_tiny": round(pieces_per_word(build_tiny_tokenizer(), texts), 3),
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"text tokenizer: {len(tokenizer)} pieces from {len(texts)} lines of {len(files)} files -> {args.out}; "
          f"{summary['pieces_per_word']} pieces per word of that text (tiny tokenizer: "
          f"{summary['pieces_per_word_tiny']})")
    return summary


if __name__ == "__main__":
    main()
