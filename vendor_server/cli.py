"""``vl2v-vendor``: run the embedding service, manage API keys, pretrain the embedded default model."""

from __future__ import annotations

import sys

from shared.cli import build_parser, run
from vendor_server.errors import VendorCliError

#: command modules, in ``--help`` order; each has ``register(subparsers)``
COMMAND_MODULES = [
    "vendor_server.commands.serve",
    "vendor_server.commands.keys",
    "vendor_server.commands.pretrain",
]


def main(argv: list[str] | None = None) -> int:
    return run(build_parser("vl2v-vendor", "the vendor: serve a CLIP model only as metered, pay-per-query embedding endpoints; manage API keys", COMMAND_MODULES), argv, (VendorCliError,))


if __name__ == "__main__":
    sys.exit(main())
