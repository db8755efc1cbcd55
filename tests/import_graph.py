"""The import graph of a package, read from its source (nothing is imported), and the figures a layout is
judged by: rooms (modules), cycles (strongly connected components of more than one module) and arrows back
up (imports that point against the layering).

An arrow is any import of one of the package's modules by another: at module level, inside a function
(a lazy import is still a dependency), under ``if TYPE_CHECKING:``, and a module named in a string
constant that is imported by name elsewhere (``importlib.import_module``: the CLI's command list, the
launcher registry, the fork server's preload list). An arrow to a package is an arrow to its
``__init__``.

Arrows back up: every import of the command line (``*.cli``, ``*.commands.*``) by a module that is not
itself the command line, plus, inside each cycle, the fewest arrows whose removal breaks it (a cycle
has at least one arrow that points up, whatever order its modules are read in). Where the package is
laid out in folders, :func:`against_layers` also counts the arrows that point up a given folder order.

Run as a script to print the figures: ``python tests/import_graph.py [PACKAGE_DIR]`` (default: this
checkout's ``client_distill``).
"""

from __future__ import annotations

import ast
import itertools
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_LINE = re.compile(r"\.(cli|commands)(\.|$)")


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    kind: str  # "module" (top level), "lazy" (inside a function), "typing" (TYPE_CHECKING), "string"


@dataclass
class Graph:
    package: str
    modules: dict[str, Path]
    arrows: set[Arrow] = field(default_factory=set)

    def targets(self, source: str) -> set[str]:
        return {a.target for a in self.arrows if a.source == source}


def module_name(package_dir: Path, file: Path) -> str:
    parts = [package_dir.name, *file.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, this: str, is_package: bool) -> Iterable[tuple[str, str]]:
    """``(imported name, kind)`` of every import statement in ``tree`` (relative ones resolved)."""

    def visit(node: ast.AST, kind: str) -> Iterable[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, kind
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = this.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                yield base, kind
                for alias in child.names:
                    yield f"{base}.{alias.name}", kind + "?"  # a submodule, if one has that name
            elif isinstance(child, ast.If) and _is_type_checking(child):
                yield from visit(child, "typing")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, "lazy" if kind == "module" else kind)
            else:
                yield from visit(child, kind)

    yield from visit(tree, "module")


def read_graph(package_dir: str | Path) -> Graph:
    package_dir = Path(package_dir)
    files = {module_name(package_dir, f): f for f in sorted(package_dir.rglob("*.py"))}
    graph = Graph(package_dir.name, files)
    for name, file in files.items():
        tree = ast.parse(file.read_text(), str(file))
        for imported, kind in _imports(tree, name, file.name == "__init__.py"):
            kind = kind.rstrip("?")
            if imported in files and imported != name:
                graph.arrows.add(Arrow(name, imported, kind))
        for node in ast.walk(tree):  # a string that is a module's name (and maybe ":attribute"), nothing else
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = re.fullmatch(rf"({re.escape(graph.package)}(?:\.\w+)+)(?::[\w.]+)?", node.value)
                if found and found.group(1) in files and found.group(1) != name:
                    graph.arrows.add(Arrow(name, found.group(1), "string"))
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def connect(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.targets(v)):
            if w not in index:
                connect(w)
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

    for v in sorted(graph.modules):
        if v not in index:
            connect(v)
    return sorted(found)


def _acyclic(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> bool:
    remaining = {n: set() for n in nodes}
    for a, b in edges:
        remaining[a].add(b)
    while remaining:
        sinks = [n for n, out in remaining.items() if not (out & remaining.keys())]
        if not sinks:
            return False
        for n in sinks:
            del remaining[n]
    return True


def feedback_arrows(graph: Graph, component: Sequence[str]) -> list[tuple[str, str]]:
    """The fewest arrows inside ``component`` whose removal leaves it without a cycle (exhaustive: the
    cycles of a package are small)."""
    inside = sorted({(a.source, a.target) for a in graph.arrows if a.source in component and a.target in component})
    for k in range(1, len(inside) + 1):
        for removed in itertools.combinations(inside, k):
            if _acyclic(component, [e for e in inside if e not in removed]):
                return list(removed)
    return inside


def is_command_line(module: str) -> bool:
    return COMMAND_LINE.search(module) is not None


def command_line_imports(graph: Graph) -> list[Arrow]:
    """Imports of the command line (``cli``, ``commands``) by a module outside it."""
    return sorted(
        (a for a in graph.arrows if is_command_line(a.target) and not is_command_line(a.source)),
        key=lambda a: (a.source, a.target),
    )


def back_arrows(graph: Graph) -> list[tuple[str, str]]:
    """See the module docstring: the command line's imports by the rest first, then, in what remains, the
    fewest arrows that break each cycle."""
    up = {(a.source, a.target) for a in command_line_imports(graph)}
    rest = Graph(graph.package, graph.modules, {a for a in graph.arrows if (a.source, a.target) not in up})
    for component in cycles(rest):
        up.update(feedback_arrows(rest, component))
    return sorted(up)


def folder(graph: Graph, module: str) -> str:
    """The top-level room of ``module``: ``package.x`` for ``package.x`` and ``package.x.y``."""
    return ".".join(module.split(".")[:2])


def against_layers(graph: Graph, layers: Sequence[Sequence[str]]) -> list[Arrow]:
    """Arrows from a folder to a folder of a higher layer (``layers``: lowest first; each a list of
    top-level names, folders or modules, that may import each other only if acyclic)."""
    level = {f"{graph.package}.{name}": i for i, names in enumerate(layers) for name in names}
    return sorted(
        (
            a
            for a in graph.arrows
            if level.get(folder(graph, a.source), -1) < level.get(folder(graph, a.target), -1)
            and folder(graph, a.source) in level
        ),
        key=lambda a: (a.source, a.target),
    )


def figures(package_dir: str | Path) -> dict[str, object]:
    graph = read_graph(package_dir)
    top = sorted(p.name for p in Path(package_dir).iterdir() if p.name != "__pycache__")
    return {
        "top_level_entries": len(top),
        "rooms (modules, __init__ and commands/cli included)": len(graph.modules),
        "rooms outside the command line, without empty __init__": sum(
            1
            for m, f in graph.modules.items()
            if not is_command_line(m) and not (f.name == "__init__.py" and not graph.targets(m))
        ),
        "arrows": len(graph.arrows),
        "cycles": cycles(graph),
        "back arrows": back_arrows(graph),
    }


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "client_distill"
    for key, value in figures(target).items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"    {item}")
        else:
            print(f"{key}: {value}")
