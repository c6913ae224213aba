"""The sqa task reports what the corpus's transfer split measures (issue 22): T->T (the same question asked as text)
beside S->T and S->S, on every question and on the rows marked `transfer`, the gap, per open / yes-no question; a
question without answers is a counted skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vita_audio.eval.tasks.sqa as sqa_mod
from tests.eval.conftest import ParrotJudge, ScriptedSpeech
from vita_audio.eval.adapters import EvalSample, VitaJsonl
from vita_audio.eval.tasks import run_sqa, write_results
from vita_audio.inference.stream import Finished

# id: (answers, kind, transfer, spoken question's text answer, text question's text answer)
ROWS = {
    "q1": (("paris",), "open", True, "Anna lives in Paris.", "Anna lives in Paris."),
    "q2": (("cat",), None, True, "Ben has a pet dog.", "Ben has a pet cat."),
    "q3": (("no", "not"), None, True, "No, that is not right. Clara is a nurse.", "Clara is not a nurse."),
    "q4": (("no",), "yesno", False, "Yes, David lives in Rome.", "No, David lives in Oslo."),
}


def samples(with_text: bool = True) -> list[EvalSample]:
    out = [EvalSample(id=i, text="", audio=Path(f"{i}.wav"), answers=a, extra={
        "question": f"question {i}" if with_text else "", "transfer": t, **({"kind": k} if k else {})})
           for i, (a, k, t, _, _) in ROWS.items()]
    return out + [EvalSample(id="q5", text="", audio=Path("q5.wav"), extra={"question": "question q5"})]


@pytest.fixture
def scripted(world, monkeypatch):
    speech = ScriptedSpeech(world[1], {f"{i}.wav": r[3] for i, r in ROWS.items()}, audio=True)
    asked = []

    def ask_in_text(_speech, question, decode, sampling, max_new_tokens):
        asked.append((question, decode.schedule, max_new_tokens))
        return Finished([1], ROWS[question.split()[-1]][4], None, None, None, 1, 0, None, 0.01)

    monkeypatch.setattr(sqa_mod, "ask_in_text", ask_in_text)
    return speech, asked


def test_t2t_beside_s2t_and_s2s_per_mode_and_kind(scripted, tmp_path):
    speech, asked = scripted
    res = run_sqa(speech, samples(), ParrotJudge("it is not paris"), modes=["vanilla", "verified"],
                  text_max_new_tokens=7)
    for mode in ("vanilla", "verified"):
        m = res.metrics[mode]
        assert (m["s2t_accuracy"], m["s2s_accuracy"], m["t2t_accuracy"]) == (0.5, 0.5, 1.0)  # every question
        assert m["tt_samples"] == 3 and m["t2t_failed"] == 0 and m["failed"] == 0  # the transfer split: q1-q3
        assert (m["tt_accuracy"], m["st_accuracy"], m["ss_accuracy"]) == (1.0, pytest.approx(2 / 3),
                                                                          pytest.approx(2 / 3))
        assert m["st_accuracy_gap"] == pytest.approx(1 / 3)
        assert (m["st_accuracy_open"], m["st_accuracy_yesno"]) == (0.5, 1.0)
        assert (m["tt_accuracy_open"], m["tt_accuracy_yesno"]) == (1.0, 1.0)
        assert (m["ss_accuracy_open"], m["ss_accuracy_yesno"]) == (0.5, 1.0)  # the judge hears "not ... paris"
    assert res.info["skipped_no_answers"] == 1 and res.info["samples"] == 4 and res.info["t2t"] == "asked"
    assert res.info["open_samples"] == 2 and res.info["yesno_samples"] == 2  # q2 / q3: kind from the answers
    assert len(asked) == 8 and {a[2] for a in asked} == {7} and "question q5" not in {a[0] for a in asked}
    assert [p["kind"] for p in res.predictions[:4]] == ["open", "open", "yesno", "yesno"]
    assert [p["t2t"] for p in res.predictions[:4]] == [True] * 4 and res.predictions[1]["text_answer"].endswith("cat.")
    out = write_results(res, tmp_path / "run")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["modes"]["verified"]["tt_accuracy"] == 1.0 and saved["skipped_no_answers"] == 1


def test_t2t_needs_every_question_text_and_can_be_off(scripted):
    speech, asked = scripted
    res = run_sqa(speech, samples(with_text=False), ParrotJudge("no"))
    m = res.metrics["vanilla"]
    assert "t2t_accuracy" not in m and "tt_accuracy" not in m and res.info["t2t"].startswith("not asked: 4 samples")
    assert m["st_accuracy"] == pytest.approx(2 / 3) and m["tt_samples"] == 3  # S->T / S->S on the split still
    res = run_sqa(speech, samples(), ParrotJudge("no"), text_questions=False)
    assert "t2t_accuracy" not in res.metrics["vanilla"] and res.info["t2t"].startswith("off") and not asked
    assert res.metrics["vanilla"]["s2t_accuracy"] == 0.5  # S->T as before
    with pytest.raises(ValueError, match="none of the 1 samples has accepted answers"):
        run_sqa(speech, samples()[4:], ParrotJudge("no"))


def test_corpus_test_split_runs_t2t_on_the_real_model(world, tiny_corpus):
    corpus, _ = tiny_corpus
    qs = VitaJsonl(corpus / "sqa" / "test.jsonl", "sqa").samples()
    assert all(s.extra["question"] for s in qs)
    res = run_sqa(world[1], qs, ParrotJudge("yes"), max_new_tokens=6, text_max_new_tokens=4)
    m = res.metrics["vanilla"]
    assert 0 <= m["t2t_accuracy"] <= 1 and m["t2t_failed"] == 0 and res.info["open_samples"] == 1
    if all(s.extra.get("transfer") for s in qs):  # once the adapter passes the rows' marks on
        assert m["st_accuracy_gap"] == pytest.approx(m["tt_accuracy"] - m["st_accuracy"])
        assert {"tt_accuracy_open", "tt_accuracy_yesno"} <= set(m)  # the tiny test: one open, one yes/no question
    assert all(isinstance(p["text_answer"], str) for p in res.predictions)
