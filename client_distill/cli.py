"""``vl2v``: the client's command line. Sub-commands live in :mod:`client_distill.commands`."""

from __future__ import annotations

import sys

from client_distill.buy.settings import ClientSettings, load_settings
from client_distill.errors import UsageError, Vl2vError
from shared.cli import build_parser, call

DESCRIPTION = (
    "the client: buy teacher embeddings from a vendor within a budget and distil them into a student (VL2V-ADiP)"
)
#: command modules, in the order they appear in ``vl2v --help``; each has ``register(subparsers, settings)``
COMMAND_MODULES = [
    "client_distill.commands.data",
    "client_distill.commands.student",
    "client_distill.commands.probe",
    "client_distill.commands.embed",
    "client_distill.commands.cache",
    "client_distill.commands.distill",
    "client_distill.commands.plan",
    "client_distill.commands.sweep",
    "client_distill.commands.report",
    "client_distill.commands.export",
    "client_distill.commands.predict",
    "client_distill.commands.evaluate",
    "client_distill.commands.demo",
]


def main(argv: list[str] | None = None) -> int:
    """Run ``vl2v ARGV``. The environment is read while the parser is built (it gives the flags their
    defaults), inside :func:`~shared.cli.call`, so a bad ``VL2V_*`` value is a one-line error too; it
    is raised only once a command would run, so that ``--help`` and ``--version`` still answer (with
    the built-in defaults) to the user who needs them to fix it."""

    def command() -> int | None:
        try:
            settings, problem = load_settings(), None
        except UsageError as exc:
            settings, problem = ClientSettings.model_construct(), exc  # the defaults, unvalidated
        args = build_parser("vl2v", DESCRIPTION, COMMAND_MODULES, settings).parse_args(argv)
        if problem is not None:
            raise problem
        return args.func(args)

    return call("vl2v", command, (Vl2vError,))


if __name__ == "__main__":
    sys.exit(main())
