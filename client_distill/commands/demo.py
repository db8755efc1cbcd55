"""``vl2v demo``: vendor + client simulation, accuracy versus query budget, in one command."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from client_distill.adapters.registry import ADAPTERS
from client_distill.buy.settings import ClientSettings
from client_distill.commands.common import add_api_key_arguments, api_key
from client_distill.errors import UsageError
from client_distill.report.demo import DEFAULT_CONFIG, run_demo


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole simulation and report accuracy vs query budget", description=__doc__
    )
    p.add_argument("--out", default="results", help="folder for report.md, the plot, runs and the cache")
    p.add_argument("--data", default="data/synth-pacs", help="where the synthetic dataset is (or will be) rendered")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="sweep YAML (with an optional `demo:` section)")
    p.add_argument(
        "--vendor", default=settings.vendor, choices=sorted(ADAPTERS), help="vendor API flavour (env VL2V_VENDOR)"
    )
    p.add_argument(
        "--vendor-url",
        default=settings.vendor_url,
        help="use this vendor instead of starting one (env VL2V_VENDOR_URL)",
    )
    add_api_key_arguments(p, settings)
    p.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="training runs in parallel processes, one torch thread each on two cores (default: min(2, cores))",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    key = api_key(args)
    if key and not args.vendor_url:
        raise UsageError("an API key was given but no --vendor-url; without one the demo starts its own vendor")
    run_demo(Path(args.out), Path(args.data), Path(args.config), args.vendor, args.vendor_url, key, args.workers)
    return 0
