"""The ledger's schema, for each backend a numbered list of migrations: :data:`MIGRATIONS` and
:func:`migrate` for SQLite, :data:`POSTGRES_MIGRATIONS` and :func:`migrate_postgres` for PostgreSQL.
Each brings a ledger up to its backend's current version when it is opened.

SQLite:

The version lives in SQLite's ``PRAGMA user_version`` (0 in a new file). Migration *n* (1-based)
takes a ledger from version *n - 1* to *n*; all pending ones run in order in one write transaction
together with the version bump, so a ledger is always at exactly one known version, even if the
process dies mid-upgrade. Ledgers written before versions existed have version 0 and the tables of
migration 1, whose ``IF NOT EXISTS`` clauses make it a no-op for them.

PostgreSQL: the version is the one row of ``vl2v_schema`` (no table: version 0, an empty database).
Pending migrations run in one transaction with the version bump, under a transaction-scoped advisory
lock, so N replicas starting at once on one database upgrade it once (PostgreSQL's DDL is
transactional: a replica killed mid-upgrade leaves the previous version whole). Its migration 1 is
SQLite's three in one, with PostgreSQL's types (``BIGINT``, ``DOUBLE PRECISION``), plus
the tables only shared ledgers need: ``ledger_instances`` (each vendor process's heartbeat, so
recovery refunds only a dead replica's reservations) and ``rate_buckets`` (per-key token buckets
shared by all replicas).

To change the schema: append a migration (never edit a released one: ledgers in the field are
already past it) and add the case to ``tests/test_vendor_ledger_schema.py``."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from vendor_server.ledger.errors import UnsupportedSchema

#: the console's tables (SQLite migration 4, PostgreSQL migration 2): counters, upserted in batches
#: by vendor_server.console.traffic, so the numbers come from the shared ledger, not one process
TRAFFIC_TABLES: tuple[str, ...] = (
    """CREATE TABLE request_outcomes (
        key_id TEXT NOT NULL,
        hour INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (hour, key_id, outcome)
    )""",
    """CREATE TABLE coverage_cells (
        key_id TEXT NOT NULL,
        cell INTEGER NOT NULL,
        images INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (key_id, cell)
    )""",
    """CREATE TABLE coverage_partition (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seed INTEGER NOT NULL,
        dim INTEGER NOT NULL,
        thresholds TEXT NOT NULL,
        created REAL NOT NULL
    )""",
)

#: the index a charge's sweep of its key's expired idempotency rows uses (migration 5)
IDEMPOTENCY_BY_KEY_EXPIRY = "CREATE INDEX idempotency_by_key_expiry ON idempotency(key_id, expires)"

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
    # 3: which ledger instance (vendor process) made each reservation, as in PostgreSQL, where
    # recovery refunds only a dead instance's; NULL for rows written before
    ("ALTER TABLE usage_events ADD COLUMN instance_id TEXT",),
    # 4: what the operator console reports beyond the charges (vendor_server.console): every /v1
    # answer counted per key, hour and outcome ('' = no key authenticated), and the cells of the
    # embedding-space partition each key's image queries reached (vendor_server.console.coverage)
    TRAFFIC_TABLES,
    # 5: every charge first drops its key's expired replay rows; the primary key (key, idempotency key)
    # made that walk all of a key's rows of the replay window, in the write lock (15.3 ms a charge at
    # 100,000 rows, linear in them; bench/ledger_replay_sweep.py); this index makes it a range scan
    (IDEMPOTENCY_BY_KEY_EXPIRY,),
)
SCHEMA_VERSION = len(MIGRATIONS)


def _postgres_types(statement: str) -> str:
    """SQLite DDL with PostgreSQL's types for the same values: SQLite's INTEGER holds 64 bits and its
    REAL is a double; PostgreSQL's INTEGER and REAL are 4 bytes (budgets reach ``MAX_BUDGET``, times
    are epoch seconds). Without SQLite's ``IF NOT EXISTS`` (there for ledgers older than versions): a
    PostgreSQL database at version 0 that already has such a table is not a ledger, and is refused."""
    statement = statement.replace(" IF NOT EXISTS", "")
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", re.sub(r"\bINTEGER\b", "BIGINT", statement))


POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: SQLite's migrations 1-3 (released: they never change) in PostgreSQL's types, and what only a
    # ledger shared by replicas needs: the index recovery scans, instances with their heartbeats, and
    # the per-key rate buckets
    (
        *(_postgres_types(statement) for migration in MIGRATIONS[:3] for statement in migration),
        "CREATE INDEX usage_events_reserved ON usage_events(instance_id) WHERE status = 'reserved'",
        """CREATE TABLE ledger_instances (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started DOUBLE PRECISION NOT NULL,
            heartbeat DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE rate_buckets (
            bucket TEXT PRIMARY KEY,
            tokens DOUBLE PRECISION NOT NULL,
            at DOUBLE PRECISION NOT NULL
        )""",
    ),
    # 2: SQLite's migration 4, the console's counters
    tuple(_postgres_types(statement) for statement in TRAFFIC_TABLES),
    # 3: SQLite's migration 5, a charge's sweep of its key's expired replay rows as a range scan
    (IDEMPOTENCY_BY_KEY_EXPIRY,),
)
POSTGRES_SCHEMA_VERSION = len(POSTGRES_MIGRATIONS)
#: the advisory lock that serialises upgrades of one database (any constant: ``vl2v`` in ASCII)
_UPGRADE_LOCK = 0x766C3276


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
        for statement in _pending(MIGRATIONS, found, str(path)):
            db.execute(statement)
        if found != SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # a pragma takes no bound parameters
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found


def _pending(migrations: tuple[tuple[str, ...], ...], found: int, where: str) -> list[str]:
    """The statements that take a ledger at version ``found`` to ``len(migrations)``, in order; a
    version newer than this code knows is refused (the ledger is left as it is)."""
    if found > len(migrations):
        raise UnsupportedSchema(
            f"the ledger {where} has schema version {found}, written by a newer vl2v-vendor; this one "
            f"knows versions up to {len(migrations)}: upgrade vl2v-vendor (the ledger was left as it is)"
        )
    return [statement for statements in migrations[found:] for statement in statements]


def postgres_schema_version(conn: Any) -> int:
    """The version of the PostgreSQL ledger behind ``conn`` (a psycopg connection); 0 when empty."""
    from psycopg.rows import tuple_row  # psycopg only for those who use PostgreSQL

    cur = conn.cursor(row_factory=tuple_row)  # whatever row factory the connection has
    # the catalog read as a query (a fresh snapshot), not to_regclass: its cache can miss a table another
    # transaction committed while this one waited for the upgrade lock
    exists = cur.execute(
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'vl2v_schema' AND schemaname = current_schema()"
    ).fetchone()[0]
    if not exists:
        return 0
    row = cur.execute("SELECT version FROM vl2v_schema").fetchone()
    return 0 if row is None else int(row[0])


def migrate_postgres(conn: Any, where: str) -> int:
    """Bring the PostgreSQL ledger behind ``conn`` (a psycopg connection in autocommit mode) to
    :data:`POSTGRES_SCHEMA_VERSION` and return the version it had; ``where`` names it in errors
    (without its password). A current database is only read; otherwise the upgrade takes the
    advisory lock, then reads the version again, so concurrent openers upgrade it once."""
    if postgres_schema_version(conn) == POSTGRES_SCHEMA_VERSION:
        return POSTGRES_SCHEMA_VERSION
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK,))
        found = postgres_schema_version(conn)
        for statement in _pending(POSTGRES_MIGRATIONS, found, where):
            conn.execute(statement)
        if found != POSTGRES_SCHEMA_VERSION:
            conn.execute("CREATE TABLE IF NOT EXISTS vl2v_schema (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM vl2v_schema")
            conn.execute("INSERT INTO vl2v_schema (version) VALUES (%s)", (POSTGRES_SCHEMA_VERSION,))
    return found
