"""``vl2v data``: make datasets. ``vl2v data synth`` writes a task of the synthetic world to disk in
DomainBed's layout, so the same code path reads it as reads PACS or Office-Home."""

from __future__ import annotations

import argparse
from pathlib import Path

from client_distill.buy.settings import ClientSettings
from client_distill.errors import UsageError
from shared.world import TASKS
from shared.world.writer import write_task

#: per class and domain: enough for an 80/20 split and a CPU demo; PACS itself has ~100-800
DEFAULT_PER_CLASS = 150


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
    if args.size < 8 or args.per_class < 1 or args.workers < 1:
        raise UsageError("--size must be ≥ 8, --per-class and --workers ≥ 1")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"{args.out} exists and is not a folder")
    try:
        n = write_task(TASKS[args.task], args.out, args.size, args.per_class, args.seed, args.overwrite, args.workers)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {n} images of {args.task} to {args.out}")
    return 0
