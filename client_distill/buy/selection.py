"""In which order to buy teacher embeddings of source images, when the budget may not cover all.

``vl2v embed --max-queries N`` buys images in this order and stops when the budget is spent, so the
order *is* the selection. Every strategy is a deterministic function of its seed, which makes a
rerun plan the same purchases (already-bought ones are then cache hits):

* ``random`` — a seeded shuffle;
* ``class_balanced`` — round-robin over classes (class order reshuffled each round), so any prefix
  is as balanced as the data allows;
* ``kcenter`` — greedy k-center (Sener & Savarese, 2018) on the student's pretrained features:
  each next image is the one farthest from all chosen so far, so a small budget covers the
  feature space instead of its densest region;
* ``uncertainty`` — active acquisition in rounds (``--rounds``): the first round buys in random order, each
  next one the images the current student is least sure of (a :data:`Ranker`, fitted on what is bought so
  far; the ranking is a function of the cached embeddings, so a rerun plans the same purchases too).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import Sample
from client_distill.errors import UsageError

STRATEGIES = ("random", "class_balanced", "kcenter", "uncertainty")
#: computes one feature row per sample (for ``kcenter``)
FeatureFn = Callable[[Sequence[Sample]], np.ndarray]
#: orders the images not bought yet, the most worth buying first, given the teacher set bought so far and
#: the images in it (for ``uncertainty``)
Ranker = Callable[[TeacherSet, Sequence[Sample], Sequence[Sample]], list[Sample]]


def order_samples(
    samples: Sequence[Sample], strategy: str, seed: int, features: FeatureFn | None = None, k: int | None = None
) -> list[Sample]:
    """``samples`` in the order ``strategy`` buys them; ``kcenter`` needs ``features`` and orders
    the first ``k`` greedily (the rest follow in random order, as nothing will pay for them)."""
    rng = np.random.default_rng(seed)
    samples = list(samples)
    if strategy in ("random", "uncertainty"):  # uncertainty: the first round's order
        return [samples[i] for i in rng.permutation(len(samples))]
    if strategy == "class_balanced":
        return _round_robin(samples, rng)
    if strategy == "kcenter":
        if features is None:
            raise UsageError("the kcenter strategy needs student features (pass --student)")
        order = kcenter_order(np.asarray(features(samples), dtype=np.float32), k or len(samples), rng)
        return [samples[i] for i in order]
    raise UsageError(f"unknown selection strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def _round_robin(samples: list[Sample], rng: np.random.Generator) -> list[Sample]:
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for i in rng.permutation(len(samples)):
        by_class[samples[i].label].append(samples[i])
    queues = [by_class[c] for c in sorted(by_class)]
    out: list[Sample] = []
    depth = 0
    while len(out) < len(samples):
        for c in rng.permutation(len(queues)):
            if depth < len(queues[c]):
                out.append(queues[c][depth])
        depth += 1
    return out


def kcenter_order(features: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """Indices of a greedy k-center ordering of ``features`` rows (L2-normalised first): a random
    start, then ``k - 1`` farthest-first picks; the remaining indices follow shuffled.
    O(k·N·F) time, O(N) extra memory."""
    n = len(features)
    if n == 0:
        return []
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    k = min(max(k, 1), n)
    first = int(rng.integers(n))
    chosen = [first]
    dist = np.sum((x - x[first]) ** 2, axis=1)
    dist[first] = -1.0
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        np.minimum(dist, np.sum((x - x[nxt]) ** 2, axis=1), out=dist)
        dist[chosen] = -1.0
    rest = np.setdiff1d(np.arange(n), chosen)
    return chosen + [int(i) for i in rng.permutation(rest)]
