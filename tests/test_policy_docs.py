"""docs/policy.md lists every key of the schema (resolverguard.config) with the schema's default."""

from __future__ import annotations

from pathlib import Path

from resolverguard.config import Key, schema_keys, shown

DOC = Path(__file__).resolve().parent.parent / "docs" / "policy.md"


def documented_defaults(text: str) -> dict[str, str]:
    """key -> default cell, from every `| key | default | meaning |` row. A row may name several
    keys (`sinkhole.ipv4`, `.ipv6`: a leading dot continues the previous key's section) with one
    default each, or one default for all of them."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys, section = [], ""
        for part in cells[0].split(", "):
            name = part.strip("`")
            name = section + name[1:] if name.startswith(".") else name
            section = name.rsplit(".", 1)[0] + "." if "." in name else ""
            keys.append(name)
        defaults = cells[1].split(", ") if len(keys) > 1 and cells[1].count(", ") == len(keys) - 1 else None
        for index, name in enumerate(keys):
            out[name] = (defaults[index] if defaults else cells[1]).replace("`", "")
    return out


def test_every_key_is_documented_with_its_default() -> None:
    documented = documented_defaults(DOC.read_text(encoding="utf-8"))
    problems = []
    for name, default, spec in schema_keys():
        assert isinstance(spec, Key)
        expected = spec.shown if spec.shown is not None else shown(default)
        if name not in documented:
            problems.append(f"{name}: not in docs/policy.md")
        elif documented[name] != expected:
            problems.append(f"{name}: docs say {documented[name]!r}, the schema {expected!r}")
    assert not problems, "\n".join(problems)


def test_the_row_reader_expands_shorthand_and_splits_defaults() -> None:
    rows = "| `a.x`, `.y` | `1`, `2` | m |\n| `b`, `c` | `[]` | m |\n| `t` | `{p: 1, q: 2}` | m |\n"
    assert documented_defaults(rows) == {"a.x": "1", "a.y": "2", "b": "[]", "c": "[]", "t": "{p: 1, q: 2}"}
