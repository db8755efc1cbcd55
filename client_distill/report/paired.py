"""Paired comparisons of two methods over the same (target domain, seed) cells, with a confidence interval.

Two methods run on the same targets with the same seeds share the data split, the batch order and the
start of the student, so the fair question is not whether their mean ± SE rows overlap but whether their
*per-cell differences* are centred away from zero. Each comparison here is the mean of the per-(target,
seed) differences in accuracy points, its standard error, and the 95 % confidence interval from
Student's t with n − 1 degrees of freedom (n: the cells both methods finished). Against the direction
the paper reports, the verdict is: **holds** (the interval lies on the paper's side of zero),
**reversed** (it lies on the other side) or **unresolved** (it contains zero). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: a (target domain, seed) cell
Cell = tuple[str, int]


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` over the cells both have, in accuracy points."""

    a: str
    b: str
    n: int
    mean: float
    se: float
    low: float
    high: float
    #: +1 where the paper finds a > b, −1 where it finds a < b, 0 where it states no direction
    paper: int = 1

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "too few cells"
        side = 1 if self.low > 0 else -1 if self.high < 0 else 0
        if side == 0:
            return "unresolved"
        if self.paper == 0:
            return f"{self.a} {'>' if side > 0 else '<'} {self.b} (no direction in the paper)"
        return "holds" if side == self.paper else "reversed"

    def row(self) -> str:
        """``| a − b | n | mean ± SE | [low, high] | verdict |``."""
        if self.n < 2:
            return f"| {self.a} − {self.b} | {self.n} | – | – | {self.verdict} |"
        return (
            f"| {self.a} − {self.b} | {self.n} | {self.mean:+.1f} ± {self.se:.1f} | "
            f"[{self.low:+.1f}, {self.high:+.1f}] | {self.verdict} |"
        )


def paired(
    a_name: str, a: Mapping[Cell, float], b_name: str, b: Mapping[Cell, float], paper: int = 1
) -> PairedDifference:
    """The paired difference ``a − b`` (accuracies as fractions in, points out) over their common cells."""
    cells = sorted(set(a) & set(b))
    d = np.array([100 * (a[c] - b[c]) for c in cells], dtype=float)
    n = len(d)
    if n < 2:
        mean = float(d.mean()) if n else float("nan")
        return PairedDifference(a_name, b_name, n, mean, float("nan"), float("nan"), float("nan"), paper)
    se = float(d.std(ddof=1) / np.sqrt(n))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    mean = float(d.mean())
    return PairedDifference(a_name, b_name, n, mean, se, mean - half, mean + half, paper)


HEADER = [
    "| comparison | cells (target × seed) | mean ± SE (points) | 95 % CI | the paper's direction |",
    "|---|---|---|---|---|",
]
