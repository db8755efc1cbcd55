"""The client's disk cache of bought embeddings: a paid answer is never paid for again.

A :mod:`diskcache` directory (SQLite + files, safe across processes and crashes). Entry keys are
``emb|<vendor>|<model>|<modality>|<options>|<sha256 of the exact bytes or UTF-8 text sent>``, so
an identical input to the same model with the same options is a hit, and anything else (another
model, a re-encoded image, an augmented view) is a different entry. ``<model>`` is
``name@revision`` for vendors that report the revision of their weights (ours does): a vendor
restarted with other weights under the same name is then a miss, never a stale hit.

Vectors are stored as float16 bytes (half of float32; the cosine to the float32 original stays
above 0.9999 for unit vectors of CLIP's sizes) and come back as unit-norm float32.

The ledger (:mod:`client_distill.buy.query_ledger`) lives in the same directory and database, so a paid
batch's vectors and its ledger record are written in one transaction. So do the item limits the
adapters learned from vendors' size refusals (``limit|<vendor>|<endpoint>|<model>|<modality>``), so
the next run against the same endpoint starts at a size that passes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import diskcache
import numpy as np

from client_distill.adapters.base import Adapter, Modality, l2_normalise
from client_distill.errors import UsageError

ENTRY_PREFIX = "emb|"
LIMIT_PREFIX = "limit|"
STATS_KEYS = ("stat|hits", "stat|misses")


class EmbeddingCache:
    """Embeddings by content key, in a diskcache directory that is never evicted (paid data)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        try:
            # eviction off: diskcache's default (LRU past 1 GB) would silently drop paid answers
            self.store = diskcache.Cache(str(self.directory), eviction_policy="none", size_limit=2**62)
        except OSError as exc:
            raise UsageError(f"cannot open cache {self.directory}: {exc}") from exc

    def close(self) -> None:
        self.store.close()

    @staticmethod
    def key(adapter: Adapter, modality: Modality, digest: str) -> str:
        options = json.dumps(adapter.options(), sort_keys=True, separators=(",", ":"))
        return f"{ENTRY_PREFIX}{adapter.name}|{adapter.model_key}|{modality}|{options}|{digest}"

    def get_many(self, keys: Sequence[str], count: bool = True) -> list[np.ndarray | None]:
        """The cached vectors (float32, unit norm) or None per key; counts hits and misses (the
        lifetime totals of :meth:`stats`) unless ``count`` is False (a read-back of what was just
        bought is not a hit)."""
        found = [self._decode(self.store.get(k)) for k in keys]
        if not count:
            return found
        hits = sum(v is not None for v in found)
        if keys:
            self.store.incr(STATS_KEYS[0], hits)
            self.store.incr(STATS_KEYS[1], len(keys) - hits)
        return found

    def put_many(self, entries: Mapping[str, np.ndarray]) -> None:
        """Store vectors; call inside ``store.transact()`` to make it atomic with a ledger record."""
        for k, vec in entries.items():
            self.store.set(k, np.asarray(vec, dtype="<f2").tobytes())

    def learned_limit(self, key: str) -> int | None:
        """The items per request that last passed at ``key`` (an :class:`Adapter`'s ``limit_key``)."""
        value = self.store.get(LIMIT_PREFIX + key)
        return int(value) if value is not None else None

    def remember_limit(self, key: str, limit: int) -> None:
        self.store.set(LIMIT_PREFIX + key, int(limit))

    @staticmethod
    def _decode(raw: bytes | None) -> np.ndarray | None:
        return None if raw is None else l2_normalise(np.frombuffer(raw, dtype="<f2"))

    def stats(self) -> dict[str, Any]:
        """Entries, bytes on disk, and lifetime hits/misses (all processes)."""
        entries = sum(1 for k in self.store.iterkeys() if isinstance(k, str) and k.startswith(ENTRY_PREFIX))
        return {
            "directory": str(self.directory),
            "entries": entries,
            "size_bytes": int(self.store.volume()),
            "hits": int(self.store.get(STATS_KEYS[0], 0)),
            "misses": int(self.store.get(STATS_KEYS[1], 0)),
        }


class CacheDirLimits:
    """The learned item limits of the cache in ``directory``, as an adapter's ``limits``
    (:class:`~client_distill.adapters.base.LimitMemory`). The cache is opened only for each read (once
    per run and modality) and write (once per lesson), so an adapter can carry this for its whole life
    without holding the database; and a lesson that cannot be kept never fails a purchase (the next
    run relearns it, which costs refused requests, never queries)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = directory

    def learned_limit(self, key: str) -> int | None:
        try:
            with closing(EmbeddingCache(self.directory)) as cache:
                return cache.learned_limit(key)
        except (UsageError, OSError, sqlite3.Error):
            return None

    def remember_limit(self, key: str, limit: int) -> None:
        try:
            with closing(EmbeddingCache(self.directory)) as cache:
                cache.remember_limit(key, limit)
        except (UsageError, OSError, sqlite3.Error):
            pass
