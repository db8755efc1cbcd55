"""The server's largest batch, chosen by measuring the engine at start-up instead of a fixed number.

A forward pass gets cheaper per image as the batch grows only up to a point (on the 2-core machine the
torch ViT-B-32 peaked at 16-32 and was ~10 % slower at 64; a GPU keeps gaining far beyond), and a batch
past that point only adds latency. :func:`measure_max_batch` times the image tower on seeded random
pixels at 1, 2, 4, ... up to :data:`LARGEST` images, each size twice (the first call at a shape also
warms it), keeps the faster time, stops early once a size is clearly slower than the best so far or
the time budget is spent, and returns the smallest size within :data:`NEAR_BEST` of the best rate:
as fast as the best, with the least waiting. ``VL2V_VENDOR_MAX_BATCH_SIZE`` skips all of it."""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass

import numpy as np

from vendor_server.encoder import Encoder
from vendor_server.settings import VendorSettings

log = logging.getLogger("vl2v.vendor")

#: the largest batch tried (the micro-batcher's queue holds many more items than this)
LARGEST = 128
#: a size whose rate is at least this share of the best counts as good as the best
NEAR_BEST = 0.95
#: a size below this share of the best ends the search: larger ones will not win
GIVE_UP = 0.8
#: seconds of measuring at most (a size in progress is finished)
BUDGET_S = 15.0


@dataclass(frozen=True)
class BatchChoice:
    """The chosen size and what it was chosen from: images/s per batch size measured."""

    size: int
    rates: dict[int, float]

    def describe(self) -> str:
        return (
            f"max batch {self.size} (images/s by batch: "
            + ", ".join(f"{b}: {r:.1f}" for b, r in self.rates.items())
            + ")"
        )


def measure_max_batch(encoder: Encoder, largest: int = LARGEST, budget_s: float = BUDGET_S) -> BatchChoice:
    """Time ``encoder``'s image tower at growing batch sizes and choose (see the module's docstring)."""
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((largest, 3, encoder.image_size, encoder.image_size), dtype=np.float32)
    rates: dict[int, float] = {}
    deadline = time.monotonic() + budget_s
    size = 1
    while size <= largest:
        batch = np.ascontiguousarray(pixels[:size])
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            encoder.encode_pixels(batch)
            seconds.append(time.perf_counter() - start)
        rates[size] = size / min(seconds)
        if rates[size] < GIVE_UP * max(rates.values()) or time.monotonic() > deadline:
            break
        size *= 2
    best = max(rates.values())
    choice = BatchChoice(min(b for b, r in rates.items() if r >= NEAR_BEST * best), rates)
    log.info("%s engine: %s", encoder.engine, choice.describe())
    return choice


_measured: weakref.WeakKeyDictionary[Encoder, BatchChoice] = weakref.WeakKeyDictionary()


def max_batch_for(settings: VendorSettings, encoder: Encoder) -> int:
    """``VL2V_VENDOR_MAX_BATCH_SIZE`` when set, else the measured size (measured once per encoder, so
    apps built around one loaded encoder, as in the tests, pay for it once)."""
    if settings.max_batch_size is not None:
        return settings.max_batch_size
    if encoder not in _measured:
        _measured[encoder] = measure_max_batch(encoder)
    return _measured[encoder].size
