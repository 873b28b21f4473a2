"""The house rules of the package's layout, checked on its source: no module imports another's
private names, no import cycle, no module much over 600 lines.

Imports are read from the source (``ast``), at module level and inside functions alike; those
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "featvis"
#: a module may grow a little past 600 lines before it must be split
MOST_LINES = 650


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


class _Imports(ast.NodeVisitor):
    """``(module imported, names taken from it)`` for each import that runs."""

    def __init__(self, module: str, package: bool) -> None:
        self.module, self.package = module, package
        self.found: list[tuple[str, list[str], int]] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, [], node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        names = [alias.name for alias in node.names]
        # ``from . import x`` imports the module featvis.x
        if node.module is None:
            for name in names:
                self.found.append((f"{target}.{name}", [], node.lineno))
        else:
            self.found.append((target, names, node.lineno))


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    visitor = _Imports(module_name(path), is_package(path))
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return [(target, names, line) for target, names, line in visitor.found if target.startswith("featvis")]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_checks_see_the_package() -> None:
    names = {module_name(path) for path in MODULES}
    assert {"featvis", "featvis.render", "featvis.step", "featvis.loop", "featvis.param"} <= names


def private_attributes_of_modules(path: Path) -> list[tuple[str, int]]:
    """``module._name`` reads in ``path`` where ``module`` is a featvis module it imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("featvis")):
            for alias in node.names:
                if node.module is None or alias.name[:1].islower():  # from . import x, or a module
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name.split(".")[0] for alias in node.names if "featvis" in alias.name)
    return [
        (f"{node.value.id}.{node.attr}", node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def test_no_module_reads_a_private_name_of_another() -> None:
    offences = [
        f"{module_name(path)}:{line} reads {name}"
        for path in MODULES
        for name, line in private_attributes_of_modules(path)
    ]
    assert offences == []


def test_no_module_imports_a_private_name_of_another() -> None:
    offences = [
        f"{module_name(path)}:{line} imports {name} from {target}"
        for path in MODULES
        for target, names, line in imports_of(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != module_name(path)
    ]
    assert offences == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle a depth-first walk of ``graph`` meets, as the modules along it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for edge in sorted(graph.get(node, ())):
            if state.get(edge) == 1:
                cycles.append([*stack[stack.index(edge) :], edge])
            elif edge not in state:
                visit(edge)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_there_is_no_import_cycle() -> None:
    known = {module_name(path) for path in MODULES}

    def owner(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for path in MODULES:
        name = module_name(path)
        edges = graph.setdefault(name, set())
        for target, names, _ in imports_of(path):
            found = owner(target)
            # ``from .objectives import channel`` depends on featvis.objectives; ``from . import x`` on x
            for candidate in [found, *(owner(f"{target}.{n}") for n in names if f"{target}.{n}" in known)]:
                if candidate and candidate != name and not name.startswith(candidate + "."):
                    edges.add(candidate)
    # a package's __init__ may import its own submodules (that is how it re-exports them)
    for name, edges in graph.items():
        graph[name] = {edge for edge in edges if not edge.startswith(name + ".")}

    cycles = find_cycles(graph)
    assert cycles == [], " ; ".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_no_module_is_much_over_600_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MOST_LINES, "split it by concern"


def test_the_checks_find_a_cycle_and_a_private_import() -> None:
    a_imports = _Imports("featvis.a", False)
    a_imports.visit(ast.parse("from .b import _hidden\n"))
    b_imports = _Imports("featvis.b", False)
    b_imports.visit(ast.parse("def f():\n    from . import a\nif TYPE_CHECKING:\n    from .c import C\n"))
    assert a_imports.found == [("featvis.b", ["_hidden"], 1)]
    assert b_imports.found == [("featvis.a", [], 2)]  # the TYPE_CHECKING import does not run
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_check_finds_a_private_read(tmp_path: Path) -> None:
    path = tmp_path / "reader.py"
    path.write_text("from . import models as featvis_models\nx = featvis_models._WEIGHTS\ny = featvis_models.__doc__\n")
    assert private_attributes_of_modules(path) == [("featvis_models._WEIGHTS", 2)]
