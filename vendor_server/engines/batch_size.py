"""The server's largest batch, chosen by measuring the engine at start-up instead of a fixed number.

A forward pass gets cheaper per image as the batch grows only up to a point (on the 2-core machine the
torch ViT-B-32 peaked at 16-32 and was ~10 % slower at 64; a GPU keeps gaining far beyond).
:func:`measure_max_batch` times the image tower on seeded random pixels at 1, 2, 4, ... up to
:data:`LARGEST` images, in two passes over the sizes (the first call at a shape also warms it), keeps
each size's faster time, stops growing once a size is clearly slower than the best (:data:`GIVE_UP`) or
the time budget is spent, and returns the *largest* size within :data:`NEAR_BEST` of the best rate.

Largest, because the size is a cap, not a target: the micro-batcher runs what has arrived, so light
traffic gets small batches anyway, and only a queue longer than the cap is split. A cap set too low
costs throughput under load (batch 2 runs a ViT-B-32 at half the rate of 16 on the CPU), one a little
too high costs nothing measurable; and the two passes, interleaved, keep a burst of load from
elsewhere (the measurement is short and the machine may be shared) from deciding alone.
``VL2V_VENDOR_MAX_BATCH_SIZE`` skips all of it."""

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
GIVE_UP = 0.7
#: seconds of measuring at most (a size in progress is finished)
BUDGET_S = 20.0


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
    sizes = [2**i for i in range(largest.bit_length()) if 2**i <= largest]
    rates: dict[int, float] = {}
    deadline = time.monotonic() + budget_s
    for first_pass in (True, False):
        for size in list(sizes):
            batch = np.ascontiguousarray(pixels[:size])
            start = time.perf_counter()
            encoder.encode_pixels(batch)
            rates[size] = max(rates.get(size, 0.0), size / (time.perf_counter() - start))
            if time.monotonic() > deadline:
                break
            if first_pass and rates[size] < GIVE_UP * max(rates.values()):
                del sizes[sizes.index(size) + 1 :]  # larger sizes will not win
                break
        if time.monotonic() > deadline:
            break
    best = max(rates.values())
    choice = BatchChoice(max(b for b, r in rates.items() if r >= NEAR_BEST * best), dict(sorted(rates.items())))
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
