"""What the built-in codec's codes carry: phone purity, cross-voice agreement, CTC phone error, resynthesis WER.

    python experiments/bench_tokenizer.py --codec acoustic=artifacts/codec/builtin \\
        --codec semantic25=artifacts/codec/builtin_semantic25 --aligner artifacts/codec/builtin_semantic25 \\
        [--corpus artifacts/corpus] [--natural-dir /tmp/natural] [--threads 1]

Frame-level phones: the `--aligner` (a semantic codec) force-aligns the espeak-ng phonemes of each transcript to
its CTC label frames (50/s, Viterbi over the CTC path). A phone spans its label frame and the blank frames after
it, at most 8 (160 ms; beyond: silence); a code's phone is the commonest phone among its label frames (none:
silence, left out). The same alignment is used for every codec (it favours the aligner's own codes a little).
Data: the corpus's asr/val + asr/test utterances (hibari and espeak-ng voices, unseen in training).

    purity         share of (non-silence) codes whose phone is their code's most frequent phone (higher: the code
                   says which phone it is; grows with the codebook size, compare at equal sizes)
    cross-voice    P(an espeak token and a hibari token of the same phone share a code) divided by P(two hibari
                   tokens of that phone share a code), phones weighted by their espeak count (1: a phone's code
                   does not depend on the voice; 0: the voices use disjoint codes)
    espeak-only    share of espeak tokens whose code no hibari token uses
    PER            CTC phone error rate (edit distance / reference phones) of the codec's own CTC head, greedy,
                   per voice family (semantic codecs only)
    WER            pocketsphinx judge (the project's default), corpus-level, normalize_seed_tts; originals and
                   resynthesis (encode -> stream decode) on the corpus tts/test (hibari) and on 20 unseen natural
                   sentences synthesised with hibari (written to --natural-dir once)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer, load_codec
from vita_audio.audio.builtin.ctc import edit_distance, forced_align, greedy_decode
from vita_audio.audio.builtin.features import Features, normalise_loudness, pad_to_tokens
from vita_audio.audio.builtin.phonemes import Phonemizer
from vita_audio.audio.builtin.transcripts import read_utterances
from vita_audio.audio.io import read_audio, write_audio
from vita_audio.eval.judges import PocketSphinxJudge
from vita_audio.eval.metrics import wer

NATURAL = [
    "The bakery on the corner sells fresh bread every morning.",
    "Please remember to water the plants while I am away.",
    "My brother bought a new bicycle last weekend.",
    "We watched the sunset from the top of the hill.",
    "The train to the city leaves in ten minutes.",
    "She keeps her old letters in a wooden box.",
    "Could you pass me the salt and the pepper?",
    "The children played football in the park after school.",
    "It rained all night, so the river is very high.",
    "He forgot his umbrella at the office again.",
    "The museum opens at nine and closes at five.",
    "I would like a cup of tea with a little milk.",
    "Our neighbours have a friendly black dog.",
    "The library has a quiet room for reading.",
    "They are planning a trip to the mountains in summer.",
    "The soup needs a bit more salt.",
    "Turn left at the bridge and walk along the river.",
    "My grandmother tells wonderful stories about her childhood.",
    "The doctor said I should drink more water.",
    "We need to buy eggs, butter and flour for the cake.",
]
MAX_FILL = 8  # blank label frames after a phone's spike that still belong to it (8 x 20 ms)


def frame_phones(path: list[int], blank: int) -> list[int | None]:
    """A CTC path (label per frame) -> a phone per frame: each spike fills the blanks after it, at most MAX_FILL."""
    out, cur, run = [], None, 0
    for c in path:
        if c != blank:
            cur, run = c, 0
        else:
            run += 1
            if run > MAX_FILL:
                cur = None
        out.append(cur)
    return out


def token_phones(phones: list[int | None], labels_per_token: int, n_tokens: int) -> list[int | None]:
    """Label-frame phones (50/s) -> one phone per token: the commonest non-silence phone of its frames."""
    out = []
    for i in range(n_tokens):
        span = [p for p in phones[i * labels_per_token:(i + 1) * labels_per_token] if p is not None]
        out.append(Counter(span).most_common(1)[0][0] if span else None)
    return out


def log_mel(model, wav: torch.Tensor) -> torch.Tensor:
    cfg, feats = model.cfg, Features(model.cfg)
    wav = pad_to_tokens(normalise_loudness(wav, cfg.target_rms), cfg.samples_per_token)
    return feats.log_mel(feats.magnitude(wav[None]))  # (1, F, M)


@torch.no_grad()
def ctc_log_probs(model, wav: torch.Tensor) -> torch.Tensor:
    z = model.encoder(log_mel(model, wav))
    return model.ctc(model.vq.lookup(model.vq.nearest(z)))[0]  # (N*u, P+1)


def code_stats(tokens: list[tuple[str, int, int]]) -> dict:
    """tokens: (family, phone, code) -> purity, cross-voice agreement, espeak-only share."""
    by_code = defaultdict(Counter)
    for _, p, c in tokens:
        by_code[c][p] += 1
    purity = sum(max(cnt.values()) for cnt in by_code.values()) / max(1, len(tokens))
    h, e = defaultdict(Counter), defaultdict(Counter)
    for fam, p, c in tokens:
        (h if fam == "hibari" else e)[p][c] += 1
    cross_num = cross_den = 0.0
    for p, ec in e.items():
        hc, n_e, n_h = h.get(p, Counter()), sum(ec.values()), sum(h.get(p, Counter()).values())
        if n_h < 2:
            continue
        cross = sum(ec[c] * hc[c] for c in ec) / (n_e * n_h)
        self_ = sum(v * (v - 1) for v in hc.values()) / (n_h * (n_h - 1))
        cross_num, cross_den = cross_num + n_e * cross, cross_den + n_e * self_
    hib_codes = {c for f, _, c in tokens if f == "hibari"}
    esp = [c for f, _, c in tokens if f != "hibari"]
    return {"purity": purity, "cross": cross_num / max(cross_den, 1e-12),
            "espeak_only": sum(c not in hib_codes for c in esp) / max(1, len(esp))}


def natural_wavs(out: Path) -> list[tuple[Path, str]]:
    from vita_audio.data.corpus.synth import HIBARI, synthesize

    out.mkdir(parents=True, exist_ok=True)
    items = []
    for i, text in enumerate(NATURAL):
        p = out / f"natural_{i:02d}.wav"
        if not p.is_file():
            write_audio(p, synthesize(text, HIBARI, seed=i), 16000)
        items.append((p, text))
    return items


def resynth_wer(name_dir: str, items: list[tuple[Path, str]], judge, cache: dict) -> tuple[float, float]:
    tok, det = BuiltinTokenizer(name_dir), BuiltinDetokenizer(name_dir)
    refs, orig, hyp = [], [], []
    for p, text in items:
        wav, sr = read_audio(p, 16000)
        if p not in cache:
            cache[p] = judge.transcribe(wav, sr)
        y, ysr = det.decode(tok.encode(wav, sr))
        refs.append(text), orig.append(cache[p]), hyp.append(judge.transcribe(y, ysr))
    return wer(refs, orig), wer(refs, hyp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", action="append", required=True, help="NAME=DIR (repeat)")
    ap.add_argument("--aligner", required=True, help="a semantic codec dir whose CTC head gives the phone frames")
    ap.add_argument("--corpus", default="artifacts/corpus")
    ap.add_argument("--natural-dir", default="/tmp/bench_tokenizer_natural")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="at most this many utterances per set (a quick look)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    corpus = Path(a.corpus)
    utts, skipped = read_utterances([corpus / "asr/val.jsonl", corpus / "asr/test.jsonl"])
    utts = utts[:a.limit]
    phon = Phonemizer()
    ids = phon([u.text for u in utts])
    aligner = load_codec(a.aligner, expected_kind="semantic")
    wavs, aligned = [], []
    for u, p in zip(utts, ids):
        if p is None:
            continue
        wav, _ = read_audio(u.path, 16000)
        try:
            path = forced_align(ctc_log_probs(aligner, wav), p, aligner.ctc.blank)
        except ValueError:
            skipped.append((str(u.path), "alignment failed"))
            continue
        wavs.append((wav, "hibari" if u.voice == "hibari" else "espeak", p))
        aligned.append(frame_phones(path, aligner.ctc.blank))
    print(f"phone frames from {a.aligner}: {len(wavs)} utterances "
          f"({sum(f == 'hibari' for _, f, _ in wavs)} hibari), {len(skipped)} skipped")
    tts_test = [(u.path, u.text) for u in read_utterances(corpus / "tts/test.jsonl")[0]][:a.limit]
    natural = natural_wavs(Path(a.natural_dir))[:a.limit]
    judge, judged = PocketSphinxJudge(), {}
    rows = []
    for spec in a.codec:
        name, d = spec.split("=", 1)
        model = load_codec(d)
        u_lab = model.cfg.frames_per_token // aligner.cfg.ctc_hop_frames  # aligner label frames per token
        tokens, per = [], defaultdict(lambda: [0, 0])
        for (wav, fam, target), phones in zip(wavs, aligned):
            with torch.no_grad():
                codes = model.vq.nearest(model.encoder(log_mel(model, wav)))[0].tolist()
            for ph, c in zip(token_phones(phones, u_lab, len(codes)), codes):
                if ph is not None:
                    tokens.append((fam, ph, c))
            if model.ctc is not None:
                hyp = greedy_decode(ctc_log_probs(model, wav), model.ctc.blank)
                per[fam][0] += edit_distance(target, hyp)
                per[fam][1] += len(target)
        t = time.time()
        w_tts = resynth_wer(d, tts_test, judge, judged)
        w_nat = resynth_wer(d, natural, judge, judged)
        info = json.loads((Path(d) / "training.json").read_text()) if (Path(d) / "training.json").is_file() else {}
        rows.append((name, model.cfg, code_stats(tokens),
                     {f: e / n for f, (e, n) in per.items()}, w_tts, w_nat, info.get("train_seconds"),
                     info.get("train_args", {}).get("steps"), time.time() - t))
    print("\n| codec | kind | rate | codes | purity | cross-voice | espeak-only | PER hibari | PER espeak | "
          "WER tts/test (orig -> resynth) | WER natural (orig -> resynth) | train (steps, s, 1 thread) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, cfg, st, per, w_tts, w_nat, secs, steps, _ in rows:
        pe = [f"{per[f]:.1%}" if f in per else "n/a" for f in ("hibari", "espeak")]
        print(f"| {name} | {cfg.kind} | {cfg.frame_rate:g}/s | {cfg.codebook_size} | {st['purity']:.2f} | "
              f"{st['cross']:.2f} | {st['espeak_only']:.0%} | {pe[0]} | {pe[1]} | "
              f"{w_tts[0]:.1%} -> {w_tts[1]:.1%} | {w_nat[0]:.1%} -> {w_nat[1]:.1%} | {steps}, {secs} |")


if __name__ == "__main__":
    main()
