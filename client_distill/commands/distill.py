"""``vl2v distill``: one distillation run (:func:`client_distill.train.job.distill`)."""

from __future__ import annotations

import argparse

from client_distill.buy.settings import ClientSettings
from client_distill.commands.common import add_vendor_arguments, fraction_flag, vendor_config
from client_distill.errors import UsageError
from client_distill.methods.catalog import method_names
from client_distill.train.hparams import PROFILES, parse_overrides
from client_distill.train.runspec import TEACHER_MODES, RunSpec


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train one method on one leave-one-domain-out task (resumable)",
        description=(
            "One DomainBed run: train on the source domains' 80% splits, select on their 20% splits, "
            "score the target domain's 80% split; writes OUT/results.jsonl, checkpoints and OUT/done. "
            "Rerun the same command to resume. Under torchrun it trains data-parallel (DDP)."
        ),
    )
    p.add_argument(
        "--method", required=True, choices=method_names(), help="the method to train (client_distill/methods/)"
    )
    p.add_argument("--data", required=True, help="DomainBed-layout folder (or the data dir holding --dataset)")
    p.add_argument("--dataset", default=None, help="a known dataset name (pacs, synth-pacs, ...)")
    p.add_argument("--test-domain", required=True, help="the held-out target domain")
    p.add_argument("--seed", type=int, default=0, help="trial seed (data split and sampling)")
    p.add_argument("--teacher", default=None, help="teacher-set folder written by `vl2v embed`")
    p.add_argument(
        "--student",
        default=RunSpec.student,
        help="student name or checkpoint (see create_student), or openclip:CONFIG.json:CKPT for sd",
    )
    p.add_argument("--random-init", action="store_true", help="the student's architecture at random init")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--profile",
        default="paper",
        choices=sorted(PROFILES),
        help="hparams profile (paper: the paper's defaults; synth: the CPU world)",
    )
    p.add_argument("--hparams", default="{}", help='JSON overrides, e.g. \'{"lr": 1e-4, "swad": true}\'')
    p.add_argument("--steps", type=int, default=None, help="steps per stage (shortcut for --hparams '{\"steps\": N}')")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="with --teacher: use a seeded random fraction (in [0, 1]) of the source images' bought embeddings",
    )
    p.add_argument(
        "--teacher-mode", default="cached", choices=TEACHER_MODES, help="online: buy every augmented view at every step"
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="STEP",
        help="stop resumably at the first checkpoint at or after STEP",
    )
    p.add_argument(
        "--cache", default=settings.cache, help="online mode: the client cache folder holding the query ledger"
    )
    add_vendor_arguments(p, settings)
    p.set_defaults(func=_distill)


def _distill(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.hparams)
    if args.steps is not None:
        overrides["steps"] = args.steps
    budget = fraction_flag("--budget", args.budget, "the source images whose bought embeddings the run uses")
    if budget is not None and args.teacher is None:
        raise UsageError("--budget keeps a fraction of a teacher set's image embeddings: give the set with --teacher")
    same = ("method", "data", "dataset", "test_domain", "seed", "teacher", "student", "profile", "teacher_mode")
    spec = RunSpec(
        **{k: getattr(args, k) for k in same}, budget=budget, pretrained=not args.random_init, hparams=overrides
    )
    from client_distill.train.job import distill  # torch only once a run starts: flag errors come at once

    return distill(spec, args.out, vendor_config(args), args.stop_after, progress=True)
