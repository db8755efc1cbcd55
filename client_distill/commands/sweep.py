"""``vl2v sweep``: many distillation runs (methods × budgets × target domains × seeds), DomainBed style,
with its hparam search. The config format: ``docs/sweep-config.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

from client_distill.buy.settings import ClientSettings
from client_distill.errors import UsageError
from client_distill.sweep.launchers import LAUNCHERS


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run methods × budgets × target domains × seeds",
        description="Runs every (method, budget, target domain, seed) of a YAML config not finished yet; a "
        "rerun skips finished runs and resumes partial ones. The config is a mapping; data, methods and out are "
        "required, and dataset, student, teacher(s), embed, budgets, test_domains, seeds, profile, hparams, "
        "search or searched, teacher_modes, online_methods, vendor and demo optional: each is described, with "
        "an example, in docs/sweep-config.md of the source repository.",
    )
    p.add_argument("--config", required=True, help="sweep YAML")
    p.add_argument(
        "--launcher",
        default="local",
        choices=sorted(LAUNCHERS),
        help="where runs execute: local (processes on this machine) or ray (Ray tasks; see --address)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="--launcher ray: the Ray cluster (HOST:PORT, ray://HOST:PORT, or auto: the cluster this machine "
        "joined with `ray start`); default: a local Ray instance",
    )
    p.add_argument("--workers", type=int, default=None, help="runs in parallel processes (local launcher; default 1)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: the cores split between the workers; on Ray 1, and a run "
        "reserves that many CPUs)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do and exit")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from client_distill.sweep.config import load_config
    from client_distill.sweep.run import (
        last_line,
        run_sweep,
    )  # torch only once a sweep starts: `vl2v --help` stays instant

    if (args.workers is not None and args.workers < 1) or (args.threads is not None and args.threads < 1):
        raise UsageError("--workers and --threads must be at least 1")
    if args.launcher != "ray" and args.address is not None:
        raise UsageError("--address is the Ray cluster's: use it with --launcher ray")
    if args.launcher == "ray" and args.workers is not None:
        raise UsageError("--workers is the local launcher's: on Ray the cluster's free CPUs and GPUs decide")
    outcome = run_sweep(
        load_config(args.config),
        workers=args.workers or 1,
        dry_run=args.dry_run,
        threads=args.threads,
        launcher=args.launcher,
        address=args.address,
    )
    if args.dry_run:
        print(f"{len(outcome['todo'])} runs to do, {len(outcome['skipped'])} already done")
        return 0
    print(
        f"{len(outcome['done'])} runs finished, {len(outcome['skipped'])} already done, {len(outcome['failed'])} failed"
    )
    for path in outcome["failed"]:
        print(f"failed: {path} ({last_line(Path(path) / 'log.txt')}; see {path}/log.txt)")
    return 1 if outcome["failed"] else 0
