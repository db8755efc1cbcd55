"""The names of the methods, without torch: the ``vl2v`` command line builds its choices from them on
every call (``--help`` included), so importing the method classes (torch, timm) is out of the question.

The names are read from the source of this package's modules: every class decorated with
``@register_method`` and its ``name = "..."``. So a method is declared once, in its class, and a new
module dropped into this package is a choice of ``vl2v distill --method`` and a method of a sweep
config. Methods registered by code outside the package (a plugin, a test) are added once that code
has run. ``tests/test_client_cli_startup.py`` checks that the names read here are exactly the classes
the registry holds."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

#: the decorator that registers a method (see :func:`client_distill.methods.registry.register_method`)
DECORATOR = "register_method"


def _declared_name(node: ast.ClassDef) -> str | None:
    """The ``name = "..."`` of a class body, if it is a string literal."""
    for statement in node.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        value = getattr(statement, "value", None)
        if any(isinstance(t, ast.Name) and t.id == "name" for t in targets) and isinstance(value, ast.Constant):
            return value.value if isinstance(value.value, str) else None
    return None


def _registers(node: ast.ClassDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == DECORATOR) or (isinstance(d, ast.Attribute) and d.attr == DECORATOR)
        for d in node.decorator_list
    )


def declared_names(folder: str | Path) -> list[str]:
    """The names of the registered method classes of the modules in ``folder``, read from their source."""
    names = []
    for file in sorted(Path(folder).glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ClassDef) and _registers(node) and (name := _declared_name(node)):
                names.append(name)
    return names


def method_names() -> list[str]:
    """Every method's name, sorted: those of this package (read from its source) and any registered at
    run time by code outside it."""
    names = set(declared_names(Path(__file__).parent))
    registry = sys.modules.get("client_distill.methods.registry")  # loaded: methods may have been added
    if registry is not None:
        names.update(registry.registered())
    return sorted(names)
