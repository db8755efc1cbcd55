"""What can go wrong when buying embeddings, sorted by what the client should do about it.

Every failure of an adapter is an :class:`AdapterError`: a caller that only needs to know that the
vendor did not deliver catches that one class. Below it, only :class:`TransientError` is retried;
:class:`VendorError` and its subclasses end the request at once. All of them are
:class:`~client_distill.errors.Vl2vError`, so the CLI prints them as one line, never a traceback.
"""

from __future__ import annotations

from client_distill.errors import Vl2vError


class AdapterError(Vl2vError):
    """Root of every failure to buy embeddings from a vendor."""


class VendorError(AdapterError):
    """The vendor refused a request in a way retrying will not fix (an unexpected status or body)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BudgetExhausted(VendorError):
    """Out of budget or credit: the vendor's (402, Jina's 403 balance, OpenAI's 429
    ``insufficient_quota``) or the client's own cap. Never retried: only a top-up helps."""


class AuthError(VendorError):
    """Missing, wrong or revoked API key (401/403)."""


class InvalidInput(VendorError):
    """The vendor rejected the input itself (400/413/422): resending the same bytes cannot help."""


class RequestTooLarge(InvalidInput):
    """The vendor refused a request for its size (413, or a 400/422 saying the list or batch is too
    long): it was not charged, and the same items in smaller requests may pass. ``limit`` is the most
    items per request the vendor named, where its message names one."""

    def __init__(
        self, message: str, status: int | None = None, code: str | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message, status, code)
        self.limit = limit


class ModelChanged(VendorError):
    """The vendor answered with other weights than the ones it served when the run started (it was
    restarted with a retrained checkpoint under the same model name). Never retried and never cached:
    one teacher set must come from one model. Rerunning buys from the new revision, whose answers are
    cache entries of their own."""


class TransientError(AdapterError):
    """A failure that may pass (429 rate limit, 503, 5xx, connection error, timeout). It is retried;
    when retries run out it reaches the CLI, which prints it as one line.

    ``retry_after`` is the vendor's ``Retry-After`` in seconds when it sent one; ``maybe_charged``
    is True when the request may have reached the vendor and been billed before the answer was lost
    (a timeout or dropped connection, a 5xx), which matters for vendors without idempotency keys.
    """

    def __init__(self, message: str, retry_after: float | None = None, maybe_charged: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_charged = maybe_charged
