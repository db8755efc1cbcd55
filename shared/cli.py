"""The small command-line frame both console scripts use: sub-commands registered by module, and
user errors printed as one line instead of a traceback."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Sphinx roles (:mod:`x`, :func:`~a.b`) and double backquotes: the docstrings that serve as command
#: descriptions are written for the API docs, and the terminal should show their words only
_RST_MARKUP = re.compile(r":\w+:`~?([^`]+)`|``([^`]+)``")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, showing a description written in reStructuredText as plain text."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(_RST_MARKUP.sub(lambda m: m.group(1) or m.group(2), text))


class SubcommandParser(argparse.ArgumentParser):
    """The parser of a sub-command: a flag it does not know is refused with *its* usage (which lists
    the flags it does know), as git and docker do, instead of the top-level parser's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:  # everything after a sub-command's name is its own: nothing is left for a parent
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def version(prog: str) -> str:
    """``PROG VERSION`` of the installed ``vl2v`` distribution, for ``--version``."""
    try:
        return f"{prog} {importlib.metadata.version('vl2v')}"
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return f"{prog} (not installed)"


def build_parser(
    prog: str, description: str | None, modules: Sequence[str], *context: object
) -> argparse.ArgumentParser:
    """A parser whose sub-commands come from ``register(subparsers, *context)`` in each of ``modules``;
    ``context`` is what a console script's modules share while they register (the client's settings,
    which give its flags their defaults)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=version(prog))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=SubcommandParser)
    for name in modules:
        importlib.import_module(name).register(sub, *context)
    return parser


def run(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, user_errors: tuple[type[BaseException], ...]
) -> int:
    """Parse ``argv`` and call the chosen sub-command's ``func(args)`` (see :func:`call`)."""
    args = parser.parse_args(argv)
    return call(parser.prog, lambda: args.func(args), user_errors)


def call(prog: str, command: Callable[[], int | None], user_errors: tuple[type[BaseException], ...]) -> int:
    """Run ``command``; ``user_errors`` become a one-line message and exit status 2, Ctrl-C exit
    status 130, a closed output pipe (``| head``) exit status 141 without a word, as a shell reports
    a command SIGPIPE ended."""
    try:
        return int(command() or 0)
    except user_errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept, rerun to continue", file=sys.stderr)
        return 130
