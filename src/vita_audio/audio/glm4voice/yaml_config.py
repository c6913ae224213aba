"""Read the decoder's HyperPyYAML `config.yaml` as plain data, never constructing an object it names.

The published file is HyperPyYAML: `flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec` with the constructor
arguments as a mapping, `!name:` / `!apply:` for callables, `!ref <key>` for references. A loader that honours
those tags would import and run whatever the file names. Here every `!...` tag becomes data: a mapping gets its
tag under the key `TAG_KEY` (`{"__tag__": "!new:cosyvoice...", "input_size": 512, ...}`), a scalar or a
sequence under `{"__tag__": ..., "value": ...}`; `!ref <a>` / `!ref <a[b]>` are then replaced by the referenced
value when it exists (anything fancier stays a tagged string and is an error only if a field we read uses it).
Built on `yaml.SafeLoader`, which constructs nothing but dicts, lists and scalars.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

TAG_KEY = "__tag__"
_REF = re.compile(r"^<([^<>\[\]]+)((?:\[[^\]]+\])*)>$")


class _TagNeutralLoader(yaml.SafeLoader):
    """SafeLoader whose unknown `!tags` build tagged plain data instead of failing (or executing)."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    tag = "!" + suffix
    if isinstance(node, yaml.MappingNode):
        return {TAG_KEY: tag, **loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return {TAG_KEY: tag, "value": loader.construct_sequence(node, deep=True)}
    return {TAG_KEY: tag, "value": loader.construct_scalar(node)}


_TagNeutralLoader.add_multi_constructor("!", _tagged)
_TagNeutralLoader.add_multi_constructor("tag:yaml.org,2002:python/", _tagged)


def _lookup(root: dict, ref: str) -> tuple[bool, Any]:
    m = _REF.match(ref.strip())
    if not m:
        return False, None
    node: Any = root.get(m.group(1).strip(), _MISSING)
    for key in re.findall(r"\[([^\]]+)\]", m.group(2)):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return node is not _MISSING, node


_MISSING = object()


def _resolve(node: Any, root: dict, depth: int = 0) -> Any:
    if depth > 50:
        raise ValueError("config.yaml: references nest too deep (a !ref cycle?)")
    if isinstance(node, dict):
        if node.get(TAG_KEY) == "!ref" and set(node) == {TAG_KEY, "value"}:
            ok, value = _lookup(root, str(node["value"]))
            return _resolve(value, root, depth + 1) if ok else node
        return {k: _resolve(v, root, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root, depth + 1) for v in node]
    return node


def load_plain_yaml(path: str | Path) -> dict[str, Any]:
    """config.yaml -> nested dicts / lists / scalars (tags neutralised, simple `!ref`s resolved)."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_TagNeutralLoader)  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: unreadable YAML ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return _resolve(data, data)


def section(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """The mapping under `key` (its tag dropped); a clear error when absent."""
    node = data.get(key)
    if not isinstance(node, dict):
        raise ValueError(f"{source}: no `{key}:` section (expected the glm-4-voice-decoder config.yaml)")
    return {k: v for k, v in node.items() if k != TAG_KEY}


def plain(node: Any) -> Any:
    """A tagged scalar/sequence -> its value; a tagged mapping -> the mapping without the tag (recursively)."""
    if isinstance(node, dict):
        if TAG_KEY in node and set(node) == {TAG_KEY, "value"}:
            return plain(node["value"])
        if node.get(TAG_KEY, "").startswith("!new:omegaconf") and "content" in node:
            return plain(node["content"])
        return {k: plain(v) for k, v in node.items() if k != TAG_KEY}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
