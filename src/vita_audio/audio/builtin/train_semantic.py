"""Train the semantic built-in codec: codes that carry phonemes, the same voice-independent way for every voice.

    jsonl rows --transcripts.read_utterances--> (wav, text, voice) --Phonemizer (espeak-ng)--> phoneme ids
    wavs --16 kHz, loudness-normalised--> log-mel (every voice), log-magnitude (reconstruction voices only)
    loop: a batch of whole utterances -> encoder -> VQ (EMA, straight-through) -> q (B, N, D)
          CTC head(q) vs the utterance's phonemes                     (every voice: what the codes mean)
          decoder(q) vs log-magnitude, L1, reconstruction voices only (the output voice: what the codes sound like)
          loss = recon + ctc_weight * ctc + commitment * commit;  dead codes restarted from the batch

Whole utterances, not crops: CTC needs the whole phoneme sequence. The decoder sees R zero vectors beyond each
utterance edge, as it does when decoding. Utterances or sentences with no phonemes are counted skips.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from vita_audio.audio.builtin.codec import save_codec
from vita_audio.audio.builtin.config import CodecConfig
from vita_audio.audio.builtin.features import LOG_FLOOR, Features, normalise_loudness, pad_to_tokens
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.builtin.phonemes import INVENTORY, Phonemizer
from vita_audio.audio.builtin.transcripts import read_utterances
from vita_audio.audio.builtin.vq_step import optimise, quantise
from vita_audio.audio.io import AudioError, read_audio

log = logging.getLogger(__name__)


def load_semantic_data(sources, cfg: CodecConfig, args) -> dict:
    """jsonl files -> {"mel": [(F, M)], "mag": [(F, K) half or None], "ids": [[int]], "voice": [str], skips}."""
    if tuple(cfg.phonemes) != INVENTORY:
        raise ValueError("the semantic codec's phonemes must be the espeak-ng INVENTORY this version phonemises to")
    utts, skipped = read_utterances(sources, args.assistant_voice)
    phon = Phonemizer()
    ids = phon([u.text for u in utts])
    feats, data, total_s = Features(cfg), {"mel": [], "mag": [], "ids": [], "voice": []}, 0.0
    for u, p in tqdm(list(zip(utts, ids)), desc="codec: features", unit="file", mininterval=5):
        if p is None:
            skipped.append((str(u.path), f"no phonemes for {u.text!r}: {phon.skipped[u.text]}"))
            continue
        if total_s >= args.max_audio_hours * 3600:
            skipped.append((str(u.path), "over max_audio_hours"))
            continue
        try:
            wav, _ = read_audio(u.path, cfg.sample_rate)
        except AudioError as e:
            skipped.append((str(u.path), str(e)))
            continue
        total_s += wav.numel() / cfg.sample_rate
        wav = pad_to_tokens(normalise_loudness(wav, cfg.target_rms), cfg.samples_per_token)
        with torch.no_grad():
            mag = feats.magnitude(wav[None])  # (1, F, K)
            data["mel"].append(feats.log_mel(mag)[0])
            data["mag"].append(feats.log_mag(mag)[0].half() if u.voice in args.recon_voices else None)
        data["ids"].append(p)
        data["voice"].append(u.voice)
    if skipped:
        log.warning("semantic codec training: skipped %d (first: %s)", len(skipped), skipped[0])
    if not any(m is not None for m in data["mag"]):
        raise ValueError(f"semantic codec training: no utterance of the reconstruction voices {args.recon_voices} "
                         f"among {len(data['mel'])} usable ones (voices: {sorted(set(data['voice']))})")
    data.update(skipped=skipped, seconds=total_s, files=len(utts))
    return data


def _batch(data: dict, rows: list[int], cfg: CodecConfig):
    """mel (B, Nmax*k, M) floor-padded, token lengths (B,), targets (sum L,), target lengths (B,)."""
    k, floor = cfg.frames_per_token, math.log(LOG_FLOOR)
    lens = torch.tensor([data["mel"][i].shape[0] // k for i in rows])
    mel = torch.full((len(rows), int(lens.max()) * k, cfg.n_mels), floor)
    for b, i in enumerate(rows):
        mel[b, : data["mel"][i].shape[0]] = data["mel"][i]
    targets = torch.tensor([c for i in rows for c in data["ids"][i]])
    tlens = torch.tensor([len(data["ids"][i]) for i in rows])
    return mel, lens, targets, tlens


def _recon_loss(model: CodecModel, q: torch.Tensor, data: dict, rows: list[int], lens: torch.Tensor) -> torch.Tensor:
    """L1 of the decoded log-magnitude on the rows of reconstruction voices (q already zero beyond each length)."""
    pick = [b for b, i in enumerate(rows) if data["mag"][i] is not None]
    if not pick:
        return q.new_zeros(())
    cfg, r = model.cfg, model.decoder.context
    emb = F.pad(q[pick], (0, 0, r, r))  # (b, Nmax + 2R, D): R "no token" vectors at each edge
    pred = model.decoder(emb)  # (b, Nmax*k, K)
    tgt, mask = torch.zeros_like(pred), torch.zeros(pred.shape[:2] + (1,))
    for j, b in enumerate(pick):
        m = data["mag"][rows[b]]
        tgt[j, : m.shape[0]] = m.float()
        mask[j, : int(lens[b]) * cfg.frames_per_token] = 1.0
    return ((pred - tgt).abs() * mask).sum() / (mask.sum() * cfg.n_bins)


def train_semantic(sources, out_dir: Path, cfg: CodecConfig, args, key: str) -> Path:
    t0 = time.time()
    g = torch.Generator().manual_seed(args.seed)
    data = load_semantic_data(sources, cfg, args)
    model = CodecModel(cfg)
    all_mel = torch.cat(data["mel"])
    model.encoder.mel_mean.copy_(all_mel.mean(0))
    model.encoder.mel_std.copy_(all_mel.std(0).clamp(min=1e-2))
    del all_mel
    params = [p for n, p in model.named_parameters() if not n.startswith("vq.")]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / args.warmup_steps) * (0.55 + 0.45 * math.cos(math.pi * s / args.steps)))
    model.train()
    n_utt, u = len(data["mel"]), cfg.ctc_labels_per_token
    history, bar = [], tqdm(range(args.steps), desc="codec: train (semantic)", unit="step", mininterval=10)
    for step in bar:
        rows = torch.randint(n_utt, (min(args.batch_size, n_utt),), generator=g).tolist()
        mel, lens, targets, tlens = _batch(data, rows, cfg)
        z = model.encoder(mel)  # (B, Nmax, D)
        valid = torch.arange(z.shape[1])[None] < lens[:, None]  # (B, Nmax)
        codes, q, commit = quantise(model, z, valid, step, g)  # (B, Nmax), (B, Nmax, D)
        log_probs = model.ctc(q)  # (B, Nmax*u, P+1)
        ctc = F.ctc_loss(log_probs.transpose(0, 1), targets, lens * u, tlens, blank=model.ctc.blank,
                         zero_infinity=True)
        recon = _recon_loss(model, q, data, rows, lens)
        loss = recon + args.ctc_weight * ctc + args.commitment * commit
        restarted = optimise(loss, opt, sched, params, model, z, codes, valid, step, args, g)
        if step % 50 == 0 or step == args.steps - 1:
            history.append({"step": step, "recon": round(recon.item(), 4), "ctc": round(ctc.item(), 4),
                            "commit": round(commit.item(), 4), "restarted": restarted})
            bar.set_postfix(recon=f"{recon.item():.3f}", ctc=f"{ctc.item():.3f}", dead=restarted)
    model.eval()
    save_codec(model, out_dir)
    hours = data["seconds"] / 3600
    info = {"finished": True, "run_key": key, "kind": "semantic", "train_args": asdict(args), "files": data["files"],
            "skipped": len(data["skipped"]), "skipped_first": data["skipped"][:20], "audio_hours": round(hours, 4),
            "voices": sorted(set(data["voice"])), "train_seconds": round(time.time() - t0, 1), "history": history}
    (out_dir / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    log.info("semantic codec: %d utterances (%.2f h), %d skipped, %.0f s -> %s", len(data["mel"]), hours,
             len(data["skipped"]), info["train_seconds"], out_dir)
    return out_dir
