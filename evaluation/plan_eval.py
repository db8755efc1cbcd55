"""Does ``vl2v plan`` predict what buying its recommendation gets? (issue 22 item 3, ``docs/results/plan.md``)

For each task, target domain and seed: ``vl2v plan`` on the source domains (the defaults: a 10 % pilot, nested
short runs, the leave-one-source-out proxy, the stop rule of 0.5 points per 1,000 queries), then the truth on
the same proxy at the budget it recommends (the short run trained on that many bought images, every source
held out in turn: what the plan predicted), whether the plan's 95 % interval covered it, and what the plan
cost in queries and seconds. With ``--protocol TASK=RUNS`` (a budget protocol's runs, issue 21: the cells whose
ADiP runs are finished) it adds ADiP's target accuracy at the recommended budget, at the pilot's share and at
0 %, interpolated between the protocol's budgets, and ends with what the recommendation bought on the target:
the paired differences (recommended − pilot, recommended − 0 %) over the cells, with 95 % intervals.

It starts its own vendor (the embedded default) on 127.0.0.1 and renders each task's data as its protocol
config says (data seed 0). Resumable: each (task, target, seed) writes ``OUT/<task>/<target>/<seed>.json``;
purchases go through one client cache, so a rerun pays nothing twice.

    .venv/bin/python evaluation/plan_eval.py --out results/plan-eval [--protocol synth-pacs=results/synth-pacs/runs]
    .venv/bin/python evaluation/plan_eval.py --out results/plan-eval-p20 --pilot 0.2     # a pilot twice as large
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from client_distill.buy.embed import source_samples
from client_distill.buy.vendor import VendorConfig
from client_distill.data.datasets import open_dataset
from client_distill.report.demo import ensure_data, local_vendor
from client_distill.report.paired import paired
from client_distill.report.report import Result, collect
from client_distill.sweep.budget_curve import bootstrap_fits, table
from client_distill.sweep.budget_plan import PlanOrder, plan_budget
from client_distill.sweep.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "client_distill" / "sweep" / "configs"


def evaluate(data: Path, target: str, seed: int, vendor: VendorConfig, out: Path, pilot: float) -> dict:
    """One (target, seed): the plan (a ``pilot`` share of the source images), its prediction at its
    recommendation, and the proxy's truth there."""
    dataset = open_dataset(data)
    sources = tuple(d for d in dataset.domains if d != target)
    n_images = len(source_samples(dataset, list(sources), "in", seed))
    order = PlanOrder(
        data=str(data),
        out=str(out / "plan"),
        max_queries=len(dataset.classes) + n_images,
        domains=sources,
        seed=seed,
        pilot=pilot,
    )
    start = time.monotonic()
    plan = plan_budget(order, vendor)
    seconds = time.monotonic() - start
    rec = int(plan["recommendation"]["image_queries"])
    curve = plan["curve"]
    params = (curve["a"], curve["b"], curve["c"])
    points = plan["points"]
    fits = bootstrap_fits(
        [p["image_queries"] for p in points], [p["accuracy"] for p in points], order.bootstrap, order.seed
    )
    predicted = table(params, fits, [rec], plan["pilot"]["texts"], plan["price_per_query"])[0]
    # the truth: the proxy's short runs on all `rec` images (plan_budget also runs two smaller prefixes, as its
    # curve needs three sizes; only the full one counts here)
    truth = plan_budget(
        replace(order, out=str(out / "truth"), pilot=rec / n_images, fractions=(0.25, 0.5, 1.0)), vendor
    )
    full = max(p["image_queries"] for p in truth["points"])
    true_acc = float(np.mean([p["accuracy"] for p in truth["points"] if p["image_queries"] == full]))
    return {
        "target": target,
        "seed": seed,
        "source_images": n_images,
        "pilot_image_queries": plan["pilot"]["image_queries"],
        "plan_seconds": round(seconds, 1),
        "recommended_image_queries": rec,
        "why": plan["recommendation"]["why"],
        "predicted": predicted.accuracy,
        "low": predicted.low,
        "high": predicted.high,
        "proxy_truth": true_acc,
        "covered": predicted.low <= true_acc <= predicted.high,
    }


def target_accuracy(runs: list[Result], target: str, seed: int, fraction: float) -> float | None:
    """ADiP's target accuracy at ``fraction`` of the source images, interpolated linearly between the
    protocol's cached one-view budgets for this (target, seed) among ``runs`` (a protocol's
    :func:`collect`); None where the protocol lacks them."""
    found = sorted(
        (r.budget, r.ood)
        for r in runs
        if r.method == "adip" and r.teacher_mode == "cached" and r.views == 1 and r.budget is not None
        and r.test_domain == target and r.seed == seed
    )  # fmt: skip
    if len(found) < 2:
        return None
    budgets, accuracies = zip(*found, strict=True)
    return float(np.interp(fraction, budgets, accuracies))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tasks", default="synth-pacs,synth-officehome")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--targets", default=None, help="target domains (default: every domain of each task)")
    p.add_argument("--protocol", action="append", default=[], help="TASK=RUNS: a finished budget protocol's runs")
    p.add_argument("--pilot", type=float, default=PlanOrder.pilot, help="the pilot's share of the source images")
    args = p.parse_args()
    protocols = {task: collect(Path(runs)) for task, runs in (item.split("=", 1) for item in args.protocol)}
    bought: dict[str, list[dict]] = {task: [] for task in protocols}
    with local_vendor(args.out / "vendor", 100_000_000) as (url, key):
        vendor = VendorConfig(vendor="vl2v", vendor_url=url, api_key=key, cache=str(args.out / "cache"))
        for task in args.tasks.split(","):
            demo = load_config(CONFIGS / f"{task}.yaml", {"data": "-", "out": "-"}).demo
            data = args.out / "data" / task
            ensure_data(data, demo.task, demo.per_class, demo.seed)
            for target in args.targets.split(",") if args.targets else open_dataset(data).domains:
                for seed in (int(s) for s in args.seeds.split(",")):
                    path = args.out / task / target / f"{seed}.json"
                    if not path.exists():
                        result = evaluate(data, target, seed, vendor, args.out / task / target / str(seed), args.pilot)
                        path.write_text(json.dumps(result, indent=2) + "\n")
                    result = json.loads(path.read_text())
                    if task in protocols:
                        fraction = result["recommended_image_queries"] / result["source_images"]
                        for key, share in (("adip_target", fraction), ("adip_target_pilot", args.pilot),
                                           ("adip_target_zero", 0.0)):  # fmt: skip
                            result[key] = target_accuracy(protocols[task], target, seed, share)
                        bought[task].append(result)
                    print(json.dumps({"task": task, **result}), flush=True)
    for task, results in bought.items():
        for other, name in (("adip_target_pilot", "the pilot's share"), ("adip_target_zero", "0 %")):
            cells = [r for r in results if r["adip_target"] is not None and r[other] is not None]
            diff = paired(
                "the recommended budget", {(r["target"], r["seed"]): r["adip_target"] for r in cells},
                name, {(r["target"], r["seed"]): r[other] for r in cells}, paper=0,
            )  # fmt: skip
            print(f"{task}, ADiP's target accuracy (cells, mean ± SE in points, 95 % CI): {diff.row()}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
