"""The ledger's contract and the logic both backends share, written once against a minimal SQL
interface: :class:`SqlLedger` holds every rule (what a charge checks, what a refund undoes, what a
replay matches) as SQL that SQLite and PostgreSQL both accept; a backend
(:mod:`vendor_server.ledger.sqlite`, :mod:`vendor_server.ledger.postgres`) only says how to open a
transaction, how to lock a key's row for the length of one, and which reservations a crash left.

Why one class and not two: the books must mean the same thing whichever database keeps them, and two
copies of the charging rules would drift. The SQL here uses ``?`` placeholders; the PostgreSQL
backend rewrites them to ``%s`` (no statement here contains a literal ``?`` or ``%``).

A request's life in the ledger:
``charge`` (before inference, in one transaction holding the key's write lock: check the key's
remaining budget, insert a *reserved* event owned by this ledger instance, add to ``used``) →
``complete`` (event *charged*, response kept for replays) or ``refund`` (event *refunded*, ``used``
given back). ``recover`` refunds events a crash left *reserved* (which ones is the backend's rule:
see :meth:`SqlLedger._stale_reservations`). Hence the invariant, at rest:
``keys.used == SUM(queries) of the key's charged events``, and budgets are never overshot whatever
the concurrency, because the check and the increment happen under one lock on the key (the
``CHECK (used <= budget)`` constraint is a second guard)."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from shared.protocol import KeyUsage
from vendor_server.ledger.errors import (
    BudgetExceeded,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InvalidAmount,
    KeyNotFound,
    KeyRevoked,
    ReservationLost,
    UnknownApiKey,
)

SECRET_PREFIX = "vl2v-sk-"

#: the largest budget a key may hold: far beyond any real account, and far inside 64-bit integers
MAX_BUDGET = 10**15


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def new_instance_id() -> str:
    """Who owns a reservation: one id per opened ledger (per vendor process), so recovery can tell
    a dead replica's reservations from a live one's."""
    return "inst_" + uuid.uuid4().hex


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    budget: int
    used: int
    rate_limit_qps: float | None
    revoked: bool
    created: float

    @property
    def remaining(self) -> int:
        return self.budget - self.used


@dataclass(frozen=True)
class Charge:
    """The outcome of :meth:`SqlLedger.charge`: either a fresh reservation, or (``replay`` set) the
    stored response of an earlier identical request under the same ``Idempotency-Key``."""

    remaining: int
    replay: str | None = None


class Cursor(Protocol):
    """What the shared logic needs of a DB-API cursor (sqlite3's and psycopg's both qualify)."""

    rowcount: int

    def fetchone(self) -> Mapping[str, Any] | None: ...

    def fetchall(self) -> Sequence[Mapping[str, Any]]: ...


class Db(Protocol):
    """One connection inside a transaction (or a read), rows as mappings by column name."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


class SqlLedger(abc.ABC):
    """The ledger interface (keys, budgets, the reserve → charge/refund life of a request, replays,
    usage, recovery) over any backend that provides :meth:`_tx`, :meth:`_read` and the two hooks.
    Thread-safe as far as the backend's connections are."""

    #: appended to the SELECT that reads a key's budget in :meth:`charge`: PostgreSQL's row lock
    #: (``FOR UPDATE``) serialises charges per key; SQLite's write transaction already holds a lock
    #: on the whole file, and has no such clause
    LOCK_KEY = ""
    #: ``floor({column} / ?)`` in SQL, a time's bucket (:mod:`vendor_server.ledger.reports`): SQLite's CAST
    #: truncates, which for positive times is the floor; PostgreSQL's CAST rounds, hence its FLOOR
    TIME_BUCKET = "CAST({column} / ? AS INTEGER)"

    def __init__(self, idempotency_ttl_s: float) -> None:
        self._ttl = idempotency_ttl_s
        #: owner of the reservations this ledger makes (see :meth:`_stale_reservations`)
        self.instance_id = new_instance_id()

    # --- what a backend provides ------------------------------------------------------------------

    @abc.abstractmethod
    def _tx(self) -> contextlib.AbstractContextManager[Db]:
        """One write transaction, committed on exit, rolled back on an exception."""

    @abc.abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Db]:
        """A connection for one read (no transaction needed)."""

    @abc.abstractmethod
    def _stale_reservations(self, db: Db) -> list[str]:
        """The request ids of reserved events whose owner will never finish them."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- per-key rate limits ----------------------------------------------------------------------

    #: whether :meth:`take_token` keeps the key buckets in the database, where every process sharing
    #: this ledger sees one bucket per key (otherwise each process limits keys in its own memory)
    shares_rate_buckets: ClassVar[bool] = False

    def take_token(self, bucket: str, qps: float, burst: int) -> tuple[bool, float]:
        """Take one token from the shared token bucket ``bucket`` (refilled at ``qps``, holding at most
        ``burst``) in one atomic update: ``(taken, tokens left)``. Only a ledger that
        :attr:`shares_rate_buckets` keeps buckets."""
        raise NotImplementedError(f"{type(self).__name__} keeps no shared rate buckets")

    # --- keys -------------------------------------------------------------------------------------

    def create_key(self, name: str, budget: int, rate_limit_qps: float | None = None) -> tuple[KeyRecord, str]:
        """A new key and its secret. The secret is returned once and never stored."""
        if not 0 <= budget <= MAX_BUDGET:
            raise InvalidAmount(f"budget must be between 0 and {MAX_BUDGET}")
        if rate_limit_qps is not None and rate_limit_qps <= 0:
            raise InvalidAmount("rate limit must be > 0 requests/s")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        with self._tx() as db:
            db.execute(
                "INSERT INTO keys (id, name, secret_sha256, budget, rate_limit_qps, created) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, hash_secret(secret), budget, rate_limit_qps, time.time()),
            )
        return self.key(key_id), secret

    def keys(self) -> list[KeyRecord]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM keys ORDER BY created").fetchall()
        return [_key(row) for row in rows]

    def key(self, key_id: str) -> KeyRecord:
        with self._read() as db:
            row = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key {key_id!r}")
        return _key(row)

    def authenticate(self, secret: str) -> KeyRecord:
        with self._read() as db:
            row = db.execute("SELECT * FROM keys WHERE secret_sha256 = ?", (hash_secret(secret),)).fetchone()
        if row is None:
            raise UnknownApiKey("invalid API key")
        record = _key(row)
        if record.revoked:
            raise KeyRevoked(f"API key {record.id} has been revoked")
        return record

    def revoke(self, key_id: str) -> KeyRecord:
        with self._tx() as db:
            if db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,)).rowcount == 0:
                raise KeyNotFound(f"no key {key_id!r}")
        return self.key(key_id)

    def topup(self, key_id: str, queries: int) -> KeyRecord:
        if not 0 < queries <= MAX_BUDGET:
            raise InvalidAmount(f"top-up must add between 1 and {MAX_BUDGET} queries")
        with self._tx() as db:
            row = db.execute(f"SELECT budget FROM keys WHERE id = ?{self.LOCK_KEY}", (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(f"no key {key_id!r}")
            if row["budget"] + queries > MAX_BUDGET:
                raise InvalidAmount(f"a budget cannot exceed {MAX_BUDGET} queries")
            db.execute("UPDATE keys SET budget = budget + ? WHERE id = ?", (queries, key_id))
        return self.key(key_id)

    def usage(self, key_id: str) -> KeyUsage:
        """The key's account: budget, used, and totals of its charged (or in-flight) requests."""
        record = self.key(key_id)
        with self._read() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(images), 0) AS images, COALESCE(SUM(texts), 0) AS texts, COUNT(*) AS requests "
                "FROM usage_events WHERE key_id = ? AND status != 'refunded'",
                (key_id,),
            ).fetchone()
        assert row is not None  # an aggregate always has its one row
        return KeyUsage(
            key_id=record.id,
            name=record.name,
            budget=record.budget,
            used=record.used,
            remaining=record.remaining,
            images=int(row["images"]),
            texts=int(row["texts"]),
            requests=int(row["requests"]),
            revoked=record.revoked,
            rate_limit_qps=record.rate_limit_qps,
        )

    # --- requests ---------------------------------------------------------------------------------

    def charge(
        self,
        key_id: str,
        request_id: str,
        images: int,
        texts: int,
        body_sha256: str,
        idempotency_key: str | None = None,
        queries: int | None = None,
    ) -> Charge:
        """Reserve ``queries`` (by default ``images + texts``; more when images are priced by size)
        all-or-nothing, or say why not (:class:`BudgetExceeded`, :class:`KeyRevoked`, an
        :class:`~vendor_server.ledger.errors.IdempotencyConflict`), or hand back the stored response
        of an identical earlier request with the same idempotency key.

        The key's row is read under its write lock first, so every later statement of the
        transaction sees what concurrent charges of the same key committed (PostgreSQL re-reads
        after a lock wait): two replicas given one ``Idempotency-Key`` at once charge it once."""
        queries = images + texts if queries is None else queries
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                f"SELECT used, budget, revoked FROM keys WHERE id = ?{self.LOCK_KEY}", (key_id,)
            ).fetchone()
            if row is None:
                raise UnknownApiKey("invalid API key")
            if row["revoked"]:  # revoked between authentication and this transaction
                raise KeyRevoked(f"API key {key_id} has been revoked")
            used, budget = int(row["used"]), int(row["budget"])
            db.execute("DELETE FROM idempotency WHERE key_id = ? AND expires <= ? AND status = 'done'", (key_id, now))
            if idempotency_key is not None:
                replay = _stored_response(db, key_id, idempotency_key, body_sha256)
                if replay is not None:
                    return Charge(remaining=budget - used, replay=replay)
            if used + queries > budget:
                raise BudgetExceeded(used=used, budget=budget, requested=queries)
            db.execute(
                "INSERT INTO usage_events (request_id, key_id, images, texts, queries, idempotency_key, "
                "body_sha256, status, created, instance_id) VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
                (request_id, key_id, images, texts, queries, idempotency_key, body_sha256, now, self.instance_id),
            )
            db.execute("UPDATE keys SET used = used + ? WHERE id = ?", (queries, key_id))
            if idempotency_key is not None:
                db.execute(
                    "INSERT INTO idempotency (key_id, idempotency_key, body_sha256, request_id, status, "
                    "expires) VALUES (?, ?, ?, ?, 'in_flight', ?)",
                    (key_id, idempotency_key, body_sha256, request_id, now + self._ttl),
                )
        return Charge(remaining=budget - used - queries)

    def replay(self, key_id: str, idempotency_key: str, body_sha256: str) -> str | None:
        """The stored response of an earlier identical request with this idempotency key, if any
        (raising like :meth:`charge` on a conflict): looked up before a request is decoded, so a
        replay costs neither decoding nor budget. :meth:`charge` looks again, atomically."""
        with self._read() as db:
            return _stored_response(db, key_id, idempotency_key, body_sha256)

    def complete(self, request_id: str, response: str) -> None:
        """Make a reservation final and keep the response for idempotent replays.

        Raises :class:`ReservationLost` when the reservation is no longer there to complete (recovery
        on another replica judged this one dead and refunded it): the response must then not be sent,
        or the client would be served without paying."""
        with self._tx() as db:
            done = db.execute(
                "UPDATE usage_events SET status = 'charged', finished = ? WHERE request_id = ? AND status = 'reserved'",
                (time.time(), request_id),
            )
            if done.rowcount == 0:
                raise ReservationLost(f"request {request_id} lost its reservation; it was not charged, retry it")
            db.execute(
                "UPDATE idempotency SET status = 'done', response = ? WHERE request_id = ?", (response, request_id)
            )

    def refund(self, request_id: str) -> None:
        """Undo a request whose client gets no embeddings (inference failed, or the ledger failed
        while completing it): it doesn't pay, and its idempotency key is freed for a retry. A
        completion whose commit went through although its caller saw an error is undone too, since
        that response was never sent."""
        with self._tx() as db:
            _refund(db, request_id, ("reserved", "charged"))

    def recover(self) -> int:
        """Refund what a crash left reserved (the backend's :meth:`_stale_reservations`); returns how
        many requests that was."""
        with self._tx() as db:
            stale = self._stale_reservations(db)
            refunded = sum(_refund(db, request_id, ("reserved",)) for request_id in stale)
            # replays past their window, of keys that have not charged since (a charge clears its own key's)
            db.execute("DELETE FROM idempotency WHERE expires <= ? AND status = 'done'", (time.time(),))
        return refunded


def _refund(db: Db, request_id: str, states: tuple[str, ...]) -> int:
    """Refund ``request_id`` if it is in one of ``states``; 1 if it was. One conditional UPDATE, so
    two replicas recovering the same reservation at once give its queries back once."""
    marks = ", ".join("?" for _ in states)
    rows = db.execute(
        f"UPDATE usage_events SET status = 'refunded', finished = ? WHERE request_id = ? AND status IN ({marks}) "
        "RETURNING key_id, queries",
        (time.time(), request_id, *states),
    ).fetchall()  # all rows: SQLite keeps a statement with unread RETURNING rows open
    if not rows:
        return 0
    row = rows[0]
    db.execute("UPDATE keys SET used = used - ? WHERE id = ?", (row["queries"], row["key_id"]))
    db.execute("DELETE FROM idempotency WHERE request_id = ?", (request_id,))
    return 1


def _stored_response(db: Db, key_id: str, idempotency_key: str, body_sha256: str) -> str | None:
    previous = db.execute(
        "SELECT * FROM idempotency WHERE key_id = ? AND idempotency_key = ? AND expires > ?",
        (key_id, idempotency_key, time.time()),
    ).fetchone()
    if previous is None:
        return None
    if previous["body_sha256"] != body_sha256:
        raise IdempotencyMismatch("this Idempotency-Key was already used with a different request body")
    if previous["status"] == "in_flight":
        raise IdempotencyInProgress("a request with this Idempotency-Key is still being processed; retry shortly")
    return previous["response"]


def _key(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        budget=int(row["budget"]),
        used=int(row["used"]),
        rate_limit_qps=row["rate_limit_qps"],
        revoked=bool(row["revoked"]),
        created=row["created"],
    )
