"""Who is calling: API-key authentication for ``/v1`` plus the per-key rate limit, as one FastAPI
dependency so every route that costs the vendor anything is both authenticated and limited.

Failed authentications are limited too, per client address, so guessing keys is slow."""

from __future__ import annotations

import asyncio

from fastapi import Request

from vendor_server.api_errors import InvalidApiKey
from vendor_server.ledger import KeyRecord, Ledger
from vendor_server.ledger_errors import UnknownApiKey
from vendor_server.ratelimit import RateLimiter


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def client_bucket(request: Request) -> str:
    """The rate-limit bucket of a caller we could not (or need not) identify by key."""
    return "ip:" + (request.client.host if request.client else "unknown")


class KeyAuthenticator:
    """``Depends(KeyAuthenticator(...))``: the caller's key record, rate limit already spent; the
    limit's status is left in ``request.state.rate`` for the response headers."""

    def __init__(self, ledger: Ledger, limiter: RateLimiter, default_qps: float):
        self._ledger = ledger
        self._limiter = limiter
        self._default_qps = default_qps

    async def __call__(self, request: Request) -> KeyRecord:
        secret = bearer_token(request)
        try:
            if secret is None:
                raise InvalidApiKey("missing API key: send 'Authorization: Bearer <key>'")
            key = await asyncio.to_thread(self._ledger.authenticate, secret)
        except (InvalidApiKey, UnknownApiKey):
            request.state.rate = self._limiter.hit(client_bucket(request), self._default_qps)
            raise
        request.state.rate = self._limiter.hit("key:" + key.id, key.rate_limit_qps or self._default_qps)
        return key
