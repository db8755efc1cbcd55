"""``vl2v evaluate``: per-domain accuracy of an export or a finished run on a DomainBed-layout folder."""

from __future__ import annotations

import argparse
import json

from client_distill.buy.settings import ClientSettings
from client_distill.data.datasets import open_dataset
from client_distill.errors import UsageError

SPLITS = ("all", "in", "out")  # client_distill.deploy.evaluate.SPLITS


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="per-domain accuracy of an export or a run folder on a DomainBed-layout folder",
        description=(
            "Scores every image of each domain (--split all), or DomainBed's 80/20 split of trial seed --seed "
            "(--split in|out, the split a run on the same folder used). On the run's own folder and seed, each row "
            "shows the accuracy the run recorded for the same images (every domain's 'out' split, the target's 'in')."
        ),
    )
    p.add_argument("model", help="an export folder (vl2v export --out) or a finished run folder")
    p.add_argument("--data", required=True, help="DomainBed-layout folder DATA/<domain>/<class>/<image>")
    p.add_argument("--dataset", default=None, help="a known dataset name when --data is the folder holding it")
    p.add_argument("--domains", default=None, help="comma-separated domains to score (default: all of them)")
    p.add_argument("--split", choices=SPLITS, default="all", help="all images (default), or DomainBed's in/out split")
    p.add_argument(
        "--seed", type=int, default=None, help="trial seed of the in/out split (default: the run's own seed, else 0)"
    )
    p.add_argument("--json", action="store_true", help="print rows as JSON instead of a table")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from client_distill.deploy.evaluate import evaluate, format_table  # torch-free for an ONNX export
    from client_distill.deploy.predict import open_model

    predictor = open_model(args.model)
    data = open_dataset(args.data, args.dataset)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else data.domains
    unknown = [d for d in domains if d not in data.domains]
    if unknown:
        raise UsageError(f"{data.root} has no domain {', '.join(unknown)}; its domains: {', '.join(data.domains)}")
    seed = args.seed if args.seed is not None else int(predictor.info.run.get("seed") or 0)
    rows = evaluate(predictor, data, domains, args.split, seed)
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "source": predictor.source,
                    "data": str(data.root),
                    "split": args.split,
                    "seed": seed,
                    "domains": [row.__dict__ for row in rows],
                }
            )
        )
    else:
        split = "every image" if args.split == "all" else f"the '{args.split}' split of trial seed {seed}"
        print(f"{predictor.info.method} ({predictor.source}) on {data.root}, {split}")
        print(format_table(rows))
    return 0
