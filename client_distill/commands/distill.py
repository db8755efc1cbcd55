"""``vl2v distill``: one distillation run. Also :func:`execute` and :func:`sweep_job`, the run itself,
which :mod:`client_distill.sweep.run` hands each of its RunSpecs to."""

from __future__ import annotations

import argparse

from client_distill.adapters.registry import add_vendor_arguments
from client_distill.buy.settings import ClientSettings, load_settings
from client_distill.errors import Vl2vError
from client_distill.methods.catalog import method_names
from client_distill.train.hparams import PROFILES, parse_overrides
from client_distill.train.runspec import TEACHER_MODES, RunSpec


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train one method on one leave-one-domain-out task (resumable)",
        description=(
            "One DomainBed run: train on the source domains' 80%% splits, select on their 20%% splits, "
            "score the target domain's 80%% split; writes OUT/results.jsonl, checkpoints and OUT/done. "
            "Rerun the same command to resume. Under torchrun it trains data-parallel (DDP)."
        ),
    )
    p.add_argument("--method", required=True, choices=method_names())
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
        help="use a seeded random fraction of the source images' bought embeddings",
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


def _online_teacher(args: argparse.Namespace):
    """The vendor, bought from without the cache (``use_cache=False``): the official recipe."""
    from client_distill.adapters.registry import adapter_from_args
    from client_distill.buy.cache import EmbeddingCache
    from client_distill.buy.teacher import Teacher

    return Teacher(adapter_from_args(args), EmbeddingCache(args.cache), use_cache=False)


def execute(spec: RunSpec, out: str, vendor: argparse.Namespace | None, stop_after: int | None = None) -> int:
    """Run ``spec`` into ``out`` (``vendor``: the vendor options, needed by online runs) and print
    its result line; the exit status."""
    from client_distill.train.run import run_distill  # torch only once a run starts: `vl2v --help` stays instant

    teacher = _online_teacher(vendor) if spec.teacher_mode == "online" and vendor is not None else None
    try:
        r = run_distill(spec, out, teacher, stop_after)
    finally:
        if teacher is not None:
            teacher.close()
            teacher.cache.close()
    if r is None:
        print(f"stopped after step {stop_after}; rerun the same command to continue")
        return 0
    i = r["test_env"]
    print(
        f"{spec.method} → {r['test_domain']}: target (in split) {100 * r[f'env{i}_in_acc']:.1f} %, "
        f"source val {100 * r['source_val_acc']:.1f} % ({r['model']} model, {r['stage']} stage, step {r['step']}); "
        f"image queries {r['queries_images']}, evaluation queries {r['queries_eval_images']}"
    )
    return 0


def sweep_job(spec: RunSpec, out: str, vendor_args: list[str]) -> int:
    """One run of a sweep, in a launcher process: the RunSpec itself, no command line round trip;
    ``vendor_args`` (``--vendor-url`` …) are parsed only for an online run."""
    from shared.cli import call

    def job() -> int:
        vendor = None
        if spec.teacher_mode == "online":
            settings = load_settings()  # the sweep's environment (a bad value is a one-line error, like any)
            parser = argparse.ArgumentParser(prog="vl2v sweep (online run)")
            add_vendor_arguments(parser, settings)
            parser.add_argument("--cache", default=settings.cache)
            vendor = parser.parse_args(vendor_args)
        return execute(spec, out, vendor)

    return call("vl2v distill", job, (Vl2vError,))


def _distill(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.hparams)
    if args.steps is not None:
        overrides["steps"] = args.steps
    same = (
        "method",
        "data",
        "dataset",
        "test_domain",
        "seed",
        "teacher",
        "student",
        "profile",
        "budget",
        "teacher_mode",
    )
    spec = RunSpec(**{k: getattr(args, k) for k in same}, pretrained=not args.random_init, hparams=overrides)
    return execute(spec, args.out, args, args.stop_after)
