"""What the routes share, and how they get it: one :class:`ServiceState` per app, built by
:func:`vendor_server.app.create_app` and kept in ``app.state.service``, handed to each route through
FastAPI dependencies (``ledger: LedgerDep`` in a route's signature), so routes live in their own
modules and no route closes over ``create_app``'s locals.

The getters are ``async`` on purpose: FastAPI runs a plain ``def`` dependency on a worker thread,
a hop per request per dependency for what is an attribute read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shared.protocol import ModelCard
from vendor_server.batcher import MicroBatcher
from vendor_server.console.traffic import TrafficRecorder
from vendor_server.decoding import DecodePool
from vendor_server.images import ImageLimits
from vendor_server.ledger import SqlLedger
from vendor_server.metrics import Metrics
from vendor_server.ratelimit import RateLimiter
from vendor_server.settings import VendorSettings


@dataclass
class ServiceState:
    """One running service: its settings, books, limits, model queue, and whether it is ready."""

    settings: VendorSettings
    ledger: SqlLedger
    limiter: RateLimiter
    metrics: Metrics
    batcher: MicroBatcher
    image_limits: ImageLimits
    #: the server-wide bound on image decoding (threads and pixels)
    decoder: DecodePool
    #: what ``/v1/models`` says about the served model, revision included (fixed at start-up)
    card: ModelCard
    #: the console's counters (answers by outcome, coverage cells), added to the ledger in batches
    traffic: TrafficRecorder
    #: True from the end of start-up (crash recovery done, batcher running) until shutdown begins
    ready: bool = False


async def get_service(request: Request) -> ServiceState:
    return request.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


async def get_settings(service: ServiceDep) -> VendorSettings:
    return service.settings


async def get_ledger(service: ServiceDep) -> SqlLedger:
    return service.ledger


async def get_limiter(service: ServiceDep) -> RateLimiter:
    return service.limiter


async def get_metrics(service: ServiceDep) -> Metrics:
    return service.metrics


async def get_card(service: ServiceDep) -> ModelCard:
    return service.card


SettingsDep = Annotated[VendorSettings, Depends(get_settings)]
LedgerDep = Annotated[SqlLedger, Depends(get_ledger)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
CardDep = Annotated[ModelCard, Depends(get_card)]
