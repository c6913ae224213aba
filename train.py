"""Thin shim: `python train.py +experiment=boost_stage1` == `python -m vita_audio.cli.train ...`."""

from vita_audio.cli.train import main

if __name__ == "__main__":
    main()
