"""Thin shim: `python eval.py task=loss ckpt_path=...` == `python -m vita_audio.cli.eval ...`."""

from vita_audio.cli.eval import main

if __name__ == "__main__":
    main()
