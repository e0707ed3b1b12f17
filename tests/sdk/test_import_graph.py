"""The modules of glueberry.p2p import no circle, counting imports under ``if TYPE_CHECKING`` and
imports of a package's own names (``from ... import name``): each layer can be read, tested and
replaced without the ones above it. Two modules that need each other share a narrow Protocol."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import glueberry

SOURCE = Path(glueberry.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = ["glueberry", *path.relative_to(SOURCE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports, wherever the import statement is."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:  # a submodule, or a name of the module (or package) itself
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in known else module)
    return (found & known.keys()) - {name}


def test_glueberry_p2p_imports_no_circle() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    todo = [name for name in known if name.startswith("glueberry.p2p")]
    assert "glueberry.p2p.asyncio.connection" in todo
    while todo:  # everything glueberry.p2p reaches
        name = todo.pop()
        if name not in graph:
            graph[name] = imports(name, known[name], known)
            todo += graph[name]
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_the_check_sees_a_circle_through_type_checking_imports(tmp_path: Path) -> None:
    """The graph above must count the imports that only type checkers run."""
    a = tmp_path / "a.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    known = {"glueberry.a": a, "glueberry.b": tmp_path / "b.py"}
    assert imports("glueberry.a", a, known) == {"glueberry.b"}
