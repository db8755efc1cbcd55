"""The black box holds: the client never imports the vendor's code, nor the vendor the client's.
Checked twice: statically (every import statement in each package) and at run time (importing
every module of one package in a fresh interpreter loads nothing of the other)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    ("client_distill", "vendor_server"),
    ("vendor_server", "client_distill"),
    ("shared", "client_distill"),
    ("shared", "vendor_server"),
]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_of(package: str) -> list[str]:
    return [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted((ROOT / package).rglob("*.py"))
    ]


@pytest.mark.parametrize("package,forbidden", PAIRS)
def test_no_import_statement_crosses_the_boundary(package, forbidden):
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path)
        if name == forbidden or name.startswith(forbidden + ".")
    ]
    assert not offenders, f"{package} imports {forbidden}: {offenders}"


@pytest.mark.parametrize("package,forbidden", PAIRS[:2])
def test_importing_every_module_loads_nothing_of_the_other_side(package, forbidden):
    code = (
        "import importlib, sys\n"
        f"for name in {modules_of(package)!r}:\n"
        "    importlib.import_module(name)\n"
        f"leaked = sorted(m for m in sys.modules if m == {forbidden!r} or m.startswith({forbidden!r} + '.'))\n"
        "print(leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checker_sees_a_crossing(tmp_path):
    """The static check is not vacuous: it flags both import forms."""
    bad = tmp_path / "bad.py"
    bad.write_text("import vendor_server.app\nfrom vendor_server import ledger\n")
    assert imported_modules(bad) == {"vendor_server.app", "vendor_server"}
