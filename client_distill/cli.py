"""``vl2v``: the client's command line. Sub-commands live in :mod:`client_distill.commands`."""

from __future__ import annotations

import sys

from client_distill.errors import Vl2vError
from shared.cli import build_parser, run

#: command modules, in the order they appear in ``vl2v --help``; each has ``register(subparsers)``
COMMAND_MODULES = [
    "client_distill.commands.data",
    "client_distill.commands.student",
    "client_distill.commands.probe",
    "client_distill.commands.embed",
    "client_distill.commands.cache",
    "client_distill.commands.distill",
    "client_distill.commands.sweep",
    "client_distill.commands.report",
    "client_distill.commands.demo",
]


def main(argv: list[str] | None = None) -> int:
    return run(build_parser("vl2v", "the client: buy teacher embeddings from a vendor within a budget and distil them into a student (VL2V-ADiP)", COMMAND_MODULES), argv, (Vl2vError,))


if __name__ == "__main__":
    sys.exit(main())
