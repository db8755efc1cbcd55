"""The service's routes, one module per concern, each an ``APIRouter`` that gets what it needs from
the app through :mod:`vendor_server.deps`. :data:`ROUTERS` is what :func:`vendor_server.app.create_app`
mounts, in this order."""

from __future__ import annotations

from vendor_server.routes import admin, embeddings, health, metrics, models, usage

ROUTERS = (admin.router, embeddings.router, models.router, usage.router, health.router, metrics.router)
