"""The one small interface every vendor adapter implements, and what they share.

An adapter turns raw inputs (texts, the exact bytes of image files) into L2-normalised float32
vectors by calling one vendor's embeddings endpoint. Subclasses only say how *their* vendor wants
the body, the auth header and the errors. :class:`Adapter` puts together, once for all of them:

- the HTTP exchange (:mod:`~client_distill.adapters.transport`);
- retries with backoff that honour ``Retry-After`` (:mod:`~client_distill.adapters.retry`);
- budget safety, a reservation before every send that may be billed and its release when the vendor
  provably did not charge (:mod:`~client_distill.adapters.reservations`), with content-derived
  ``Idempotency-Key`` headers;
- the item limit per request, learned from the vendor's size refusals (:mod:`~client_distill.adapters.limits`);
- here: splitting any number of inputs into requests, bounded concurrency, and the price of a request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import numpy as np
from PIL import Image

from client_distill.adapters.errors import (
    AdapterError,
    AuthError,
    BudgetExhausted,
    InvalidInput,
    RequestTooLarge,
    TransientError,
    VendorError,
)
from client_distill.adapters.limits import ItemLimits, LimitMemory, too_large
from client_distill.adapters.reservations import Modality, Reservation, Spend
from client_distill.adapters.retry import RetryPolicy, parse_retry_after
from client_distill.adapters.transport import Transport, error_info
from shared.protocol import IDEMPOTENCY_HEADER, REQUEST_ID_HEADER, decode_vector, image_queries

Payload = str | bytes

__all__ = ["Adapter", "BatchResult", "LimitMemory", "Modality", "Payload", "Spend", "data_uri", "l2_normalise"]


@dataclass
class BatchResult:
    """One answered request: its vectors (unit-norm float32, input order) and what it cost."""

    vectors: np.ndarray
    charged: int
    batch_id: str  # the content-derived idempotency key the request was sent with
    request_id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


def sha256_hex(payload: Payload) -> str:
    """The digest that names an input in cache keys and idempotency keys: of the exact bytes sent
    (UTF-8 for texts), so a re-encoded image is a different input and costs a new query."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return hashlib.sha256(data).hexdigest()


def image_mime(data: bytes) -> str:
    """The MIME type of an image file from its magic bytes (vendors want it in data URIs)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    raise InvalidInput("not a PNG, JPEG, WebP or GIF file (unknown magic bytes)")


def image_pixels(data: bytes) -> int:
    """Width × height as the file's header declares them (Pillow reads no pixel data here); 0 for
    bytes that are not an image, which the vendor will refuse unpaid anyway."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[0] * img.size[1]
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0


def data_uri(data: bytes) -> str:
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class Adapter(ABC):
    """Async client of one embedding vendor. Use as ``async with adapter: ...``.

    ``base_url`` is read by :meth:`normalise_base_url`: by default the server root (a trailing ``/v1``
    is accepted and stripped, since :attr:`embeddings_path` names it); the ``openai`` adapter takes it
    as given, as the OpenAI SDK does. ``model`` None
    means the vendor's default, resolved once on entry so cache keys always name a real model.
    ``card`` is what the vendor states about that model, learned on entry (:meth:`model_card`: its
    weights' ``revision``, ``logit_scale``, ``image_params``; empty for vendors that state nothing).
    ``revision`` is part of :attr:`model_key`, so other weights under the same name never hit cache
    entries or idempotent replays of the old ones.

    ``transport`` replaces the network under the adapter's ``httpx.AsyncClient``
    (:class:`~client_distill.adapters.transport.Transport`); ``retry_deadline_s``, ``max_attempts`` and
    ``sleep`` are its :class:`~client_distill.adapters.retry.RetryPolicy` (tests pass a ``sleep`` that
    records the waits asked for and returns at once).

    ``batch_limit`` is the most items per request to start with (default: the adapter's
    :attr:`default_batch_limit`); a vendor's size refusal lowers it per modality
    (:meth:`item_limit`, :class:`~client_distill.adapters.limits.ItemLimits`). ``limits`` keeps what was
    learned across runs: a run without an explicit ``batch_limit`` starts at the remembered size (an
    explicit one is tried as given, and relearned).
    """

    name: ClassVar[str]
    #: largest number of items per request the vendor accepts
    default_batch_limit: ClassVar[int]
    #: True when the vendor replays a request with the same ``Idempotency-Key`` without a new charge
    idempotent: ClassVar[bool] = False
    #: the routes, relative to :attr:`base_url`
    embeddings_path: ClassVar[str] = "/v1/embeddings"
    models_path: ClassVar[str] = "/v1/models"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        model: str | None = None,
        batch_limit: int | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        retry_deadline_s: float = 600.0,
        max_attempts: int = 30,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limits: LimitMemory | None = None,
    ) -> None:
        self.base_url = self.normalise_base_url(base_url)
        self.api_key = api_key
        self.model = model
        self.card: dict[str, Any] = {}
        self.batch_limit = int(batch_limit or self.default_batch_limit)
        self.limits = limits
        self.concurrency = max(1, int(concurrency))
        self.item_limits = ItemLimits(self.batch_limit, batch_limit is not None, limits, self.limit_key)
        self.retry = RetryPolicy(retry_deadline_s, max_attempts, sleep)
        self.transport = Transport(
            self.base_url,
            headers=self.headers,
            classify=self.classify,
            concurrency=self.concurrency,
            timeout_s=timeout_s,
            transport=transport,
        )

    @property
    def retries(self) -> int:
        """Transient failures retried so far, for progress and reports."""
        return self.retry.retries

    # -- what a subclass describes ---------------------------------------------------------------

    @classmethod
    def normalise_base_url(cls, base_url: str) -> str:
        """The URL the routes are appended to. Here the server root: this adapter's routes carry
        their ``/v1`` (its vendors serve nothing else), so a root given with ``/v1`` works too."""
        base = base_url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def options(self) -> dict[str, Any]:
        """Request fields that change the returned vectors; part of every cache key."""
        return {}

    @abstractmethod
    def body(self, modality: Modality, payloads: Sequence[Payload]) -> dict[str, Any]:
        """The JSON body of one embeddings request."""

    async def default_model(self) -> str:
        """The model used when none is given: the first one the model list names."""
        response = await self._request("GET", self.models_path)
        models = response.json().get("data") or []
        if not models:
            raise VendorError(f"{self.base_url}{self.models_path} lists no model; pass --model")
        return str(models[0]["id"])

    async def model_card(self) -> dict[str, Any]:
        """What the vendor states about :attr:`model`, asked once on entry. Nothing by default: hosted
        providers version their model names (the name pins the weights) and publish no logit scale."""
        return {}

    @property
    def revision(self) -> str | None:
        """The revision of the served weights, where the vendor reports one."""
        return self.card.get("revision")

    @property
    def model_key(self) -> str:
        """The model as cache and idempotency keys name it: ``name@revision`` where the vendor
        reports a revision, else the name."""
        return f"{self.model}@{self.revision}" if self.revision else str(self.model)

    def classify(self, response: httpx.Response) -> Exception:
        """Map an error answer to the exception that says what to do about it."""
        status = response.status_code
        code, message = error_info(response)
        text = f"{self.name} vendor answered {status}{f' {code}' if code else ''}: {message}"
        if status in (408, 409, 425, 429) or status >= 500:
            # 503 and 429 are refusals before any work; a 500/502/504 may come after the charge
            maybe_charged = status >= 500 and status != 503
            return TransientError(text, parse_retry_after(response.headers.get("Retry-After")), maybe_charged)
        if status == 402:
            return BudgetExhausted(text, status, code)
        if status in (401, 403):
            return AuthError(text, status, code)
        if (size := too_large(response)) is not None:
            return size
        if status in (400, 404, 413, 415, 422):
            return InvalidInput(text, status, code)
        return VendorError(text, status, code)

    @property
    def pixels_per_query(self) -> int:
        """The card's price by image size: 0 (or unstated) is one query per image."""
        return int(self.card.get("pixels_per_query") or 0)

    def price(self, modality: Modality, payloads: Sequence[Payload]) -> int:
        """The queries a request of ``payloads`` will be billed, reserved before it is sent: one per
        item, unless the model card states a price by image size (``pixels_per_query``, the vl2v
        vendor's option), which is then computed from each image's header as the vendor does."""
        per = self.pixels_per_query
        if modality == "text" or per <= 0:
            return len(payloads)
        return sum(image_queries(image_pixels(p), per) for p in payloads)  # type: ignore[arg-type]

    def charged(self, usage: dict[str, Any], n: int) -> int:
        """Queries a request was billed for; vendors without an item count bill one per item."""
        return n

    async def usage(self) -> dict[str, Any] | None:
        """The key's account at the vendor (budget, used, remaining) where the vendor has one."""
        return None

    # -- shared machinery ------------------------------------------------------------------------

    async def __aenter__(self) -> Adapter:
        self.transport.open()
        try:
            if self.model is None:
                self.model = await self._retrying(self.default_model)
            self.card = await self._retrying(self.model_card)
        except BaseException:
            await self.__aexit__(None, None, None)  # `async with` does not exit what failed to enter
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.close()

    def idempotency_key(self, modality: Modality, payloads: Sequence[Payload], salt: str = "") -> str:
        """Derived from the content, so a resend of the same batch (after a timeout, a vendor
        restart, or a client crash and rerun) is recognised by a vendor that honours it. A
        ``salt`` makes a deliberate re-purchase of the same content a new request."""
        h = hashlib.sha256(json.dumps([self.name, self.model_key, modality, self.options(), salt]).encode())
        for payload in payloads:
            h.update(sha256_hex(payload).encode())
        return "vl2v-" + h.hexdigest()[:48]

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange (:meth:`Transport.request <client_distill.adapters.transport.Transport.request>`)."""
        return await self.transport.request(method, path, **kwargs)

    async def _retrying(self, call: Callable[..., Any], *args: Any) -> Any:
        """Await ``call(*args)``, retrying transient failures (:class:`~client_distill.adapters.retry.RetryPolicy`)."""
        return await self.retry.call(call, *args)

    def parse(self, payload: dict[str, Any], n: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Vectors (in input order) and usage from an OpenAI-shaped answer (``data[].index``)."""
        data = payload.get("data")
        if not isinstance(data, list) or len(data) != n:
            raise VendorError(
                f"{self.name} vendor returned {len(data) if isinstance(data, list) else 'no'} embeddings for {n} inputs"
            )
        rows = sorted(data, key=lambda d: d.get("index", 0))
        vectors = np.stack([decode_vector(d["embedding"]) for d in rows])
        return l2_normalise(vectors), dict(payload.get("usage") or {})

    async def embed_batch(
        self, modality: Modality, payloads: Sequence[Payload], spend: Spend | None = None, salt: str = ""
    ) -> BatchResult:
        """Embed ``payloads`` in one request, retrying transient failures.

        The reservation (:class:`~client_distill.adapters.reservations.Reservation`) is held while the
        batch may be billed and released the moment it provably was not: on a refusal (4xx), and when
        the retries run out on refusals and refused connections (429, 503, ``ConnectError``) or the
        caller gives up (cancelled) between tries. It stays spent only when a send may have been billed."""
        n = len(payloads)
        cost = self.price(modality, payloads)
        body = self.body(modality, payloads)
        key = self.idempotency_key(modality, payloads, salt)
        headers = {IDEMPOTENCY_HEADER: key}
        reservation = Reservation(spend, key, modality, cost, self.idempotent)

        async def attempt() -> httpx.Response:
            reservation.before_send()
            try:
                response = await self._request("POST", self.embeddings_path, json=body, headers=headers)
            except TransientError as exc:
                reservation.lost(exc.maybe_charged)
                raise
            except VendorError:
                reservation.refused()
                raise
            reservation.answered()
            return response

        try:
            response = await self._retrying(attempt)
        except BaseException:
            reservation.given_up()
            raise
        try:
            payload = response.json()
        except ValueError as exc:
            raise VendorError(
                f"{self.name} vendor answered {response.status_code} with a body that is not JSON"
            ) from exc
        vectors, usage = self.parse(payload, n)
        return BatchResult(vectors, self.charged(usage, cost), key, response.headers.get(REQUEST_ID_HEADER), usage)

    def limit_key(self, modality: Modality) -> str:
        """What a learned item limit is kept under: the vendor's endpoint, model and modality (one
        server may take 2,048 texts but only 32 images per request)."""
        return f"{self.name}|{self.base_url}{self.embeddings_path}|{self.model}|{modality}"

    def item_limit(self, modality: Modality) -> int:
        """The most ``modality`` items this adapter sends in one request: :attr:`batch_limit`, or
        less once the vendor refused a size (here or, without an explicit ``batch_limit``, in an
        earlier run whose :class:`LimitMemory` this adapter was given)."""
        return self.item_limits.get(modality)

    async def embed_many(
        self,
        modality: Modality,
        payloads: Sequence[Payload],
        spend: Spend | None = None,
        on_batch: Callable[[int, Sequence[Payload], BatchResult], None] | None = None,
        salt: str = "",
    ) -> np.ndarray:
        """Embed any number of inputs: requests of :meth:`item_limit` items, at most ``concurrency``
        in flight.

        ``on_batch(start, payloads, result)`` runs as each answer arrives, so a caller can persist
        what it paid for even if a later batch fails. After a non-transient failure no new request is
        started; those already in flight finish (their answers are paid), then the error is raised.
        A request refused for size (:class:`RequestTooLarge`, not charged: its reservation is already
        released) is sent again as smaller requests of the same items, down to one item, each with an
        idempotency key of its own content; a single item still refused raises :class:`InvalidInput`.
        ``salt`` goes into the idempotency keys (see :meth:`idempotency_key`).
        """
        size = self.item_limit(modality)
        starts = list(range(0, len(payloads), size))
        results: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []
        semaphore = asyncio.Semaphore(self.concurrency)

        async def send(start: int, chunk: Sequence[Payload]) -> None:
            """``chunk`` in requests of the current item limit, which may shrink as they go."""
            offset = 0
            while offset < len(chunk) and not errors:
                part = chunk[offset : offset + self.item_limit(modality)]
                try:
                    result = await self.embed_batch(modality, part, spend, salt)
                except RequestTooLarge as exc:
                    if len(part) == 1:
                        raise InvalidInput(
                            f"{self.name} vendor refuses even a single {modality} item: {exc}", exc.status, exc.code
                        ) from exc
                    self.item_limits.shrink(modality, len(part), exc)
                    continue  # the same items again, in smaller requests
                if on_batch is not None:
                    on_batch(start + offset, part, result)
                results[start + offset] = result.vectors
                offset += len(part)

        async def run(start: int) -> None:
            async with semaphore:
                if errors:
                    return
                try:
                    await send(start, payloads[start : start + size])
                except AdapterError as exc:
                    errors.append(exc)

        await asyncio.gather(*(run(s) for s in starts))
        if errors:
            raise errors[0]
        self.item_limits.remember()
        if not starts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate([results[s] for s in sorted(results)])

    async def embed_texts(self, texts: Sequence[str], spend: Spend | None = None) -> np.ndarray:
        return await self.embed_many("text", list(texts), spend)

    async def embed_images(self, images: Sequence[bytes], spend: Spend | None = None) -> np.ndarray:
        return await self.embed_many("image", list(images), spend)
