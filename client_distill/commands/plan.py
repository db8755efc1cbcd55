"""``vl2v plan``: buy a small pilot, measure a learning curve on left-out source domains, and say how many
image queries are worth buying (:func:`client_distill.sweep.budget_plan.plan_budget`)."""

from __future__ import annotations

import argparse

from client_distill.buy.settings import ClientSettings
from client_distill.commands.common import add_vendor_arguments, count_flag, fraction_flag, vendor_config
from client_distill.errors import UsageError
from client_distill.train.runspec import RunSpec


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "plan",
        help="predict from a small pilot how many image queries are worth buying (no target data)",
        description=(
            "Buy a pilot (cached: a later `vl2v embed` with the same --seed never pays for it twice), train short "
            "runs on nested parts of it leaving one source domain out in turn, fit accuracy against image queries "
            "and recommend a budget by --min-gain. Writes OUT/plan.json and OUT/plan.png; rerun to resume."
        ),
    )
    add_vendor_arguments(p, settings)
    p.add_argument("--data", required=True, help="dataset folder (DomainBed layout) or data dir with --dataset")
    p.add_argument("--dataset", default=None, help="dataset name (pacs, vlcs, synth-pacs, ...)")
    p.add_argument("--domains", default=None, help="comma-separated source domains, two or more (default: all)")
    p.add_argument("--max-queries", type=int, required=True, help="most queries you would spend in all")
    p.add_argument("--student", default=RunSpec.student, help="pretrained student whose frozen features the runs use")
    p.add_argument("--prompts", default=None, help="file of prompt templates with {} (default: 'a photo of a {}')")
    p.add_argument("--split", choices=("in", "all"), default="in", help="DomainBed 'in' split of each domain, or all")
    p.add_argument("--seed", type=int, default=0, help="trial seed (split, purchase order, bootstrap)")
    p.add_argument("--pilot", type=float, default=0.1, help="share of the source images the pilot buys (default 0.1)")
    p.add_argument("--fractions", default="0.25,0.5,0.75,1", help="nested shares of the pilot the short runs train on")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps per short run (default 100)")
    p.add_argument(
        "--min-gain", type=float, default=0.5, help="stop rule: points of accuracy 1,000 more queries must gain"
    )
    p.add_argument(
        "--min-gain-per-price",
        type=float,
        default=None,
        help="stop rule per unit of price instead (points per unit of the card's price_per_query spent)",
    )
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the curve fit (default 200)")
    p.add_argument("--out", required=True, help="plan folder to write")
    p.add_argument(
        "--cache", default=settings.cache, help="embedding cache dir (default $VL2V_CACHE or ~/.cache/vl2v/embeddings)"
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    max_queries = count_flag("--max-queries", args.max_queries, "queries (texts and image views)")
    try:
        fractions = tuple(float(f) for f in args.fractions.split(","))
    except ValueError:
        raise UsageError(f"--fractions must be comma-separated numbers, not {args.fractions!r}") from None
    pilot = fraction_flag("--pilot", args.pilot, "the source images the pilot buys")
    from client_distill.sweep.budget_plan import PlanOrder, format_plan, plan_budget  # torch: flag errors at once

    order = PlanOrder(
        data=args.data,
        out=args.out,
        max_queries=max_queries,
        dataset=args.dataset,
        domains=tuple(args.domains.split(",")) if args.domains else None,
        student=args.student,
        prompts=args.prompts,
        split=args.split,
        seed=args.seed,
        pilot=pilot,
        fractions=fractions,
        steps=args.steps,
        min_gain=args.min_gain,
        min_gain_per_price=args.min_gain_per_price,
        bootstrap=args.bootstrap,
    )
    print(format_plan(plan_budget(order, vendor_config(args))))
    return 0
