"""The client's own ledger of every query it may have paid for, next to the cache it filled.

Vendors disagree on usage units (tokens, images, nothing at all) and a crash can lose an answer the
vendor billed, so the client keeps its own books, one record per batch, keyed by the batch's
content-derived idempotency key:

* ``reserve`` (before the request is sent) bumps the record's ``outstanding`` sends: from that
  moment the queries count as possibly spent, even if the process dies while waiting;
* ``settle`` (after the vendor answered) writes the batch's vectors into the cache *and* marks it
  paid in one SQLite transaction, so a received paid answer is never lost and never paid again;
* ``release`` gives back a send the vendor provably did not charge (a 4xx/429/503 answer, a connection
  that never opened), also when the retries run out on such failures.

A send still outstanding after a crash is *in doubt*. For a vendor that honours idempotency keys,
the resend of the same batch on the next run resolves it (the vendor replays, charging nothing);
for others it stays in doubt until reconciled against the vendor's own usage (``/v1/usage``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from client_distill.buy.cache import EmbeddingCache

RECORD_PREFIX = "ledger|batch|"


def account_id(vendor: str, base_url: str, api_key: str | None) -> str:
    """Who pays: vendor, URL and a fingerprint of the key (never the key itself)."""
    fingerprint = hashlib.sha256((api_key or "").encode()).hexdigest()[:12]
    return f"{vendor}|{base_url}|{fingerprint}"


class Ledger:
    """Per-batch records of sends and charges, stored in the cache's database."""

    def __init__(self, cache: EmbeddingCache, account: str, idempotent: bool) -> None:
        self.cache = cache
        self.store = cache.store
        self.account = account
        self.idempotent = idempotent

    def _record(self, batch_id: str) -> dict[str, Any] | None:
        return self.store.get(RECORD_PREFIX + batch_id)

    def reserve(self, batch_id: str, modality: str, n: int) -> None:
        with self.store.transact():
            rec = self._record(batch_id) or {
                "account": self.account,
                "modality": modality,
                "n": n,
                "outstanding": 0,
                "charged": 0,
                "answers": 0,
                "idempotent": self.idempotent,
                "request_ids": [],
            }
            rec["outstanding"] += 1
            rec["sent_at"] = time.time()
            self.store.set(RECORD_PREFIX + batch_id, rec)

    def release(self, batch_id: str, n: int) -> None:
        with self.store.transact():
            rec = self._record(batch_id)
            if rec is not None and rec["outstanding"] > 0:
                rec["outstanding"] -= 1
                self.store.set(RECORD_PREFIX + batch_id, rec)

    def settle(self, batch_id: str, charged: int, entries: Mapping[str, np.ndarray], request_id: str | None) -> None:
        """Record a received answer and cache its vectors atomically."""
        with self.store.transact():
            self.cache.put_many(entries)
            rec = self._record(batch_id)
            if rec is None:  # answered without a reservation: still books the charge
                rec = {
                    "account": self.account,
                    "modality": "?",
                    "n": charged,
                    "outstanding": 1,
                    "charged": 0,
                    "answers": 0,
                    "idempotent": self.idempotent,
                    "request_ids": [],
                }
            # an idempotent vendor charged at most once for all sends of this content (a replay
            # answers the earlier ones); otherwise only this send is accounted for
            rec["outstanding"] = 0 if self.idempotent else max(rec["outstanding"] - 1, 0)
            rec["charged"] += charged
            rec["answers"] += 1
            rec["paid_at"] = time.time()
            if request_id:
                rec["request_ids"] = (rec["request_ids"] + [request_id])[-8:]
            self.store.set(RECORD_PREFIX + batch_id, rec)


def ledger_totals(cache: EmbeddingCache, account: str | None = None) -> dict[str, int]:
    """Queries paid (answers received), in doubt (sent, answer lost) and batches, per account or
    over all accounts."""
    paid = in_doubt = batches = 0
    for key in cache.store.iterkeys():
        if not (isinstance(key, str) and key.startswith(RECORD_PREFIX)):
            continue
        rec = cache.store.get(key)
        if rec is None or (account is not None and rec["account"] != account):
            continue
        batches += 1
        paid += rec["charged"]
        in_doubt += rec["outstanding"] * rec["n"]
    return {"paid": paid, "in_doubt": in_doubt, "batches": batches}
