"""Whether a run had converged in domain when it stopped: the rise of its source-validation accuracy over
the last quarter of its steps (of its last stage, for two-stage methods), as the slope of a least-squares
line through that quarter's checkpoints times the quarter's length, in points.

The calibration's convergence rule (``docs/results/calibration.md``) calls a run converged when that rise
is at most :data:`FLAT_POINTS`: a line fitted through the checkpoints, not the last minus the first one, so
that the noise of one evaluation on a few hundred validation images does not decide it. The rule guards
against an ERM stopped while it still learns; a curve that falls over its last quarter is no longer
learning (at 800 steps the calibration's curves fell by up to 5 points there, from single checkpoints 5–10
points below their neighbours, while the output, SWAD's average, held its level), so only a rise counts
against it. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: the rule's threshold: a run whose source validation rose by at most this many points over the last
#: quarter of its steps has stopped learning in domain
FLAT_POINTS = 1.0
#: a run has collapsed when its output model's source validation is under this share of the best any of
#: its checkpoints reached: it diverged (a learning rate too high for a stage), which a flat curve at
#: chance would otherwise pass as converged; and it never learnt when the best it reached is under this
#: share of the best any run of its task reached (it diverged before its first checkpoint)
COLLAPSED_SHARE = 0.5


def last_quarter_rise(records: Sequence[dict[str, Any]]) -> float | None:
    """The source-validation rise (points) over the last quarter of the last stage's steps, or None
    when that quarter holds fewer than two checkpoints."""
    checkpoints = [r for r in records if r.get("model") == "checkpoint" and r.get("source_val_acc") is not None]
    if not checkpoints:
        return None
    stage = max(int(r.get("stage_index") or 0) for r in checkpoints)
    points = [
        (float(r.get("stage_step", r["step"])), 100 * float(r["source_val_acc"]))
        for r in checkpoints
        if int(r.get("stage_index") or 0) == stage
    ]
    end = max(s for s, _ in points)
    quarter = [(s, v) for s, v in points if s >= 0.75 * end]
    if len(quarter) < 2:
        return None
    steps, values = (np.array(x) for x in zip(*quarter, strict=True))
    slope = np.polyfit(steps, values, 1)[0]
    return float(slope * (end - steps.min()))


def best_reached(records: Sequence[dict[str, Any]]) -> float | None:
    """The best source validation any record of the run holds, in any stage (None without one)."""
    reached = [float(r["source_val_acc"]) for r in records if r.get("source_val_acc") is not None]
    return max(reached, default=None)


def collapsed(records: Sequence[dict[str, Any]], output: dict[str, Any]) -> bool:
    """Whether ``output`` (the run's output model) fell under :data:`COLLAPSED_SHARE` of the best source
    validation any checkpoint of the run reached, in any stage."""
    reached, value = best_reached(records), output.get("source_val_acc")
    return reached is not None and value is not None and float(value) < COLLAPSED_SHARE * reached


def never_learnt(reached: float | None, task_best: float) -> bool:
    """Whether a run whose best source validation was ``reached`` stayed under :data:`COLLAPSED_SHARE` of
    ``task_best``, the best any run of its task reached: flat at chance from its first checkpoint, so that
    neither the rise nor :func:`collapsed` can tell it from a run that converged."""
    return reached is not None and reached < COLLAPSED_SHARE * task_best


def section(rises: dict[str, list[float | None]], failures: dict[str, list[str]] | None = None) -> list[str]:
    """Markdown rows per method: how many runs, their mean and largest rise, how many have converged, and
    how many failed (``failures``: per method, a label for each run that collapsed or never learnt, listed
    under the table)."""
    failures = failures or {}
    lines = [
        "",
        "### Convergence in domain (source validation over the last quarter of each run's steps)",
        "",
        f"Rise of a least-squares line through the last quarter's checkpoints, in points; converged = a rise of at "
        f"most +{FLAT_POINTS:g}; failed = collapsed (an output model whose source validation is under "
        f"{COLLAPSED_SHARE:.0%} of the best its run reached) or never learnt (a run whose best source validation "
        f"is under {COLLAPSED_SHARE:.0%} of the best any run of the task reached), whatever its rise "
        "(`client_distill/report/convergence.py`).",
        "",
        "| Method | runs | mean rise | largest rise | converged | failed |",
        "|---|---|---|---|---|---|",
    ]
    for method, values in sorted(rises.items()):
        known = [v for v in values if v is not None]
        down = len(failures.get(method, []))
        if not known:
            lines.append(f"| {method} | {len(values)} | – | – | – | {down} |")
            continue
        flat = sum(v <= FLAT_POINTS for v in known)
        largest = max(known)
        lines.append(
            f"| {method} | {len(values)} | {np.mean(known):+.1f} | {largest:+.1f} | {flat} of {len(known)} | {down} |"
        )
    if any(failures.values()):
        lines += ["", "Failed: " + "; ".join(cell for _, cells in sorted(failures.items()) for cell in cells) + "."]
    return lines
