"""The corpus plan (text only, no synthesis) tests what the method is about (issue 22): every fact is learned as
text, spoken QA trains on half of them, and the test asks spoken questions about the other half, answerable from
the text data, balanced, in words the training audio speaks."""

from __future__ import annotations

from collections import Counter

import pytest

from vita_audio.data.corpus import CorpusConfig, plan_text
from vita_audio.data.corpus.facts import RELATIONS, words
from vita_audio.data.corpus.plan import MIN_COVERAGE
from vita_audio.eval.metrics import contains_answer


@pytest.fixture(scope="module")
def plan():
    return plan_text(CorpusConfig())


def test_facts_split_into_spoken_trained_and_text_only_halves(plan):
    facts = plan["facts"]
    assert len(facts) == 100 and len({f.id for f in facts}) == 100
    assert sum(f.spoken for f in facts) == 50
    for rel in RELATIONS:  # each value: one spoken-trained and one text-only fact
        held = Counter((f.value, f.spoken) for f in facts if f.relation is rel)
        assert set(held.values()) == {1} and len(held) == 2 * len(rel.values)
    per_person = Counter(f.person for f in facts if f.spoken)
    assert set(per_person.values()) <= {2, 3} and len(per_person) == 20
    spoken = {f.id for f in facts if f.spoken}
    assert {q.fact_id for q in plan["qa"]["train"]} == spoken  # spoken QA trains on every spoken-trained fact...
    statements = {f.statement for f in facts if not f.spoken}
    assert not statements & set(plan["sentences"]["train"])  # ...and no text-only fact is in the ASR / TTS audio
    assert {q.fact_id for q in plan["text_qa"]["train"]} == {f.id for f in facts}  # every fact is learned as text


def test_test_split_asks_text_only_facts_balanced(plan):
    facts = {f.id: f for f in plan["facts"]}
    test = plan["qa"]["test"]
    assert len(test) == 100 and len(plan["qa"]["val"]) == 16
    for split in ("test", "val"):
        assert all(not facts[q.fact_id].spoken and q.transfer for q in plan["qa"][split])
        assert [q.question for q in plan["text_qa"][split]] == [q.question for q in plan["qa"][split]]
    assert not any(q.transfer for q in plan["qa"]["train"])
    kinds = [q.label for q in test]
    assert Counter(kinds) == {"open": 50, "yes": 25, "no": 25}
    assert kinds[:4] == ["open", "yes", "open", "no"]  # any prefix of 4k items is balanced (dataset.limit)
    for q in test:
        assert contains_answer(q.answer, q.aliases)  # the target answer passes the eval's own rule
        assert (q.label == "no") == ("not" in words(q.answer))  # what the offline judge hears of a "no" answer
        if q.kind == "open":
            assert q.aliases == (facts[q.fact_id].value.lower(),) and facts[q.fact_id].value in q.answer
        else:
            asks_true = set(words(facts[q.fact_id].value)) <= set(words(q.question))
            assert q.label == ("yes" if asks_true else "no")
            # the fact first, then the verdict: the model recalls before it decides (facts.py)
            statement = facts[q.fact_id].statement
            assert q.answer == f"{statement} {'Yes, that is right.' if asks_true else 'No, that is not right.'}"


def test_every_test_answer_is_supported_by_the_text_train_data(plan):
    facts = {f.id: f for f in plan["facts"]}
    taught = {(q.fact_id, q.answer) for q in plan["text_qa"]["train"]}
    used = {(q.fact_id, q.kind, q.phrasing) for q in plan["text_qa"]["train"] + plan["qa"]["train"]}
    for q in plan["qa"]["test"] + plan["qa"]["val"]:
        assert (q.fact_id, facts[q.fact_id].statement) in taught, q  # the fact, as text, in text/train
        assert (q.fact_id, q.kind, q.phrasing) not in used, q  # in a phrasing never used with this fact in training


def test_no_test_or_val_question_text_in_train(plan):
    train = {q.question for q in plan["qa"]["train"] + plan["text_qa"]["train"]} | set(plan["sentences"]["train"])
    test = {q.question for q in plan["qa"]["test"]}
    val = {q.question for q in plan["qa"]["val"]}
    assert len(test) == len(plan["qa"]["test"]) and not test & train and not val & train and not val & test
    for split in ("val", "test"):
        assert not set(plan["sentences"][split]) & set(plan["sentences"]["train"])


def test_every_entity_word_of_a_test_item_is_spoken_in_training(plan):
    audio_texts = set(plan["sentences"]["train"]) | {t for q in plan["qa"]["train"] for t in (q.question, q.answer)}
    for q in plan["qa"]["test"]:
        for w in {w for e in q.entities for w in words(e) if w != "s"}:
            n = sum(w in words(t) for t in audio_texts)
            assert n >= MIN_COVERAGE, (q.question, w, n)
            assert plan["coverage"][w] == n


def test_plan_is_deterministic_and_seeded(plan):
    again = plan_text(CorpusConfig())
    assert again["qa"] == plan["qa"] and again["text_qa"] == plan["text_qa"] and again["facts"] == plan["facts"]
    assert plan_text(CorpusConfig(seed=1))["facts"] != plan["facts"]


def test_a_test_larger_than_the_fact_world_is_refused():
    with pytest.raises(ValueError, match="qa_test=101: expected 1..100"):
        plan_text(CorpusConfig(qa_test=101))
