"""The import graph of thrifty has no circle, and the kernel sits at the bottom.

Every import of a thrifty module counts, at the top of a file or inside a function (those
inside `if TYPE_CHECKING:` do not run, so they do not). A circle among modules means two
modules that cannot be understood, tested or loaded apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "thrifty"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(name: str) -> set[str]:
    """The thrifty modules that module `name` imports when it runs (any depth of the file)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out: set[str] = set()
    for target in found:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target.startswith("thrifty") and target != name:
            out.add(target)
        # importing a.b.c runs the packages a and a.b first, unless the importer is inside
        # that package (then the package is already being set up)
        parent = target.rpartition(".")[0]
        while parent:
            if parent in MODULES and parent != name and not name.startswith(parent + "."):
                out.add(parent)
            parent = parent.rpartition(".")[0]
    return out


GRAPH = {name: runtime_imports(name) for name in MODULES}


def circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    import sys

    sys.setrecursionlimit(10_000)
    for v in sorted(GRAPH):
        if v not in index:
            strong(v)
    return found


def test_no_import_circle_among_thrifty_modules() -> None:
    assert circles() == []


@pytest.mark.parametrize("kernel", ["thrifty.types", "thrifty.errors"])
def test_the_kernel_imports_nothing_of_thrifty(kernel: str) -> None:
    assert GRAPH[kernel] <= {"thrifty"}


def test_the_protocol_layer_does_not_reach_up() -> None:
    upper = ("thrifty.pipeline", "thrifty.server", "thrifty.gateway", "thrifty.cache", "thrifty.routing")
    for name in MODULES:
        if name.startswith("thrifty.protocol"):
            assert not [m for m in GRAPH[name] if m.startswith(upper)], name
