"""The corpus as text, before any synthesis: which sentence and which question goes to which split.

    sentences  template sentences (ASR / TTS); split per sentence by a hash of (seed, text); a text is never in
               two splits. The statements of the spoken-trained facts are train sentences.
    qa         spoken QA: train = questions about the spoken-trained facts (every phrasing, round-robin over the
               facts up to the audio budget); test and val = questions about the text-only facts, each in a phrasing
               held out for that fact (never used with it in training), ordered open, yes, open, no, ... so that
               any prefix (`dataset.limit`) is balanced
    text_qa    text QA: train = every fact in every phrasing not held out (open, and yes/no with the true and a
               wrong value); val / test = the spoken val / test questions, as text
    coverage   for each content word of a test question: how many distinct training audio texts contain it
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter

from vita_audio.data.corpus.config import SPLITS, CorpusConfig
from vita_audio.data.corpus.facts import QA, Fact, fact_world, words
from vita_audio.data.corpus.templates import sentence

log = logging.getLogger(__name__)
MIN_COVERAGE = 3  # distinct training audio texts that speak each content word of a test question


def split_of(group: str, seed: int, eval_fraction: float) -> str:
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if u < eval_fraction else "val" if u < 2 * eval_fraction else "train"


def plan_sentences(cfg: CorpusConfig, rng: random.Random, statements: list[str]) -> dict[str, list[str]]:
    """{split: [sentence]}: the statements in train, then template sentences up to the split quotas."""
    n_sent, _ = cfg.item_counts()
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    out["train"] = list(statements)
    seen = set(statements)
    quota = cfg.quotas(n_sent + len(statements))
    for _ in range(200 * sum(quota.values())):
        if all(len(out[s]) >= quota[s] for s in SPLITS):
            break
        _, text = sentence(rng)
        split = split_of(text, cfg.seed, cfg.eval_fraction)
        if text in seen or len(out[split]) >= quota[split]:
            continue
        seen.add(text)
        out[split].append(text)
    return out


def interleave(opens: list[QA], first: list[QA], second: list[QA], n: int) -> list[QA]:
    """open, first, open, second, ... (the first `n`): with yes / no questions as `first` / `second`, any prefix
    is balanced between kinds and between yes and no."""
    yesno = [x for pair in zip(first, second) for x in pair]
    return [x for pair in zip(opens, yesno) for x in pair][:n]


def held_out_items(facts: list[Fact], rng: random.Random, n: int, taken: dict[str, set]) -> list[QA]:
    """`n` questions about `facts`: each fact asked once open and once yes/no (half with the true value, half
    with a wrong one), in phrasings not in `taken` (fact id -> {(kind, phrasing)}); the ones returned are added
    to `taken`."""
    def pick(fact: Fact, kind: str) -> int:
        count = len(fact.relation.open if kind == "open" else fact.relation.yesno)
        return rng.choice([i for i in range(count) if (kind, i) not in taken[fact.id]])

    by_open, by_yesno = list(facts), list(facts)
    rng.shuffle(by_open)
    rng.shuffle(by_yesno)
    half = len(facts) // 2
    opens = [f.open_qa(pick(f, "open")) for f in by_open]
    yeses = [f.yesno_qa(pick(f, "yesno"), f.value) for f in by_yesno[:half]]
    noes = [f.yesno_qa(pick(f, "yesno"), f.wrong_value(rng)) for f in by_yesno[half:]]
    out = interleave(opens, yeses, noes, n)
    for q in out:
        taken[q.fact_id].add((q.kind, q.phrasing))
    return out


def all_questions(fact: Fact, rng: random.Random, skip: set) -> list[QA]:
    """Every question about `fact` in the phrasings not in `skip`: the open ones, then per yes/no phrasing one with
    the true value and one with a wrong value."""
    out = [fact.open_qa(i) for i in range(len(fact.relation.open)) if ("open", i) not in skip]
    for i in range(len(fact.relation.yesno)):
        if ("yesno", i) not in skip:
            out += [fact.yesno_qa(i, fact.value), fact.yesno_qa(i, fact.wrong_value(rng))]
    return out


def spoken_train(facts: list[Fact], rng: random.Random, n: int) -> list[QA]:
    """The first `n` of every question about `facts`, taken round-robin over the facts; each fact's questions
    alternate open and yes/no, and half the facts ask their first yes/no question with a wrong value."""
    queues = []
    for i, f in enumerate(facts):
        qs = all_questions(f, rng, set())
        opens = [q for q in qs if q.kind == "open"]
        yes = [q for q in qs if q.label == "yes"]
        no = [q for q in qs if q.label == "no"]
        for group in (opens, yes, no):
            rng.shuffle(group)
        queue = interleave(opens, *((no, yes) if i % 2 else (yes, no)), len(qs))
        queues.append(queue + [q for q in yes + no if q not in queue])
    out: list[QA] = []
    for rnd in range(max(len(q) for q in queues)):
        out += [q[rnd] for q in queues if rnd < len(q)]
    return out[:n]


def coverage(test: list[QA], train_audio_texts: list[str]) -> dict[str, int]:
    """For each content word of the test questions: the number of distinct training audio texts holding it."""
    counts: Counter = Counter()
    for text in set(train_audio_texts):
        counts.update(set(words(text)))
    needed = {w for q in test for e in q.entities for w in words(e) if w != "s"}
    return {w: counts[w] for w in sorted(needed)}


def plan_text(cfg: CorpusConfig) -> dict:
    """The corpus as text (no audio): {"facts": [Fact], "sentences": {split: [str]}, "qa": {split: [QA]},
    "text_qa": {split: [QA]}, "coverage": {word: count}}."""
    rng = random.Random(cfg.seed)
    facts = fact_world(cfg.seed)
    said = [f for f in facts if f.spoken]
    text_only = [f for f in facts if not f.spoken]
    sentences = plan_sentences(cfg, rng, [f.statement for f in said])

    for name in ("qa_test", "qa_val"):
        n = getattr(cfg, name)
        if not 1 <= n <= 2 * len(text_only):
            raise ValueError(f"corpus config {name}={n}: expected 1..{2 * len(text_only)} (one open and one yes/no "
                             f"question about each of the {len(text_only)} text-only facts at most)")
    taken: dict[str, set] = {f.id: set() for f in facts}
    qa = {"test": held_out_items(text_only, rng, cfg.qa_test, taken)}
    qa["val"] = held_out_items(text_only, rng, cfg.qa_val, taken)
    _, n_qa = cfg.item_counts()
    wanted = max(1, n_qa - len(qa["test"]) - len(qa["val"]))
    qa["train"] = spoken_train(said, rng, wanted)
    if len(qa["train"]) < wanted:
        log.info("corpus plan: spoken QA trains on every question about the %d spoken-trained facts (%d), fewer than "
                 "the %d its share of the hours allows (the corpus has that much less audio)", len(said),
                 len(qa["train"]), wanted)
    asked = len({q.fact_id for q in qa["train"]})
    if asked < len(said):
        log.warning("corpus plan: spoken QA trains on %d of the %d spoken-trained facts only (%d spoken questions in "
                    "all, %d of them val / test): raise --hours or --qa-share, or lower --qa-test", asked, len(said),
                    n_qa, len(qa["test"]) + len(qa["val"]))

    text_train = [q for f in facts for q in all_questions(f, rng, taken[f.id])]
    rng.shuffle(text_train)
    if cfg.text_rows:
        asked = {q.fact_id for q in qa["test"] + qa["val"]}
        text_train = sorted(text_train, key=lambda q: q.fact_id not in asked)[: cfg.text_rows]  # stable: shuffled
    text_qa = {"train": text_train, "val": list(qa["val"]), "test": list(qa["test"])}
    audio_texts = sentences["train"] + [t for q in qa["train"] for t in (q.question, q.answer)]
    cov = coverage(qa["test"], audio_texts)
    thin = {w: n for w, n in cov.items() if n < MIN_COVERAGE}
    if thin:
        log.warning("corpus plan: test words spoken in fewer than %d training audio texts: %s", MIN_COVERAGE, thin)
    short = {s: f"{len(sentences[s])}/{len(qa[s])}" for s in SPLITS if not sentences[s] or not qa[s]}
    if short:
        log.warning("corpus plan: some splits are empty (sentences/qa): %s", short)
    return {"facts": facts, "sentences": sentences, "qa": qa, "text_qa": text_qa, "coverage": cov}
