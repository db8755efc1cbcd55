"""The ledger's SQLite schema as a numbered list of migrations, and :func:`migrate`, which brings any
ledger file up to :data:`SCHEMA_VERSION` when it is opened.

The version lives in SQLite's ``PRAGMA user_version`` (0 in a new file). Migration *n* (1-based)
takes a ledger from version *n - 1* to *n*; all pending ones run in order in one write transaction
together with the version bump, so a ledger is always at exactly one known version, even if the
process dies mid-upgrade. Ledgers written before versions existed have version 0 and the tables of
migration 1, whose ``IF NOT EXISTS`` clauses make it a no-op for them.

To change the schema: append a migration (never edit a released one: ledgers in the field are
already past it) and add the case to ``tests/test_vendor_ledger_schema.py``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from vendor_server.ledger_errors import UnsupportedSchema

#: ``MIGRATIONS[n - 1]`` holds the statements of migration ``n``
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the schema as first released, unversioned
    (
        """CREATE TABLE IF NOT EXISTS keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL UNIQUE,
            budget INTEGER NOT NULL CHECK (budget >= 0),
            used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= budget),
            rate_limit_qps REAL,
            revoked INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS usage_events (
            request_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL REFERENCES keys(id),
            images INTEGER NOT NULL,
            texts INTEGER NOT NULL,
            queries INTEGER NOT NULL,
            idempotency_key TEXT,
            body_sha256 TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('reserved', 'charged', 'refunded')),
            created REAL NOT NULL,
            finished REAL
        )""",
        "CREATE INDEX IF NOT EXISTS usage_events_by_key ON usage_events(key_id, status)",
        "CREATE INDEX IF NOT EXISTS usage_events_by_status ON usage_events(status)",
        """CREATE TABLE IF NOT EXISTS idempotency (
            key_id TEXT NOT NULL REFERENCES keys(id),
            idempotency_key TEXT NOT NULL,
            body_sha256 TEXT NOT NULL,
            request_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('in_flight', 'done')),
            response TEXT,
            expires REAL NOT NULL,
            PRIMARY KEY (key_id, idempotency_key)
        )""",
        "CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency(expires)",
    ),
    # 2: completing or refunding a request finds its idempotency row by request id; without this
    # index each did a full scan of the table, which holds a day (the replay window) of requests
    ("CREATE INDEX idempotency_by_request ON idempotency(request_id)",),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Bring the ledger behind ``db`` (a connection in autocommit mode) to :data:`SCHEMA_VERSION`
    and return the version it had. A newer version than this code knows is refused unchanged.

    A current ledger is only read, so opening it never waits for the write lock of a busy server.
    Otherwise the write lock is taken before the version is read again, so two processes opening
    one old ledger at once (``serve`` and ``keys``) upgrade it once: the second finds it current."""
    if schema_version(db) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    db.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(db)
        if found > SCHEMA_VERSION:
            raise UnsupportedSchema(
                f"the ledger {path} has schema version {found}, written by a newer vl2v-vendor; this one "
                f"knows versions up to {SCHEMA_VERSION}: upgrade vl2v-vendor (the file was left as it is)"
            )
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                db.execute(statement)
        if found != SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # a pragma takes no bound parameters
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found
