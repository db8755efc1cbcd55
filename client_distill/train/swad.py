"""SWAD (Cha et al., NeurIPS 2021, "SWAD: Domain Generalization by Seeking Flat Minima"): a dense
average of the weights of every step inside a window that the source validation loss chooses.

Training is cut into *segments*, the steps between two evaluations; each segment's weights are
averaged step by step (``torch.optim.swa_utils.AveragedModel``) and paired with the validation loss
measured at its end. The window is the paper's loss valley (:class:`LossValley`):

- it **starts** at the first segment whose loss is the lowest of itself and the next
  ``n_converge − 1`` segments (the loss has stopped falling), and the tolerance is set to
  ``(1 + tolerance_ratio)`` × the mean loss of those ``n_converge`` segments;
- it **ends** before the first segment from which the loss stays above the tolerance for
  ``n_tolerance`` segments in a row (overfitting has set in); at the end of training the segments still
  undecided are kept while the loss of some later one is under the tolerance.

The model is the uniform average of the segments in the window, i.e. of every step in it. If the loss
never stops falling there is no window, and the average of the last segment is returned (as the
reference code does). The defaults are the paper's (and the VL2V-ADiP scripts'): 3, 6, 0.3.

Written from the paper's definition. The reference implementation (``khanrc/swad``, ``swad.py``)
differs in one detail: when ``n_tolerance > n_converge`` it also averages up to
``n_tolerance − n_converge`` segments *before* the start whose loss is under the tolerance.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


@dataclass
class Segment:
    """The averaged weights of steps ``start..end`` and the validation loss measured at ``end``."""

    start: int
    end: int
    loss: float
    weights: dict[str, torch.Tensor]


@torch.no_grad()
def running_mean(averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor | int) -> None:
    """``averaged ← averaged + (current − averaged) / (count + 1)``, in place, for ``AveragedModel``'s
    ``multi_avg_fn``: the arithmetic of torch's per-tensor SWA update (bit for bit, so a run's SWAD
    model is unchanged) in three foreach calls, not its Python loop of four operations per tensor
    (≈ 3 % of a CPU run's time) nor, on a GPU, its ``lerp`` (which rounds differently)."""
    if averaged[0].is_floating_point():
        diffs = torch._foreach_sub(current, averaged)
        torch._foreach_div_(diffs, float(count) + 1)
        torch._foreach_add_(averaged, diffs)
    else:  # integer buffers (BatchNorm's step count): the mean truncated, as torch's update does
        for a, c in zip(averaged, current, strict=True):
            a.copy_(a + (c - a) / (count + 1))


class SegmentAverage:
    """The running average of a model's weights (parameters and buffers) over the current segment."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._average: AveragedModel | None = None
        self.start: int | None = None

    def update(self, step: int) -> None:
        """Fold in the weights after ``step``."""
        if self._average is None:
            self._average = AveragedModel(self.model, multi_avg_fn=running_mean, use_buffers=True)
            self.start = step
        self._average.update_parameters(self.model)

    def close(self, end: int, loss: float) -> Segment:
        """End the segment at ``end`` with validation loss ``loss``; the next update starts a new one."""
        assert self._average is not None and self.start is not None, "an empty segment"
        weights = {k: v.detach().cpu().clone() for k, v in self._average.module.state_dict().items()}
        segment = Segment(self.start, end, float(loss), weights)
        self._average, self.start = None, None
        return segment


class LossValley:
    """SWAD's window search over segments (see the module docstring); :meth:`state_dict` and
    :meth:`load_state_dict` carry it across a resumed run."""

    def __init__(self, n_converge: int = 3, n_tolerance: int = 6, tolerance_ratio: float = 0.3):
        if n_converge < 1 or n_tolerance < 1 or tolerance_ratio < 0:
            raise ValueError("SWAD needs n_converge ≥ 1, n_tolerance ≥ 1 and tolerance_ratio ≥ 0")
        self.n_converge, self.n_tolerance, self.tolerance_ratio = n_converge, n_tolerance, tolerance_ratio
        self.recent: deque[Segment] = deque(maxlen=n_converge)  # before convergence: the last n_converge
        self.pending: deque[Segment] = deque()  # after convergence: segments not yet decided
        self.threshold: float | None = None
        self.dead = False  # the valley has ended: later segments are ignored
        self.window: list[tuple[int, int]] = []  # (start, end) of each segment taken, in order
        self._sum: dict[str, torch.Tensor] | None = None

    @property
    def converged(self) -> bool:
        return self.threshold is not None

    def add(self, segment: Segment) -> None:
        """Take the segment that just ended, and decide what can be decided."""
        if self.dead:
            return
        if not self.converged:
            self.recent.append(segment)
            losses = [s.loss for s in self.recent]
            if len(losses) < self.n_converge or min(range(len(losses)), key=losses.__getitem__) != 0:
                return
            self.threshold = (1 + self.tolerance_ratio) * sum(losses) / len(losses)
            self.pending = deque(self.recent)
            self.recent.clear()
        else:
            self.pending.append(segment)
        while len(self.pending) >= self.n_tolerance:
            if min(s.loss for s in list(self.pending)[: self.n_tolerance]) > self.threshold:
                self.dead = True
                self.pending.clear()
                return
            self._take(self.pending.popleft())

    def _take(self, segment: Segment) -> None:
        if self._sum is None:
            self._sum = {k: v.double() if v.is_floating_point() else v.clone() for k, v in segment.weights.items()}
        else:
            for k, v in segment.weights.items():
                if v.is_floating_point():
                    self._sum[k] += v.double()
        self.window.append((segment.start, segment.end))

    def final_weights(self) -> dict[str, torch.Tensor]:
        """The SWAD weights at the end of training (see the module docstring); call once."""
        if not self.converged:
            if not self.recent:
                raise ValueError("SWAD has seen no segment")
            last = self.recent[-1]
            self.window = [(last.start, last.end)]
            return last.weights
        while self.pending and min(s.loss for s in self.pending) <= self.threshold:
            self._take(self.pending.popleft())
        assert self._sum is not None, "a converged valley always holds its first segment"
        n = len(self.window)
        return {k: (v / n).float() if v.is_floating_point() else v for k, v in self._sum.items()}

    def summary(self) -> dict[str, Any]:
        """What the window was, for the run's records."""
        return {
            "converged": self.converged,
            "dead": self.dead,
            "threshold": self.threshold,
            "start_step": self.window[0][0] if self.window else None,
            "end_step": self.window[-1][1] if self.window else None,
            "segments": len(self.window),
        }

    def state_dict(self) -> dict[str, Any]:
        seg = lambda s: {"start": s.start, "end": s.end, "loss": s.loss, "weights": s.weights}  # noqa: E731
        return {
            "recent": [seg(s) for s in self.recent],
            "pending": [seg(s) for s in self.pending],
            "threshold": self.threshold,
            "dead": self.dead,
            "window": self.window,
            "sum": self._sum,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = deque((Segment(**s) for s in state["recent"]), maxlen=self.n_converge)
        self.pending = deque(Segment(**s) for s in state["pending"])
        self.threshold, self.dead = state["threshold"], state["dead"]
        self.window = [tuple(w) for w in state["window"]]
        self._sum = state["sum"]


def averaged_copy(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` holding ``weights`` (the SWAD average), for evaluation."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(weights)
    return clone
