"""``/admin``: key management over HTTP for the vendor's own tooling, the same operations as
``vl2v-vendor keys``. Guarded by a separate admin token (``VL2V_ADMIN_TOKEN``); without one the
whole surface answers 404, as if it did not exist."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared.protocol import KeyUsage
from vendor_server.api_errors import Forbidden, NotFound
from vendor_server.auth import bearer_token
from vendor_server.deps import LedgerDep, SettingsDep
from vendor_server.ledger import MAX_BUDGET
from vendor_server.openapi import error_responses


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    budget: StrictInt = Field(ge=0, le=MAX_BUDGET, description="queries the key may spend")
    rate_limit_qps: float | None = Field(None, gt=0, le=1e6)


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: StrictInt = Field(gt=0, le=MAX_BUDGET)


class CreatedKey(KeyUsage):
    secret: str = Field(description="shown once; only its hash is stored")


class KeyList(BaseModel):
    object: str = "list"
    data: list[KeyUsage]


async def require_admin(request: Request, settings: SettingsDep) -> None:
    admin_token = settings.admin_token
    if not admin_token:
        raise NotFound("the admin API is disabled (set VL2V_ADMIN_TOKEN to enable it)", code="admin_disabled")
    if not hmac.compare_digest((bearer_token(request) or "").encode(), admin_token.encode()):
        raise Forbidden("a valid admin token is required", code="invalid_admin_token")


router = APIRouter(
    prefix="/admin",
    dependencies=[Depends(require_admin)],
    tags=["admin"],
    responses=error_responses(400, 403, 404),
)


@router.post("/keys", status_code=201, response_model=CreatedKey)
async def create_key(body: CreateKey, ledger: LedgerDep) -> CreatedKey:
    record, secret = await asyncio.to_thread(ledger.create_key, body.name, body.budget, body.rate_limit_qps)
    usage = await asyncio.to_thread(ledger.usage, record.id)
    return CreatedKey(**usage.model_dump(), secret=secret)


@router.get("/keys", response_model=KeyList)
async def list_keys(ledger: LedgerDep) -> KeyList:
    def all_usage() -> list[KeyUsage]:
        return [ledger.usage(record.id) for record in ledger.keys()]

    return KeyList(data=await asyncio.to_thread(all_usage))


@router.post("/keys/{key_id}/revoke", response_model=KeyUsage)
async def revoke(key_id: str, ledger: LedgerDep) -> KeyUsage:
    await asyncio.to_thread(ledger.revoke, key_id)
    return await asyncio.to_thread(ledger.usage, key_id)


@router.post("/keys/{key_id}/topup", response_model=KeyUsage)
async def topup(key_id: str, body: TopUp, ledger: LedgerDep) -> KeyUsage:
    await asyncio.to_thread(ledger.topup, key_id, body.queries)
    return await asyncio.to_thread(ledger.usage, key_id)


@router.get("/keys/{key_id}/usage", response_model=KeyUsage)
async def usage(key_id: str, ledger: LedgerDep) -> KeyUsage:
    return await asyncio.to_thread(ledger.usage, key_id)
