"""The import graph of xanesdb: no circles between modules, and the layer arrows point one way.

Every ``import`` of an xanesdb module counts, at module level or inside a function (a lazy import
is still a dependency), except those under ``if TYPE_CHECKING:`` and a module's import of its own
ancestor packages (always imported first by Python). A package's ``__init__`` that re-exports is a
module like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xanesdb"



def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """xanesdb modules imported anywhere in ``tree`` (``from a import b`` counts ``a.b`` if it is a module)."""
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
                pkg = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out = set()
    for name in found:
        while name and name not in modules:  # `import xanesdb.jobs.feff.run as x` names a module; keep the deepest known
            name = name.rpartition(".")[0]
        # a module importing one of its own packages (``from xanesdb import __version__``) adds nothing:
        # Python runs every ancestor package's __init__ before the module anyway
        if name and name != module and not module.startswith(name + "."):
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """``module -> xanesdb modules it imports``."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {m: _imports(ast.parse(p.read_text(), str(p)), m, p.name == "__init__.py", modules)
            for m, p in files.items()}


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module (each holds at least one circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _is_ancestor_edge(a: str, b: str) -> bool:
    """A package and a module inside it (``pkg/__init__`` re-exporting ``pkg.mod``, ``pkg.mod`` using a
    sibling through ``pkg``) are one unit, not a circle between modules."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Pairs of modules that import each other, directly or through others (package/child pairs left out)."""
    pairs: set[frozenset[str]] = set()
    for comp in _strongly_connected(graph):
        sub = {m: graph[m] & comp for m in comp}
        for a in comp:
            for b in sub[a]:
                if _is_ancestor_edge(a, b):
                    continue
                # b reaches back to a within the component?
                seen, todo = {b}, [b]
                while todo:
                    x = todo.pop()
                    for y in sub[x]:
                        if y == a:
                            pairs.add(frozenset({a, b}))
                            todo = []
                            break
                        if y not in seen:
                            seen.add(y)
                            todo.append(y)
    return pairs


def test_graph_finds_modules_and_lazy_imports():
    graph = import_graph()
    assert "xanesdb.jobs.feff.task" in graph and "xanesdb.jobs.feff.run" in graph["xanesdb.jobs.feff.task"]
    # an import inside a function counts
    assert "xanesdb.jobs.feff.pending" in graph["xanesdb.jobs.feff.batch"]
    # the circle finder sees a circle through a third module
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == {frozenset({"a", "b"}), frozenset({"b", "c"}),
                                                          frozenset({"c", "a"})}


def test_no_import_circles_between_modules():
    found = circles(import_graph())
    assert not found, f"import circles: {sorted(tuple(sorted(p)) for p in found)}"


def test_validators_cover_the_collections():
    """platform/validation lists the collections from the schema documents (it no longer imports
    platform/stores): the two lists stay the same."""
    from xanesdb.platform.stores import COLLECTIONS
    from xanesdb.schemas import ALL_DOCUMENTS

    assert [d.collection for d in ALL_DOCUMENTS] == list(COLLECTIONS)


def test_layers_point_one_way():
    """schemas <- platform <- jobs; ml never imports jobs; nothing below cli imports cli or commands."""
    graph = import_graph()
    for module, deps in graph.items():
        layer = module.split(".")[1] if "." in module else ""
        for dep in deps:
            if layer == "schemas":
                assert not dep.startswith(("xanesdb.platform", "xanesdb.jobs", "xanesdb.ml", "xanesdb.cli",
                                           "xanesdb.commands")), (module, dep)
            if layer == "jobs":
                assert not dep.startswith(("xanesdb.ml", "xanesdb.cli", "xanesdb.commands")), (module, dep)
