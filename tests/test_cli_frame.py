"""What both console scripts share (shared/cli.py): ``--version``, a sub-command's own usage for a flag
it does not know, help text for every option, and ``--help`` that answers whatever the environment says."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from client_distill import cli as client_cli
from client_distill.buy.settings import load_settings
from shared.cli import build_parser
from vendor_server import cli as vendor_cli

MAINS = {"vl2v": client_cli.main, "vl2v-vendor": vendor_cli.main}


def parsers() -> dict[str, argparse.ArgumentParser]:
    return {
        "vl2v": build_parser("vl2v", "", client_cli.COMMAND_MODULES, load_settings()),
        "vl2v-vendor": build_parser("vl2v-vendor", "", vendor_cli.COMMAND_MODULES),
    }


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    """``(command path, parser)`` of ``parser`` and of every sub-command under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


@pytest.mark.parametrize("prog", sorted(MAINS))
def test_version(prog, capsys):
    with pytest.raises(SystemExit) as exit_:
        MAINS[prog](["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"{prog} 0.1.0"


@pytest.mark.parametrize(
    ("prog", "argv", "unknown", "usage"),
    [
        ("vl2v", ["sweep", "--config", "c.yaml", "--vendor-url", "http://x"], "--vendor-url", "usage: vl2v sweep "),
        ("vl2v", ["cache", "stats", "--no-such-flag"], "--no-such-flag", "usage: vl2v cache stats "),
        ("vl2v-vendor", ["keys", "list", "--budget", "5"], "--budget", "usage: vl2v-vendor keys list "),
    ],
)
def test_an_unknown_flag_shows_the_sub_commands_usage(prog, argv, unknown, usage, capsys):
    """As git and docker do: the usage that lists the flags the sub-command does take."""
    with pytest.raises(SystemExit) as exit_:
        MAINS[prog](argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(usage) and f"unrecognized arguments: {unknown}" in err


@pytest.mark.parametrize("prog", sorted(MAINS))
def test_every_option_says_what_it_is(prog):
    missing = [
        f"{' '.join(path)} {action.option_strings or action.dest}"
        for path, parser in commands(parsers()[prog], (prog,))
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []


def test_every_command_that_takes_an_api_key_takes_a_key_file():
    """A key on the command line is visible in `ps`: each command offers a file instead."""
    with_key = {
        " ".join(path): "--api-key-file" in parser._option_string_actions
        for path, parser in commands(parsers()["vl2v"], ())
        if "--api-key" in parser._option_string_actions
    }
    assert with_key == dict.fromkeys(["embed", "cache stats", "distill", "plan", "export", "demo"], True)


@pytest.mark.parametrize("prog", sorted(MAINS))
def test_descriptions_are_plain_text(prog, capsys):
    """Docstrings used as descriptions lose their reStructuredText markup; no ``%%`` is shown doubled."""
    for path, parser in commands(parsers()[prog], (prog,)):
        text = parser.format_help()
        assert "``" not in text and ":mod:`" not in text and "%%" not in text, " ".join(path)


def test_help_answers_with_a_bad_setting_and_commands_refuse_it(monkeypatch, capsys):
    monkeypatch.setenv("VL2V_VENDOR", "bogus")
    with pytest.raises(SystemExit) as exit_:
        client_cli.main(["embed", "--help"])
    assert exit_.value.code == 0 and "usage: vl2v embed" in capsys.readouterr().out
    assert client_cli.main(["cache", "stats"]) == 2
    assert capsys.readouterr().err.strip() == (
        "vl2v: error: invalid setting VL2V_VENDOR='bogus': Value error, not a known vendor (choose one of jina, "
        "openai, vl2v)"
    )


def test_a_closed_output_pipe_ends_quietly_with_141():
    """`vl2v ... | head`: no traceback when the reader stops early, and the status a shell gives SIGPIPE."""
    script = "from shared.cli import call; import sys; sys.exit(call('vl2v', lambda: print('x' * 10**7), ()))"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the writer writes
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141 and err == b""
