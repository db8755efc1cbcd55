"""The small command-line frame both console scripts use: sub-commands registered by module, and
user errors printed as one line instead of a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence


def build_parser(
    prog: str, description: str | None, modules: Sequence[str], *context: object
) -> argparse.ArgumentParser:
    """A parser whose sub-commands come from ``register(subparsers, *context)`` in each of ``modules``;
    ``context`` is what a console script's modules share while they register (the client's settings,
    which give its flags their defaults)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    status 130."""
    try:
        return int(command() or 0)
    except user_errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept, rerun to continue", file=sys.stderr)
        return 130
