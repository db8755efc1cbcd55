"""Does choosing which images to buy beat buying them at random? (issue 22 item 3, ``docs/results/plan.md``)

Compares ADiP trained on teacher sets bought by an acquisition strategy (``uncertainty``: rounds ranked by
the current student's entropy; ``kcenter``: coverage of the student's feature space) with ADiP on sets
bought in random order, at the same image budgets, so at equal queries: the same targets, seeds, learning
rates (the protocol's search) and steps, only the images bought differ. Each comparison is the mean of the
per-(target, seed) differences in target-domain accuracy with its standard error and 95 % t interval
(:mod:`client_distill.report.paired`); the source-validation accuracy is compared the same way, since a
selection that helps the target but not the sources is what the method would need to show.

    .venv/bin/python evaluation/acquisition_eval.py --random results/acquire-random/runs \\
        --strategy uncertainty=results/acquire-uncertainty/runs --strategy kcenter=results/acquire-kcenter/runs
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from client_distill.report.paired import Cell, paired
from client_distill.report.report import Result, collect

HEADER = [
    "| strategy − random | budget | image queries (each) | cells "
    "| target: mean ± SE | 95 % CI | source val.: mean ± SE | 95 % CI |",
    "|---|---:|---:|---:|---:|---|---:|---|",
]


def adip_cells(results: Sequence[Result], budget: float) -> dict[Cell, Result]:
    """ADiP's cached, one-view runs at ``budget`` by (target, seed)."""
    return {
        (r.test_domain, r.seed): r
        for r in results
        if r.method == "adip" and r.teacher_mode == "cached" and r.views == 1 and r.budget == budget
    }


def compare(name: str, active: Sequence[Result], random: Sequence[Result], budget: float) -> str:
    """One table row: ``name`` − random at ``budget``; the queries must be equal cell by cell."""
    a, r = adip_cells(active, budget), adip_cells(random, budget)
    common = sorted(set(a) & set(r))
    unequal = [c for c in common if a[c].queries_images != r[c].queries_images]
    if unequal:
        raise SystemExit(f"{name} and random paid different image queries at {budget:.0%} on {unequal[:3]}")
    queries = int(np.mean([a[c].queries_images for c in common])) if common else 0
    ood = paired(name, {c: a[c].ood for c in common}, "random", {c: r[c].ood for c in common}, paper=0)
    val = paired(name, {c: a[c].id for c in common}, "random", {c: r[c].id for c in common}, paper=0)

    def cells(d) -> tuple[str, str]:
        if d.n < 2:
            return "–", "–"
        return f"{d.mean:+.1f} ± {d.se:.1f}", f"{d.interval} {d.verdict}"

    return "| " + " | ".join([name, f"{budget:.0%}", f"{queries:,}", str(ood.n), *cells(ood), *cells(val)]) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--random",
        required=True,
        type=Path,
        help="runs on sets bought in random order (synth-pacs-random.yaml's, or the budget protocol's)",
    )
    p.add_argument("--strategy", action="append", required=True, help="NAME=RUNS: the runs of one strategy")
    p.add_argument("--budgets", default="0.1,0.25")
    args = p.parse_args()
    random = collect(args.random)
    print("\n".join(HEADER))
    for item in args.strategy:
        name, runs = item.split("=", 1)
        active = collect(runs)
        for budget in (float(b) for b in args.budgets.split(",")):
            print(compare(name, active, random, budget))


if __name__ == "__main__":
    main()
