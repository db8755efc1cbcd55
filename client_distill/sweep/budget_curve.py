"""The learning curve of ``vl2v plan``: proxy accuracy against image queries, fitted as a saturating power
law ``a - b·n^-c`` with a bootstrap interval, and the stop rule that turns it into a recommendation.

A power law is the usual shape of accuracy against training-set size; it saturates at ``a`` and its marginal
gain ``b·c·n^-(c+1)`` falls without end, so there is always a size past which one more image does not pay.
A flat curve (``b ≈ 0``) recommends buying nothing more."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from client_distill.errors import UsageError

#: ``(a, b, c)`` of ``a - b·n^-c``
Params = tuple[float, float, float]


def saturating(n: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray | float:
    """``a - b·n^-c``: accuracy ``a`` in the limit, approached as a power of the image count ``n``."""
    return a - b * np.power(n, -c)


def marginal_gain(n: float, params: Params) -> float:
    """Points of accuracy per 1,000 more image queries at ``n`` (the curve's slope, scaled)."""
    _, b, c = params
    return 100.0 * 1000.0 * b * c * n ** (-c - 1)


def fit_curve(n: Sequence[float], accuracy: Sequence[float]) -> Params:
    """Least-squares ``(a, b, c)``, with ``a`` in [0, 1], ``b`` ≥ 0 (accuracy never falls with more
    images) and ``c`` in (0, 3]; needs three distinct image counts."""
    x, y = np.asarray(n, float), np.asarray(accuracy, float)
    if len(set(x.tolist())) < 3:
        raise UsageError("a learning curve needs short runs at three or more distinct sizes: give more --fractions")
    start = (min(1.0, float(y.max())), max(float(y.max() - y.min()), 1e-3) * float(x.min()) ** 0.5, 0.5)
    params, _ = curve_fit(saturating, x, y, p0=start, bounds=([0.0, 0.0, 1e-3], [1.0, np.inf, 3.0]), maxfev=5000)
    return tuple(float(p) for p in params)  # type: ignore[return-value]


def bootstrap_fits(n: Sequence[float], accuracy: Sequence[float], rounds: int, seed: int) -> list[Params]:
    """Fits of ``rounds`` resamples (with replacement) of the points; a resample with fewer than three
    distinct sizes, or one the fit does not converge on, is skipped."""
    x, y = np.asarray(n, float), np.asarray(accuracy, float)
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(rounds):
        pick = rng.integers(0, len(x), len(x))
        try:
            fits.append(fit_curve(x[pick], y[pick]))
        except (UsageError, RuntimeError):
            continue
    return fits


@dataclass(frozen=True)
class Row:
    """One line of the plan's table: buying ``image_queries`` images (plus the prompts) in all."""

    image_queries: int
    queries: int
    cost: float | None
    accuracy: float
    low: float
    high: float
    gain_per_1000: float


def table(params: Params, fits: Sequence[Params], sizes: Sequence[int], texts: int, price: float | None) -> list[Row]:
    """The curve's prediction, 95 % bootstrap interval and marginal gain at each of ``sizes``."""
    rows = []
    for n in sizes:
        boot = [float(saturating(n, *p)) for p in fits] or [float(saturating(n, *params))]
        low, high = np.percentile(boot, [2.5, 97.5])
        rows.append(
            Row(
                image_queries=n,
                queries=n + texts,
                cost=None if price is None else (n + texts) * price,
                accuracy=float(saturating(n, *params)),
                low=float(low),
                high=float(high),
                gain_per_1000=marginal_gain(n, params),
            )
        )
    return rows


def plan_sizes(pilot: int, most: int) -> list[int]:
    """The table's image counts: the pilot, doubled until ``most`` (the budget's or the dataset's limit),
    and ``most`` itself."""
    sizes, n = [], max(pilot, 1)
    while n < most:
        sizes.append(n)
        n *= 2
    return [*sizes, most]


def stop_point(params: Params, min_gain: float) -> float:
    """The image count at which the marginal gain falls to ``min_gain`` points per 1,000 queries (0 where it
    never reaches it: a flat curve)."""
    _, b, c = params
    if b <= 0:
        return 0.0
    if min_gain <= 0:
        return math.inf
    return (100.0 * 1000.0 * b * c / min_gain) ** (1.0 / (c + 1.0))


def recommend(params: Params, pilot: int, most: int, min_gain: float) -> tuple[int, str]:
    """``(image queries to own in all, the sentence saying why)`` by the stop rule: buy while one more
    1,000 queries still gains ``min_gain`` points, no further than ``most``; "buy nothing more" when the
    pilot is already past that point."""
    stop = stop_point(params, min_gain)
    if stop <= pilot:
        return pilot, (
            f"buy nothing more: past the pilot's {pilot} images, 1,000 queries gain "
            f"{marginal_gain(pilot, params):.2f} points (< the stop rule's {min_gain:.3g})"
        )
    target = int(min(math.ceil(stop), most))
    why = "the budget's or the dataset's limit" if target == most else f"the gain falls to {min_gain:.3g} points/1,000"
    return target, f"buy up to {target} images in all ({target - pilot} more than the pilot): {why}"
