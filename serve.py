"""Thin shim: `python serve.py ckpt_path=...` == `python -m vita_audio.cli.serve ckpt_path=...`."""

from vita_audio.cli.serve import main

if __name__ == "__main__":
    main()
