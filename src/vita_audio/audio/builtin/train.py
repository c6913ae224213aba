"""Train the built-in codec offline on CPU: a few minutes on a list of wav files (acoustic; the semantic kind
trains in train_semantic.py on jsonl rows, dispatched from `train_codec` by `CodecConfig.kind`).

    wavs --read, 16 kHz, loudness-normalised--> features once, in memory
    loop: random crops of `crop_tokens` (+ decoder context) -> encoder -> VQ (EMA) -> decoder
          loss = L1(log-magnitude) + beta * commitment;  dead codes restarted from the batch
    -> out_dir/{config.json, model.safetensors, training.json}

`train_codec` skips work when `out_dir` already holds a finished run with the same codec config, training
arguments and data list (the demo pipeline chains corpus -> codec -> cache -> training).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vita_audio.audio.builtin.codec import save_codec
from vita_audio.audio.builtin.config import CodecConfig
from vita_audio.audio.builtin.features import LOG_FLOOR, Features, normalise_loudness, pad_to_tokens
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.builtin.train_semantic import train_semantic
from vita_audio.audio.builtin.vq_step import optimise, quantise
from vita_audio.audio.io import AudioError, read_audio

log = logging.getLogger(__name__)


SEMANTIC_ARGS = ("ctc_weight", "recon_voices", "assistant_voice")


@dataclass(frozen=True)
class TrainArgs:
    steps: int = 3000
    batch_size: int = 16
    crop_tokens: int = 24
    lr: float = 2e-3
    warmup_steps: int = 100
    commitment: float = 0.25
    restart_every: int = 25
    restart_threshold: float = 0.05
    max_audio_hours: float = 2.0  # at most this much audio is loaded (the rest is counted and skipped)
    seed: int = 0
    num_threads: int = 1  # small convs: a second thread helps little and hurts a lot on a shared machine
    # semantic codec only (batches of whole utterances; batch_size counts utterances, crop_tokens is unused)
    ctc_weight: float = 1.0
    recon_voices: tuple[str, ...] = ("hibari",)  # the decoder learns to speak these voices (the output voice)
    assistant_voice: str = "hibari"  # who speaks assistant-turn audios (jsonl rows name the user turn's voice)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recon_voices", tuple(self.recon_voices))  # YAML gives a list


def collect_wavs(source: str | Path | list) -> list[Path]:
    """A list of paths (jsonl files among them expanded), a directory (searched recursively for *.wav / *.flac) or
    a VITA jsonl (its `audios`)."""
    if isinstance(source, (list, tuple)):
        return sorted({w for p in source for w in (collect_wavs(p) if str(p).endswith(".jsonl") else [Path(p)])})
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if source.suffix == ".jsonl":
        out = []
        for i, line in enumerate(source.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{source}:{i}: not JSON ({e})") from e
                out += [(source.parent / a) if not Path(a).is_absolute() else Path(a) for a in rec.get("audios", [])]
        return sorted(set(out))
    raise ValueError(f"{source}: expected a directory of wavs, a .jsonl file or a list of paths")


def _run_key(cfg: CodecConfig, args: TrainArgs, paths: list[Path]) -> str:
    """Hash of config, arguments and the data (paths relative to their common folder, sizes): moving the data
    or the checkout does not invalidate a finished run; adding, removing or changing a file does."""
    resolved = [p.resolve() for p in paths]
    base = Path(os.path.commonpath(resolved)) if len(resolved) > 1 else resolved[0].parent
    files = [(str(p.relative_to(base)), p.stat().st_size if p.exists() else -1) for p in resolved]
    train_args = asdict(args)
    if cfg.kind == "acoustic":  # the semantic-only arguments do not change an acoustic run (nor its key of before)
        for k in SEMANTIC_ARGS:
            train_args.pop(k)
    h = hashlib.sha256(json.dumps([cfg.to_dict(), train_args, files]).encode())
    return h.hexdigest()[:16]


def _load_features(paths: list[Path], cfg: CodecConfig, feats: Features, max_hours: float):
    mels, mags, skipped, total_s = [], [], [], 0.0
    for p in tqdm(paths, desc="codec: features", unit="file", mininterval=5):
        if total_s >= max_hours * 3600:
            skipped.append((str(p), "over max_audio_hours"))
            continue
        try:
            wav, _ = read_audio(p, cfg.sample_rate)
        except AudioError as e:
            skipped.append((str(p), str(e)))
            continue
        total_s += wav.numel() / cfg.sample_rate
        wav = pad_to_tokens(normalise_loudness(wav, cfg.target_rms), cfg.samples_per_token)
        with torch.no_grad():
            mag = feats.magnitude(wav[None])  # (1, F, K)
            mels.append(feats.log_mel(mag)[0])
            mags.append(feats.log_mag(mag)[0].half())
    if skipped:
        log.warning("codec training: skipped %d of %d files (first: %s)", len(skipped), len(paths), skipped[0])
    if not mels:
        raise ValueError(f"codec training: no usable audio among {len(paths)} files")
    return mels, mags, skipped, total_s


def _batch(mels, mags, cfg: CodecConfig, crop: int, ctx: int, bs: int, g: torch.Generator):
    """Random crops: mel (B, (crop+2ctx)*k, M), inside (B, crop+2ctx) bool, target (B, crop*k, K), mask."""
    k, floor = cfg.frames_per_token, math.log(LOG_FLOOR)
    L = crop + 2 * ctx
    mel_b = torch.full((bs, L * k, cfg.n_mels), floor)
    tgt_b = torch.full((bs, crop * k, cfg.n_bins), floor)
    inside = torch.zeros(bs, L, dtype=torch.bool)
    mask = torch.zeros(bs, crop * k, 1)
    for b in range(bs):
        i = int(torch.randint(len(mels), (1,), generator=g))
        n = mels[i].shape[0] // k
        c = int(torch.randint(max(1, n - crop + 1), (1,), generator=g))  # first target token
        lo, hi = max(0, c - ctx), min(n, c + crop + ctx)
        mel_b[b, (lo - c + ctx) * k:(hi - c + ctx) * k] = mels[i][lo * k:hi * k]
        inside[b, lo - c + ctx:hi - c + ctx] = True
        t_hi = min(n, c + crop)
        tgt_b[b, : (t_hi - c) * k] = mags[i][c * k:t_hi * k].float()
        mask[b, : (t_hi - c) * k] = 1.0
    return mel_b, inside, tgt_b, mask


def train_codec(
    wav_paths: str | Path | list,
    out_dir: str | Path,
    config: CodecConfig | None = None,
    args: TrainArgs | None = None,
    force: bool = False,
) -> Path:
    """Train the built-in codec on `wav_paths` (list / directory / jsonl) and save it to `out_dir`.

    Returns `out_dir`. Skips training when a finished run with the same config, args and data is there."""
    cfg, args, out_dir = config or CodecConfig(), args or TrainArgs(), Path(out_dir)
    paths = collect_wavs(wav_paths)
    if not paths:
        raise ValueError(f"codec training: no audio files found in {wav_paths}")
    sources = list(wav_paths) if isinstance(wav_paths, (list, tuple)) else [wav_paths]
    transcripts = [Path(s) for s in sources if str(s).endswith(".jsonl")] if cfg.kind == "semantic" else []
    key = _run_key(cfg, args, paths + transcripts)
    info_path = out_dir / "training.json"
    if not force and info_path.is_file() and (out_dir / "model.safetensors").is_file():
        info = json.loads(info_path.read_text())
        if info.get("finished") and info.get("run_key") == key:
            log.info("codec: %s already holds a finished run (%s), skipping training", out_dir, key)
            return out_dir
    torch.manual_seed(args.seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(args.num_threads)
    try:
        if cfg.kind == "semantic":
            return train_semantic(sources, out_dir, cfg, args, key)
        return _train(paths, out_dir, cfg, args, key)
    finally:
        torch.set_num_threads(prev_threads)


def _train(paths, out_dir: Path, cfg: CodecConfig, args: TrainArgs, key: str) -> Path:
    t0 = time.time()
    g = torch.Generator().manual_seed(args.seed)
    feats = Features(cfg)
    mels, mags, skipped, total_s = _load_features(paths, cfg, feats, args.max_audio_hours)
    model = CodecModel(cfg)
    all_mel = torch.cat(mels)
    model.encoder.mel_mean.copy_(all_mel.mean(0))
    model.encoder.mel_std.copy_(all_mel.std(0).clamp(min=1e-2))
    del all_mel
    ctx = model.decoder.context
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / args.warmup_steps) * (0.55 + 0.45 * math.cos(math.pi * s / args.steps)))
    model.train()
    history, bar = [], tqdm(range(args.steps), desc="codec: train", unit="step", mininterval=10)
    for step in bar:
        mel_b, inside, tgt_b, mask = _batch(mels, mags, cfg, args.crop_tokens, ctx, args.batch_size, g)
        z = model.encoder(mel_b)  # (B, L, D)
        codes, q, commit = quantise(model, z, inside, step, g)  # (B, L), (B, L, D)
        pred = model.decoder(q)  # (B, crop*k, K)
        recon = ((pred - tgt_b).abs() * mask).sum() / (mask.sum() * cfg.n_bins)
        loss = recon + args.commitment * commit
        restarted = optimise(loss, opt, sched, params, model, z, codes, inside, step, args, g)
        if step % 50 == 0 or step == args.steps - 1:
            history.append({"step": step, "recon": round(recon.item(), 4), "commit": round(commit.item(), 4),
                            "restarted": restarted})
            bar.set_postfix(recon=f"{recon.item():.3f}", commit=f"{commit.item():.3f}", dead=restarted)
    model.eval()
    save_codec(model, out_dir)
    info = {"finished": True, "run_key": key, "train_args": asdict(args), "files": len(paths),
            "skipped": len(skipped), "audio_hours": round(total_s / 3600, 4),
            "train_seconds": round(time.time() - t0, 1), "history": history}
    (out_dir / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    log.info("codec: trained on %.2f h of audio in %.0f s -> %s", total_s / 3600, info["train_seconds"], out_dir)
    return out_dir
