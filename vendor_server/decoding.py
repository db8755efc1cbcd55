"""Image decoding bounded for the whole server: a fixed pool of decoding threads and a budget of
pixels that may be decoding or held decoded at once.

Decoding is the one step whose cost a client controls (a few kilobytes of PNG can declare 16
megapixels), so it is bounded three ways: per image and per request by the limits checked from the
headers before anything is decoded (:mod:`vendor_server.images`, the embeddings route), and per
server here. A request first reserves its pixels (waiting at most ``wait_s``, then 503 with
``Retry-After``), keeps them until its embeddings are computed (the decoded images live in memory
until then), and decodes on at most ``workers`` threads, so memory stays under roughly
``max_pixels`` × 4 bytes plus one image's decoding overhead per worker, and CPU under ``workers``
cores, however many requests arrive.

Each decoding job also runs the model's preprocessing (``prepare``, :meth:`Encoder.prepare_image
<vendor_server.encoder.Encoder.prepare_image>`), so the model thread receives ready arrays: resizing
and normalising the next requests' images happen here while the current batch is in the model,
instead of in front of it on the model thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from vendor_server.api_errors import Overloaded, retry_after
from vendor_server.images import InspectedImage, decode


class DecodePool:
    def __init__(
        self, workers: int, max_pixels: int, wait_s: float, prepare: Callable[[Image.Image], Any] | None = None
    ):
        self.max_pixels = max_pixels
        self._prepare = prepare
        self.wait_s = wait_s
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._in_use = 0
        self._released: asyncio.Condition | None = None

    @property
    def pixels_in_use(self) -> int:
        return self._in_use

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="vl2v-decode")
        self._released = asyncio.Condition()

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        """Hold ``pixels`` of the server's budget for the ``async with`` block (a request's whole
        life from decoding to encoding); 503 if they do not free up within ``wait_s``."""
        if pixels <= 0:
            yield
            return
        assert self._released is not None, "DecodePool.start() was not called"
        async with self._released:
            try:
                await asyncio.wait_for(
                    self._released.wait_for(lambda: self._in_use + pixels <= self.max_pixels), self.wait_s
                )
            except asyncio.TimeoutError:
                raise Overloaded(
                    "image decoding is at capacity; retry shortly", code="decoding_busy", headers=retry_after(1)
                ) from None
            self._in_use += pixels
        try:
            yield
        finally:
            async with self._released:
                self._in_use -= pixels
                self._released.notify_all()

    async def decode(self, images: Sequence[InspectedImage]) -> list[Any]:
        """Every image decoded (and prepared, when the pool has ``prepare``) on the pool; the first
        failure is raised once all have finished, so no thread is still decoding for a request that
        has already been answered."""
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._job, image) for image in images), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    def _job(self, image: InspectedImage) -> Any:
        decoded = decode(image)
        return decoded if self._prepare is None else self._prepare(decoded)
