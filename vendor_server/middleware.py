"""The outermost per-request concerns, as plain ASGI middleware (cheap, and it sees every response,
errors included): a request id and rate-limit headers on every response, request metrics, each
``/v1`` answer counted for the console, and a JSON 500 for anything a route let escape."""

from __future__ import annotations

import logging
import time

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.protocol import REQUEST_ID_HEADER
from vendor_server.api_errors import ApiError
from vendor_server.auth import client_bucket
from vendor_server.console.traffic import TrafficRecorder
from vendor_server.ledger import new_request_id
from vendor_server.metrics import Metrics
from vendor_server.ratelimit import RateLimiter

log = logging.getLogger("vl2v.vendor")


class ServiceMiddleware:
    """Gives each request its id (``request.state.request_id``, the ledger's request id too) and
    every response the ``X-Request-Id`` and rate-limit headers: the caller's key bucket when a
    route authenticated one (``request.state.rate``), else the client address's, unspent."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, limiter: RateLimiter, default_qps: float, traffic: TrafficRecorder
    ):
        self.app = app
        self.metrics = metrics
        self.limiter = limiter
        self.default_qps = default_qps
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = new_request_id()
        request.state.request_id = request_id
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                rate = getattr(request.state, "rate", None)
                if rate is None:
                    rate = self.limiter.peek(client_bucket(request), self.default_qps)
                for name, value in rate.headers().items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error in %s", request_id)
            if not status["sent"]:
                error = ApiError("internal error; the request was not charged").response()
                await error(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status["code"])).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - started)
            if scope["path"].startswith("/v1/"):  # the API's answers, per key (the console's outcomes)
                self.traffic.answered(getattr(request.state, "key_id", None), status["code"])
