"""The quickstart notebook runs top to bottom (its code cells, in order, in one namespace)."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs():
    nb = json.loads(NOTEBOOK.read_text())
    namespace: dict = {}
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)
    assert namespace["trainer2"].global_step == 20
    assert len(namespace["levels"]) == 1
    assert set(namespace["answers"]) == {"asr", "s2s", "tts"}  # speech in / out through SpeechLM
    assert namespace["speed"].metrics["vanilla"]["tokens_per_s"] > 0
