"""Text-audio interleaving of assistant targets (`text_audio_interval_ratio`, method spec section 3).

`ratio = [T1, A1, T2, A2, ...]`: text chunk sizes at even positions, audio chunk sizes at odd ones. Each A counts
the chunk's two markers, so a chunk holds A - 2 audio tokens. When either list runs out its last value repeats.

    text  t0 t1 t2 ... (outside the audio span)      audio a0 a1 a2 ... (inside it)
    Boost [1, 10, 4, 10]:  t0 <boa> a0..a7 <eoa> t1..t4 <boa> a8..a15 <eoa> ...

Both streams are cut greedily into chunks; the number of chunks is the smaller of the two counts (at least one)
and the last chunk takes all remaining text and audio.
"""

from __future__ import annotations

from collections.abc import Sequence


def chunk_sizes(ratio: Sequence[int]) -> tuple[list[int], list[int]]:
    """(text sizes, audio token sizes without markers) of a ratio list; the last value of each repeats."""
    if len(ratio) < 2 or len(ratio) % 2:
        raise ValueError(f"an interleave ratio is a list [T1, A1, T2, A2, ...] of even length >= 2, got {list(ratio)}")
    text = [int(r) for r in ratio[0::2]]
    audio = [int(r) - 2 for r in ratio[1::2]]
    if min(text) < 1 or min(audio) < 1:
        raise ValueError(f"text sizes must be >= 1 and audio sizes >= 3 (two markers + one token), got {list(ratio)}")
    return text, audio


def _cut(n: int, sizes: list[int]) -> list[int]:
    """Greedy cut of n items by `sizes` (last repeating); the final piece may be short. [] for n = 0."""
    out, i = [], 0
    while n > 0:
        s = sizes[min(i, len(sizes) - 1)]
        out.append(min(s, n))
        n -= s
        i += 1
    return out


def interleave(
    text: Sequence[int],
    audio: Sequence[int],
    ratio: Sequence[int] | None,
    begin_of_audio: int,
    end_of_audio: int,
) -> list[int]:
    """Interleave `text` ids with `audio` ids (already mapped to vocabulary ids).

    `ratio=None` keeps them apart: text, then `<boa> audio <eoa>`. Otherwise chunk as described in the module doc:
    `text_i <boa> audio_i <eoa>` for each chunk i.
    """
    text, audio = list(text), list(audio)
    if ratio is None:
        return text + [begin_of_audio, *audio, end_of_audio]
    t_sizes, a_sizes = chunk_sizes(ratio)
    t_cut, a_cut = _cut(len(text), t_sizes), _cut(len(audio), a_sizes)
    n = max(1, min(len(t_cut), len(a_cut)))
    out: list[int] = []
    ti = ai = 0
    for i in range(n):
        last = i == n - 1
        tn = len(text) - ti if last else t_cut[i]
        an = len(audio) - ai if last else a_cut[i]
        out += text[ti : ti + tn]
        out += [begin_of_audio, *audio[ai : ai + an], end_of_audio]
        ti, ai = ti + tn, ai + an
    return out
