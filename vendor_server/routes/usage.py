"""``GET /v1/usage``: the calling key's account (budget, used, remaining, totals), so a client can
reconcile its own books with the vendor's."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from shared.protocol import USAGE_PATH, KeyUsage
from vendor_server.auth import Caller
from vendor_server.deps import LedgerDep

router = APIRouter()


@router.get(USAGE_PATH, response_model=KeyUsage)
async def usage(key: Caller, ledger: LedgerDep) -> KeyUsage:
    return await asyncio.to_thread(ledger.usage, key.id)
