"""Cost of the Plus input encoders on CPU (the feature-cache fill), and what the cache saves per epoch.

    python experiments/bench_plus_encoder.py [--seconds 5] [--repeats 3] [--threads 1]

Prints a table: encoder, parameters, frames per second of audio, encode time per second of audio (median of
`--repeats`, after one warm-up), real-time factor, and the time to read the same frames back from the feature
cache. SenseVoice-Small is built with random weights at its published size (50 + 20 SAN-M layers, 512 wide): the
cost does not depend on the weights.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from vita_audio.audio.encoders import tiny_sensevoice
from vita_audio.audio.encoders.sensevoice import SenseVoiceEncoder
from vita_audio.data.feature_cache import AudioFeatureCache, build_feature_cache, feature_namespace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sr = 16000
    t = np.arange(int(args.seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * math.pi * 220 * t) * (1 + np.sin(2 * math.pi * 3 * t))).astype(np.float32)
    encoders = {"tiny (model/audio_encoder=tiny)": tiny_sensevoice(),
                "SenseVoice-Small size (random)": SenseVoiceEncoder(name="sensevoice-small-random")}
    print(f"load average {os.getloadavg()[0]:.2f}, {args.threads} thread(s), {args.seconds:.1f} s of audio")
    print("| encoder | parameters | frames / s audio | encode s / s audio | real-time factor "
          "| cache read s / s audio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.wav")
        sf.write(path, wav, sr)
        for name, enc in encoders.items():
            x = torch.from_numpy(wav)
            enc.encode(x, sr)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                frames = enc.encode(x, sr)
                times.append(time.perf_counter() - t0)
            enc_s = statistics.median(times) / args.seconds
            build_feature_cache([path], enc, tmp)
            reads = []
            for _ in range(args.repeats):
                cache = AudioFeatureCache(tmp, feature_namespace(enc.identity), enc.identity, enc.dim)
                t0 = time.perf_counter()
                cache.get(path)
                reads.append(time.perf_counter() - t0)
            read_s = statistics.median(reads) / args.seconds
            n_params = sum(p.numel() for p in enc.parameters())
            print(f"| {name} | {n_params / 1e6:.1f} M | {(frames.shape[0] - 4) / args.seconds:.2f} | {enc_s:.4f} | "
                  f"{1 / enc_s:.0f}x | {read_s:.5f} |")


if __name__ == "__main__":
    main()
