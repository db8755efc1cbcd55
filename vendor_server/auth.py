"""Who is calling: API-key authentication for ``/v1`` plus the per-key rate limit, as one FastAPI
dependency (:data:`Caller`) so every route that costs the vendor anything is both authenticated and
limited.

Failed authentications are limited too, per client address, so guessing keys is slow."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import State

from vendor_server.api_errors import InvalidApiKey
from vendor_server.deps import LedgerDep, LimiterDep, SettingsDep
from vendor_server.ledger import KeyRecord, SqlLedger
from vendor_server.ledger.errors import UnknownApiKey
from vendor_server.ratelimit import RateLimiter, RateStatus


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def client_bucket(request: Request) -> str:
    """The rate-limit bucket of a caller we could not (or need not) identify by key."""
    return "ip:" + (request.client.host if request.client else "unknown")


async def authenticated_key(
    request: Request, ledger: LedgerDep, limiter: LimiterDep, settings: SettingsDep
) -> KeyRecord:
    """The caller's key record, rate limit already spent; the limit's status is left in
    ``request.state.rate`` for the response headers."""
    default_qps = settings.default_rate_limit
    secret = bearer_token(request)
    try:
        if secret is None:
            raise InvalidApiKey("missing API key: send 'Authorization: Bearer <key>'")
        # one thread hop for both: with a shared ledger the key's rate limit is a database round trip too
        key, request.state.rate = await asyncio.to_thread(
            _identify, ledger, limiter, secret, default_qps, request.state
        )
    except (InvalidApiKey, UnknownApiKey):
        request.state.rate = limiter.hit(client_bucket(request), default_qps)
        raise
    return key


def _identify(
    ledger: SqlLedger, limiter: RateLimiter, secret: str, default_qps: float, state: State
) -> tuple[KeyRecord, RateStatus]:
    """The key and its rate-limit status, both blocking calls (database round trips with a shared
    ledger), so the caller runs this on a thread, once, and keeps the event loop free. The key's id
    goes into ``state.key_id`` before the limit is spent, so a 429 is counted against the key too."""
    key = ledger.authenticate(secret)
    state.key_id = key.id
    return key, limiter.hit("key:" + key.id, key.rate_limit_qps or default_qps)


Caller = Annotated[KeyRecord, Depends(authenticated_key)]
