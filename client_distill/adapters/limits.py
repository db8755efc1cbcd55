"""How many items an adapter puts in one request. Vendors cap the items (or bytes) per request and few
publish the cap: a refusal for size (:class:`~client_distill.adapters.errors.RequestTooLarge`) halves
the request until it passes, or goes straight to the count the vendor names, and the size that passed
is kept per modality (:class:`ItemLimits`; with a :class:`LimitMemory`, across runs too).

The count a refusal names is read from the structured ``limit`` field of the error body where the
vendor sends one (ours does, with 413 ``too_many_items``), and only otherwise from the words of its
message, for the third-party vendors that send no field (OpenAI's "maximum", pydantic's "at most 32
items" / ``"max_length": 32``, proxies' "exceeds ... length").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from client_distill.adapters.errors import RequestTooLarge
from client_distill.adapters.transport import error_body, error_info, error_text


class LimitMemory(Protocol):
    """Where an adapter keeps the item limits it learned, so a later run starts with them."""

    def learned_limit(self, key: str) -> int | None:
        """The items per request that last worked for ``key`` (vendor, URL, model, modality)."""

    def remember_limit(self, key: str, limit: int) -> None:
        """Keep ``limit`` for ``key``."""


#: what a 400/422 says when the request had too many items or bytes, not bad ones (OpenAI's "maximum",
#: pydantic's "too_long" / "at most 32 items", ours "too_many_items", proxies' "exceeds ... length")
_TOO_LARGE = re.compile(
    r"too[\s_-]*(many|long|large|big)|at[\s_]+most|max(imum)?[\s_-]*(items|inputs|length|batch|size)"
    r"|\bbatch\b|\blength\b|exceed",
    re.IGNORECASE,
)
#: an item count a refusal names in words: pydantic's "at most 32 items" / ``"max_length": 32``, ours
#: "the limit is 256" (where no structured field says it)
_ITEM_LIMIT = (
    re.compile(r"at most (\d+) (?:items|inputs|images|texts|elements)", re.IGNORECASE),
    re.compile(r"too_long.*?\"max_length\": (\d+)", re.IGNORECASE | re.DOTALL),
    re.compile(r"items in one request; the limit is (\d+)", re.IGNORECASE),
)
#: a refusal about one item (ours: "input[3]: text longer than 500 characters"), which no smaller request helps
_ONE_ITEM = re.compile(r"\binput\[\d+\]")


def structured_limit(body: Any) -> int | None:
    """The item limit an error body states as a field: ``{"error": {..., "limit": 256}}`` (the vl2v
    vendor's :class:`~shared.protocol.ErrorDetail` with 413 ``too_many_items``)."""
    error = body.get("error") if isinstance(body, dict) else None
    limit = error.get("limit") if isinstance(error, dict) else None
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1 else None


def too_large(response: httpx.Response) -> RequestTooLarge | None:
    """The size refusal ``response`` is, or None: a 413 (bytes or items) or a 400/422 that says the
    list, batch or input is too long or has too many items, with the item limit it states (its ``limit``
    field, else the count its words name); None too when it names the one item that is too large (that
    item fails in a request of any size)."""
    status = response.status_code
    text = error_text(response)
    if status != 413 and not (status in (400, 422) and _TOO_LARGE.search(text)):
        return None
    code, message = error_info(response)
    if _ONE_ITEM.search(message):
        return None
    limit = structured_limit(error_body(response))
    if limit is None:
        limit = next((int(m.group(1)) for rx in _ITEM_LIMIT if (m := rx.search(text))), None)
    return RequestTooLarge(
        f"vendor refused the request as too large ({status}{f' {code}' if code else ''}: {message})",
        status,
        code,
        limit,
    )


class ItemLimits:
    """The most items of each modality one request may hold: ``batch_limit`` to start with, less once
    the vendor refused a size (here or, without an ``explicit`` limit, in an earlier run whose
    ``memory`` this was given; ``key(modality)`` names a limit there)."""

    def __init__(self, batch_limit: int, explicit: bool, memory: LimitMemory | None, key: Callable[[str], str]) -> None:
        self.batch_limit = batch_limit
        self.explicit = explicit
        self.memory = memory
        self.key = key
        self._limits: dict[str, int] = {}  # per modality: what this adapter may send
        self._remembered: dict[str, int | None] = {}  # what ``memory`` held when first asked

    def get(self, modality: str) -> int:
        if modality not in self._limits:
            remembered = self.memory.learned_limit(self.key(modality)) if self.memory is not None else None
            self._remembered[modality] = remembered
            limit = self.batch_limit
            if remembered is not None and remembered > 0 and not self.explicit:
                limit = min(limit, remembered)
            self._limits[modality] = limit
        return self._limits[modality]

    def shrink(self, modality: str, refused: int, exc: RequestTooLarge) -> None:
        """After ``refused`` items were refused for size: the item limit the vendor named if it is
        below that, else half; never above what another request already learned."""
        named = exc.limit if exc.limit is not None and 1 <= exc.limit < refused else None
        self._limits[modality] = max(1, min(self.get(modality), named or refused // 2))

    def remember(self) -> None:
        """Keep the limits learned by a purchase that went through (a failed one may have shrunk for an
        item that no size would pass)."""
        if self.memory is None:
            return
        for modality, limit in self._limits.items():
            if limit < self.batch_limit and limit != self._remembered.get(modality):
                self.memory.remember_limit(self.key(modality), limit)
                self._remembered[modality] = limit
