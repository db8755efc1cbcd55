"""Per-key token buckets: forgetting idle buckets (to bound memory) must judge each bucket by its own
rate, never by the rate of whichever caller happens to trigger the purge."""

from __future__ import annotations

import pytest

from vendor_server import ratelimit
from vendor_server.api_errors import RateLimited
from vendor_server.ledger import SqliteLedger
from vendor_server.ratelimit import RateLimiter, SharedRateLimiter, limiter_for


def test_a_purge_by_a_slow_key_does_not_refill_a_fast_keys_bucket(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_IDLE_BUCKETS", 1)
    limiter = RateLimiter()
    for _ in range(5):
        limiter.hit("key:fast", 10)  # a burst of 10; 5 spent, refilling at 10/s
    limiter.hit("key:slow-1", 1)
    limiter.hit("key:slow-2", 1)  # 2 buckets > 1: this slow (1/s) caller purges the others
    # judged by the slow key's burst (1), the half-empty fast bucket looked full and was dropped,
    # which handed the fast key 5 requests over its limit
    assert limiter.peek("key:fast", 10).remaining in (5, 6)  # 6 if a refill tick landed meanwhile
    with pytest.raises(RateLimited):
        for _ in range(7):
            limiter.hit("key:fast", 10)


def test_buckets_that_are_full_again_are_forgotten(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_IDLE_BUCKETS", 1)
    limiter = RateLimiter()
    limiter.hit("key:fast", 1e6)  # refills in a microsecond
    limiter.hit("key:slow-1", 1)
    limiter.hit("key:slow-2", 1)  # purges: the fast bucket is full again, the slow one is not
    assert set(limiter._buckets) == {"key:slow-1", "key:slow-2"}
    assert limiter.peek("key:fast", 1e6).remaining == 1_000_000  # a forgotten bucket is a full one


def test_a_sqlite_ledger_keeps_no_shared_buckets(tmp_path):
    """One vendor process per SQLite ledger: its keys are limited in the process's memory, and the
    ledger says so through its interface (the PostgreSQL case: test_vendor_postgres_ledger.py)."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        limiter = limiter_for(ledger)
        assert type(limiter) is RateLimiter and not isinstance(limiter, SharedRateLimiter)
        assert not ledger.shares_rate_buckets
        with pytest.raises(NotImplementedError):
            ledger.take_token("key:k", 1.0, 1)
    finally:
        ledger.close()
