"""``POST /v1/embeddings``, the one route that sells something.

In order: authenticate + rate-limit → read the body (size-capped) → validate items → admit (503 when
the batcher is full) → decode images (400/413) → charge the ledger (402/409/422, or an idempotent
replay) → encode through the micro-batcher → record the response. A request rejected before the
charge costs nothing; one that fails after it is refunded."""

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
    validation_message,
)
from vendor_server.auth import Caller
from vendor_server.deps import ServiceDep
from vendor_server.images import ImageLimits, decode_image
from vendor_server.ledger_errors import BudgetExceeded
from vendor_server.settings import VendorSettings

log = logging.getLogger("vl2v.vendor")
MAX_IDEMPOTENCY_KEY = 255
#: request bodies up to this size are parsed on the event loop, larger ones on a worker thread
INLINE_PARSE_BYTES = 64 * 1024

router = APIRouter()


@router.post(EMBEDDINGS_PATH)
async def embeddings(request: Request, key: Caller, service: ServiceDep) -> Response:
    settings, card, ledger = service.settings, service.card, service.ledger
    body = await _read_body(request, settings.max_body_bytes)
    # parsing, validating and hashing a body of many base64 images takes long enough to stall every
    # other request if done on the event loop; a small one is cheaper here than a thread hop
    req, body_sha256 = (
        _parse_request(body) if len(body) <= INLINE_PARSE_BYTES else await asyncio.to_thread(_parse_request, body)
    )
    if req.model is not None and req.model != card.id:
        raise NotFound(
            f"model {req.model!r} is not served here; this vendor serves {card.id!r}", code="model_not_found"
        )
    texts, images = _split_items(req, settings)
    idempotency_key = _idempotency_key(request)
    request_id = request.state.request_id  # the middleware's, so the ledger and the response header agree
    if not service.ready:
        raise Overloaded("the service is starting", headers={"Retry-After": "1"})
    n_items = len(texts) + len(images)
    if idempotency_key is None and n_items > key.remaining:
        # refuse before decoding (a key with no budget must not be able to buy free image decoding);
        # the authoritative, atomic check is still ledger.charge below
        raise BudgetExceeded(used=key.used, budget=key.budget, requested=n_items)
    batcher = service.batcher
    with batcher.admit(n_items):
        decoded = await asyncio.to_thread(_decode_all, images, service.image_limits)
        charge = await asyncio.to_thread(
            ledger.charge, key.id, request_id, len(images), len(texts), body_sha256, idempotency_key
        )
        if charge.replay is not None:
            return Response(charge.replay, media_type="application/json", headers={"Idempotent-Replayed": "true"})
        # from the reservation until the charge is final, any failure or cancellation refunds it:
        # the client gets no embeddings, so it pays nothing
        try:
            text_rows, image_rows = await asyncio.gather(
                batcher.encode("text", [text for _, text in texts]), batcher.encode("image", decoded)
            )
            rows = _in_input_order(texts, text_rows, images, image_rows)
            response = EmbeddingResponse(
                model=card.id,
                model_revision=card.revision,
                data=[
                    EmbeddingData(index=i, embedding=encode_vector(row, req.encoding_format))
                    for i, row in enumerate(rows)
                ],
                usage=EmbeddingUsage(
                    images=len(images),
                    texts=len(texts),
                    queries=len(rows),
                    prompt_tokens=len(rows),
                    total_tokens=len(rows),
                    remaining=charge.remaining,
                ),
            ).model_dump_json()
            await asyncio.to_thread(ledger.complete, request_id, response)
        except BaseException as exc:
            ledger.refund(request_id)
            if isinstance(exc, Exception):
                log.exception("inference failed for %s", request_id)
                raise InferenceFailed("the model failed on this request; it was not charged") from exc
            raise
    service.metrics.queries_charged.labels("text").inc(len(texts))
    service.metrics.queries_charged.labels("image").inc(len(images))
    return Response(response, media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
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
        raise InvalidInput(validation_message(exc.errors()), code=_input_code(exc)) from exc
    return req, hashlib.sha256(req.model_dump_json().encode()).hexdigest()


def _input_code(exc: ValidationError) -> str:
    return "invalid_json" if any(err["type"] == "json_invalid" for err in exc.errors()) else "invalid_input"


def _split_items(
    req: EmbeddingRequest, settings: VendorSettings
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(texts, images)`` as ``(input index, payload)`` lists, after the per-request limits."""
    items = req.items()
    if not items:
        raise InvalidInput("input is empty; send at least one text or image", code="empty_input")
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


def _decode_all(images: Sequence[tuple[int, str]], limits: ImageLimits) -> list:
    return [decode_image(payload, limits, index) for index, payload in images]


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
