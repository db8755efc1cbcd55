"""What the ledger refuses, in its own terms: storage knows nothing of HTTP or of the command line.

The HTTP API renders these with the status and machine-readable code of
:func:`vendor_server.api_errors.from_ledger_error`; ``vl2v-vendor`` prints their message as one line.
The message is written for whoever sees it (an API client or the operator), so both front ends
pass it on unchanged."""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every refusal of the ledger."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidAmount(LedgerError):
    """A budget, top-up or rate limit out of range (negative budget, empty top-up, rate <= 0)."""


class KeyNotFound(LedgerError):
    """An operation named a key id the ledger never issued."""


class UnknownApiKey(LedgerError):
    """A secret that matches no key (or, inside a charge, a key that vanished since authentication)."""


class KeyRevoked(LedgerError):
    """The key exists but was revoked: it authenticates nothing and is charged nothing."""


class BudgetExceeded(LedgerError):
    """A request needs more queries than the key has left; nothing was charged."""

    def __init__(self, used: int, budget: int, requested: int) -> None:
        super().__init__(f"this request needs {requested} queries but the key has {budget - used} left")
        self.used = used
        self.budget = budget
        self.requested = requested

    @property
    def remaining(self) -> int:
        return self.budget - self.used


class IdempotencyConflict(LedgerError):
    """An ``Idempotency-Key`` that cannot be honoured for this request (see the two cases below)."""


class IdempotencyInProgress(IdempotencyConflict):
    """The first request with this key is still being served: retry shortly to get its answer."""


class IdempotencyMismatch(IdempotencyConflict):
    """The key was already used for a different request body: a client bug, never retried."""


class LedgerUnavailable(LedgerError):
    """The file cannot serve as a ledger (not SQLite, a folder, unwritable): the operator's ``--db``."""


class UnsupportedSchema(LedgerUnavailable):
    """The ledger was written by a newer vl2v-vendor (a schema version this code does not know); it is
    refused untouched rather than used half-understood."""


class LedgerUnreachable(LedgerError):
    """The ledger's database cannot be reached right now (PostgreSQL down, restarting, or out of
    connections): nothing was charged, and the same request may be retried shortly (HTTP 503 with
    ``Retry-After``), unlike :class:`LedgerUnavailable`, which needs the operator."""


class ReservationLost(LedgerUnreachable):
    """A request's reservation was refunded before it could be completed (another replica's
    recovery judged this one dead while the database was out of reach): the request is answered as
    not served, and not charged, so a retry is safe."""
