"""``vl2v embed``: buy a dataset's teacher embeddings within a query budget; write a teacher set."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from client_distill.adapters.errors import BudgetExhausted, TransientError, VendorError
from client_distill.adapters.registry import adapter_from_args, add_vendor_arguments
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.selection import STRATEGIES, order_samples, student_features
from client_distill.buy.settings import ClientSettings
from client_distill.buy.teacher import Teacher
from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import open_dataset
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
    p.add_argument("--strategy", choices=STRATEGIES, default="random", help="order in which images are bought")
    p.add_argument("--student", default=RunSpec.student, help="pretrained student whose features kcenter uses")
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
    from client_distill.buy.embed import buy, load_templates, make_plan, source_samples  # torch: not for `vl2v --help`

    dataset = open_dataset(args.data, args.dataset)
    domains = args.domains.split(",") if args.domains else dataset.domains
    samples = source_samples(dataset, domains, args.split, args.seed)
    features = student_features(dataset.root, args.student) if args.strategy == "kcenter" else None
    templates = load_templates(args.prompts)
    # kcenter only needs to order the images the budget can reach (ceil: a last one may be partial);
    # a budget of the prompts alone orders nothing (kcenter would otherwise order every image)
    affordable = -(-max(args.max_queries - len(dataset.classes) * len(templates), 0) // max(args.views, 1))
    ordered = order_samples(samples, args.strategy, args.seed, features, k=affordable) if affordable else []
    plan = make_plan(dataset.classes, templates, ordered, args.views, args.max_queries)
    adapter = adapter_from_args(args)
    cache = EmbeddingCache(args.cache)
    bar = tqdm(total=len(plan), unit="q", desc="embed", dynamic_ncols=True)

    def progress(teacher: Teacher) -> None:
        bar.n = teacher.hits + teacher.paid
        bar.set_postfix(paid=teacher.paid, hits=teacher.hits, retries=teacher.adapter.retries, refresh=False)
        bar.refresh()

    teacher = Teacher(adapter, cache, budget=args.max_queries, on_progress=progress)

    def save(result: TeacherSet) -> None:
        result.meta["ledger"] = ledger_totals(cache, teacher.ledger.account)
        if result.meta["complete"]:
            result.meta["vendor_usage"] = teacher.vendor_usage()
        result.save(args.out)

    try:
        meta = {
            "vendor": args.vendor,
            "vendor_url": args.vendor_url,
            "model": teacher.model,
            "dataset": dataset.name,
            "domains": domains,
            "split": args.split,
            "strategy": args.strategy,
            "views": args.views,
            "seed": args.seed,
            "budget": args.max_queries,
        }
        result = buy(teacher, Path(dataset.root), plan, args.seed, meta, save)
    except BudgetExhausted as exc:
        raise BudgetExhausted(
            f"{exc}. Everything bought is cached and a partial teacher set is in {args.out}; "
            "top up the key and rerun to continue"
        ) from exc
    except TransientError as exc:
        raise VendorError(
            f"vendor unavailable, gave up after retries: {exc}. Everything bought is cached; rerun to continue"
        ) from exc
    finally:
        bar.close()
        teacher.close()
        cache.close()
    q = result.meta["queries"]
    print(
        f"bought {len(result.image_embeddings)} images ({q['image_queries_bought']} image queries) "
        f"and {q['texts']} prompts: "
        f"paid {q['paid_this_run']} queries this run, {q['cache_hits_this_run']} cache hits; "
        f"ledger {result.meta['ledger']}; vendor usage {result.meta.get('vendor_usage')}; wrote {args.out}"
    )
    return 0
