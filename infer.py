"""Thin shim: `python infer.py task=s2s input=... ckpt_path=...` == `python -m vita_audio.cli.infer ...`."""

from vita_audio.cli.infer import main

if __name__ == "__main__":
    main()
