"""``GET /v1/usage``: the calling key's account (budget, used, remaining, totals), so a client can
reconcile its own books with the vendor's."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from shared.protocol import USAGE_PATH, KeyUsage
from vendor_server.auth import Caller
from vendor_server.deps import LedgerDep
from vendor_server.openapi import API_KEY_SCHEME, error_responses

router = APIRouter()


@router.get(
    USAGE_PATH,
    response_model=KeyUsage,
    responses=error_responses(401, 403, 429),
    openapi_extra={"security": [{API_KEY_SCHEME: []}]},
)
async def usage(key: Caller, ledger: LedgerDep) -> KeyUsage:
    return await asyncio.to_thread(ledger.usage, key.id)
