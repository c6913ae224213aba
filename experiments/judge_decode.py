"""Speak test sentences with a trained checkpoint in every decode mode and let the pocketsphinx judge listen.

    python experiments/judge_decode.py artifacts/stages/demo/mctp_all/hf [--codec artifacts/codec/builtin_semantic]

Prints one line per (mode, sentence): time, backbone forwards / new tokens, mean accepted tokens per forward
(verified mode), the text part of the answer, what the judge heard and its WER against the sentence.
"""

from __future__ import annotations

import argparse
import time

import torch

from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer
from vita_audio.eval.judges import PocketSphinxJudge
from vita_audio.eval.metrics import wer
from vita_audio.eval.tasks.tts import transcribe
from vita_audio.inference import Sampling, SpeechLM, load_model

SENTENCES = ["My birthday is on the twenty sixth of May.", "The capital of Greece is Athens."]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt")
    p.add_argument("--codec", default="artifacts/codec/builtin_semantic")
    p.add_argument("--modes", default="vanilla,boost,turbo,verified")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    speech = SpeechLM(load_model(args.ckpt), BuiltinTokenizer(args.codec), BuiltinDetokenizer(args.codec))
    judge = PocketSphinxJudge()
    print("| mode | sentence | s | forwards / tokens | accepted | text | judge heard | WER |")
    print("|---|---|---:|---:|---:|---|---|---:|")
    for mode in args.modes.split(","):
        kw = {"verify": True} if mode == "verified" else {"schedule": mode}
        for i, text in enumerate(SENTENCES):
            t0 = time.perf_counter()
            out = speech.run("tts", text, max_new_tokens=300, sampling=Sampling.greedy(), **kw)
            heard = transcribe(judge, out.wav, out.sample_rate) if out.wav is not None else ""
            acc = sum(out.accepted) / len(out.accepted) if out.accepted else float("nan")
            print(f"| {mode} | {i + 1} | {time.perf_counter() - t0:.1f} | {out.backbone_forwards} / "
                  f"{len(out.tokens)} | {acc:.2f} | {out.text!r} | {heard!r} | {wer([text], [heard]):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
