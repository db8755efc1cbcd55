"""The one small interface every vendor adapter implements, and the HTTP machinery they share.

An adapter turns raw inputs (texts, the exact bytes of image files) into L2-normalised float32
vectors by calling one vendor's embeddings endpoint. Subclasses only say how *their* vendor wants
the body, the auth header and the errors; batching to the vendor's limit, bounded concurrency,
retries with backoff that honour ``Retry-After``, and content-derived ``Idempotency-Key`` headers
live here once.

Budget safety is delegated to a :class:`Spend` guard the caller passes in: the adapter calls
``reserve`` before every attempt that could add a charge (the first send of a batch, and a resend
after an ambiguous failure to a vendor that does not honour idempotency keys) and ``release``
when the vendor provably did not charge: a 4xx/429/503 answer or a request that never left (refused
connection), also when the retries run out on such failures. Only a send that may have been billed
(sent, answer lost: read timeout, reset after sending, a 5xx other than 503) keeps its reservation,
which the caller's ledger holds *in doubt* until a rerun settles it. So a caller that refuses to
reserve beyond its budget can never be billed beyond it, whatever fails, and its books count no
refusal as spent.

Vendors cap the items (or bytes) per request and few publish the cap: a refusal for size
(:class:`RequestTooLarge`) halves the request until it passes, and the size that passed is kept per
modality (and, with a :class:`LimitMemory`, across runs).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import io
import json
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import httpx
import numpy as np
from PIL import Image
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from client_distill.adapters.errors import (
    AdapterError,
    AuthError,
    BudgetExhausted,
    InvalidInput,
    RequestTooLarge,
    TransientError,
    VendorError,
)
from shared.protocol import IDEMPOTENCY_HEADER, REQUEST_ID_HEADER, decode_vector, image_queries

Modality = Literal["text", "image"]
Payload = str | bytes

#: longest ``Retry-After`` we obey as given; longer hints are capped so a run never stalls for hours
MAX_RETRY_AFTER_S = 60.0


class Spend(Protocol):
    """What an adapter asks before it sends something that may be billed."""

    def reserve(self, batch_id: str, modality: Modality, n: int) -> None:
        """Count the ``n`` queries of batch ``batch_id`` as spent before they are sent; raise
        BudgetExhausted to refuse."""

    def release(self, batch_id: str, n: int) -> None:
        """Give back a reservation the vendor provably did not charge."""


class LimitMemory(Protocol):
    """Where an adapter keeps the item limits it learned, so a later run starts with them."""

    def learned_limit(self, key: str) -> int | None:
        """The items per request that last worked for ``key`` (vendor, URL, model, modality)."""

    def remember_limit(self, key: str, limit: int) -> None:
        """Keep ``limit`` for ``key``."""


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


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _without_echo(value: Any) -> Any:
    """An error body less the ``input`` fields pydantic validation errors echo (FastAPI's 422, e.g.
    infinity's): they repeat the whole request (megabytes of base64) and the user's own texts, which
    must neither flood a message nor be read as the vendor's words."""
    if isinstance(value, dict):
        return {k: _without_echo(v) for k, v in value.items() if k != "input"}
    if isinstance(value, list):
        return [_without_echo(v) for v in value]
    return value


def error_info(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from the error shapes vendors use: ``{"error": {"code"|"type",
    "message"}}`` (OpenAI, ours), ``{"error": "..."}``, or FastAPI's ``{"detail": ...}`` (Jina)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or err.get("type") or ""), str(err.get("message") or err)
    if isinstance(err, str):
        return err, err
    detail = _without_echo(body.get("detail", body) if isinstance(body, dict) else body)
    return "", detail if isinstance(detail, str) else json.dumps(detail)[:300]


#: what a 400/422 says when the request had too many items or bytes, not bad ones (OpenAI's "maximum",
#: pydantic's "too_long" / "at most 32 items", ours "too_many_items", proxies' "exceeds ... length")
_TOO_LARGE = re.compile(
    r"too[\s_-]*(many|long|large|big)|at[\s_]+most|max(imum)?[\s_-]*(items|inputs|length|batch|size)"
    r"|\bbatch\b|\blength\b|exceed",
    re.IGNORECASE,
)
#: an item count a refusal names: pydantic's "at most 32 items" / ``"max_length": 32``, ours "the limit is 256"
_ITEM_LIMIT = (
    re.compile(r"at most (\d+) (?:items|inputs|images|texts|elements)", re.IGNORECASE),
    re.compile(r"too_long.*?\"max_length\": (\d+)", re.IGNORECASE | re.DOTALL),
    re.compile(r"items in one request; the limit is (\d+)", re.IGNORECASE),
)


def error_text(response: httpx.Response) -> str:
    """All an error answer says (less echoed input), for telling a size refusal from other 4xx."""
    try:
        return json.dumps(_without_echo(response.json()))
    except ValueError:
        return response.text[:4000]


#: a refusal about one item (ours: "input[3]: text longer than 500 characters"), which no smaller request helps
_ONE_ITEM = re.compile(r"\binput\[\d+\]")


def too_large(response: httpx.Response) -> RequestTooLarge | None:
    """The size refusal ``response`` is, or None: a 413 (bytes or items) or a 400/422 that says the
    list, batch or input is too long or has too many items, with the item limit it names; None too
    when it names the one item that is too large (that item fails in a request of any size)."""
    status = response.status_code
    text = error_text(response)
    if status != 413 and not (status in (400, 422) and _TOO_LARGE.search(text)):
        return None
    code, message = error_info(response)
    if _ONE_ITEM.search(message):
        return None
    limit = next((int(m.group(1)) for rx in _ITEM_LIMIT if (m := rx.search(text))), None)
    return RequestTooLarge(
        f"vendor refused the request as too large ({status}{f' {code}' if code else ''}: {message})",
        status,
        code,
        limit,
    )


_BACKOFF = wait_exponential_jitter(multiplier=0.25, max=10.0, jitter=0.5)


def _wait_for(state: RetryCallState) -> float:
    """Backoff: the vendor's ``Retry-After`` plus a little jitter when given, else 0.25 s doubling per
    attempt up to 10 s, plus up to 0.5 s of jitter (so many clients that failed together do not
    return together)."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return exc.retry_after + random.uniform(0.0, 0.25)
    return _BACKOFF(state)


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

    ``transport`` replaces the network under the adapter's ``httpx.AsyncClient`` (httpx's own seam:
    an ``httpx.MockTransport`` in unit tests, a proxy or an ASGI app elsewhere); ``sleep`` is how it
    waits between retries (tests pass one that records the waits asked for and returns at once).

    ``batch_limit`` is the most items per request to start with (default: the adapter's
    :attr:`default_batch_limit`); a vendor's size refusal lowers it per modality
    (:meth:`item_limit`). ``limits`` keeps what was learned across runs: a run without an explicit
    ``batch_limit`` starts at the remembered size (an explicit one is tried as given, and relearned).
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
        self._explicit_limit = batch_limit is not None
        self._item_limits: dict[Modality, int] = {}  # per modality: what this instance may send
        self._remembered: dict[Modality, int | None] = {}  # what ``limits`` held when first asked
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self.max_attempts = max_attempts
        self.retries = 0  # transient failures retried, for progress and reports
        self._transport = transport
        self._sleep = sleep
        self._client: httpx.AsyncClient | None = None

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

    def price(self, modality: Modality, payloads: Sequence[Payload]) -> int:
        """The queries a request of ``payloads`` will be billed, reserved before it is sent: one per
        item, unless the model card states a price by image size (``pixels_per_query``, the vl2v
        vendor's option), which is then computed from each image's header as the vendor does."""
        per = int(self.card.get("pixels_per_query") or 0)
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
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=self.concurrency + 2),
            transport=self._transport,
        )
        try:
            if self.model is None:
                self.model = await self._retrying(self.default_model)
            self.card = await self._retrying(self.model_card)
        except BaseException:
            await self.__aexit__(None, None, None)  # `async with` does not exit what failed to enter
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def idempotency_key(self, modality: Modality, payloads: Sequence[Payload], salt: str = "") -> str:
        """Derived from the content, so a resend of the same batch (after a timeout, a vendor
        restart, or a client crash and rerun) is recognised by a vendor that honours it. A
        ``salt`` makes a deliberate re-purchase of the same content a new request."""
        h = hashlib.sha256(json.dumps([self.name, self.model_key, modality, self.options(), salt]).encode())
        for payload in payloads:
            h.update(sha256_hex(payload).encode())
        return "vl2v-" + h.hexdigest()[:48]

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; error answers and network failures become our exceptions."""
        if self._client is None:
            raise RuntimeError("use the adapter as `async with adapter:`")
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # never reached the vendor: nothing can have been billed
            raise TransientError(f"cannot connect to {self.base_url}: {type(exc).__name__} {exc}") from exc
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # the request never arrived whole, and no vendor bills a request it has not read
            raise TransientError(f"{type(exc).__name__} sending to {self.base_url}: {exc}") from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientError(f"{type(exc).__name__} talking to {self.base_url}: {exc}", maybe_charged=True) from exc
        if response.status_code >= 400:
            raise self.classify(response)
        return response

    async def _retrying(self, call: Callable[..., Any], *args: Any) -> Any:
        """Await ``call(*args)`` (an async function: tenacity runs plain callables synchronously),
        retrying transient failures."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=_wait_for,
            stop=stop_after_delay(self.retry_deadline_s) | stop_after_attempt(self.max_attempts),
            before_sleep=self._count_retry,
            sleep=self._sleep,
            reraise=True,
        )
        return await retrying(call, *args)

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1

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

        The reservation is held while the batch may be billed and released the moment it provably
        was not: on a refusal (4xx), and when the retries run out on refusals and refused
        connections (429, 503, ``ConnectError``) or the caller gives up (cancelled) between tries.
        It stays spent only when a send may have been billed: for a vendor without idempotency keys
        each such send keeps its own reservation and a resend reserves anew; for one with them, the
        one reservation covers every resend (a replay is free), so it is kept if any send may have
        been billed, unless the vendor then refused the same key outright (it would have replayed a
        charged one)."""
        n = len(payloads)
        cost = self.price(modality, payloads)
        body = self.body(modality, payloads)
        key = self.idempotency_key(modality, payloads, salt)
        headers = {IDEMPOTENCY_HEADER: key}
        reserved = 0  # queries reserved for the sends still to be settled by this call
        maybe_billed = False  # a send under the current reservation may have been billed
        in_flight = False  # a send is out: cancelled now, its fate is unknown

        def release() -> None:
            nonlocal reserved, maybe_billed
            if spend is not None and reserved:
                spend.release(key, reserved)
            reserved, maybe_billed = 0, False

        async def attempt() -> httpx.Response:
            nonlocal reserved, maybe_billed, in_flight
            if spend is not None and reserved == 0:
                spend.reserve(key, modality, cost)
                reserved = cost
            in_flight = True  # until an answer or a known failure: a cancelled send stays in doubt
            try:
                response = await self._request("POST", self.embeddings_path, json=body, headers=headers)
            except TransientError as exc:
                in_flight = False
                if exc.maybe_charged:
                    if self.idempotent:
                        maybe_billed = True  # the resend is a free replay: one reservation for all
                    else:
                        reserved, maybe_billed = 0, False  # that send stays spent; a resend pays again
                raise
            except VendorError:
                in_flight = False
                release()  # a refusal: not charged (and an idempotent vendor would replay a charged key)
                raise
            in_flight = False
            return response

        try:
            response = await self._retrying(attempt)
        except BaseException:
            # retries ran out, the budget refused a resend, or the caller gave up: what is still
            # reserved was provably not charged unless a send may have been billed or is still out
            if not maybe_billed and not in_flight:
                release()
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
        if modality not in self._item_limits:
            remembered = self.limits.learned_limit(self.limit_key(modality)) if self.limits is not None else None
            self._remembered[modality] = remembered
            limit = self.batch_limit
            if remembered is not None and remembered > 0 and not self._explicit_limit:
                limit = min(limit, remembered)
            self._item_limits[modality] = limit
        return self._item_limits[modality]

    def _shrink(self, modality: Modality, refused: int, exc: RequestTooLarge) -> None:
        """After ``refused`` items were refused for size: the item limit the vendor named if it is
        below that, else half; never above what another request already learned."""
        named = exc.limit if exc.limit is not None and 1 <= exc.limit < refused else None
        self._item_limits[modality] = max(1, min(self.item_limit(modality), named or refused // 2))

    def _remember_limits(self) -> None:
        """Keep the limits learned by a purchase that went through (a failed one may have shrunk for
        an item that no size would pass)."""
        if self.limits is None:
            return
        for modality, limit in self._item_limits.items():
            if limit < self.batch_limit and limit != self._remembered.get(modality):
                self.limits.remember_limit(self.limit_key(modality), limit)
                self._remembered[modality] = limit

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
                    self._shrink(modality, len(part), exc)
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
        self._remember_limits()
        if not starts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate([results[s] for s in sorted(results)])

    async def embed_texts(self, texts: Sequence[str], spend: Spend | None = None) -> np.ndarray:
        return await self.embed_many("text", list(texts), spend)

    async def embed_images(self, images: Sequence[bytes], spend: Spend | None = None) -> np.ndarray:
        return await self.embed_many("image", list(images), spend)
