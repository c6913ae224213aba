"""Where the Hydra configuration lives: `vita_audio/conf/`, shipped inside the package as package data.

    source checkout   src/vita_audio/conf -> ../../conf (a symlink: the top-level conf/ is the one to edit)
    installed wheel   site-packages/vita_audio/conf/ (the files themselves, copied in by the build)

`config_dir()` resolves it through `importlib.resources`, so every entry point (train, eval, infer, serve,
train_codec, tokenize) composes the same configuration from any working directory, in a checkout or after
`pip install vita-audio`. Machine-specific configs go in a directory of your own: `--config-dir DIR` (Hydra's
`-cd`) adds it to the search path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ENTRY_CONFIG = "train.yaml"  # the file whose presence proves the folder is the configuration


def config_dir() -> Path:
    """The absolute, symlink-free path of the package's configuration folder."""
    path = Path(str(files("vita_audio") / "conf")).resolve()
    if not (path / ENTRY_CONFIG).is_file():
        raise FileNotFoundError(
            f"the vita_audio configuration is missing: no {ENTRY_CONFIG} in {path}. In a source checkout "
            "src/vita_audio/conf must be the symlink to the top-level conf/ (git restores it); an installed "
            "package must come from a wheel built with its package data (pip install vita-audio, or pip wheel .)"
        )
    return path


CONFIG_DIR = str(config_dir())
