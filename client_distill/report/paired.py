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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: a (target domain, seed) cell
Cell = tuple[str, int]


#: cells a verdict needs: with two, the interval rests on one degree of freedom, and accuracies move in steps
#: of one image, so two equal differences (an SE of 0) would read as certainty
MIN_CELLS = 3


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
        if self.n < MIN_CELLS:
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
        mean = round(self.mean, 1) + 0.0  # + 0.0: no "-0.0"
        return f"| {self.a} − {self.b} | {self.n} | {mean:+.1f} ± {self.se:.1f} | {self.interval} | {self.verdict} |"

    @property
    def interval(self) -> str:
        """``[low, high]`` in points, as the tables print it."""
        return f"[{_bound(self.low)}, {_bound(self.high)}]"


def _bound(value: float) -> str:
    """An interval's end to one decimal, or to as few more as show a nonzero end as nonzero: the verdict
    turns on that end's sign, so "[−1.3, −0.004] reversed" must not read "[−1.3, +0.0] reversed"."""
    for decimals in (1, 2, 3):
        if value == 0 or round(value, decimals) != 0:
            return f"{round(value, decimals) + 0.0:+.{decimals}f}"  # + 0.0: no "-0.0"
    return f"{value:+.0e}"


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


#: the comparisons the paper makes, as (method a, method b, the paper's direction): ADiP beats ERM, KD and its
#: one-stage ablation at the same image budget
PAPER_COMPARISONS = (("adip", "erm", 1), ("adip", "kd", 1), ("adip", "adip_joint", 1))

#: a report row: method, teacher mode, budget (−1: none), views per image
Row = tuple[str, str, float, int]


def cached_reference(rows: Iterable[Row], method: str) -> Row | None:
    """The cached row an online run of ``method`` is compared with: its largest budget, with one view."""
    cached = [r for r in rows if r[0] == method and r[1] == "cached"]
    return max(cached, key=lambda r: (r[2], -r[3])) if cached else None


def comparisons(cells: Mapping[Row, Mapping[Cell, float]], label: Callable[[Row], str]) -> list[PairedDifference]:
    """Every paper comparison the rows allow: ADiP at each point of the budget axis (each cached budget,
    then the online teacher) against ERM, and against KD and ADiP-joint at the same point; then cached
    against online for each method run both ways (the cached point: its largest budget with one view; the
    paper states no direction, the question is what the extra queries buy)."""
    out = []
    for a, b, paper in PAPER_COMPARISONS:
        for row in sorted(r for r in cells if r[0] == a):  # the cached points, then the online one
            # ERM buys nothing: its one row; KD and ADiP-joint at the same point
            other = next((r for r in cells if r[0] == b and (b == "erm" or r[1:] == row[1:])), None)
            if other is not None:
                out.append(paired(label(row), cells[row], label(other), cells[other], paper))
    for online in sorted(r for r in cells if r[1] == "online"):
        best = cached_reference(cells, online[0])
        if best is not None:
            out.append(paired(label(best), cells[best], label(online), cells[online], 0))
    return out
