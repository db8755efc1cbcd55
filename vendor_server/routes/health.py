"""Probes for orchestrators: ``/healthz`` (the process answers) and ``/readyz`` (the model is loaded
and crash recovery is done, so requests will be served; 503 with ``Retry-After`` until then)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vendor_server.deps import ServiceDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(service: ServiceDep) -> JSONResponse:
    if not service.ready:
        return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "model": service.card.id})
