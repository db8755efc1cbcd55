"""``POST /v1/embeddings``, the one route that sells something.

In order, every check that costs the vendor little before any that costs it much, whatever the
headers say: authenticate + rate-limit → content type (415) → read the body (size-capped, 413) →
validate the request and every item's syntax (400) → an idempotent replay is answered from the
ledger → budget for the item count (402) → read every image's *header* (format, declared size,
MIME type; 400/413), the request's total pixels (413) and its price → budget for that price (402) →
admit (503 when the batcher is full) → reserve pixels on the server's decoding pool (503) and
decode (400 if truncated) → charge the ledger (402/409/422, or a replay) → encode through the
micro-batcher → record the response. A request rejected before the charge costs nothing; one that
fails after it is refunded."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from shared.protocol import (
    EMBEDDINGS_PATH,
    IDEMPOTENCY_HEADER,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ImageItem,
    encode_vector,
)
from vendor_server.api_errors import (
    InferenceFailed,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
    validation_message,
)
from vendor_server.auth import Caller
from vendor_server.deps import ServiceDep, ServiceState
from vendor_server.images import ImageLimits, InspectedImage, inspect_image
from vendor_server.ledger import KeyRecord
from vendor_server.ledger.errors import BudgetExceeded, LedgerError
from vendor_server.openapi import API_KEY_SCHEME, error_responses, raw_json_body
from vendor_server.pricing import request_queries
from vendor_server.settings import VendorSettings

log = logging.getLogger("vl2v.vendor")
MAX_IDEMPOTENCY_KEY = 255
#: request bodies up to this size are parsed and inspected on the event loop, larger ones on a thread
INLINE_PARSE_BYTES = 64 * 1024

router = APIRouter()


# the same route with a trailing slash (a base URL ending in "/v1/" joined by hand) is served, not
# redirected: a 307 to a POST is followed by some clients and shown as an empty answer by others
@router.post(EMBEDDINGS_PATH + "/", include_in_schema=False)
@router.post(
    EMBEDDINGS_PATH,
    response_model=EmbeddingResponse,
    responses=error_responses(400, 401, 402, 403, 404, 409, 413, 415, 422, 429, 500, 503),
    openapi_extra={**raw_json_body(EmbeddingRequest, idempotent=True), "security": [{API_KEY_SCHEME: []}]},
)
async def embeddings(request: Request, key: Caller, service: ServiceDep) -> Response:
    """Embeddings of texts and images, one query per item (or per started ``pixels_per_query``
    pixels of an image, when the vendor prices by size: see ``/v1/models``)."""
    settings, card, ledger = service.settings, service.card, service.ledger
    _require_json(request)
    body = await read_body(request, settings.max_body_bytes)
    # parsing, validating and hashing a body of many base64 images takes long enough to stall every
    # other request if done on the event loop; a small one is cheaper here than a thread hop
    inline = len(body) <= INLINE_PARSE_BYTES
    req, body_sha256 = _parse_request(body) if inline else await asyncio.to_thread(_parse_request, body)
    if req.model is not None and req.model != card.id:
        raise NotFound(
            f"model {req.model!r} is not served here; this vendor serves {card.id!r}", code="model_not_found"
        )
    if req.dimensions is not None and req.dimensions != card.embedding_dim:
        raise InvalidInput(
            f"dimensions={req.dimensions} is not available: {card.id} embeddings have {card.embedding_dim} "
            "dimensions and cannot be shortened",
            code="unsupported_dimensions",
        )
    texts, images = _split_items(req, settings)
    idempotency_key = _idempotency_key(request)
    request_id = request.state.request_id  # the middleware's, so the ledger and the response header agree
    if not service.ready:
        raise Overloaded("the service is starting", headers={"Retry-After": "1"})
    if idempotency_key is not None:
        replay = await asyncio.to_thread(ledger.replay, key.id, idempotency_key, body_sha256)
        if replay is not None:
            return _replayed(replay)
    n_items = len(texts) + len(images)
    # every item costs at least one query: a key that cannot pay for the count buys no image inspection
    _check_budget(key, n_items)
    inspected = (
        _inspect_all(images, service.image_limits)
        if inline
        else await asyncio.to_thread(_inspect_all, images, service.image_limits)
    )
    pixels = sum(image.pixels for image in inspected)
    if pixels > settings.max_request_pixels:
        raise PayloadTooLarge(
            f"the images of this request declare {pixels} pixels; the limit is {settings.max_request_pixels}",
            code="request_too_many_pixels",
            limit=settings.max_request_pixels,
        )
    queries = request_queries(len(texts), (image.pixels for image in inspected), settings.pixels_per_query)
    _check_budget(key, queries)  # the authoritative, atomic check is ledger.charge below
    batcher = service.batcher
    with batcher.admit(n_items):
        async with service.decoder.reserve(pixels):
            decoded = await service.decoder.decode(inspected)
            charge = await asyncio.to_thread(
                ledger.charge, key.id, request_id, len(images), len(texts), body_sha256, idempotency_key, queries
            )
            if charge.replay is not None:
                return _replayed(charge.replay)
            # from the reservation until the charge is final, any failure or cancellation refunds it:
            # the client gets no embeddings, so it pays nothing
            try:
                text_rows, image_rows = await asyncio.gather(
                    batcher.encode("text", [text for _, text in texts]), batcher.encode("image", decoded)
                )
                usage = EmbeddingUsage(
                    images=len(images),
                    texts=len(texts),
                    queries=queries,
                    prompt_tokens=queries,
                    total_tokens=queries,
                    remaining=charge.remaining,
                )
                rows = _in_input_order(texts, text_rows, images, image_rows)
                # encoding 64 rows as JSON takes milliseconds: on a thread, with the ledger write that follows it,
                # so the event loop meanwhile reads and decodes the next requests
                response = await asyncio.to_thread(_answer, service, request_id, rows, req.vector_format(), usage)
            except BaseException as exc:
                ledger.refund(request_id)
                if isinstance(exc, Exception) and not isinstance(exc, LedgerError):  # the ledger's: 503
                    log.exception("inference failed for %s", request_id)
                    raise InferenceFailed("the model failed on this request; it was not charged") from exc
                raise
    service.traffic.images(key.id, image_rows)
    service.metrics.queries_charged.labels("text").inc(len(texts))
    service.metrics.queries_charged.labels("image").inc(queries - len(texts))
    return Response(response, media_type="application/json")


def _answer(
    service: ServiceState, request_id: str, rows: list[np.ndarray], vector_format: str, usage: EmbeddingUsage
) -> str:
    """The response body, recorded in the ledger as this request's (what a replay answers)."""
    card = service.card
    response = EmbeddingResponse(
        model=card.id,
        model_revision=card.revision,
        data=[EmbeddingData(index=i, embedding=encode_vector(row, vector_format)) for i, row in enumerate(rows)],
        usage=usage,
    ).model_dump_json()
    service.ledger.complete(request_id, response)
    return response


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"send the body as Content-Type: application/json, not {content_type or '(none)'!r}")


def _replayed(response: str) -> Response:
    return Response(response, media_type="application/json", headers={"Idempotent-Replayed": "true"})


def _check_budget(key: KeyRecord, queries: int) -> None:
    if queries > key.remaining:
        raise BudgetExceeded(used=key.used, budget=key.budget, requested=queries)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_request(body: bytes) -> tuple[EmbeddingRequest, str]:
    """The validated request and the SHA-256 of its canonical form (what an ``Idempotency-Key`` replay
    must match: the same request, whatever the JSON formatting), or 400."""
    try:
        req = EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc.errors()) from exc
    return req, hashlib.sha256(req.model_dump_json().encode()).hexdigest()


def _invalid(errors: list) -> InvalidInput:
    """The 400 for a body that does not validate, with the code a client can act on."""
    kinds = {err["type"] for err in errors}
    if "json_invalid" in kinds:
        return InvalidInput(validation_message(errors), code="invalid_json")
    unknown = [str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden" and len(err["loc"]) == 1]
    if unknown:
        return InvalidInput(
            f"unknown field(s) {', '.join(map(repr, unknown))}; this endpoint takes "
            + ", ".join(EmbeddingRequest.model_fields),
            code="unknown_field",
        )
    if any(err["type"] == "too_short" and err["loc"][:1] == ("input",) for err in errors):
        return _empty_input()
    return InvalidInput(validation_message(errors))


def _empty_input() -> InvalidInput:
    return InvalidInput("input is empty; send at least one text or image", code="empty_input")


def _split_items(
    req: EmbeddingRequest, settings: VendorSettings
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(texts, images)`` as ``(input index, payload)`` lists, after the per-request limits."""
    items = req.items()
    if not items:
        raise _empty_input()
    if len(items) > settings.max_items:
        raise PayloadTooLarge(
            f"{len(items)} items in one request; the limit is {settings.max_items}",
            code="too_many_items",
            limit=settings.max_items,
        )
    texts, images = [], []
    for i, item in enumerate(items):
        if isinstance(item, ImageItem):
            images.append((i, item.image))
            continue
        text = item if isinstance(item, str) else item.text
        if not text:  # hosted APIs refuse it too: an embedding of nothing is no answer worth a query
            raise InvalidInput(f"input[{i}]: empty text; send at least one character", code="empty_text")
        if len(text) > settings.max_text_length:
            raise PayloadTooLarge(
                f"input[{i}]: text longer than {settings.max_text_length} characters",
                code="text_too_long",
                limit=settings.max_text_length,
            )
        texts.append((i, text))
    return texts, images


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get(IDEMPOTENCY_HEADER)
    if value is not None and not 0 < len(value) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} characters", code="invalid_idempotency_key"
        )
    return value


def _inspect_all(images: Sequence[tuple[int, str]], limits: ImageLimits) -> list[InspectedImage]:
    return [inspect_image(payload, limits, index) for index, payload in images]


def _in_input_order(
    texts: Sequence[tuple[int, str]],
    text_rows: Sequence[np.ndarray],
    images: Sequence[tuple[int, str]],
    image_rows: Sequence[np.ndarray],
) -> list[np.ndarray]:
    rows: dict[int, np.ndarray] = {}
    for (index, _), row in zip([*texts, *images], [*text_rows, *image_rows], strict=True):
        rows[index] = row
    return [rows[i] for i in range(len(rows))]
