"""The black-box teacher as the rest of the client sees it: inputs in, unit vectors out, paid once.

:class:`Teacher` = a vendor adapter + the disk cache + the ledger + an optional query budget. Its
methods are synchronous (training code is) and run the adapter's async batching on a private
:class:`asyncio.Runner`, which turns Ctrl-C into a cancellation of the call in flight: its requests stop,
what was paid is settled, and a plain ``KeyboardInterrupt`` comes out, wherever the signal landed.
With ``cache=True`` (the default) every distinct input is bought at most once, ever; with
``cache=False`` (the official recipe's online mode, where every augmented view is re-bought at
every step) nothing is read from or written to the cache, duplicates are merged only within one
call, and every query is still booked in the ledger and counted against the budget.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

import numpy as np

from client_distill.adapters.base import Adapter, BatchResult, Modality, Payload, sha256_hex
from client_distill.adapters.errors import AdapterError, BudgetExhausted
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.query_ledger import Ledger, account_id


class Teacher:
    """Buys embeddings through ``adapter``, caching in ``cache`` and booking in its ledger.

    ``budget`` caps the queries this object may *send* (reserved before each send, including a
    resend that might be billed again), so it is never exceeded whatever fails. ``on_progress``
    is called with the teacher after every cache lookup and every paid batch.
    """

    def __init__(
        self,
        adapter: Adapter,
        cache: EmbeddingCache,
        *,
        use_cache: bool = True,
        budget: int | None = None,
        on_progress: Callable[[Teacher], None] | None = None,
    ) -> None:
        self.adapter = adapter
        self.cache = cache
        self.use_cache = use_cache
        self.budget = budget
        self.on_progress = on_progress
        self.ledger = Ledger(cache, account_id(adapter.name, adapter.base_url, adapter.api_key), adapter.idempotent)
        self.reserved = 0  # queries sent (or about to be) by this object
        self.paid = 0  # queries the vendor answered and charged
        self.hits = 0  # inputs served from the cache
        self._runner = asyncio.Runner()
        self._opened = False

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # after Ctrl-C, batches still queued must not wake up and send while the client shuts down
        loop = self._runner.get_loop()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        if self._opened:
            self._opened = False
            self._runner.run(self.adapter.__aexit__(None, None, None))
        self._runner.close()

    def _open(self) -> None:
        if not self._opened:
            self._runner.run(self.adapter.__aenter__())
            self._opened = True

    @property
    def model(self) -> str:
        self._open()
        return str(self.adapter.model)

    @property
    def pixels_per_query(self) -> int:
        """The model card's price by image size (0: one query per image, whatever its size)."""
        self._open()
        return self.adapter.pixels_per_query

    def vendor_usage(self) -> dict | None:
        """The key's account at the vendor (for reconciling the ledger), or None where the vendor
        has no usage endpoint or does not answer."""
        self._open()
        try:
            return self._runner.run(self.adapter.usage())
        except AdapterError:
            return None

    # -- the Spend guard the adapter consults before each send --------------------------------------

    def reserve(self, batch_id: str, modality: Modality, n: int) -> None:
        if self.budget is not None and self.reserved + n > self.budget:
            raise BudgetExhausted(
                f"query budget of {self.budget} reached ({self.reserved} spent); nothing more is sent"
            )
        self.ledger.reserve(batch_id, modality, n)
        self.reserved += n

    def release(self, batch_id: str, n: int) -> None:
        self.ledger.release(batch_id, n)
        self.reserved -= n

    # -- embedding -------------------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 ``[N, D]`` embeddings of ``texts``."""
        return self.embed("text", list(texts))

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        """Unit-norm float32 ``[N, D]`` embeddings of image files given as their exact bytes."""
        return self.embed("image", list(images))

    def cached(self, modality: Modality, payloads: Sequence[Payload]) -> list[np.ndarray | None]:
        """What the cache already holds for ``payloads`` (None where nothing), at no cost."""
        self._open()
        return self.cache.get_many(
            [EmbeddingCache.key(self.adapter, modality, sha256_hex(p)) for p in payloads], count=False
        )

    def embed(self, modality: Modality, payloads: Sequence[Payload]) -> np.ndarray:
        self._open()
        keys = [EmbeddingCache.key(self.adapter, modality, sha256_hex(p)) for p in payloads]
        found: dict[str, np.ndarray] = {}
        if self.use_cache:
            for k, vec in zip(keys, self.cache.get_many(keys), strict=True):
                if vec is not None:
                    found[k] = vec
                    self.hits += 1
        missing: dict[str, Payload] = {}
        for k, p in zip(keys, payloads, strict=True):
            if k not in found:
                missing.setdefault(k, p)
        self._notify()
        if missing:
            miss_keys = list(missing)

            def settle(start: int, chunk: Sequence[Payload], result: BatchResult) -> None:
                batch_keys = miss_keys[start : start + len(chunk)]
                entries = dict(zip(batch_keys, result.vectors, strict=True))
                self.ledger.settle(
                    result.batch_id, result.charged, entries if self.use_cache else {}, result.request_id
                )
                found.update(entries)
                self.paid += result.charged
                self._notify()

            # online mode re-buys on purpose: a fresh salt per call keeps a vendor's idempotency
            # replay (free, but booked as paid) from blurring the ledger; retries within the call
            # still share their keys
            salt = "" if self.use_cache else uuid.uuid4().hex
            self._runner.run(self.adapter.embed_many(modality, list(missing.values()), self, settle, salt))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)
