"""Benchmark the built-in codec: rate, codebook use, intelligibility (pocketsphinx WER), speed, streaming cost.

    python experiments/bench_codec.py [--codec artifacts/codec/builtin] [--data artifacts/corpus/asr/test.jsonl]

Intelligibility: every test utterance is transcribed as it is and after encode -> decode; WER is corpus-level
after lower-casing and stripping punctuation except apostrophes (vita_audio.eval.normalize.normalize_seed_tts).
Speed is a multiple of real time on one thread. Streaming: a long utterance (test files joined) is pushed
`--chunk` codes at a time; the table gives the time of push 1 and push 50 (they should be about equal).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch

from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer
from vita_audio.audio.io import read_audio
from vita_audio.eval.judges import PocketSphinxJudge
from vita_audio.eval.metrics import wer


def load_records(path: Path, limit: int | None):
    recs = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        text = next(m["content"] for m in r["messages"] if m["role"] == "assistant")
        voice = r.get("voice", "unknown")
        recs.append((path.parent / r["audios"][0], text, "hibari" if voice == "hibari" else "espeak"))
    return recs[:limit] if limit else recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", default="artifacts/codec/builtin")
    ap.add_argument("--data", default="artifacts/corpus/asr/test.jsonl", help="VITA ASR jsonl with transcripts")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=10, help="codes per streaming push")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default=None, help="write resynthesised wavs here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok, det, judge = BuiltinTokenizer(a.codec), BuiltinDetokenizer(a.codec), PocketSphinxJudge()
    recs = load_records(Path(a.data), a.limit)
    by = defaultdict(lambda: ([], [], []))
    all_codes, t_enc, t_dec, dur, long_wavs = [], 0.0, 0.0, 0.0, []
    for i, (path, text, group) in enumerate(recs):
        wav, sr = read_audio(path)
        t = time.perf_counter(); codes = tok.encode(wav, sr); t_enc += time.perf_counter() - t
        t = time.perf_counter(); y, ysr = det.decode(codes); t_dec += time.perf_counter() - t
        dur += wav.numel() / sr
        all_codes.append(codes)
        if a.save:
            from vita_audio.audio.io import write_audio
            write_audio(Path(a.save) / f"{i:03d}_{group}.wav", y, ysr)
        refs, h0, h1 = by[group]
        refs.append(text); h0.append(judge.transcribe(wav, sr)); h1.append(judge.transcribe(y, ysr))
        if sum(w.numel() for w in long_wavs) < (55 * a.chunk / tok.frame_rate) * sr:  # >= 55 pushes
            long_wavs.append(wav)
    codes = torch.cat(all_codes)
    p = torch.bincount(codes, minlength=tok.codebook_size).float()
    p = p[p > 0] / p.sum()
    ppl = float(torch.exp(-(p * p.log()).sum()))

    # streaming: one long utterance, fixed-size pushes
    long_codes = tok.encode(torch.cat(long_wavs), 16000)
    if long_codes.numel() < 50 * a.chunk:
        raise SystemExit(f"not enough test audio for 50 pushes of {a.chunk} codes: lower --chunk")
    s, times = det.stream(), []
    for j in range(0, long_codes.numel(), a.chunk):
        t = time.perf_counter(); s.push(long_codes[j:j + a.chunk]); times.append(time.perf_counter() - t)
    s.finish()
    s, first_audio = det.stream(), None  # latency: codes needed before the first samples, pushing one at a time
    for j in range(long_codes.numel()):
        if s.push(long_codes[j:j + 1]).numel():
            first_audio = j + 1
            break

    info_path = Path(a.codec) / "training.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    print(f"codec {tok.identity}  ({a.codec}); machine: {platform.processor() or platform.machine()}, "
          f"torch threads {a.threads}")
    if info:
        print(f"trained on {info['audio_hours']:.2f} h, {info['train_args']['steps']} steps, "
              f"{info['train_seconds']:.0f} s")
    print(f"\n| metric | value |\n|---|---|")
    print(f"| frame rate | {tok.frame_rate:g} codes/s |")
    print(f"| codebook | {tok.codebook_size} codes, {int((p > 0).sum())} used, perplexity {ppl:.0f} "
          f"({ppl / tok.codebook_size:.0%}) |")
    rows_all = ([], [], [])
    for group in sorted(by):
        refs, h0, h1 = by[group]
        for k in range(3):
            rows_all[k].extend(by[group][k])
        w0, w1 = wer(refs, h0), wer(refs, h1)
        print(f"| WER {group} ({len(refs)} utts) | original {w0:.1%} -> resynthesis {w1:.1%} "
              f"(**{100 * (w1 - w0):+.1f} points**) |")
    w0, w1 = wer(rows_all[0], rows_all[1]), wer(rows_all[0], rows_all[2])
    print(f"| WER all ({len(rows_all[0])} utts) | original {w0:.1%} -> resynthesis {w1:.1%} "
          f"(**{100 * (w1 - w0):+.1f} points**) |")
    print(f"| encode speed | {dur / t_enc:.0f}x real time |")
    print(f"| decode speed (offline = one stream) | {dur / t_dec:.1f}x real time |")
    n = len(times)
    print(f"| streaming, {a.chunk} codes ({a.chunk / tok.frame_rate:.2f} s) per push, "
          f"{long_codes.numel()} codes | "
          f"push 1: {1e3 * times[0]:.0f} ms, push 2: {1e3 * times[1]:.0f} ms, "
          f"push 50: {1e3 * times[min(49, n - 1)]:.0f} ms, "
          f"median {1e3 * sorted(times)[n // 2]:.0f} ms, last: {1e3 * times[-1]:.0f} ms |")
    print(f"| first audio after | {first_audio} codes ({first_audio / tok.frame_rate:.2f} s of codes) |")


if __name__ == "__main__":
    main()
