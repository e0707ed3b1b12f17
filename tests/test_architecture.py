"""The shape of the code (docs/architecture.md): no import circles and no oversized modules.

* The Python packages (``glueberry``, ``glueberry_gateway``, ``glueberry_demo``) import no circle,
  counting imports under ``if TYPE_CHECKING`` and imports of a package's own names
  (``from . import name``): each layer can be read, tested and replaced without the ones above
  it. Two modules that need each other share a narrow ``typing.Protocol`` instead.
* The TypeScript modules of ``js-client/src`` import no circle either (``import type`` counts).
* Every module of ours is at most ~500 lines (:data:`MAX_LINES` is the hard stop); the web demo's
  page modules have their own check (``web-demo/test/modules.test.mjs``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import glueberry
import glueberry_demo
import glueberry_gateway

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [Path(p.__file__).parent for p in (glueberry, glueberry_gateway, glueberry_demo)]
TS_SOURCE = ROOT / "js-client" / "src"
#: "at most ~500 lines": most are far below; none may pass this.
MAX_LINES = 550


# ---- Python ------------------------------------------------------------------------------------


def python_modules(packages: Iterable[Path]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in package.rglob("*.py"):
            parts = [package.name, *path.relative_to(package).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def python_imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
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


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_python_packages_import_no_circle() -> None:
    known = python_modules(PACKAGES)
    assert {"glueberry.node", "glueberry_gateway.server.core", "glueberry_demo.launcher"} <= known.keys()
    graph = {name: python_imports(name, path, known) for name, path in known.items()}
    found = circle(graph)
    assert found is None, f"import circle: {' -> '.join(found)}"


def test_the_python_check_sees_circles_through_type_checking_and_package_roots(tmp_path: Path) -> None:
    """What the check above must count, shown on a made-up package."""
    (tmp_path / "pkg").mkdir()
    a = tmp_path / "pkg" / "a.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    b = tmp_path / "pkg" / "b.py"
    b.write_text("from . import a\n")
    known = python_modules([tmp_path / "pkg"])
    assert python_imports("pkg.a", a, known) == {"pkg.b"}
    assert python_imports("pkg.b", b, known) == {"pkg.a"}
    found = circle({name: python_imports(name, path, known) for name, path in known.items()})
    assert found is not None
    assert set(found) == {"pkg.a", "pkg.b"}


# ---- TypeScript --------------------------------------------------------------------------------

_TS_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"](\.[^'"]+)['"]""", re.MULTILINE)


def ts_imports(path: Path) -> set[Path]:
    return {
        (path.parent / spec).with_suffix(".ts").resolve() for spec in _TS_IMPORT.findall(path.read_text())
    }


def test_js_client_imports_no_circle() -> None:
    files = sorted(TS_SOURCE.glob("*.ts"))
    assert len(files) > 10
    graph = {str(f.resolve()): {str(i) for i in ts_imports(f)} for f in files}
    assert all(Path(i).exists() for deps in graph.values() for i in deps), "an import names a missing module"
    found = circle(graph)
    assert found is None, f"import circle: {' -> '.join(Path(f).name for f in found)}"


def test_the_ts_check_reads_every_kind_of_import(tmp_path: Path) -> None:
    a = tmp_path / "a.ts"
    a.write_text(
        "import { x } from './b.js';\nimport type { Y } from './c.js';\n"
        "export * from './d.js';\nexport {\n  z,\n} from './e.js';\nconst s = 'from ./f.js';\n"
    )
    assert {p.name for p in ts_imports(a)} == {"b.ts", "c.ts", "d.ts", "e.ts"}


# ---- size --------------------------------------------------------------------------------------


def our_modules() -> list[Path]:
    return [*python_modules(PACKAGES).values(), *TS_SOURCE.glob("*.ts")]


@pytest.mark.parametrize("path", our_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by job"
