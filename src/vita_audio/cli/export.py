"""Export a checkpoint as an HF-style directory in the reference VITA-Audio layout.

    python -m vita_audio.cli.export artifacts/stages/boost_stage4/final.ckpt exported/   # Lightning -> HF dir
    python train.py +experiment=boost_stage4 init_from=path/to/VITA-Audio-dir           # HF dir -> training

The checkpoint may be any format `vita_audio.checkpoint.load_model` reads; the model is rebuilt from its stored
config through the allowlist, and its generation config (default schedule, codec) is written with it. The other
direction needs no command: `init_from` accepts an exported or published directory, and
`VitaAudioLM.from_pretrained(dir)` returns the model for inference.
"""

from __future__ import annotations

import argparse
import sys

from vita_audio.checkpoint.convert import convert


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="a checkpoint: .ckpt, weights .safetensors, DeepSpeed directory, exported directory")
    p.add_argument("out_dir", help="the directory to write (config.json, safetensors, tokenizer, generation config)")
    args = p.parse_args(argv)
    (out,) = convert(args.ckpt, export=args.out_dir)
    print(f"exported {args.ckpt} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
