"""``vl2v plan``: how many image queries are worth buying, decided from a small pilot and no target data.

The pilot is bought through :func:`~client_distill.buy.embed.buy_teacher_set` (random order, the same seed as
a later ``vl2v embed``), so the cache and the query ledger hold it and the full purchase pays only for what
the pilot did not buy. The short runs are cheap on purpose: a linear map from the frozen pretrained student's
features to the teacher's image embeddings, trained for ``steps`` Adam steps on a nested prefix of the pilot
(the sources but one), and scored zero-shot against the teacher's class prompts on the source left out — the
leave-one-source-out proxy of the target. Each run's score is written to ``OUT/runs/`` as it finishes, so a
rerun after a crash trains only what is missing (and the pilot is all cache hits)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from client_distill.buy.embed import PurchaseOrder, buy_teacher_set, load_templates, source_samples
from client_distill.buy.teacher_set import TeacherSet
from client_distill.buy.vendor import VendorConfig
from client_distill.data.datasets import Sample, open_dataset
from client_distill.errors import UsageError
from client_distill.sweep.budget_curve import bootstrap_fits, fit_curve, plan_sizes, recommend, table
from client_distill.train.probe import fit_teacher_map, student_features


@dataclass(frozen=True)
class PlanOrder:
    """What ``vl2v plan`` measures (each field is the flag of the same name)."""

    data: str
    out: str
    max_queries: int
    dataset: str | None = None
    domains: tuple[str, ...] | None = None
    student: str | None = None
    prompts: str | None = None
    split: str = "in"
    seed: int = 0
    #: the pilot's share of the source images (never more than ``max_queries`` allows)
    pilot: float = 0.1
    #: the nested sub-budgets of the pilot the short runs train on
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    steps: int = 100
    #: the stop rule: points of proxy accuracy that 1,000 more queries must still gain
    min_gain: float = 0.5
    #: the stop rule per unit of price instead: points that 1,000 more queries must gain per unit of their cost
    min_gain_per_price: float | None = None
    bootstrap: int = 200


def short_run(
    train_x: torch.Tensor,
    train_t: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    text: torch.Tensor,
    steps: int,
) -> float:
    """Accuracy on ``test`` of :func:`~client_distill.train.probe.fit_teacher_map` trained on ``train``,
    classifying by the nearest class prompt embedding."""
    model = fit_teacher_map(train_x, train_t, steps)
    with torch.no_grad():
        predicted = torch.nn.functional.normalize(model(test_x), dim=1) @ text.T
    return float((predicted.argmax(1) == test_y).float().mean())


def _run_key(domain: str, n: int) -> str:
    return f"{domain}@{n}"


def plan_budget(order: PlanOrder, vendor: VendorConfig, on_run: Callable[[str], None] | None = None) -> dict:
    """Buy the pilot, train the short runs (skipping those ``OUT/runs/`` already holds; ``on_run`` is told
    each finished one's key), fit the curve, write ``OUT/plan.json`` and ``OUT/plan.png``; returns the plan."""
    if not 0 < order.pilot <= 1 or not order.fractions or not all(0 < f <= 1 for f in order.fractions):
        raise UsageError("--pilot and every --fractions value must be in (0, 1]")
    if order.steps < 1:
        raise UsageError("--steps must be at least 1")
    dataset = open_dataset(order.data, order.dataset)
    domains = list(order.domains) if order.domains else dataset.domains
    if len(domains) < 2:
        raise UsageError("vl2v plan leaves one source domain out in turn: give two or more --domains")
    samples = source_samples(dataset, domains, order.split, order.seed)
    pilot_images = math.ceil(order.pilot * len(samples))
    out = Path(order.out)
    pilot_set = buy_teacher_set(
        PurchaseOrder(
            data=order.data,
            out=str(out / "pilot"),
            max_queries=min(
                order.max_queries, pilot_images + len(dataset.classes) * len(load_templates(order.prompts))
            ),
            dataset=order.dataset,
            domains=tuple(domains),
            strategy="random",
            prompts=order.prompts,
            split=order.split,
            seed=order.seed,
        ),
        vendor,
    )
    bought = list(pilot_set.image_embeddings)  # in purchase order: a prefix is a smaller purchase
    texts = int(pilot_set.text_embeddings.shape[0])
    sizes = sorted({max(1, math.ceil(f * len(bought))) for f in order.fractions})
    features = student_features(dataset.root, order.student)
    everything = [s for d in domains for s in dataset.samples(d)]
    x = torch.from_numpy(np.asarray(features(everything), np.float32))
    row_of = {s.path: i for i, s in enumerate(everything)}
    text = torch.nn.functional.normalize(torch.from_numpy(np.asarray(pilot_set.text_embeddings, np.float32)), dim=1)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    points = []
    with tqdm(total=len(sizes) * len(domains), unit="run", desc="plan", dynamic_ncols=True) as bar:
        for n in sizes:
            for held_out in domains:
                points.append(_point(order, held_out, n, bought[:n], everything, row_of, x, text, pilot_set, runs_dir))
                bar.update()
                if on_run is not None:
                    on_run(_run_key(held_out, n))
    result = _decide(order, points, len(bought), min(order.max_queries - texts, len(samples)), texts, pilot_set)
    (out / "plan.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out / "plan.png")
    return result


def _point(
    order: PlanOrder,
    held_out: str,
    n: int,
    prefix: Sequence[str],
    everything: Sequence[Sample],
    row_of: dict[str, int],
    x: torch.Tensor,
    text: torch.Tensor,
    pilot_set: TeacherSet,
    runs_dir: Path,
) -> dict:
    """The short run training on the first ``n`` pilot images outside ``held_out`` and scoring on
    ``held_out``, read from ``runs_dir`` when a previous call finished it. A prefix with no image outside
    ``held_out`` has nothing to learn from: it scores chance."""
    path = runs_dir / f"{_run_key(held_out, n)}.json"
    if path.exists():
        return json.loads(path.read_text())
    train = [p for p in prefix if everything[row_of[p]].domain != held_out]
    test = [i for i, s in enumerate(everything) if s.domain == held_out]
    if train:
        targets = torch.from_numpy(np.stack([pilot_set.image_embeddings[p][0] for p in train]).astype(np.float32))
        test_y = torch.tensor([everything[i].label for i in test])
        accuracy = short_run(x[[row_of[p] for p in train]], targets, x[test], test_y, text, order.steps)
    else:
        accuracy = 1.0 / len(pilot_set.classes)
    point = {"held_out": held_out, "image_queries": n, "trained_on": len(train), "accuracy": accuracy}
    path.write_text(json.dumps(point) + "\n")
    return point


def _decide(order: PlanOrder, points: list[dict], pilot: int, most: int, texts: int, pilot_set: TeacherSet) -> dict:
    """The curve through every short run's proxy accuracy (least squares: through their mean per size), its table and
    the recommendation."""
    n = [p["image_queries"] for p in points]
    accuracy = [p["accuracy"] for p in points]
    params = fit_curve(n, accuracy)
    fits = bootstrap_fits(n, accuracy, order.bootstrap, order.seed)
    price = pilot_set.meta.get("model_card", {}).get("price_per_query")
    most = max(most, pilot)
    min_gain = order.min_gain
    if order.min_gain_per_price is not None:
        if not price:
            raise UsageError("--min-gain-per-price needs a price: the vendor's /v1/models states no price_per_query")
        min_gain = order.min_gain_per_price * 1000 * price  # 1,000 queries cost 1,000 × price
    target, why = recommend(params, pilot, most, min_gain)
    return {
        "pilot": {"image_queries": pilot, "texts": texts, "teacher_set": str(Path(order.out) / "pilot")},
        "price_per_query": price,
        "curve": {"form": "a - b * n^-c", "a": params[0], "b": params[1], "c": params[2]},
        "points": points,
        "table": [asdict(r) for r in table(params, fits, plan_sizes(pilot, most), texts, price)],
        "min_gain": min_gain,
        "recommendation": {"image_queries": target, "queries": target + texts, "buy_more": target > pilot, "why": why},
    }


def format_plan(result: dict) -> str:
    """The table and the recommendation as ``vl2v plan`` prints them (and README.md shows)."""
    lines = [
        "| image queries | queries | cost | proxy accuracy (95% interval) | gain / 1,000 queries |",
        "|---:|---:|---:|---|---:|",
    ]
    for r in result["table"]:
        cost = "—" if r["cost"] is None else f"{r['cost']:.4g}"
        lines.append(
            f"| {r['image_queries']:,} | {r['queries']:,} | {cost} | {100 * r['accuracy']:.1f} "
            f"({100 * r['low']:.1f}–{100 * r['high']:.1f}) | {r['gain_per_1000']:.2f} |"
        )
    return "\n".join([*lines, "", result["recommendation"]["why"]])


def _plot(result: dict, path: Path) -> None:
    """Proxy accuracy of each short run, the fitted curve and its interval, against image queries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = result["table"]
    sizes = [r["image_queries"] for r in rows]
    ax.fill_between(sizes, [r["low"] for r in rows], [r["high"] for r in rows], alpha=0.25, label="95% bootstrap")
    ax.plot(sizes, [r["accuracy"] for r in rows], "-o", label=result["curve"]["form"])
    ax.scatter([p["image_queries"] for p in result["points"]], [p["accuracy"] for p in result["points"]], c="k", s=10)
    ax.axvline(result["recommendation"]["image_queries"], ls="--", c="grey", label="recommended")
    ax.set_xscale("log")
    ax.set_xlabel("image queries")
    ax.set_ylabel("leave-one-source-out accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
