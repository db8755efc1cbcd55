"""The docs tell the truth about the code: every command line they show uses flags the command has, every
environment variable the code reads is in the README's table (and every one there is read), and the sweep
config reference covers every key and its example loads."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml

from client_distill import cli as client_cli
from client_distill.buy.settings import ClientSettings, load_settings
from client_distill.sweep.config import DemoConfig, EmbedConfig, SearchConfig, SweepConfig, load_config
from shared.cli import build_parser
from vendor_server import cli as vendor_cli
from vendor_server.settings import VendorSettings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*/*.md"))]
#: a command line inside a code span or block: the program, then everything up to the end of the span,
#: a comment, a pipe or a shell operator
COMMAND = re.compile(r"(?<![\w/.-])(vl2v(?:-vendor)?) ((?:[^`#|;&)\n]|\\\n)+)")


def parsers() -> dict[str, argparse.ArgumentParser]:
    return {
        "vl2v": build_parser("vl2v", "", client_cli.COMMAND_MODULES, load_settings()),
        "vl2v-vendor": build_parser("vl2v-vendor", "", vendor_cli.COMMAND_MODULES),
    }


def code(text: str) -> list[str]:
    """The code blocks and inline code spans of a markdown text."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return blocks + spans


def command_lines() -> list[tuple[str, str, str]]:
    """``(document, program, arguments)`` of every vl2v / vl2v-vendor command shown in the docs."""
    found = []
    for doc in DOCS:
        for snippet in code(doc.read_text()):
            for program, rest in COMMAND.findall(snippet):
                found.append((doc.name, program, rest.replace("\\\n", " ")))
    return found


def unknown_flags(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """The ``--flags`` among ``words`` that the (sub-)command they name does not take."""
    for i, word in enumerate(words):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            return unknown_flags(subs[0].choices[word], words[i + 1 :])
    return [
        w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in parser._option_string_actions
    ]


def test_every_command_line_in_the_docs_uses_flags_the_command_has():
    programs = parsers()
    lines = command_lines()
    assert len(lines) > 40  # the pattern finds the docs' commands
    wrong = []
    for doc, program, rest in lines:
        try:
            words = shlex.split(rest, comments=False)
        except ValueError:  # an unbalanced quote in prose: read it word by word
            words = rest.split()
        if bad := unknown_flags(programs[program], words):
            wrong.append(f"{doc}: {program} {rest.strip()}: {', '.join(bad)}")
    assert wrong == []


def environment_variables() -> set[str]:
    """Every ``VL2V_*`` variable the client and the vendor read."""
    names = {f"VL2V_{field.upper()}" for field in ClientSettings.model_fields}
    for field, info in VendorSettings.model_fields.items():
        aliases = getattr(info.validation_alias, "choices", None)
        names |= {a for a in aliases if a.startswith("VL2V_")} if aliases else {f"VL2V_VENDOR_{field.upper()}"}
    return names | {
        "VL2V_COMPILE",
        "VL2V_RUN_THREADS",
        "VL2V_REQUIRE_POSTGRES",
        "VL2V_REQUIRE_BROWSER",
        "VL2V_CONSOLE_SCREENSHOTS",
    }


def readme_table() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Environment variables and exit codes") : text.index("## Tests")]
    return {
        name for row in table.splitlines() if row.startswith("| `VL2V_") for name in re.findall(r"`(VL2V_\w+)`", row)
    }


def test_the_readme_table_has_every_environment_variable_and_no_other():
    assert readme_table() == environment_variables()


@pytest.mark.parametrize("model", [SweepConfig, EmbedConfig, SearchConfig, DemoConfig])
def test_the_sweep_config_reference_names_every_key(model):
    text = (ROOT / "docs" / "sweep-config.md").read_text()
    assert [
        k for k in model.model_fields if f"`{k}`" not in text and f"\n  {k}:" not in text and f"{k}:" not in text
    ] == []


def test_the_sweep_config_example_loads(tmp_path):
    text = (ROOT / "docs" / "sweep-config.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1)
    (tmp_path / "sweep.yaml").write_text(example)
    cfg = load_config(tmp_path / "sweep.yaml")
    assert set(yaml.safe_load(example)) == set(SweepConfig.model_fields) - {"searched"}  # the one left commented
    assert cfg.embed is not None and cfg.search is not None and cfg.demo is not None
