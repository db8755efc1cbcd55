"""``GET /metrics``: the Prometheus exposition of :class:`vendor_server.metrics.Metrics`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from vendor_server.deps import MetricsDep

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)
