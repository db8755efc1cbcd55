"""The served OpenAPI document (``/openapi.json``), completed where FastAPI cannot see.

``POST /v1/embeddings`` reads its own body (size-capped, parsed off the event loop when large) and
its own ``Idempotency-Key`` header, so FastAPI would document neither; routes return errors as
:class:`~shared.protocol.ErrorResponse` with many statuses, while FastAPI documents only 200 and a
422 shape this service never sends (its validation errors are 400). A schema fuzzer reads this
document to reach the endpoints, so every request body, header, status and error shape is declared
here or on the route (:func:`error_responses`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from shared.protocol import IDEMPOTENCY_HEADER, ErrorResponse

_WHY = {
    400: "invalid request (malformed JSON, unknown field, bad item, ...); nothing charged",
    401: "missing or unknown API key",
    402: "the key's budget cannot pay for this request; nothing charged",
    403: "the key is revoked, or the admin token is wrong",
    404: "no such model, key or route (the admin API answers 404 when disabled)",
    409: "a request with this Idempotency-Key is still in flight; retry after Retry-After",
    413: "request, image, pixel or item count over a limit (the error's `limit` says which)",
    415: "the body is not sent as application/json",
    422: "this Idempotency-Key was already used with a different body",
    429: "rate limited; retry after Retry-After",
    500: "the model failed on this request; nothing charged",
    503: "starting, or at capacity; retry after Retry-After; nothing charged",
}
API_KEY_SCHEME = "apiKey"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer ``statuses``, all in the one error shape."""
    return {status: {"model": ErrorResponse, "description": _WHY[status]} for status in statuses}


def raw_json_body(model: type[BaseModel], *, idempotent: bool = False) -> dict[str, Any]:
    """The ``openapi_extra=`` of a route that parses ``model`` from its body itself (and reads the
    ``Idempotency-Key`` header itself when ``idempotent``)."""
    extra: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
    if idempotent:
        extra["parameters"] = [
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": "makes a retry safe: the same key and body are answered from the first "
                "response and charged once, for 24 h",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        ]
    return extra


def install_openapi(app: FastAPI, body_models: tuple[type[BaseModel], ...]) -> None:
    """Make ``app.openapi()`` return the completed document (built once, on first request), with
    the schemas of ``body_models``, the bodies routes declared with :func:`raw_json_body`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(
                get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes),
                body_models,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any], body_models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = {
        API_KEY_SCHEME: {"type": "http", "scheme": "bearer", "description": "an API key from the vendor"},
    }
    for model in body_models:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            # FastAPI's own 422 shape: this service answers validation errors with 400 ErrorResponse
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema
