"""Extraction coverage: how much of the embedding space a key's image queries have reached.

A model is copied by querying it across its input space (B4B, NeurIPS 2023, meters exactly this):
an ordinary customer's images come from one domain and land in a small region of the embedding
space, while a key distilling the model spreads its queries to cover as much of it as it can.

The space is cut by :data:`BITS` fixed random hyperplanes into ``2**BITS`` cells; an embedding's cell
is the bit pattern of the sides it falls on. The planes' directions come from a stored seed; each
plane's offset is the median projection of a sample of served image embeddings (the first
:data:`FIT_SAMPLE` the vendor served, from any keys), so every plane halves the space the served images
actually occupy (CLIP embeddings fill a narrow cone: planes through the origin would put nearly all
of them into a few cells). The partition is fitted once and kept in the ledger, so replicas and
restarts bin alike. A key's coverage is the number of distinct cells its images reached; the console
shows it against the cells all traffic reached, and how many are new."""

from __future__ import annotations

import numpy as np

#: hyperplanes, hence ``2**BITS`` cells (65,536: enough that thousands of distinct images stay
#: distinguishable, few enough that the per-key counts stay small)
BITS = 16
#: served image embeddings the planes' offsets are fitted on
FIT_SAMPLE = 256
#: the seed of the planes' directions in a new ledger
SEED = 0x766C3276


class Partition:
    """``BITS`` hyperplanes in a ``dim``-dimensional space: directions from ``seed``, offsets
    ``thresholds``."""

    def __init__(self, seed: int, dim: int, thresholds: np.ndarray) -> None:
        self.seed = seed
        self.dim = dim
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.planes = directions(seed, dim, len(self.thresholds))

    @classmethod
    def fit(cls, sample: np.ndarray, seed: int = SEED) -> Partition:
        """The partition whose every plane halves ``sample`` (rows: embeddings)."""
        planes = directions(seed, sample.shape[1], BITS)
        return cls(seed, sample.shape[1], np.median(sample @ planes, axis=0))

    def cells(self, rows: np.ndarray) -> np.ndarray:
        """The cell of each row, as integers below ``2 ** BITS``."""
        sides = (rows @ self.planes) > self.thresholds
        return sides.astype(np.int64) @ (1 << np.arange(sides.shape[1], dtype=np.int64))


def directions(seed: int, dim: int, bits: int) -> np.ndarray:
    """The planes' normals, ``dim × bits``: the same for a seed on every machine (PCG64's stream is
    stable across numpy versions)."""
    return np.random.default_rng(seed).standard_normal((dim, bits)).astype(np.float32)
