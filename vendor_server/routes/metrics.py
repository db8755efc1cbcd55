"""``GET /metrics``: the Prometheus exposition of :class:`vendor_server.metrics.Metrics`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from vendor_server.deps import MetricsDep

router = APIRouter()


@router.get("/metrics")
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)
