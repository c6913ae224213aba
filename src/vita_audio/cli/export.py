"""Convert between Lightning checkpoints and HF-style directories in the reference VITA-Audio layout.

    python -m vita_audio.cli.export artifacts/stages/boost_stage4/final.ckpt exported/   # Lightning -> HF dir
    python train.py +experiment=boost_stage4 init_from=path/to/VITA-Audio-dir           # HF dir -> training

The other direction needs no command: `init_from` accepts an exported or published directory, and
`vita_audio.checkpoint.load_pretrained(dir)` returns the model for inference.
"""

from __future__ import annotations

import argparse
import sys

from vita_audio.cli.eval import load_module
from vita_audio.model.checkpoint import export_pretrained


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="a .ckpt file written by train.py")
    p.add_argument("out_dir", help="the directory to write (config.json, safetensors, tokenizer, generation config)")
    args = p.parse_args(argv)
    module = load_module(args.ckpt)
    ratio = module.hparams["config"]["interleave"]["ratio"]
    out = export_pretrained(module.lm, args.out_dir, interleave_ratio=list(ratio))
    print(f"exported {args.ckpt} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
