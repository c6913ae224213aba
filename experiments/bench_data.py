"""Data pipeline benchmark: loader + packer throughput vs the tiny model's training consumption, and padding.

    python experiments/bench_data.py                       # default corpus at artifacts/corpus, max_len 2048
    python experiments/bench_data.py --corpus /tmp/c --max-len 2048 --batch-size 4 --steps 3
    python experiments/bench_data.py --asr-check 60     # + pocketsphinx WER on 60 ASR test utterances

Needs the corpus (python -m vita_audio.data.corpus). Audio codes come from a token cache filled here with a
stand-in 25 Hz / 1024-code tokenizer (frame energy quantised; the built-in codec has the same rate and size, so
the token counts, hence packing and throughput, are the same). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from vita_audio.audio.interface import AudioTokenizer
from vita_audio.data.cache import build_cache
from vita_audio.data.datamodule import VitaDataModule
from vita_audio.data.mixing import Source
from vita_audio.data.tokenize import audio_paths
from vita_audio.model.backbone import Backbone
from vita_audio.model.loss import chunked_cross_entropy, shifted_targets


class Energy25(AudioTokenizer):
    frame_rate, sample_rate, codebook_size = 25.0, 16000, 1024

    @property
    def identity(self) -> str:
        return "bench-energy25-1024"

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        hop = sample_rate // 25
        n = max(1, wav.numel() // hop)
        e = torch.log10(wav[: n * hop].reshape(n, hop).pow(2).mean(1) + 1e-8)
        return ((e + 8) / 8 * 1023).round().clamp(0, 1023).long()


TINY_CONFIG = dict(model_type="qwen2", hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                   tie_word_embeddings=False)


def sources(corpus: Path, stage: str) -> list[Source]:
    c = str(corpus)
    if stage == "sft":
        return [Source(f"{c}/sqa/train.jsonl", 2.0, name="sqa")] + [
            Source(f"{c}/{t}/train.jsonl", 0.05, name=t) for t in ("asr", "tts", "text")]
    return [Source(f"{c}/{t}/train.jsonl", 1.0, name=t) for t in ("asr", "tts", "text")]


def bench_loader(backbone, srcs, args, num_workers: int = 0) -> dict:
    t0 = time.perf_counter()
    dm = VitaDataModule(backbone.tokenizer, backbone.audio_vocab, srcs, interleave_ratio=[1, 10, 4, 10],
                        max_len=args.max_len, batch_size=args.batch_size, cache_dir=args.cache_dir,
                        cache_name="bench-energy25", num_workers=num_workers, seed=0)
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    dl = dm.train_dataloader()
    t0 = time.perf_counter()
    batches = rows = real = 0
    samples = 0
    for b in dl:
        batches += 1
        rows += b["input_ids"].shape[0]
        real += int((b["sample_ids"] >= 0).sum())
        samples += int(sum(len(set(r.tolist()) - {-1}) for r in b["sample_ids"]))
    dt = time.perf_counter() - t0
    return {"setup_s": setup_s, "epoch_s": dt, "batches": batches, "rows": rows, "samples": samples,
            "samples_per_s": samples / dt, "tokens_per_s": rows * args.max_len / dt, "real_tokens_per_s": real / dt,
            "padding": 1 - real / (rows * args.max_len), "records": len(dm.train_set.store.records)}


def bench_model(backbone, args) -> dict:
    B, T = args.batch_size, args.max_len
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, backbone.vocab_size - 8, (B, T), generator=g)
    sample_ids = (torch.arange(T) // 200).expand(B, T).contiguous()  # about 10 packed samples per row
    position_ids = torch.arange(T).expand(B, T) % 200
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-4)
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        hidden = backbone(ids, position_ids, sample_ids)  # (B, T, H)
        targets = shifted_targets(ids, 1, sample_ids)  # (B, T-1)
        loss_sum, n, _ = chunked_cross_entropy(hidden[:, :-1].reshape(-1, hidden.shape[-1]),
                                               backbone.lm_head.weight, targets.reshape(-1))
        (loss_sum / n).backward()
        opt.step()
        opt.zero_grad()
        if step:  # the first step warms up
            times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    return {"step_s": step_s, "tokens_per_s": B * T / step_s}


def asr_check(corpus: Path, n: int) -> dict[str, tuple[int, float]]:
    """pocketsphinx WER on n random ASR test utterances of the corpus, per engine (a sanity check of the audio)."""
    import random
    import re

    import jiwer
    from pocketsphinx import Decoder

    from vita_audio.audio.io import read_audio, to_int16_bytes
    from vita_audio.data.records import read_jsonl

    recs = list(read_jsonl(corpus / "asr" / "test.jsonl"))
    random.Random(0).shuffle(recs)
    dec = Decoder(samprate=16000)
    norm = lambda s: " ".join(re.sub(r"[^a-z' ]", " ", s.lower()).split())  # noqa: E731
    pairs: dict[str, tuple[list, list]] = {}
    for r in recs[:n]:
        wav, _ = read_audio(r.audios[0], 16000)
        dec.start_utt()
        dec.process_raw(to_int16_bytes(wav), full_utt=True)
        dec.end_utt()
        ref, hyp = pairs.setdefault(r.extra["voice"].split("-")[0], ([], []))
        ref.append(norm(r.messages[-1][1]))
        hyp.append(norm(dec.hyp().hypstr if dec.hyp() else ""))
    return {k: (len(r), jiwer.wer(r, h)) for k, (r, h) in pairs.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="artifacts/corpus")
    p.add_argument("--cache-dir", default="artifacts/cache")
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--asr-check", type=int, default=0, help="pocketsphinx WER on N ASR test utterances")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    files = [str(corpus / t / f"{s}.jsonl") for t in ("asr", "tts", "sqa") for s in ("train", "val", "test")]
    t0 = time.perf_counter()
    paths, _ = audio_paths(files)
    cstats = build_cache(paths, Energy25(), args.cache_dir, "bench-energy25", progress=False)
    cache_s = time.perf_counter() - t0

    backbone = Backbone(audio_codebook_size=1024, config=TINY_CONFIG, tokenizer="tiny")
    s13 = bench_loader(backbone, sources(corpus, "s13"), args)
    sft = bench_loader(backbone, sources(corpus, "sft"), args)
    model = bench_model(backbone, args)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print(f"cache fill (stand-in tokenizer): {cstats} in {cache_s:.1f} s\n")
    print(f"| measure (max_len {args.max_len}, batch {args.batch_size} rows, Boost interleave) | stages 1-3 mix "
          "| stage 4 mix |")
    print("|---|---|---|")
    rows = [("records", "records", "{:d}"), ("setup: read + validate + measure (s)", "setup_s", "{:.2f}"),
            ("one epoch: batches", "batches", "{:d}"), ("one epoch: time (s)", "epoch_s", "{:.2f}"),
            ("loader samples/s", "samples_per_s", "{:,.0f}"), ("loader tokens/s (rows x max_len)", "tokens_per_s",
                                                                 "{:,.0f}"),
            ("loader non-pad tokens/s", "real_tokens_per_s", "{:,.0f}"), ("padding fraction", "padding", "{:.2%}")]
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(s13[key])} | {fmt.format(sft[key])} |")
    print(f"| tiny model fwd+bwd+step (s/batch) | {model['step_s']:.3f} | |")
    print(f"| tiny model consumption tokens/s | {model['tokens_per_s']:,.0f} | |")
    print(f"| loader / training speed | {s13['tokens_per_s'] / model['tokens_per_s']:.0f}x "
          f"| {sft['tokens_per_s'] / model['tokens_per_s']:.0f}x |")
    if args.asr_check:
        for engine, (n, wer) in asr_check(corpus, args.asr_check).items():
            print(f"pocketsphinx WER on {n} {engine} ASR test utterances: {wer:.1%}")


if __name__ == "__main__":
    main()
