"""``vl2v data``: make datasets. ``vl2v data synth`` writes a task of the synthetic world to disk in
DomainBed's layout, so the same code path reads it as reads PACS or Office-Home."""

from __future__ import annotations

import argparse
from pathlib import Path

from client_distill.buy.settings import ClientSettings
from client_distill.data.synth import DEFAULT_PER_CLASS, write_synth
from shared.world import TASKS


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    data = subparsers.add_parser("data", help="make datasets (the synthetic world's tasks)")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = sub.add_parser("synth", help="render a synthetic task to DIR/<domain>/<class>/<n>.png")
    synth.add_argument("--task", required=True, choices=sorted(TASKS), help="which task to render")
    synth.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (must be empty)")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64; 224 for GPU runs)")
    synth.add_argument(
        "--per-class",
        type=int,
        default=DEFAULT_PER_CLASS,
        help=f"images per class and domain (default: {DEFAULT_PER_CLASS})",
    )
    synth.add_argument("--seed", type=int, default=0, help="world seed; the same seed gives identical files")
    synth.add_argument("--overwrite", action="store_true", help="replace the task's domain folders in a non-empty DIR")
    synth.add_argument("--workers", type=int, default=2, help="rendering processes (default: 2)")
    synth.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    write_synth(
        args.task,
        args.out,
        size=args.size,
        per_class=args.per_class,
        seed=args.seed,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    return 0
