"""The package's module graph has no cycle, counting every import: top-level, deferred inside a
function and `if TYPE_CHECKING:` alike (a cycle hidden behind a deferred import is still a seam
that a newcomer cannot follow, and one refactor away from an ImportError)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "resolverguard"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every module of ours that `path` imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {name for name in found if name in modules}


def module_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_walker_sees_deferred_and_type_checking_imports(tmp_path: Path) -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a.b\ndef f():\n    from a import c\n"
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    assert imports_of(tmp_path / "m.py", {"a.b", "a.c", "a"}) == {"a", "a.b", "a.c"}
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_package_imports_have_no_cycle() -> None:
    graph = module_graph()
    assert "resolverguard.chain" in graph and "resolverguard.steps.names" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_domain_layer_imports_nothing_of_ours_but_errors() -> None:
    graph = module_graph()
    for module in ("resolverguard.verdicts", "resolverguard.names"):
        assert graph[module] <= {"resolverguard.errors", "resolverguard.memo"}, (module, graph[module])
