"""``vl2v cache stats``: what the embedding cache holds and what the ledger says was paid, optionally
reconciled with the vendor's own ``/v1/usage`` for one key. (Exporting a dataset's cached
embeddings is ``vl2v embed --out DIR``: rerunning it with the same arguments costs nothing.)"""

from __future__ import annotations

import argparse
import json

from client_distill.buy.settings import ClientSettings
from client_distill.buy.vendor import cache_stats
from client_distill.commands.common import add_vendor_arguments, vendor_config


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser("cache", help="inspect the embedding cache and query ledger", description=__doc__)
    sub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    stats = sub.add_parser("stats", help="entries, size, queries paid, hits (and vendor usage with --vendor-url)")
    stats.add_argument(
        "--cache", default=settings.cache, help="cache dir (default $VL2V_CACHE or ~/.cache/vl2v/embeddings)"
    )
    add_vendor_arguments(stats, settings)
    stats.set_defaults(func=show_stats)


def show_stats(args: argparse.Namespace) -> int:
    vendor = vendor_config(args) if args.vendor_url else None
    print(json.dumps(cache_stats(args.cache, vendor), indent=2))
    return 0
