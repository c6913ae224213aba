"""The layers import one way (docs/ARCHITECTURE: cli -> {training, inference, eval, serve, checkpoint}, training ->
{checkpoint, model, data}, inference -> {checkpoint, model, audio}, checkpoint -> {model, audio}): every import in
src/vita_audio, at module level or inside a function, read with `ast`. No lower layer imports cli/, and the
package graph has no circle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "vita_audio"

# package -> the packages it may import (besides itself). Beyond the arrows of ARCHITECTURE.md: data reads the
# audio side and the vocabulary (model); inference builds prompts with data.prompt; eval and serve sit on inference.
ALLOWED: dict[str, set[str]] = {
    "audio": set(),
    "model": {"audio"},
    "checkpoint": {"model", "audio"},
    "data": {"audio", "model"},
    "training": {"checkpoint", "model", "data"},
    "inference": {"checkpoint", "model", "audio", "data"},
    "eval": {"inference", "checkpoint", "model", "audio", "data"},
    "serve": {"inference", "checkpoint", "model", "audio"},
    "cli": {"training", "inference", "eval", "serve", "checkpoint", "model", "audio", "data"},
}
# lazy (function-level) imports allowed against the layering, none at import time: the HF-style facade of the
# model, whose methods call the layer above (`VitaAudioLM.from_pretrained` / `.save_pretrained`)
LAZY_UPWARD = {("model/lm.py", "checkpoint")}


def _imports(file: Path) -> list[tuple[str, bool]]:
    """(imported vita_audio package, imported inside a function) of every import statement of a file."""
    tree = ast.parse(file.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "vita_audio" and len(parts) > 1:
                    found.append((parts[1], lazy))
            visit(child, inner)

    visit(tree, False)
    return found


def _package(file: Path) -> str | None:
    rel = file.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else None  # top-level modules (__init__, __main__) are entry points


def _edges() -> list[tuple[str, str, str, bool]]:
    edges = []
    for file in sorted(SRC.rglob("*.py")):
        pkg = _package(file)
        if pkg is None or pkg == "conf":
            continue
        for target, lazy in _imports(file):
            if target != pkg and target in ALLOWED:
                edges.append((pkg, target, str(file.relative_to(SRC)), lazy))
    return edges


def test_every_package_is_in_the_layer_map():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages - {"conf"} <= set(ALLOWED), packages - set(ALLOWED)


def test_no_layer_imports_upwards_or_into_cli():
    wrong = [(f, pkg, target) for pkg, target, f, lazy in _edges()
             if target not in ALLOWED[pkg] and not (lazy and (f, target) in LAZY_UPWARD)]
    assert wrong == [], "imports against the layers (file, package, imported):\n" + "\n".join(map(str, wrong))
    assert not [e for e in _edges() if e[1] == "cli" and e[0] != "cli"]


def test_the_allowed_package_graph_has_no_circle():
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in ALLOWED[node]:
            assert state.get(nxt) != 1, f"circle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for pkg in ALLOWED:
        if pkg not in state:
            visit(pkg, [])
