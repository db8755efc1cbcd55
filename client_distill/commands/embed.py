"""``vl2v embed``: buy a dataset's teacher embeddings within a query budget; write a teacher set."""

# the purchase itself: client_distill.buy.embed.buy_teacher_set

from __future__ import annotations

import argparse

from client_distill.buy.selection import STRATEGIES
from client_distill.buy.settings import ClientSettings
from client_distill.commands.common import add_vendor_arguments, count_flag, vendor_config
from client_distill.train.runspec import RunSpec


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "embed", help="buy teacher embeddings of a dataset within a query budget", description=__doc__
    )
    add_vendor_arguments(p, settings)
    p.add_argument("--data", required=True, help="dataset folder (DomainBed layout) or data dir with --dataset")
    p.add_argument("--dataset", default=None, help="dataset name (pacs, vlcs, synth-pacs, ...)")
    p.add_argument("--domains", default=None, help="comma-separated source domains (default: all)")
    p.add_argument("--max-queries", type=int, required=True, help="most queries to spend (texts + image views)")
    p.add_argument(
        "--strategy", choices=STRATEGIES, default="random", help="order in which images are bought (default random)"
    )
    p.add_argument(
        "--student", default=RunSpec.student, help="pretrained student whose features kcenter and uncertainty use"
    )
    p.add_argument(
        "--rounds", type=int, default=4, help="uncertainty: acquisition rounds, an equal share of the budget each"
    )
    p.add_argument("--views", type=int, default=1, help="fixed views bought per image (view 0 = the file)")
    p.add_argument("--prompts", default=None, help="file of prompt templates with {} (default: 'a photo of a {}')")
    p.add_argument("--split", choices=("in", "all"), default="in", help="DomainBed 'in' split of each domain, or all")
    p.add_argument("--seed", type=int, default=0, help="trial seed (split, order, augmentations)")
    p.add_argument("--out", required=True, help="teacher-set folder to write")
    p.add_argument(
        "--cache", default=settings.cache, help="embedding cache dir (default $VL2V_CACHE or ~/.cache/vl2v/embeddings)"
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    max_queries = count_flag("--max-queries", args.max_queries, "queries (texts and image views)")
    from client_distill.buy.embed import PurchaseOrder, buy_teacher_set  # torch: flag errors come at once
    from client_distill.train.probe import student_features, uncertainty_ranker

    order = PurchaseOrder(
        data=args.data,
        out=args.out,
        max_queries=max_queries,
        dataset=args.dataset,
        domains=tuple(args.domains.split(",")) if args.domains else None,
        strategy=args.strategy,
        student=args.student,
        views=args.views,
        prompts=args.prompts,
        split=args.split,
        seed=args.seed,
        rounds=count_flag("--rounds", args.rounds, "acquisition rounds"),
    )
    buy_teacher_set(order, vendor_config(args), student_features, uncertainty_ranker)
    return 0
