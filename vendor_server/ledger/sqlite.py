"""The ledger in one SQLite file (WAL), the embedded default (``--db PATH``). With
``synchronous=NORMAL`` every commit is in the WAL before the request goes on, so killing the server
(kill -9) loses nothing; ``FULL`` also fsyncs each commit, for power loss.

One vendor process serves a SQLite ledger (other processes, such as ``vl2v-vendor keys``, may write
it concurrently: SQLite's locking and ``busy_timeout`` serialise them). Hence its recovery rule:
every reservation found at start-up belongs to a process that is gone, and is refunded.
Several vendor processes need the PostgreSQL ledger (:mod:`vendor_server.ledger.postgres`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from vendor_server.ledger.core import Db, SqlLedger
from vendor_server.ledger.errors import LedgerUnavailable
from vendor_server.ledger.schema import migrate


class SqliteLedger(SqlLedger):
    """Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | Path, idempotency_ttl_s: float = 24 * 3600, synchronous: str = "NORMAL"):
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        super().__init__(idempotency_ttl_s)
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = _open(self.path, synchronous)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Db]:
        """One write transaction, taking SQLite's write lock up front (no upgrade deadlocks)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")  # inside the try: a failed COMMIT must not leave the transaction open
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[Db]:
        with self._lock:
            yield self._db

    def _stale_reservations(self, db: Db) -> list[str]:
        """All of them: the one process serving this file is starting (see the module's docstring)."""
        rows = db.execute("SELECT request_id FROM usage_events WHERE status = 'reserved'").fetchall()
        return [row["request_id"] for row in rows]


def _open(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection to the ledger at ``path``, created (with its folder) if missing and migrated to
    the current schema (:mod:`vendor_server.ledger.schema`).

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
