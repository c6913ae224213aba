"""Sentences of the offline corpus (ASR / TTS): natural sentences from templates, and the word lists they share
with the fact world (`facts.py`).

Numbers are written as words (what a speaker says, so the transcript is unambiguous). Everything is drawn from a
`random.Random` passed in, so the corpus is a function of the seed.
"""

from __future__ import annotations

import random

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
        "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth"}


def number_words(n: int) -> str:
    """0 <= n < 10000 in English words: 42 -> 'forty two', 1905 -> 'one thousand nine hundred five'."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_words handles 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    return _ONES[n // 1000] + " thousand" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    words[-1] = _ORD.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def year_words(y: int) -> str:
    """1987 -> 'nineteen eighty seven', 2005 -> 'two thousand five'."""
    if 2000 <= y < 2010:
        return number_words(y)
    hi, lo = divmod(y, 100)
    return number_words(hi) + (" hundred" if lo == 0 else (" oh " + _ONES[lo] if lo < 10 else " " + number_words(lo)))


NAMES = "Anna Ben Clara David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olivia Paul Rose Sam Tina Victor".split()
ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway", "garden"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "brown", "orange", "purple", "grey"]
ADJS = ["small", "large", "old", "new", "quiet", "noisy", "happy", "sleepy", "bright", "heavy", "soft", "fast"]
ANIMALS = ["cat", "dog", "bird", "horse", "rabbit", "fox", "cow", "duck", "mouse", "sheep"]
THINGS = ["table", "chair", "window", "door", "box", "lamp", "book", "bag", "car", "boat", "clock", "cup"]
PLURALS = ["apples", "books", "chairs", "people", "cars", "birds", "trees", "boxes", "cups", "children"]
PLACES = ["the park", "the station", "the library", "the market", "the school", "the river", "the city", "the farm"]
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
GENRES = ["jazz", "rock", "classical", "country", "pop", "folk"]
TASKS = ["call my mother", "buy some milk", "water the plants", "feed the cat", "pay the bills", "book a table",
         "send the report", "take the medicine", "walk the dog", "clean the kitchen"]
WEATHER = ["sunny", "cloudy", "rainy", "windy", "cold", "warm", "foggy"]
VERBS = ["is sleeping", "is sitting", "is waiting", "is playing", "is hiding", "is standing"]
PREPS = ["under", "next to", "behind", "in front of", "near"]


def _hour(rng: random.Random) -> str:
    return number_words(rng.randint(1, 12))


def _when(rng: random.Random) -> str:
    return rng.choice([f"at {_hour(rng)} o'clock", "tomorrow morning", "this evening", f"on {rng.choice(WEEKDAYS)}",
                       f"in {number_words(rng.randint(2, 59))} minutes", "next week"])


SENTENCE_TEMPLATES = {
    "command": [
        lambda r: f"Turn {r.choice(['on', 'off'])} the lights in the {r.choice(ROOMS)}.",
        lambda r: f"Set a timer for {number_words(r.randint(2, 90))} minutes.",
        lambda r: f"Call {r.choice(NAMES)} {_when(r)}.",
        lambda r: f"Play some {r.choice(GENRES)} music in the {r.choice(ROOMS)}.",
        lambda r: f"Remind me to {r.choice(TASKS)} {_when(r)}.",
        lambda r: f"Please open the {r.choice(THINGS)} in the {r.choice(ROOMS)}.",
        lambda r: f"Set the temperature to {number_words(r.randint(15, 30))} degrees.",
        lambda r: f"Wake me up at {_hour(r)} {r.choice(['in the morning', 'thirty', 'fifteen', 'forty five'])}.",
        lambda r: f"Send a message to {r.choice(NAMES)} and say I will be late.",
        lambda r: f"Turn the volume {r.choice(['up', 'down'])} to {number_words(r.randint(1, 20))}.",
    ],
    "description": [
        lambda r: f"The {r.choice(ADJS)} {r.choice(ANIMALS)} {r.choice(VERBS)} {r.choice(PREPS)} the {r.choice(THINGS)}.",
        lambda r: f"{r.choice(NAMES)} has a {r.choice(COLORS)} {r.choice(THINGS)} in the {r.choice(ROOMS)}.",
        lambda r: f"It is {r.choice(WEATHER)} and {r.choice(WEATHER)} near {r.choice(PLACES)} today.",
        lambda r: f"The {r.choice(COLORS)} {r.choice(THINGS)} is {r.choice(PREPS)} the {r.choice(COLORS)} {r.choice(THINGS)}.",
        lambda r: f"{r.choice(NAMES)} and {r.choice(NAMES)} walked to {r.choice(PLACES)} together.",
        lambda r: f"A {r.choice(ADJS)} {r.choice(COLORS)} {r.choice(ANIMALS)} lives near {r.choice(PLACES)}.",
    ],
    "number": [
        lambda r: f"There are {number_words(r.randint(2, 99))} {r.choice(PLURALS)} in {r.choice(PLACES)}.",
        lambda r: f"The train leaves at {_hour(r)} {number_words(r.randint(10, 59))}.",
        lambda r: f"My room number is {number_words(r.randint(100, 999))}.",
        lambda r: f"{r.choice(NAMES)} paid {number_words(r.randint(2, 500))} dollars for the {r.choice(THINGS)}.",
        lambda r: f"The {r.choice(THINGS)} weighs {number_words(r.randint(2, 80))} kilograms.",
        lambda r: f"We need {number_words(r.randint(2, 30))} {r.choice(PLURALS)} for {r.choice(PLACES)}.",
    ],
    "date": [
        lambda r: f"The meeting is on {r.choice(WEEKDAYS)}, {r.choice(MONTHS)} {ordinal_words(r.randint(1, 28))}.",
        lambda r: f"{r.choice(NAMES)} was born in {year_words(r.randint(1950, 2009))}.",
        lambda r: f"The store opens on {r.choice(WEEKDAYS)} at {_hour(r)} o'clock.",
        lambda r: f"My birthday is on the {ordinal_words(r.randint(1, 28))} of {r.choice(MONTHS)}.",
        lambda r: f"The school closes in {r.choice(MONTHS)} {year_words(r.randint(1990, 2030))}.",
    ],
}


def sentence(rng: random.Random) -> tuple[str, str]:
    """(category, sentence) of a random template."""
    cat = rng.choice(list(SENTENCE_TEMPLATES))
    return cat, rng.choice(SENTENCE_TEMPLATES[cat])(rng)
