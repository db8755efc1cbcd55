"""``vl2v-vendor``: run the embedding service, manage API keys, pretrain the embedded default model."""

from __future__ import annotations

import sys

from shared.cli import build_parser, run
from vendor_server.errors import VendorCliError
from vendor_server.ledger.errors import LedgerError

#: command modules, in ``--help`` order; each has ``register(subparsers)``
COMMAND_MODULES = [
    "vendor_server.commands.serve",
    "vendor_server.commands.keys",
    "vendor_server.commands.pretrain",
]

#: printed as one line, exit status 2: the ledger's refusals (an unknown key id, a ledger written by a
#: newer version, a --db that is no ledger) are the operator's to fix, like a bad flag
USER_ERRORS = (VendorCliError, LedgerError)


def main(argv: list[str] | None = None) -> int:
    description = "the vendor: serve a CLIP model only as metered, pay-per-query embedding endpoints; manage API keys"
    return run(build_parser("vl2v-vendor", description, COMMAND_MODULES), argv, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
