"""``vl2v probe``: per-domain linear-probe accuracy of a student's frozen features (how much of each
domain a student already separates, before any distillation)."""

from __future__ import annotations

import argparse
import json

from client_distill.buy.settings import ClientSettings
from client_distill.data.datasets import open_dataset


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "probe",
        help="per-domain linear-probe accuracy of a student's frozen features",
        description="Fits a linear classifier on each domain's 80% split and scores its 20% split.",
    )
    p.add_argument("--student", required=True, help="student name or checkpoint path (see create_student)")
    p.add_argument("--data", required=True, help="DomainBed-layout folder (or the data dir holding --dataset)")
    p.add_argument("--dataset", default=None, help="a known dataset name (pacs, vlcs, office_home, ...)")
    p.add_argument("--seed", type=int, default=0, help="trial seed of the 80/20 split")
    p.add_argument("--random-init", action="store_true", help="the student's architecture without its weights")
    p.add_argument("--json", action="store_true", help="print rows as JSON instead of a table")
    p.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    from client_distill.train.probe import format_table, probe_domains  # torch: not for `vl2v --help`
    from client_distill.train.students import create_student

    dataset = open_dataset(args.data, args.dataset)
    student = create_student(args.student, pretrained=not args.random_init)
    rows = probe_domains(student, dataset, seed=args.seed)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows]))
    else:
        print(f"{student.name} on {dataset.name} (trial seed {args.seed}; accuracy on each domain's 20 % split)")
        print(format_table(rows))
    return 0
