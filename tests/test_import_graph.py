"""The client's floor plan holds (issue 24): one folder per use case, every import pointing down the
layers below, no import cycle among its modules, and the command line imported by nothing but itself
(``cli`` lists the command modules; a use case never goes through argv). The graph is read from the
source (tests/import_graph.py): lazy imports inside functions, ``TYPE_CHECKING`` imports and modules
named in strings for ``importlib`` (the launcher registry, the fork server's preload list) count too."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import Graph, against_layers, back_arrows, command_line_imports, cycles, read_graph

PACKAGE = Path(__file__).resolve().parents[1] / "client_distill"
#: the client's layers, lowest first: a folder imports only folders of lower layers (and itself)
LAYERS = (
    ("errors", "__init__"),
    ("data",),
    ("adapters",),
    ("buy",),
    ("methods",),
    ("train",),
    ("sweep", "deploy"),
    ("report",),
    ("commands",),
    ("cli",),
)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return read_graph(PACKAGE)


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_nothing_imports_the_command_line_but_the_command_line(graph):
    assert command_line_imports(graph) == []
    assert {a.source for a in graph.arrows if a.target == "client_distill.cli"} <= {"client_distill.commands"}


def test_every_import_points_down_the_layers(graph):
    assert against_layers(graph, LAYERS) == []
    same_layer = [a for a in graph.arrows if {a.source.split(".")[1], a.target.split(".")[1]} == {"sweep", "deploy"}]
    assert same_layer == []  # the two use cases of one layer stay apart
    assert back_arrows(graph) == []


def test_every_module_is_in_a_layer_and_the_top_level_stays_small(graph):
    known = {name for layer in LAYERS for name in layer}
    assert {m.split(".")[1] for m in graph.modules if m != "client_distill"} <= known
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 12, sorted(entries)


def test_the_graph_reader_sees_lazy_typing_and_string_imports(tmp_path):
    """A cycle through a function-level import, a TYPE_CHECKING import and an importlib string is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (pkg / "c.py").write_text('LOADERS = {"x": "pkg.a:f"}\n')
    (pkg / "cli.py").write_text("")
    (pkg / "d.py").write_text("import pkg.cli\n")
    g = read_graph(pkg)
    assert {(a.source, a.target, a.kind) for a in g.arrows} >= {
        ("pkg.a", "pkg.sub.b", "lazy"),
        ("pkg.sub.b", "pkg.c", "typing"),
        ("pkg.c", "pkg.a", "string"),
        ("pkg.d", "pkg.cli", "module"),
    }
    assert cycles(g) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert [(a.source, a.target) for a in command_line_imports(g)] == [("pkg.d", "pkg.cli")]
    assert len(back_arrows(g)) == 2  # pkg.d → pkg.cli, and one arrow of the cycle
