"""Convert a checkpoint: `python -m vita_audio.cli.convert SRC [--weights FILE.safetensors] [--export DIR]`.

    python -m vita_audio.cli.convert artifacts/stages/boost_stage1/final.ckpt \\
        --weights boost_stage1.safetensors --export boost_stage1_hf/

SRC is a training checkpoint (a `.ckpt`, a DeepSpeed ZeRO-2 / ZeRO-3 directory: what `trainer=deepspeed` saves as
every `.ckpt`, or a weights file); `--export` also takes an exported or published directory. The model is rebuilt
from the config stored in SRC through the checkpoint package's allowlist (`vita_audio.checkpoint.convert`):

    --weights FILE.safetensors   the training module's weights (LoRA adapters merged) with its training config:
                                 what `PublishStage` writes as `final.safetensors`
    --export DIR                 an HF-style directory in the reference layout

Both outputs hold weights only: they start a new stage (`init_from=`), evaluate (`eval.py ckpt_path=`) and decode
(`infer.py ckpt_path=`), but cannot resume training: resume a DeepSpeed run from its directory, `train.py
ckpt_path=<ds dir>`. `eval.py`, `infer.py` and `init_from` also read the DeepSpeed directory itself (consolidated in
memory each time: convert once when it is used often).
"""

from __future__ import annotations

import argparse
import sys

from vita_audio.checkpoint.convert import convert


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vita_audio.cli.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a training checkpoint: .ckpt, DeepSpeed directory or weights .safetensors")
    p.add_argument("--weights", help="write the weights-only file here (.safetensors)")
    p.add_argument("--export", help="write the HF-style reference-layout directory here")
    args = p.parse_args(argv)
    if args.weights is None and args.export is None:
        p.error("give --weights FILE.safetensors and / or --export DIR")
    for path in convert(args.src, args.weights, args.export):
        print(f"wrote {path}")
    print("(weights only: these start a stage, evaluate and decode, but cannot resume training; resume from the "
          "original checkpoint)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
