"""The import graph of polyner's modules has no circles: a layer never imports, even lazily inside a function,
a module that imports it back (the model layer does not call up into the user-facing resolver, say)."""
from __future__ import annotations

import ast
import functools
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_folders() -> dict[str, Path]:
    """Package name -> its folder, as pyproject.toml maps them (polyner.serve is ./serve, ...)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    dirs = setup["package-dir"]
    folders = {}
    for package in setup["packages"]:
        top = max((name for name in dirs if package == name or package.startswith(name + ".")), key=len)
        folders[package] = ROOT / dirs[top] / Path(*package[len(top):].lstrip(".").split(".") if package != top else ())
    return folders


def modules() -> dict[str, Path]:
    """Every polyner module by dotted name (a package by its ``__init__``)."""
    found = {}
    for package, folder in package_folders().items():
        for file in folder.glob("*.py"):
            found[package if file.stem == "__init__" else f"{package}.{file.stem}"] = file
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(file: Path, known: set[str]) -> set[str]:
    """The polyner modules ``file`` imports anywhere (functions included; ``if TYPE_CHECKING:`` blocks excluded)."""
    targets: set[str] = set()

    def nearest(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(filter(None, (nearest(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                target = nearest(f"{node.module}.{alias.name}")
                if target:
                    targets.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(file.read_text(encoding="utf-8")))
    return targets


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(file, set(found)) - {name} for name, file in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_sees_lazy_imports():
    """The check is not empty: a function-level import counts (polyner.spec loads through the backend module)."""
    graph = import_graph()
    assert len(graph) > 50
    assert "polyner.models.backend" in graph["polyner.spec"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_polyner_modules_import_no_circle():
    assert cycles(import_graph()) == []


def test_the_model_layer_does_not_call_up_into_the_surfaces():
    """polyner.models.* is imported by the resolver, the spec and the surfaces, never the other way round."""
    upper = ("polyner.loading", "polyner.spec", "polyner.cli", "polyner.corpus", "polyner.serve", "polyner.pipelines",
             "polyner.bench", "polyner")
    for name, targets in import_graph().items():
        if name.startswith("polyner.models."):
            calls_up = sorted(t for t in targets if t in upper or t.startswith(tuple(u + "." for u in upper[:-1])))
            assert not calls_up, f"{name} imports {calls_up}"


def test_the_tagging_core_does_not_call_up_into_the_surfaces():
    """polyner.tagging.* (the Tagger every surface shares) imports neither the surfaces nor the resolver."""
    surfaces = ("polyner.loading", "polyner.spec", "polyner.cli", "polyner.corpus", "polyner.serve", "polyner.pipelines",
                "polyner.bench", "polyner.distill", "polyner.training")
    for name, targets in import_graph().items():
        if name.startswith("polyner.tagging."):
            calls_up = sorted(t for t in targets if t in surfaces or t.startswith(tuple(u + "." for u in surfaces)))
            assert not calls_up, f"{name} imports {calls_up}"
