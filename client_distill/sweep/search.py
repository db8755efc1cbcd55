"""The hparam search of a protocol, DomainBed's way and on training-domain validation only.

Every method gets the same grid (:class:`~client_distill.sweep.config.SearchConfig`); each candidate
(grid point) runs on the search's target domains and seeds like any other run, and **for each target
domain** a method keeps the candidate whose output models (SWAD's average, or the best checkpoint) of
the runs holding that domain out have the highest mean source-validation accuracy (DomainBed's
training-domain validation: the choice for a target is made only from runs that never saw it, so a
target's "out" split never helps pick what is used when it is the target; pooling the leave-one-out runs
would let it). Ties go to the earlier grid point. The target domain's accuracy is never read here:
:func:`choose` is given source-validation scores only.

``search.json`` records, per method and target, the grid, the criterion, every candidate's score and
runs, and the choice; each protocol run carries its target's summary in its ``RunSpec.search``, so every
results record names the search and the values it chose.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from client_distill.errors import UsageError

CRITERION = (
    "per target domain, the mean source-validation accuracy (the source domains' 20 % 'out' splits) of the model "
    "each candidate run holding that domain out outputs, over the search's seeds; ties to the earlier grid point"
)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the grid, in a stable order (keys sorted, values as listed)."""
    keys = sorted(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def choose(points: Sequence[dict[str, Any]], scores: Sequence[Sequence[float]]) -> tuple[int, list[float]]:
    """Index of the point with the best mean score (the earlier on a tie) and every point's mean.
    ``scores[i]`` are the source-validation accuracies of point ``i``'s runs."""
    if len(points) != len(scores) or any(len(s) == 0 for s in scores):
        raise UsageError("every grid point needs at least one finished run to be chosen")
    means = [float(np.mean(s)) for s in scores]
    best = max(range(len(points)), key=lambda i: (means[i], -i))
    return best, means


def summary(
    grid: Mapping[str, Sequence[Any]],
    method: str,
    target: str,
    points: Sequence[dict[str, Any]],
    scores: Sequence[Sequence[float]],
) -> dict[str, Any]:
    """What a protocol run on ``target`` records about the search that chose its hparams."""
    best, means = choose(points, scores)
    return {
        "method": method,
        "target": target,
        "grid": {k: list(v) for k, v in grid.items()},
        "criterion": CRITERION,
        "candidates": [
            {"hparams": p, "score": m, "runs": len(s)} for p, m, s in zip(points, means, scores, strict=True)
        ],
        "chosen": points[best],
    }


def write_search(path: str | Path, results: Mapping[str, Mapping[str, dict[str, Any]]]) -> Path:
    """``search.json``: the summary of every method's search, by method and target domain."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(results), indent=2) + "\n")
    return path


def load_search(path: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The summaries of an earlier search (``searched:`` in a sweep config), by method and target."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read search results {path}: {exc}") from None
    per_target = isinstance(results, dict) and all(
        isinstance(r, dict) and all(isinstance(t, dict) and "chosen" in t for t in r.values()) for r in results.values()
    )
    if not per_target:
        raise UsageError(f"{path} is not a search.json written by `vl2v sweep` (one choice per method and target)")
    name = Path(path).name  # the name: records stay path-independent
    return {m: {t: {**r, "source": name} for t, r in targets.items()} for m, targets in results.items()}
