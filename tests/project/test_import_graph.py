"""The package's modules import each other without a cycle.

The graph is read statically from the source (the AST), so it holds for every path through
the code, not only the ones a test run happens to take. An edge A -> B means A imports B at
module level; an import inside a function or under `if TYPE_CHECKING:` runs later or never,
so it is no edge. Importing `a.b.c` also runs the `__init__` of the packages `a.b` above it
(those that do not contain A itself), so those are edges too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "dws_theory"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: the top level, and inside top-level
    `if` (but not `if TYPE_CHECKING`), `try` and `with` blocks; never inside functions or
    classes."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, modules: set[str]):
    """The package's modules an import statement in module `name` loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # `from pkg import sub` loads the submodule `pkg.sub` when there is one.
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in modules]


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> nx.DiGraph:
    files = sorted((root / package).rglob("*.py"))
    modules = {_module_name(path, root) for path in files}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for path in files:
        name = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for node in _module_level_imports(tree):
            for target in _targets(node, name, path.name == "__init__.py", modules):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the packages above it run first
                    step = ".".join(parts[:i])
                    if step in modules and step not in ancestors and step != name:
                        graph.add_edge(name, step)
    return graph


def import_cycle(graph: nx.DiGraph) -> str | None:
    """One cycle of the graph as `a -> b -> a`, or None."""
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return None
    return " -> ".join([a for a, _ in cycle] + [cycle[-1][1]])


def test_a_cycle_is_found_and_named_and_deferred_imports_are_no_edges(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from .sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "from __future__ import annotations\nimport pkg.c\n",
        "c.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
            "def f():\n    from . import a\n"
        ),
    }
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    assert import_cycle(import_graph(tmp_path, "pkg")) is None
    (package / "c.py").write_text("try:\n    from .a import x\nexcept ImportError:\n    pass\n")
    names = import_cycle(import_graph(tmp_path, "pkg")).split(" -> ")
    assert names[0] == names[-1] and sorted(names[1:]) == ["pkg.a", "pkg.c", "pkg.sub.b"]


def test_the_graph_sees_module_level_imports_only():
    graph = import_graph()
    assert graph.has_edge("dws_theory.basis", "dws_theory.orbits")  # `from .orbits import`
    assert graph.has_edge("dws_theory.cli", "dws_theory.errors")
    assert not graph.has_edge("dws_theory.cli", "dws_theory.basis"), "imported in a function"
    assert len(graph) > 50


def test_the_package_has_no_import_cycle():
    cycle = import_cycle(import_graph())
    assert cycle is None, f"expected no import cycle among the package's modules, got {cycle}"
