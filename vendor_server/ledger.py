"""The vendor's books: API keys (only a SHA-256 of each secret is stored), budgets, one usage event
per charged request, and stored responses for ``Idempotency-Key`` replays, in SQLite (WAL). With
``synchronous=NORMAL`` every commit is in the WAL before the request goes on, so killing the server
(kill -9) loses nothing; ``FULL`` also fsyncs each commit, for power loss.

A request's life in the ledger:
``charge`` (before inference, in one ``BEGIN IMMEDIATE`` transaction: check the key's remaining
budget, insert a *reserved* event, add to ``used``) → ``complete`` (event *charged*, response kept
for replays) or ``refund`` (event *refunded*, ``used`` given back). ``recover`` at startup refunds
events a crash left *reserved*: their clients never got embeddings. Hence the invariant, at rest:
``keys.used == SUM(queries) of the key's charged events``, and budgets are never overshot whatever
the concurrency, because the check and the increment are one serialised write transaction (the
``CHECK (used <= budget)`` constraint is a second guard).

The schema and its migrations are in :mod:`vendor_server.ledger_schema`; refusals are the exceptions
of :mod:`vendor_server.ledger_errors`, which the HTTP API and the CLI each render in their own way."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.protocol import KeyUsage
from vendor_server.ledger_errors import (
    BudgetExceeded,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InvalidAmount,
    KeyNotFound,
    KeyRevoked,
    LedgerUnavailable,
    UnknownApiKey,
)
from vendor_server.ledger_schema import migrate

SECRET_PREFIX = "vl2v-sk-"


#: the largest budget a key may hold: far beyond any real account, and far inside SQLite's 64-bit integers
MAX_BUDGET = 10**15


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


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
    """The outcome of :meth:`Ledger.charge`: either a fresh reservation, or (``replay`` set) the
    stored response of an earlier identical request under the same ``Idempotency-Key``."""

    remaining: int
    replay: str | None = None


class Ledger:
    """Thread-safe (one connection behind a lock); other processes (``vl2v-vendor keys``) may write
    the same file concurrently, SQLite's locking and ``busy_timeout`` serialise them."""

    def __init__(self, path: str | Path, idempotency_ttl_s: float = 24 * 3600, synchronous: str = "NORMAL"):
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self._ttl = idempotency_ttl_s
        self._lock = threading.Lock()
        self._db = _open(self.path, synchronous)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking SQLite's write lock up front (no upgrade deadlocks)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")  # inside the try: a failed COMMIT must not leave the transaction open
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

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
        with self._lock:
            rows = self._db.execute("SELECT * FROM keys ORDER BY created").fetchall()
        return [_key(row) for row in rows]

    def key(self, key_id: str) -> KeyRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key {key_id!r}")
        return _key(row)

    def authenticate(self, secret: str) -> KeyRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM keys WHERE secret_sha256 = ?", (hash_secret(secret),)).fetchone()
        if row is None:
            raise UnknownApiKey("invalid API key")
        record = _key(row)
        if record.revoked:
            raise KeyRevoked(f"API key {record.id} has been revoked")
        return record

    def revoke(self, key_id: str) -> KeyRecord:
        self._update_key(key_id, "UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,))
        return self.key(key_id)

    def topup(self, key_id: str, queries: int) -> KeyRecord:
        if not 0 < queries <= MAX_BUDGET:
            raise InvalidAmount(f"top-up must add between 1 and {MAX_BUDGET} queries")
        with self._tx() as db:
            row = db.execute("SELECT budget FROM keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(f"no key {key_id!r}")
            if row["budget"] + queries > MAX_BUDGET:
                raise InvalidAmount(f"a budget cannot exceed {MAX_BUDGET} queries")
            db.execute("UPDATE keys SET budget = budget + ? WHERE id = ?", (queries, key_id))
        return self.key(key_id)

    def _update_key(self, key_id: str, sql: str, params: tuple) -> None:
        with self._tx() as db:
            if db.execute(sql, params).rowcount == 0:
                raise KeyNotFound(f"no key {key_id!r}")

    def usage(self, key_id: str) -> KeyUsage:
        """The key's account: budget, used, and totals of its charged (or in-flight) requests."""
        record = self.key(key_id)
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(images), 0) AS images, COALESCE(SUM(texts), 0) AS texts, COUNT(*) AS requests "
                "FROM usage_events WHERE key_id = ? AND status != 'refunded'",
                (key_id,),
            ).fetchone()
        return KeyUsage(
            key_id=record.id,
            name=record.name,
            budget=record.budget,
            used=record.used,
            remaining=record.remaining,
            images=row["images"],
            texts=row["texts"],
            requests=row["requests"],
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
        :class:`~vendor_server.ledger_errors.IdempotencyConflict`), or hand back the stored response
        of an identical earlier request with the same idempotency key."""
        queries = images + texts if queries is None else queries
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM idempotency WHERE expires <= ? AND status = 'done'", (now,))
            row = db.execute("SELECT used, budget, revoked FROM keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise UnknownApiKey("invalid API key")
            if row["revoked"]:  # revoked between authentication and this transaction
                raise KeyRevoked(f"API key {key_id} has been revoked")
            used, budget = row["used"], row["budget"]
            if idempotency_key is not None:
                replay = _stored_response(db, key_id, idempotency_key, body_sha256)
                if replay is not None:
                    return Charge(remaining=budget - used, replay=replay)
            if used + queries > budget:
                raise BudgetExceeded(used=used, budget=budget, requested=queries)
            db.execute(
                "INSERT INTO usage_events (request_id, key_id, images, texts, queries, idempotency_key, "
                "body_sha256, status, created) VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved', ?)",
                (request_id, key_id, images, texts, queries, idempotency_key, body_sha256, now),
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
        with self._lock:
            return _stored_response(self._db, key_id, idempotency_key, body_sha256)

    def complete(self, request_id: str, response: str) -> None:
        """Make a reservation final and keep the response for idempotent replays."""
        with self._tx() as db:
            db.execute(
                "UPDATE usage_events SET status = 'charged', finished = ? WHERE request_id = ? AND status = 'reserved'",
                (time.time(), request_id),
            )
            db.execute(
                "UPDATE idempotency SET status = 'done', response = ? WHERE request_id = ?", (response, request_id)
            )

    def refund(self, request_id: str) -> None:
        """Give a reservation back (inference failed): the client was not served, so it doesn't pay,
        and its idempotency key is freed for a retry."""
        with self._tx() as db:
            _refund(db, request_id)

    def recover(self) -> int:
        """Refund what a crash left reserved; returns how many requests that was."""
        with self._tx() as db:
            stale = [
                row["request_id"]
                for row in db.execute("SELECT request_id FROM usage_events WHERE status = 'reserved'").fetchall()
            ]
            for request_id in stale:
                _refund(db, request_id)
            db.execute("DELETE FROM idempotency WHERE status = 'in_flight'")
        return len(stale)


def _open(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection to the ledger at ``path``, created (with its folder) if missing and migrated to
    the current schema (:mod:`vendor_server.ledger_schema`).

    A path that cannot hold a ledger (a file that is not SQLite, a folder, an unwritable place) is the
    operator's mistake in ``--db`` / ``VL2V_VENDOR_DB``, so it is reported as :class:`LedgerUnavailable`
    naming the path (one line on the command line), not as a traceback from sqlite3."""
    db = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # keys are stored hashed, but usage is still the vendor's business: owner-only, and SQLite
        # gives its -wal and -shm files the database file's mode
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077:  # a ledger an older version created readable by all
            with contextlib.suppress(PermissionError):
                path.chmod(0o600)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db, path)
    except BaseException as exc:
        if db is not None:
            db.close()
        if isinstance(exc, (OSError, sqlite3.Error)):
            raise LedgerUnavailable(f"cannot use {path} as the ledger: {exc}") from exc
        raise
    return db


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def _refund(db: sqlite3.Connection, request_id: str) -> None:
    row = db.execute(
        "SELECT key_id, queries FROM usage_events WHERE request_id = ? AND status = 'reserved'", (request_id,)
    ).fetchone()
    if row is None:
        return
    db.execute(
        "UPDATE usage_events SET status = 'refunded', finished = ? WHERE request_id = ?", (time.time(), request_id)
    )
    db.execute("UPDATE keys SET used = used - ? WHERE id = ?", (row["queries"], row["key_id"]))
    db.execute("DELETE FROM idempotency WHERE request_id = ? AND status = 'in_flight'", (request_id,))


def _stored_response(db: sqlite3.Connection, key_id: str, idempotency_key: str, body_sha256: str) -> str | None:
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


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        budget=row["budget"],
        used=row["used"],
        rate_limit_qps=row["rate_limit_qps"],
        revoked=bool(row["revoked"]),
        created=row["created"],
    )
