"""Import a benchmark script of experiments/ as a module, for the tests that call its functions in-process."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@contextmanager
def experiment_script(name: str) -> Iterator[ModuleType]:
    """experiments/<name>.py as module `name`, registered in sys.modules while in use (dataclasses look their
    module up there) and removed afterwards."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(name, None)
