"""The ledger in PostgreSQL (``--db postgresql://…``), for N vendor processes (``--workers N`` on one
host, or replicas on many) sharing one set of books: the rules are :class:`~vendor_server.ledger.core.SqlLedger`'s,
a charge holds its key's row lock (``SELECT … FOR UPDATE``) for its one transaction, so no two
replicas can both spend a key's last query; psycopg 3 with a connection pool per process.

Recovery, with replicas: each process registers itself in ``ledger_instances`` and renews a
heartbeat every ``lease_s / 3`` seconds (the database's clock, so hosts' clocks need not agree). Its
reservations carry its instance id. A reservation is refunded by recovery only when its owner is
gone: no instance row, or a heartbeat older than ``lease_s`` (default 30 s). Every live process runs
that recovery at start-up and with each heartbeat, so a replica killed mid-request has its
reservations refunded about ``lease_s`` later by the others (or by its own restart), and a starting
replica never refunds a live replica's requests in flight. A process refunds its own failed
requests itself (retrying, when the database was out of reach, until it is back).

A live replica cut off from the database for longer than ``lease_s`` may find its reservations
refunded by the others: completing one then raises :class:`ReservationLost` and the client gets a
503 instead of embeddings it did not pay for.

The database out of reach (stopped, restarting, out of connections): every call raises
:class:`LedgerUnreachable` (HTTP 503 with ``Retry-After``) after at most ``wait_s`` (1 s), and
at once while the heartbeat thread has not reconnected, so a dead database does not tie up the
server's threads; nothing is charged that is not answered."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from vendor_server.ledger.core import Cursor, SqlLedger
from vendor_server.ledger.errors import LedgerUnavailable, LedgerUnreachable
from vendor_server.ledger.schema import migrate_postgres

log = logging.getLogger("vl2v.vendor")

#: the database's clock, in epoch seconds, for heartbeats and rate buckets
DB_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
#: how often a disconnected ledger tries the database again
RECONNECT_S = 0.5


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _connection_lost(exc: psycopg.Error) -> bool:
    """Whether ``exc`` means the database is out of reach (no connection, a connection cut, the server
    shutting down: SQLSTATE classes 08 and 57P), rather than one transaction rolled back."""
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


class _PgDb:
    """A psycopg connection behind the shared logic's ``?`` placeholders."""

    _sql: dict[str, str] = {}

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = sql.replace("?", "%s")
        return self._conn.execute(converted, params)  # type: ignore[arg-type,return-value]


class PostgresLedger(SqlLedger):
    LOCK_KEY = " FOR UPDATE"
    TIME_BUCKET = "CAST(FLOOR({column} / ?) AS BIGINT)"

    def __init__(
        self,
        url: str,
        idempotency_ttl_s: float = 24 * 3600,
        lease_s: float = 30.0,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        wait_s: float = 1.0,
    ) -> None:
        """``connect_timeout_s`` bounds opening the ledger; ``wait_s`` how long a call waits for a pooled
        connection before the database is taken for unreachable. A process has fewer threads using the
        ledger than ``pool_size`` connections, so a wait that long only happens when connecting fails."""
        super().__init__(idempotency_ttl_s)
        self.url = url
        self.lease_s = lease_s
        self._healthy = threading.Event()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._pending_refunds: set[str] = set()
        self._pending_lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=wait_s,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, round(connect_timeout_s))},
            check=ConnectionPool.check_connection,
            open=False,
            name="vl2v-ledger",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
            with self._pool.connection() as conn:
                migrate_postgres(conn, redact(url))
                self._heartbeat(_PgDb(conn))
        except psycopg.Error as exc:
            self._pool.close()
            raise LedgerUnavailable(f"cannot use {redact(url)} as the ledger: {exc}") from exc
        except BaseException:
            self._pool.close()
            raise
        self._healthy.set()
        self._thread = threading.Thread(target=self._keep_alive, name="vl2v-ledger-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the heartbeat and leave: the instance row goes, so whatever this process still had
        reserved (refunds the database refused) is recovered by the others at once."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(LedgerUnreachable):
            self._drain_refunds()
            with self._tx() as db:
                db.execute("DELETE FROM ledger_instances WHERE id = ?", (self.instance_id,))
        self._pool.close()

    # --- the backend ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self, probe: bool = False) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection; a lost database becomes :class:`LedgerUnreachable`, at once while the
        heartbeat thread (the one caller with ``probe``) has not seen it back."""
        if not probe and not self._healthy.is_set():
            raise LedgerUnreachable("the ledger's database is unreachable; retry shortly")
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if _connection_lost(exc):
                if self._healthy.is_set():
                    log.warning("ledger database unreachable: %s", exc)
                self._healthy.clear()
                self._wake.set()
                raise LedgerUnreachable("the ledger's database is unreachable; retry shortly") from exc
            # a deadlock or a serialisation failure: this transaction was rolled back, the database is fine
            raise LedgerUnreachable("the ledger was busy; retry shortly") from exc

    @contextlib.contextmanager
    def _tx(self, probe: bool = False) -> Iterator[_PgDb]:
        with self._connection(probe) as conn, conn.transaction():
            yield _PgDb(conn)

    @contextlib.contextmanager
    def _read(self) -> Iterator[_PgDb]:
        with self._connection() as conn:
            yield _PgDb(conn)

    def _stale_reservations(self, db: _PgDb) -> list[str]:  # type: ignore[override]
        """Reservations of instances gone (no row) or silent for longer than the lease; never this
        process's own. Locked (``SKIP LOCKED``: one another replica's recovery holds is its job)."""
        rows = db.execute(
            "SELECT request_id FROM usage_events e WHERE status = 'reserved' "
            "AND e.instance_id IS DISTINCT FROM ? AND NOT EXISTS (SELECT 1 FROM ledger_instances i "
            f"WHERE i.id = e.instance_id AND i.heartbeat > {DB_NOW} - ?) "
            "ORDER BY request_id FOR UPDATE SKIP LOCKED",
            (self.instance_id, self.lease_s),
        ).fetchall()
        return [row["request_id"] for row in rows]

    def refund(self, request_id: str) -> None:
        """As :meth:`SqlLedger.refund`; when the database is out of reach the refund is kept and
        retried by the heartbeat thread until it is done (and :class:`LedgerUnreachable` raised)."""
        try:
            super().refund(request_id)
        except LedgerUnreachable:
            with self._pending_lock:
                self._pending_refunds.add(request_id)
            raise

    # --- shared rate limits -----------------------------------------------------------------------

    shares_rate_buckets = True

    def take_token(self, bucket: str, qps: float, burst: int) -> tuple[bool, float]:
        """As :meth:`SqlLedger.take_token`, in one statement: all replicas see one bucket per key, so a
        key's limit holds across them."""
        with self._connection() as conn:
            row = conn.execute(
                f"WITH now AS (SELECT {DB_NOW} AS t) "
                "INSERT INTO rate_buckets AS b (bucket, tokens, at) SELECT %(b)s, %(burst)s - 1, t FROM now "
                "ON CONFLICT (bucket) DO UPDATE SET "
                "tokens = LEAST(%(burst)s, b.tokens + (EXCLUDED.at - b.at) * %(qps)s) - 1, at = EXCLUDED.at "
                "WHERE LEAST(%(burst)s, b.tokens + (EXCLUDED.at - b.at) * %(qps)s) >= 1 "
                "RETURNING tokens",
                {"b": bucket, "burst": float(burst), "qps": qps},
            ).fetchone()
            if row is not None:
                return True, float(row["tokens"])
            level = conn.execute(
                f"SELECT LEAST(%(burst)s, tokens + ({DB_NOW} - at) * %(qps)s) AS tokens FROM rate_buckets "
                "WHERE bucket = %(b)s",
                {"b": bucket, "burst": float(burst), "qps": qps},
            ).fetchone()
        return False, 0.0 if level is None else float(level["tokens"])

    # --- liveness ---------------------------------------------------------------------------------

    def _heartbeat(self, db: _PgDb) -> None:
        db.execute(
            "INSERT INTO ledger_instances (id, host, pid, started, heartbeat) "
            f"VALUES (?, ?, ?, {DB_NOW}, {DB_NOW}) ON CONFLICT (id) DO UPDATE SET heartbeat = EXCLUDED.heartbeat",
            (self.instance_id, socket.gethostname(), os.getpid()),
        )

    def _keep_alive(self) -> None:
        """Heartbeat, retry refunds the database refused, recover dead replicas' reservations; while
        the database is out of reach, try again every :data:`RECONNECT_S`."""
        while not self._closing.is_set():
            self._wake.wait(self.lease_s / 3 if self._healthy.is_set() else RECONNECT_S)
            self._wake.clear()
            if self._closing.is_set():
                return
            try:
                with self._tx(probe=True) as db:
                    self._heartbeat(db)
                if not self._healthy.is_set():
                    log.warning("ledger database reachable again")
                self._healthy.set()
                self._drain_refunds()
                refunded = self.recover()
                if refunded:
                    log.warning("refunded %d request(s) of vendor processes that stopped", refunded)
                with self._tx() as db:  # instances long gone that left nothing reserved
                    db.execute(
                        f"DELETE FROM ledger_instances i WHERE heartbeat < {DB_NOW} - ? AND NOT EXISTS "
                        "(SELECT 1 FROM usage_events e WHERE e.status = 'reserved' AND e.instance_id = i.id)",
                        (10 * self.lease_s,),
                    )
            except LedgerUnreachable:
                continue
            except Exception:  # a bug must not stop the heartbeat: this process would look dead
                log.exception("ledger heartbeat failed")

    def _drain_refunds(self) -> None:
        with self._pending_lock:
            pending = sorted(self._pending_refunds)
        for request_id in pending:
            super().refund(request_id)
            with self._pending_lock:
                self._pending_refunds.discard(request_id)
