"""What the distilled student costs to run, against calling the vendor for every prediction.

Distillation is worth paying for only if the student, once bought, is cheaper than the teacher it
replaces. Three facts decide that, and this module measures or derives each one:

- the student's size and speed on a CPU: parameters, input size, latency of one image (batch 1) and
  throughput at batch :data:`THROUGHPUT_BATCH`, under PyTorch and under onnxruntime, on **one CPU
  thread** (:func:`measure_pytorch`, :func:`measure_onnx`). One thread makes the number a per-core
  cost that does not depend on how busy the other cores of a shared machine are, and it is what a
  price per core-hour multiplies;
- the teacher's price per query, as the vendor states it in ``/v1/models`` (``price_per_query``; the
  teacher set's manifest keeps the card the client read when it bought the embeddings);
- the queries the student's training paid (class prompts and image queries, from the run's records).

:func:`break_even` turns them into the number of predictions after which the student, *including the
queries that trained it*, is cheaper than the vendor. The alternative it is compared with is the
vendor's own zero-shot classifier: the same class prompts bought once, then one image query per
prediction. The student's compute is priced at ``cpu_price_per_core_hour`` (default 0: taken as free,
which is the assumption every number in the docs states); with a price, each prediction costs
``price / 3600 / throughput_at_batch_64`` on top.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: batch of the throughput measurement (the batch ``vl2v predict`` feeds an export)
THROUGHPUT_BATCH = 64
#: timed repetitions at batch 1 and at :data:`THROUGHPUT_BATCH` (after :data:`WARMUP` untimed ones)
LATENCY_REPEATS = 30
THROUGHPUT_REPEATS = 5
WARMUP = 3
#: the assumption of every break-even figure unless the caller states a price
DEFAULT_CPU_PRICE_PER_CORE_HOUR = 0.0


@dataclass(frozen=True)
class Speed:
    """One runtime's CPU speed on one thread: median latency of a batch of 1 (ms) and images per second
    at :data:`THROUGHPUT_BATCH` (from the median time of a batch)."""

    runtime: str
    threads: int
    latency_ms_batch1: float
    throughput_batch64: float


def _timed(run: Callable[[np.ndarray], object], x: np.ndarray, repeats: int) -> float:
    """Median wall time (s) of ``run(x)`` over ``repeats`` calls after :data:`WARMUP` untimed ones."""
    for _ in range(WARMUP):
        run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _speed(runtime: str, run: Callable[[np.ndarray], object], image_size: int) -> Speed:
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    batch = rng.standard_normal((THROUGHPUT_BATCH, 3, image_size, image_size)).astype(np.float32)
    latency = _timed(run, one, LATENCY_REPEATS)
    per_batch = _timed(run, batch, THROUGHPUT_REPEATS)
    return Speed(runtime, 1, 1000.0 * latency, THROUGHPUT_BATCH / per_batch)


def measure_pytorch(module: Any, image_size: int) -> Speed:
    """Eager PyTorch on one thread (channels-last, inference mode: how ``vl2v predict`` runs a run
    folder). The caller's thread count is restored."""
    import torch

    threads = torch.get_num_threads()
    model = module.eval().to(memory_format=torch.channels_last)

    def run(x: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    torch.set_num_threads(1)
    try:
        return _speed("pytorch", run, image_size)
    finally:
        torch.set_num_threads(threads)


def measure_onnx(model_file: str | Path, image_size: int) -> Speed:
    """onnxruntime's CPU provider on one thread (intra- and inter-op), as a server would pin it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _speed("onnxruntime", lambda x: session.run(None, {name: x}), image_size)


def parameter_count(module: Any) -> int:
    """Parameters of the classifier (the stored text embeddings are a buffer, not counted)."""
    return int(sum(p.numel() for p in module.parameters()))


def break_even(
    training_queries: int,
    class_texts: int,
    price_per_query: float | None,
    throughput_per_core: float | None,
    cpu_price_per_core_hour: float = DEFAULT_CPU_PRICE_PER_CORE_HOUR,
) -> dict[str, Any]:
    """The predictions ``N`` after which the student costs less than the vendor (see the module docstring).

    Student: ``training_queries · p + N · c`` with ``c = cpu_price / 3600 / throughput``. Vendor
    zero-shot: ``class_texts · p + N · p``. So ``N* = ceil((training_queries − class_texts) · p / (p − c))``,
    0 when the student's queries are no more than the prompts the vendor would need anyway, ``None``
    (never) when a prediction on the CPU costs as much as a query or no price is known."""
    out: dict[str, Any] = {
        "training_queries": int(training_queries),
        "vendor_fixed_queries": int(class_texts),
        "price_per_query": price_per_query,
        "cpu_price_per_core_hour": cpu_price_per_core_hour,
        "assumption": (
            "student compute taken as free (CPU price 0)"
            if cpu_price_per_core_hour == 0
            else f"student compute at {cpu_price_per_core_hour:g} per core-hour, one thread, batch {THROUGHPUT_BATCH}"
        ),
        "alternative": "the vendor's zero-shot classifier (the same class prompts once, then one image query "
        "per prediction)",
    }
    if training_queries <= class_texts and cpu_price_per_core_hour == 0:  # nothing to win back, whatever the price
        return {**out, "student_cost_per_prediction": 0.0, "student_upfront_cost": None, "predictions": 0}
    if price_per_query is None or price_per_query <= 0:
        return {**out, "student_cost_per_prediction": None, "predictions": None, "reason": "no price per query known"}
    compute = 0.0
    if cpu_price_per_core_hour > 0:
        if not throughput_per_core:
            return {**out, "student_cost_per_prediction": None, "predictions": None, "reason": "no throughput"}
        compute = cpu_price_per_core_hour / 3600.0 / throughput_per_core
    out["student_cost_per_prediction"] = compute
    out["student_upfront_cost"] = training_queries * price_per_query
    extra = (training_queries - class_texts) * price_per_query
    if extra <= 0:
        return {**out, "predictions": 0}
    if compute >= price_per_query:
        return {**out, "predictions": None, "reason": "a CPU prediction costs as much as a vendor query"}
    return {**out, "predictions": int(math.ceil(extra / (price_per_query - compute) - 1e-9))}


def speeds_dict(speeds: list[Speed]) -> list[dict[str, Any]]:
    return [asdict(s) for s in speeds]


def speed_rows(speeds: list[dict[str, Any]]) -> list[str]:
    """Markdown rows ``| runtime | threads | latency | throughput |`` for a card or a report."""
    rows = ["| runtime | CPU threads | latency, batch 1 (ms) | throughput, batch 64 (images/s) |", "|---|---|---|---|"]
    rows += [
        f"| {s['runtime']} | {s['threads']} | {s['latency_ms_batch1']:.2f} | {s['throughput_batch64']:.0f} |"
        for s in speeds
    ]
    return rows
