"""Per-key request rate limits (token buckets) and the headers that tell clients where they stand:
the de-facto ``X-RateLimit-Limit/Remaining/Reset`` and the IETF draft's ``RateLimit-Policy`` /
``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-09).

A key's bucket holds ``burst = max(1, round(qps))`` requests and refills at ``qps`` per second, so
the advertised window is ``burst / qps`` seconds (about one second).

Where the buckets live: :class:`RateLimiter` keeps them in memory (one vendor process, the SQLite
ledger's case); :class:`SharedRateLimiter` keeps the per-key ones in the PostgreSQL ledger, one row
per key updated atomically, so a key's limit holds across every replica and worker. Both keep the
per-address buckets of failed authentications in memory (per process: no database round trip for a
caller who has not even shown a valid key)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vendor_server.api_errors import RateLimited, retry_after

if TYPE_CHECKING:
    from vendor_server.ledger import SqlLedger

POLICY = "requests"
MAX_IDLE_BUCKETS = 10_000


@dataclass(frozen=True)
class RateStatus:
    limit: int
    remaining: int
    reset_s: int
    window_s: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f'"{POLICY}";q={self.limit};w={self.window_s}',
            "RateLimit": f'"{POLICY}";r={self.remaining};t={self.reset_s}',
        }


@dataclass(frozen=True, slots=True)
class _Bucket:
    """A bucket's level at ``at`` (monotonic seconds), with the rate it refills at: keys have different
    rates, so whether a bucket is full again can only be judged by its own."""

    tokens: float
    at: float
    qps: float

    @property
    def burst(self) -> int:
        return _burst(self.qps)

    def level(self, now: float) -> float:
        return min(float(self.burst), self.tokens + (now - self.at) * self.qps)


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, qps: float) -> RateStatus:
        """Take one request from ``bucket``, or raise 429 with ``Retry-After`` and the headers."""
        with self._lock:
            tokens, burst = self._refill(bucket, qps)
            if tokens < 1:
                raise _limited(tokens, burst, qps)
            tokens -= 1
            self._buckets[bucket] = _Bucket(tokens, time.monotonic(), qps)
            return _status(tokens, burst, qps)

    def peek(self, bucket: str, qps: float) -> RateStatus:
        """Where ``bucket`` stands, without spending anything (for responses that aren't limited)."""
        with self._lock:
            tokens, burst = self._refill(bucket, qps)
            return _status(tokens, burst, qps)

    def _refill(self, bucket: str, qps: float) -> tuple[float, int]:
        burst = _burst(qps)
        now = time.monotonic()
        if len(self._buckets) > MAX_IDLE_BUCKETS:  # forget buckets that are full again: a full bucket is the default
            self._buckets = {k: b for k, b in self._buckets.items() if b.level(now) < b.burst}
        held = self._buckets.get(bucket)
        return (float(burst) if held is None else min(float(burst), held.level(now))), burst


class SharedRateLimiter(RateLimiter):
    """Key buckets (``key:…``) taken through ``take(bucket, qps, burst) -> (taken, tokens left)``, a
    shared store's atomic update (:meth:`~vendor_server.ledger.core.SqlLedger.take_token` of a ledger
    that :attr:`~vendor_server.ledger.core.SqlLedger.shares_rate_buckets`); every other bucket
    in this process's memory. ``hit`` does a database round trip for a key, so callers run it off the
    event loop (:mod:`vendor_server.auth` does)."""

    def __init__(self, take: Callable[[str, float, int], tuple[bool, float]]) -> None:
        super().__init__()
        self._take = take

    def hit(self, bucket: str, qps: float) -> RateStatus:
        if not bucket.startswith("key:"):
            return super().hit(bucket, qps)
        burst = _burst(qps)
        taken, tokens = self._take(bucket, qps, burst)
        if not taken:
            raise _limited(tokens, burst, qps)
        return _status(tokens, burst, qps)


def limiter_for(ledger: SqlLedger) -> RateLimiter:
    """Per-key buckets in the ledger's database where it shares them (every replica sees one bucket per
    key), else in this process's memory."""
    return SharedRateLimiter(ledger.take_token) if ledger.shares_rate_buckets else RateLimiter()


def _limited(tokens: float, burst: int, qps: float) -> RateLimited:
    status = _status(tokens, burst, qps)
    return RateLimited(
        f"rate limit of {qps:g} requests/s exceeded",
        headers={**status.headers(), **retry_after((1 - tokens) / qps)},
        limit_qps=qps,
    )


def _burst(qps: float) -> int:
    return max(1, round(qps))


def _status(tokens: float, burst: int, qps: float) -> RateStatus:
    return RateStatus(
        limit=burst,
        remaining=max(0, math.floor(tokens)),
        reset_s=math.ceil((burst - tokens) / qps),
        window_s=max(1, math.ceil(burst / qps)),
    )
