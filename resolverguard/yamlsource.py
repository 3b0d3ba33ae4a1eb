"""YAML that remembers where each key came from, so every config error can name file:line:key.

PyYAML's safe loader forgets positions once it builds dicts; this loader keeps the line of every
mapping key and list item, which `config.py` uses when it rejects a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from resolverguard.errors import ConfigError


class LocatedDict(dict[Any, Any]):
    """A mapping plus the 1-based line of each key and of the mapping itself."""

    line: int = 0
    lines: dict[Any, int]


class LocatedList(list[Any]):
    """A sequence plus the 1-based line of each item."""

    line: int = 0
    lines: list[int]


class _LocatingLoader(yaml.SafeLoader):  # type: ignore[misc]
    pass


def _mapping(loader: _LocatingLoader, node: yaml.MappingNode) -> LocatedDict:
    loader.flatten_mapping(node)
    out = LocatedDict()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError("duplicate key", line=key_node.start_mark.line + 1, key=str(key))
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _LocatingLoader, node: yaml.SequenceNode) -> LocatedList:
    out = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_LocatingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_LocatingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str, file: str) -> Any:
    """Parses YAML text; syntax errors become ConfigError with the file and line of the problem."""
    try:
        return yaml.load(text, Loader=_LocatingLoader)  # noqa: S506 - SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(err.problem, file=file, line=err.line, key=err.key) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {err.problem or err.context}", file=file, line=line) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}", file=file) from None


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(path)) from None
    return load_yaml(text, str(path))
