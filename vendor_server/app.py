"""The vendor's HTTP service: ``create_app(settings, encoder)`` builds the FastAPI app that sells
the encoder's embeddings per query and nothing else (no weights, logits or features).

``create_app`` only assembles: the shared :class:`~vendor_server.deps.ServiceState` (ledger, rate
limiter, micro-batcher, metrics, model card) in ``app.state.service``, the error handlers, the
middleware (:mod:`vendor_server.middleware`) and the routers of :mod:`vendor_server.routes`, where
each route's behaviour is described.

``GET /v1/models`` (``revision``) and every embeddings answer (``model_revision``) name the served
weights by a digest taken once at start-up (:func:`vendor_server.models.weights_revision`), and say which
engine runs them. The largest batch is measured here unless the settings fix it
(:mod:`vendor_server.engines.batch_size`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from shared.protocol import EmbeddingRequest, ModelCard
from vendor_server.api_errors import install_handlers
from vendor_server.batcher import MicroBatcher
from vendor_server.console.routes import router as console_router
from vendor_server.console.traffic import TrafficRecorder
from vendor_server.decoding import DecodePool
from vendor_server.deps import ServiceState
from vendor_server.encoder import Encoder
from vendor_server.engines import open_encoder
from vendor_server.engines.batch_size import max_batch_for
from vendor_server.images import ImageLimits
from vendor_server.ledger import SqlLedger, open_ledger
from vendor_server.ledger.reports import LedgerReports
from vendor_server.metrics import Metrics
from vendor_server.middleware import ServiceMiddleware
from vendor_server.openapi import install_openapi
from vendor_server.ratelimit import limiter_for
from vendor_server.routes import ROUTERS
from vendor_server.settings import VendorSettings

log = logging.getLogger("vl2v.vendor")


def create_app(settings: VendorSettings, encoder: Encoder, ledger: SqlLedger | None = None) -> FastAPI:
    """The service; it owns ``ledger`` (opened from ``settings`` when not given) and closes it at shutdown."""
    metrics = Metrics()
    max_batch = max_batch_for(settings, encoder)
    metrics.max_batch_size.set(max_batch)
    ledger = ledger or open_ledger(settings.db, **settings.ledger_options())
    service = ServiceState(
        settings=settings,
        ledger=ledger,
        limiter=limiter_for(ledger),
        metrics=metrics,
        batcher=MicroBatcher(
            {"image": encoder.encode_images, "text": encoder.encode_texts},
            max_batch,
            settings.max_wait_ms,
            settings.queue_limit,
            metrics,
        ),
        image_limits=ImageLimits(settings.max_image_bytes, settings.max_pixels),
        decoder=DecodePool(
            settings.decode_workers, settings.decode_pixel_budget, settings.decode_wait_s, encoder.prepare_image
        ),
        card=ModelCard(
            id=settings.model,
            embedding_dim=encoder.embed_dim,
            image_size=encoder.image_size,
            price_per_query=settings.price_per_query,
            revision=encoder.revision,
            engine=encoder.engine,
            precision=encoder.precision,
            device=encoder.device.type,
            logit_scale=encoder.logit_scale,
            image_params=encoder.image_params,
            pixels_per_query=settings.pixels_per_query,
        ),
        traffic=TrafficRecorder(LedgerReports(ledger), coverage=settings.coverage),
    )
    app = FastAPI(title="vl2v vendor", summary="CLIP embeddings, metered per query", lifespan=_lifespan)
    app.state.service = service
    install_handlers(app)
    install_openapi(app, body_models=(EmbeddingRequest,))
    app.add_middleware(
        ServiceMiddleware,
        metrics=metrics,
        limiter=service.limiter,
        default_qps=settings.default_rate_limit,
        traffic=service.traffic,
    )
    for router in (*ROUTERS, console_router):
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Refund what a crash left reserved and start the batcher before saying ready; stop in reverse."""
    service: ServiceState = app.state.service
    refunded = await asyncio.to_thread(service.ledger.recover)
    if refunded:
        log.warning("refunded %d request(s) left unfinished by a previous crash", refunded)
    service.decoder.start()
    await service.batcher.start()
    await asyncio.to_thread(service.traffic.start)
    service.ready = True
    yield
    service.ready = False
    await service.batcher.stop()
    service.decoder.stop()
    await asyncio.to_thread(service.traffic.stop)
    service.ledger.close()


def worker_app() -> FastAPI:
    """The app of one ``uvicorn --workers N`` worker (uvicorn's ``factory``): each worker process
    builds its own from the environment, where ``vl2v-vendor serve`` put its flags
    (``VL2V_VENDOR_*``), and opens its own connections to the shared ledger."""
    from vendor_server.settings import load_settings

    settings = load_settings()
    ledger = open_ledger(settings.db, **settings.ledger_options())
    return create_app(settings, open_encoder(settings), ledger)
