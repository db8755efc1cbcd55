"""Budget safety of one request: what an adapter reserves before it sends something that may be billed,
and when it gives the reservation back.

The caller passes a :class:`Spend` guard. The adapter calls ``reserve`` before every attempt that could
add a charge (the first send of a batch, and a resend after an ambiguous failure to a vendor that does
not honour idempotency keys) and ``release`` when the vendor provably did not charge: a 4xx/429/503
answer or a request that never left (refused connection), also when the retries run out on such
failures. Only a send that may have been billed (sent, answer lost: read timeout, reset after sending,
a 5xx other than 503) keeps its reservation, which the caller's ledger holds *in doubt* until a rerun
settles it. So a caller that refuses to reserve beyond its budget can never be billed beyond it,
whatever fails, and its books count no refusal as spent. :class:`Reservation` is that rule for the
sends of one batch.
"""

from __future__ import annotations

from typing import Literal, Protocol

Modality = Literal["text", "image"]


class Spend(Protocol):
    """What an adapter asks before it sends something that may be billed."""

    def reserve(self, batch_id: str, modality: Modality, n: int) -> None:
        """Count the ``n`` queries of batch ``batch_id`` as spent before they are sent; raise
        BudgetExhausted to refuse."""

    def release(self, batch_id: str, n: int) -> None:
        """Give back a reservation the vendor provably did not charge."""


class Reservation:
    """The reservation held for the sends of one batch (``key``: its idempotency key; ``cost``: the
    queries one send is billed), settled by what each send came to.

    For a vendor without idempotency keys each send that may have been billed keeps its own reservation
    and a resend reserves anew; for one with them (``idempotent``), the one reservation covers every
    resend (a replay is free), so it is kept if any send may have been billed, unless the vendor then
    refused the same key outright (it would have replayed a charged one)."""

    def __init__(self, spend: Spend | None, key: str, modality: Modality, cost: int, idempotent: bool) -> None:
        self.spend, self.key, self.modality, self.cost, self.idempotent = spend, key, modality, cost, idempotent
        self.reserved = 0  # queries reserved for the sends still to be settled
        self.maybe_billed = False  # a send under the current reservation may have been billed
        self.in_flight = False  # a send is out: given up now, its fate is unknown

    def before_send(self) -> None:
        """Reserve for the send about to go out, unless a reservation already covers it."""
        if self.spend is not None and self.reserved == 0:
            self.spend.reserve(self.key, self.modality, self.cost)
            self.reserved = self.cost
        self.in_flight = True  # until an answer or a known failure: a send given up stays in doubt

    def answered(self) -> None:
        self.in_flight = False

    def lost(self, maybe_charged: bool) -> None:
        """The send failed in a way that may be retried; ``maybe_charged``: it may have been billed."""
        self.in_flight = False
        if maybe_charged:
            if self.idempotent:
                self.maybe_billed = True  # the resend is a free replay: one reservation for all
            else:
                self.reserved, self.maybe_billed = 0, False  # that send stays spent; a resend pays again

    def refused(self) -> None:
        """The vendor refused the send: not charged (and an idempotent vendor would replay a charged key)."""
        self.in_flight = False
        self.release()

    def given_up(self) -> None:
        """No more sends (retries ran out, the budget refused a resend, or the caller gave up): what is
        still reserved was provably not charged unless a send may have been billed or is still out."""
        if not self.maybe_billed and not self.in_flight:
            self.release()

    def release(self) -> None:
        if self.spend is not None and self.reserved:
            self.spend.release(self.key, self.reserved)
        self.reserved, self.maybe_billed = 0, False
