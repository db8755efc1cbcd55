"""The HTTP API's errors: one exception class per machine-readable code, rendered as
``{"error": {"type", "code", "message", ...}}`` (the OpenAI error shape) by :func:`install_handlers`.

Raising these anywhere below a route (auth, image decoding, batcher) is the only way the service
reports a client-visible failure, so the status/code table lives in one place. The ledger raises
its own errors (:mod:`vendor_server.ledger.errors`), which :func:`from_ledger_error` maps onto
these."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.protocol import ErrorDetail, ErrorResponse
from vendor_server.ledger import errors as ledger_errors


class ApiError(Exception):
    """A client-visible error. ``extra`` fields (e.g. budget numbers) go into the error object."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        detail = ErrorDetail(type=self.type, code=self.code, message=self.message, **self.extra)
        return JSONResponse(ErrorResponse(error=detail).model_dump(), status_code=self.status, headers=self.headers)


class InvalidInput(ApiError):
    status, type, code = 400, "invalid_request_error", "invalid_input"


class InvalidApiKey(ApiError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class BudgetExhausted(ApiError):
    status, type, code = 402, "insufficient_budget", "budget_exhausted"


class KeyRevoked(ApiError):
    status, type, code = 403, "permission_error", "key_revoked"


class Forbidden(ApiError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(ApiError):
    status, type, code = 404, "not_found_error", "not_found"


class IdempotencyInFlight(ApiError):
    status, type, code = 409, "conflict_error", "idempotency_in_flight"


class PayloadTooLarge(ApiError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class IdempotencyKeyReused(ApiError):
    status, type, code = 422, "invalid_request_error", "idempotency_key_reused"


class RateLimited(ApiError):
    status, type, code = 429, "rate_limit_error", "rate_limited"


class InferenceFailed(ApiError):
    status, type, code = 500, "server_error", "inference_failed"


class Overloaded(ApiError):
    status, type, code = 503, "overloaded_error", "overloaded"


def retry_after(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header in whole seconds (HTTP allows no fractions), at least 1."""
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


#: ledger refusals whose HTTP answer carries nothing but the ledger's message
_LEDGER_ERRORS: dict[type[ledger_errors.LedgerError], type[ApiError]] = {
    ledger_errors.UnknownApiKey: InvalidApiKey,
    ledger_errors.KeyRevoked: KeyRevoked,
    ledger_errors.IdempotencyMismatch: IdempotencyKeyReused,
    ledger_errors.InvalidAmount: InvalidInput,
}


def from_ledger_error(exc: ledger_errors.LedgerError) -> ApiError:
    """The HTTP answer to a refusal of the ledger, with the ledger's message."""
    if isinstance(exc, ledger_errors.BudgetExceeded):
        return BudgetExhausted(
            exc.message, used=exc.used, budget=exc.budget, remaining=exc.remaining, requested=exc.requested
        )
    if isinstance(exc, ledger_errors.IdempotencyInProgress):
        return IdempotencyInFlight(exc.message, headers={"Retry-After": "1"})
    if isinstance(exc, ledger_errors.LedgerUnreachable):
        # the shared database is down or restarting: nothing was charged, and a retry soon may pass
        return Overloaded(exc.message, code="ledger_unavailable", headers={"Retry-After": "2"})
    if isinstance(exc, ledger_errors.KeyNotFound):
        return NotFound(exc.message, code="key_not_found")
    for kind, error in _LEDGER_ERRORS.items():
        if isinstance(exc, kind):
            return error(exc.message)
    # LedgerUnavailable: the file went bad under a running server, which no client can fix
    return ApiError("internal error; the request was not charged")


def install_handlers(app: FastAPI) -> None:
    """Make every error the app can produce, FastAPI's own included, come out in the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(ledger_errors.LedgerError)
    async def _ledger_error(_: Request, exc: ledger_errors.LedgerError) -> JSONResponse:
        return from_ledger_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return InvalidInput(validation_message(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown route (404) or wrong method (405): keep Starlette's status, our body shape
        error = (
            NotFound(str(exc.detail)) if exc.status_code == 404 else InvalidInput(str(exc.detail), code="http_error")
        )
        error.status = exc.status_code
        error.headers = dict(exc.headers or {})
        if exc.status_code == 405:
            error.code = "method_not_allowed"
            error.headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return error.response()


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at the request's path (Starlette's own ``Allow`` names only
    the first route that matched the path, and ``/admin/keys`` is two routes, GET and POST)."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]


INPUT_SHAPE = 'input must be a string, or a list of strings, {"text": ...} and {"image": ...} items'


def validation_message(errors: list[dict[str, Any]]) -> str:
    """pydantic's error list as one readable line, e.g. ``budget: Input should be ...``. Errors
    inside ``input`` (a union, where pydantic lists every alternative) become one plain sentence."""
    parts = []
    for err in errors[:5]:
        loc = [p for p in err.get("loc", ()) if p != "body"]
        if loc and loc[0] == "input":
            index = next((p for p in loc if isinstance(p, int)), None)
            return INPUT_SHAPE + (f" (input[{index}] is neither)" if index is not None else "")
        parts.append(f"{'.'.join(map(str, loc))}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"
