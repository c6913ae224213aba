"""VITA jsonl reading: the spec's samples parse; every bad input names the file and line, errors or is counted."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl, write_wav
from vita_audio.data.records import DataError, SkipCounter, parse_record, read_jsonl

SPEC_ASR = {"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                         {"role": "assistant", "content": "the transcript"}], "audios": ["path/to/question.wav"]}
SPEC_SQA = {"messages": [{"role": "user", "content": "<|audio|>"},
                         {"role": "assistant", "content": "answer text\n<|audio|>"}],
            "audios": ["path/to/question.wav", "path/to/answer.wav"]}
SPEC_TTS = {"messages": [{"role": "user", "content": "Convert the text to speech.\nhello there"},
                         {"role": "assistant", "content": "<|audio|>"}], "audios": ["path/to/answer.wav"]}


@pytest.fixture()
def spec_dir(tmp_path):
    write_wav(tmp_path / "path/to/question.wav")
    write_wav(tmp_path / "path/to/answer.wav")
    return tmp_path


@pytest.mark.parametrize("obj", [SPEC_ASR, SPEC_SQA, SPEC_TTS], ids=["asr", "sqa", "tts"])
def test_spec_samples_parse(spec_dir, obj):
    path = write_jsonl(spec_dir / "d.jsonl", [obj])
    (rec,) = list(read_jsonl(path))
    assert [r for r, _ in rec.messages] == ["user", "assistant"]
    assert all(a.startswith(str(spec_dir)) for a in rec.audios)
    assert len(rec.audios) == len(obj["audios"]) and rec.line == 1


def test_conversations_system_and_extra_keys(spec_dir):
    obj = {"conversations": [{"role": "system", "content": "Be brief."}, *SPEC_SQA["messages"]],
           "audios": SPEC_SQA["audios"], "answers": ["yes"]}
    rec = parse_record(obj, str(spec_dir / "x.jsonl"), 3)
    assert rec.messages[0] == ("system", "Be brief.") and rec.extra == {"answers": ["yes"]}
    assert rec.audios[0].endswith("question.wav") and rec.audios[1].endswith("answer.wav")


BAD = [
    ("audio_missing", json.dumps({**SPEC_ASR, "audios": ["nope.wav"]}), "nope.wav"),
    ("audio_count", json.dumps({**SPEC_ASR, "audios": []}), "placeholder"),
    ("audio_count", json.dumps({**SPEC_SQA, "audios": ["path/to/question.wav"]}), "2 <|audio|>"),
    ("empty_content", json.dumps({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}]}),
     "non-empty string"),
    ("empty_content", json.dumps({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}),
     "non-empty string"),
    ("unknown_role", json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}),
     "'robot'"),
    ("malformed_json", '{"messages": [', "malformed JSON"),
    ("not_utf8", b'{"messages": "\xff\xfe"}', "UTF-8"),
    ("bad_record", json.dumps([1, 2]), "JSON object"),
    ("bad_record", json.dumps({"text": "hi"}), "'messages'"),
    ("bad_record", json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "no assistant"),
]


def _write_raw(path, good, bad):
    with open(path, "wb") as f:
        f.write((json.dumps(good) + "\n").encode())
        f.write(bad if isinstance(bad, bytes) else (bad + "\n").encode())
        f.write(b"\n" if isinstance(bad, bytes) else b"")
        f.write((json.dumps(good) + "\n").encode())


@pytest.mark.parametrize("reason,line,needle", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_errors_name_file_and_line(spec_dir, reason, line, needle):
    path = spec_dir / "bad.jsonl"
    _write_raw(path, SPEC_ASR, line)
    with pytest.raises(DataError) as e:
        list(read_jsonl(path))
    assert e.value.reason == reason and e.value.line == 2
    assert f"{path}:2:" in str(e.value) and needle in str(e.value)


@pytest.mark.parametrize("reason,line,needle", BAD[:8], ids=[b[0] for b in BAD[:8]])
def test_bad_input_skipped_and_counted(spec_dir, reason, line, needle):
    path = spec_dir / "bad.jsonl"
    _write_raw(path, SPEC_ASR, line)
    skips = SkipCounter()
    recs = list(read_jsonl(path, on_error="skip", skips=skips))
    assert [r.line for r in recs] == [1, 3]
    assert dict(skips.counts) == {reason: 1}
    assert reason in skips.report()


def test_missing_file_and_bad_switch(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_jsonl(tmp_path / "none.jsonl"))
    p = write_jsonl(tmp_path / "d.jsonl", ["{"])
    with pytest.raises(ValueError, match="on_error"):
        list(read_jsonl(p, on_error="ignore", skips=SkipCounter()))


def test_missing_file_says_how_to_make_it(tmp_path):
    corpus_file = tmp_path / "corpus" / "asr" / "train.jsonl"  # the corpus layout <out>/<task>/<split>.jsonl
    with pytest.raises(FileNotFoundError) as err:
        list(read_jsonl(corpus_file))
    msg = str(err.value)
    assert str(corpus_file) in msg and f"python -m vita_audio.data.corpus --out {tmp_path / 'corpus'}" in msg
    with pytest.raises(FileNotFoundError) as err:
        list(read_jsonl(tmp_path / "mine" / "dialogues.jsonl"))  # one's own data: fix the path or build the corpus
    msg = str(err.value)
    assert "dialogues.jsonl" in msg and "data.train_sources" in msg and "python -m vita_audio.data.corpus" in msg
