"""Dynamic micro-batching (the Triton / Ray Serve / infinity idea): items from concurrent requests
wait at most ``max_wait_ms`` to share one forward pass of up to ``max_batch_size`` items.

All forward passes run on one dedicated worker thread, one at a time: torch already spreads a
forward over every core, so running two at once (or decoding on the same cores meanwhile) only
makes both slower. The event loop itself never touches the model. Admission is bounded in *items*
so an overloaded vendor answers 503 at once instead of queueing without end.

Coalescing must not make requests share each other's failures: when a forward pass over several
requests' items raises, each request's items are run again on their own, so only the request whose
input breaks the model gets the error (and is refunded); the others are answered as usual."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vendor_server.api_errors import Overloaded, retry_after
from vendor_server.metrics import Metrics

EncodeFn = Callable[[Sequence[Any]], np.ndarray]


@dataclass
class _Item:
    payload: Any
    future: asyncio.Future
    request: object  # the same object for every item of one ``encode`` call


class MicroBatcher:
    """One queue and one collector task per modality, sharing a single model thread."""

    def __init__(
        self, encoders: dict[str, EncodeFn], max_batch_size: int, max_wait_ms: float, queue_limit: int, metrics: Metrics
    ):
        self._encoders = encoders
        self._max_batch = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._queue_limit = queue_limit
        self._metrics = metrics
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._tasks: list[asyncio.Task] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vl2v-encode")
        self._admitted = 0
        self._seconds_per_item = 0.01  # running estimate, only used to size Retry-After

    async def start(self) -> None:
        for modality in self._encoders:
            self._queues[modality] = asyncio.Queue()
            self._tasks.append(asyncio.create_task(self._collect(modality), name=f"batcher-{modality}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._worker.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def admit(self, n_items: int) -> Iterator[None]:
        """Reserve room for a request's items for as long as it is being served, or 503 now.

        Synchronous on purpose: with no ``await`` between the check and the increment, concurrent
        requests on the event loop cannot both squeeze through the last free slots."""
        if self._admitted and self._admitted + n_items > self._queue_limit:
            wait = self._admitted * self._seconds_per_item
            raise Overloaded(
                f"the vendor is busy ({self._admitted} items in flight); retry later", headers=retry_after(wait)
            )
        self._admitted += n_items
        self._metrics.queue_depth.set(self._admitted)
        try:
            yield
        finally:
            self._admitted -= n_items
            self._metrics.queue_depth.set(self._admitted)

    async def encode(self, modality: str, payloads: Sequence[Any]) -> list[np.ndarray]:
        """Embeddings for ``payloads`` (in order), computed in whatever batches the traffic allows."""
        loop = asyncio.get_running_loop()
        request = object()
        items = [_Item(p, loop.create_future(), request) for p in payloads]
        for item in items:
            self._queues[modality].put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _collect(self, modality: str) -> None:
        queue = self._queues[modality]
        while True:
            batch = [await queue.get()]
            deadline = time.monotonic() + self._max_wait
            while len(batch) < self._max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:  # (an alias of TimeoutError from Python 3.11)
                    break
            await self._run(modality, [item for item in batch if not item.future.done()])

    async def _run(self, modality: str, batch: list[_Item]) -> None:
        try:
            await self._forward(modality, batch)
        except Exception as exc:  # noqa: BLE001 - the failure belongs to the requests, not the loop
            by_request: dict[object, list[_Item]] = {}
            for item in batch:
                by_request.setdefault(item.request, []).append(item)
            if len(by_request) == 1:
                _fail(batch, exc)
                return
            for items in by_request.values():  # isolate the culprit: each request alone, in arrival order
                try:
                    await self._forward(modality, [item for item in items if not item.future.done()])
                except Exception as own:  # noqa: BLE001
                    _fail(items, own)

    async def _forward(self, modality: str, batch: list[_Item]) -> None:
        """One forward pass over ``batch`` on the model thread, its rows handed to the items' futures."""
        if not batch:
            return
        start = time.perf_counter()
        rows = await asyncio.get_running_loop().run_in_executor(
            self._worker, self._encoders[modality], [item.payload for item in batch]
        )
        elapsed = time.perf_counter() - start
        self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * elapsed / len(batch)
        self._metrics.observe_batch(modality, len(batch), elapsed)
        for item, row in zip(batch, rows, strict=True):
            if not item.future.done():
                item.future.set_result(row)


def _fail(items: list[_Item], exc: Exception) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)
