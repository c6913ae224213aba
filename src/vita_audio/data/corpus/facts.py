"""The corpus's closed world of facts, and the questions about them (asked as text and in speech).

    20 people (the sentence templates' NAMES) x 5 relations = 100 facts:
        city   "Anna lives in Paris."                 pet   "Anna has a pet rabbit."
        color  "Anna's favorite color is blue."       job   "Anna works as a pilot."
        keys   "Anna keeps the keys in the garage."

Each relation has 10 values and each value belongs to exactly two people: one of the two facts is *spoken-trained*
(asked in speech in training, its statement also among the ASR / TTS sentences), the other *text-only* (learned from
text questions only; the test asks about it in speech, which is what measures the transfer from text to speech).
Every person has 2 or 3 spoken-trained facts, every value one spoken-trained fact, so every name and value of a
test question is spoken in training.

Values are words the offline judge (pocketsphinx) hears in hibari's statements 3 times out of 3 (measured; Rome,
Cairo, cat, parrot, duck, baker, cook and attic were dropped for it).

Questions about a fact: 4 open phrasings per relation (answer: the statement; accepted alias: the value) and 3
yes/no phrasings, asked with the true value ("<statement> Yes, that is right.") or a wrong one ("<statement> No,
that is not right."): the answer recalls the fact before it gives the verdict. With the verdict first, the demo's
model decided before recalling ("Yes, that is right. Emma lives in Paris." to "Is London the city where Emma
lives?") and scored 40 % on yes / no text questions against 97 % on open ones; with the statement first it states
the right fact in 28 of 30 test answers, though its verdict is still at chance (RESULTS.md). A phrasing is
identified by (kind, index); the held-out phrasings of a test fact are never used with that fact in training.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from vita_audio.data.corpus.templates import COLORS, NAMES


@dataclass(frozen=True)
class Relation:
    name: str
    values: tuple[str, ...]
    statement: str  # "{p}" the person, "{v}" the value
    open: tuple[str, ...]  # questions with the value as answer
    yesno: tuple[str, ...]  # questions about "{v}": yes when it is the person's value


RELATIONS = (
    Relation("city", ("Paris", "London", "Moscow", "Berlin", "Madrid", "Tokyo", "Vienna", "Boston", "Dublin", "Sydney"),
             "{p} lives in {v}.",
             ("Where does {p} live?", "In which city does {p} live?", "What city does {p} live in?",
              "Which city is {p}'s home?"),
             ("Does {p} live in {v}?", "Is {v} the city where {p} lives?", "Is {p}'s home in {v}?")),
    Relation("pet", ("dog", "rabbit", "sheep", "pony", "frog", "turtle", "hamster", "donkey", "goat", "mouse"),
             "{p} has a pet {v}.",
             ("What pet does {p} have?", "Which animal is {p}'s pet?", "What kind of pet does {p} keep?",
              "What animal does {p} have at home?"),
             ("Does {p} have a pet {v}?", "Is {p}'s pet a {v}?", "Is the {v} {p}'s pet?")),
    Relation("color", tuple(COLORS),
             "{p}'s favorite color is {v}.",
             ("What is {p}'s favorite color?", "Which color does {p} like best?", "What color does {p} love most?",
              "Which color is {p}'s favorite?"),
             ("Is {p}'s favorite color {v}?", "Does {p} like {v} best?", "Is {v} the color {p} loves most?")),
    Relation("job", ("teacher", "doctor", "farmer", "lawyer", "pilot", "nurse", "driver", "singer", "painter",
                     "dentist"),
             "{p} works as a {v}.",
             ("What does {p} do for a living?", "What is {p}'s job?", "What work does {p} do?",
              "Which job does {p} have?"),
             ("Is {p} a {v}?", "Does {p} work as a {v}?", "Does {p} have a job as a {v}?")),
    Relation("keys", ("kitchen", "bedroom", "bathroom", "office", "garage", "hallway", "garden", "living room",
                      "cellar", "basement"),
             "{p} keeps the keys in the {v}.",
             ("Where does {p} keep the keys?", "In which room does {p} keep the keys?", "Where are {p}'s keys kept?",
              "Which room holds {p}'s keys?"),
             ("Does {p} keep the keys in the {v}?", "Are {p}'s keys in the {v}?",
              "Is the {v} where {p} keeps the keys?")),
)
KINDS = ("open", "yesno")
# Yes / no answers close with these (after the statement); "not" is an accepted answer of a "no" question too: the
# offline judge (pocketsphinx) hears "No," from hibari as "now" 10 times out of 12 (at the start of an answer), and
# "not" in "No, that is not right." 12 times out of 12 (measured on 12 corpus answers).
YES, NO = "Yes, that is right.", "No, that is not right."


def words(text: str) -> list[str]:
    """Lower-case words of a text ("Anna's" -> "anna", "s")."""
    return re.findall(r"[a-z]+", text.lower())


@dataclass(frozen=True)
class QA:
    """One question about one fact, as a text QA row or a spoken QA row."""

    fact_id: str
    kind: str  # "open" | "yesno"
    phrasing: int  # index into the relation's `open` or `yesno` questions
    question: str
    answer: str  # the answer sentence (text, and spoken by the assistant voice)
    aliases: tuple[str, ...]  # accepted answers (containment, spec section 7)
    transfer: bool  # the fact is text-only: never asked in speech in training
    entities: tuple[str, ...]  # the content words a listener must recognise: the name and the values in play

    @property
    def label(self) -> str:
        """"open", or the answer of a yes/no question: "yes" | "no"."""
        return "open" if self.kind == "open" else self.aliases[0]


@dataclass(frozen=True)
class Fact:
    person: str
    relation: Relation
    value: str
    spoken: bool  # asked in speech in training (else text-only)

    @property
    def id(self) -> str:
        return f"{self.relation.name}:{self.person}"

    @property
    def statement(self) -> str:
        return self.relation.statement.format(p=self.person, v=self.value)

    def open_qa(self, phrasing: int) -> QA:
        q = self.relation.open[phrasing].format(p=self.person)
        return QA(self.id, "open", phrasing, q, self.statement, (self.value.lower(),), not self.spoken,
                  (self.person, self.value))

    def yesno_qa(self, phrasing: int, asked: str) -> QA:
        """The yes/no question of `phrasing` about value `asked`: "yes" when it is this fact's value."""
        q = self.relation.yesno[phrasing].format(p=self.person, v=asked)
        yes = asked == self.value
        return QA(self.id, "yesno", phrasing, q, f"{self.statement} {YES if yes else NO}",
                  ("yes",) if yes else ("no", "not"), not self.spoken,
                  (self.person, self.value) if yes else (self.person, self.value, asked))

    def wrong_value(self, rng: random.Random) -> str:
        return rng.choice([v for v in self.relation.values if v != self.value])


def fact_world(seed: int) -> list[Fact]:
    """The 100 facts of `seed`, sorted by id: values and the spoken-trained / text-only split drawn by the seed.

    Person i of a shuffled list is spoken-trained for relations (i + j) mod 5, j < 3 for the first ten people and
    j < 2 for the others: 50 spoken-trained facts, 10 per relation, 2 or 3 per person. Within a relation the
    spoken-trained people are paired with the text-only ones and each pair shares one value."""
    rng = random.Random(f"facts:{seed}")
    people = list(NAMES)
    rng.shuffle(people)
    n_rel = len(RELATIONS)
    spoken = {(p, RELATIONS[(i + j) % n_rel].name) for i, p in enumerate(people)
              for j in range(3 if i < len(people) // 2 else 2)}
    facts = []
    for rel in RELATIONS:
        said = [p for p in people if (p, rel.name) in spoken]
        text = [p for p in people if (p, rel.name) not in spoken]
        values = list(rel.values)
        for group in (said, text, values):
            rng.shuffle(group)
        if not len(said) == len(text) == len(values):
            raise ValueError(f"relation {rel.name}: {len(said)} spoken-trained and {len(text)} text-only people for "
                             f"{len(values)} values; each value needs one of each")
        for a, b, v in zip(said, text, values):
            facts += [Fact(a, rel, v, True), Fact(b, rel, v, False)]
    return sorted(facts, key=lambda f: f.id)
