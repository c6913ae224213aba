"""The corpus-trained text tokenizer (`python -m vita_audio.cli.text_tokenizer`): shorter pieces for the corpus's
words, deterministic, loadable like any local tokenizer, bad records counted, bad arguments refused."""

import json

import pytest

from vita_audio.cli.text_tokenizer import main
from vita_audio.model.backbone import Backbone
from vita_audio.model.text_tokenizer import build_tiny_tokenizer, load_text_tokenizer

WORDS = "Quorvenna lives in Zeltrabad and plays the ocarina with Brimblethorpe"


def write_corpus(root, bad_line: str | None = None):
    for task in ("asr", "text"):
        (root / task).mkdir(parents=True)
        rows = []
        for k in range(40):
            user = "Convert the speech to text.\n<|audio|>" if task == "asr" else f"Where does person {k} live?"
            rows.append(json.dumps({"messages": [{"role": "user", "content": user},
                                                 {"role": "assistant", "content": f"{WORDS} {k}."}],
                                    "audios": ["missing.wav"] if task == "asr" else []}))
        if bad_line is not None and task == "text":
            rows.insert(3, bad_line)
        (root / task / "train.jsonl").write_text("\n".join(rows) + "\n")
        # a test split with a word the training text never has: never read
        (root / task / "test.jsonl").write_text(json.dumps({"messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Xylophonique " * 50}]}) + "\n")
    return root


def test_corpus_words_become_fewer_pieces_and_the_directory_loads(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    summary = main(["--corpus", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "600"])
    tok = load_text_tokenizer(str(tmp_path / "tok"))
    tiny = build_tiny_tokenizer()
    ours = len(tok(WORDS, add_special_tokens=False).input_ids)
    theirs = len(tiny(WORDS, add_special_tokens=False).input_ids)
    assert ours < theirs / 2, (ours, theirs)
    assert tok.decode(tok(WORDS).input_ids) == WORDS  # byte-level: lossless
    assert summary["lines"] == 160 and summary["skipped"] == 0 and summary["vocab_size"] == len(tok) == 600
    assert summary["pieces_per_word"] < summary["pieces_per_word_tiny"]
    assert json.loads((tmp_path / "tok" / "text_tokenizer.json").read_text()) == summary
    assert [s.endswith("train.jsonl") for s in summary["sources"]] == [True, True]
    # the test split's word was never a training line: it stays many pieces
    assert len(tok("Xylophonique", add_special_tokens=False).input_ids) > 2
    # a backbone takes the directory as its tokenizer: the audio vocabulary follows the text one
    backbone = Backbone(16, config={"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
                                    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1},
                        tokenizer=str(tmp_path / "tok"))
    assert backbone.audio_vocab.codebook_size == 16 and len(backbone.tokenizer) == 600 + 3 + 16


def test_same_text_same_tokenizer_and_existing_directory_kept(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    main(["--corpus", str(corpus), "--out", str(tmp_path / "a"), "--vocab-size", "600"])
    main(["--corpus", str(corpus), "--out", str(tmp_path / "b"), "--vocab-size", "600"])
    a, b = (json.loads((tmp_path / d / "tokenizer.json").read_text()) for d in "ab")
    assert a["model"] == b["model"]
    before = (tmp_path / "a" / "tokenizer.json").read_text()
    main(["--corpus", str(corpus), "--out", str(tmp_path / "a"), "--vocab-size", "800"])  # kept: no --force
    assert (tmp_path / "a" / "tokenizer.json").read_text() == before
    main(["--corpus", str(corpus), "--out", str(tmp_path / "a"), "--vocab-size", "800", "--force"])
    assert len(load_text_tokenizer(str(tmp_path / "a"))) == 800


def test_bad_records_are_counted_and_bad_arguments_refused(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", bad_line='{"messages": [')
    summary = main(["--corpus", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "600"])
    assert summary["skipped"] == 1 and summary["lines"] == 160
    assert "malformed_json=1" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["--corpus", str(corpus), "--out", str(tmp_path / "x"), "--vocab-size", "300"])
    assert "too small" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        main(["--corpus", str(tmp_path), "--out", str(tmp_path / "x")])
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"messages": [{"role": "user", "content": "<|audio|>"}], "audios": ["a.wav"]}) + "\n")
    with pytest.raises(ValueError, match="no text"):
        main(["--jsonl", str(empty), "--out", str(tmp_path / "x")])
