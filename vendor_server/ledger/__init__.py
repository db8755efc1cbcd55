"""The vendor's books: API keys (only a SHA-256 of each secret is stored), budgets, one usage event
per charged request, and stored responses for ``Idempotency-Key`` replays.

One interface, :class:`~vendor_server.ledger.core.SqlLedger` (the rules, written once), two backends:

- :class:`~vendor_server.ledger.sqlite.SqliteLedger` (``--db PATH``, the default): one file, one
  vendor process. :data:`Ledger` is this class, as before the PostgreSQL backend existed.
- :class:`~vendor_server.ledger.postgres.PostgresLedger` (``--db postgresql://…``): one database
  shared by N vendor processes (``--workers N``, or replicas behind a load balancer).

:func:`open_ledger`, the one way to open a ledger, picks the backend from the ``--db`` value (the
server passes its settings' :meth:`~vendor_server.settings.VendorSettings.ledger_options`). The package:
``core`` (the interface and its rules), ``sqlite`` and ``postgres`` (the backends), ``schema`` (versions
and migrations) and ``errors`` (the refusals, which the HTTP API and the CLI each render in their own
way)."""

from __future__ import annotations

from pathlib import Path

from vendor_server.ledger.core import (
    MAX_BUDGET,
    SECRET_PREFIX,
    Charge,
    KeyRecord,
    SqlLedger,
    hash_secret,
    new_request_id,
)
from vendor_server.ledger.sqlite import SqliteLedger

__all__ = [
    "MAX_BUDGET",
    "SECRET_PREFIX",
    "Charge",
    "KeyRecord",
    "Ledger",
    "SqlLedger",
    "SqliteLedger",
    "hash_secret",
    "is_postgres_url",
    "new_request_id",
    "open_ledger",
]

#: the SQLite ledger, under the name it had when it was the only one (``Ledger(path)``)
Ledger = SqliteLedger

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | Path) -> bool:
    return str(db).startswith(POSTGRES_SCHEMES)


def open_ledger(
    db: str | Path,
    *,
    idempotency_ttl_s: float = 24 * 3600,
    synchronous: str = "NORMAL",
    lease_s: float = 30.0,
    pool_size: int = 10,
) -> SqlLedger:
    """The ledger ``db`` names: a ``postgresql://`` URL (psycopg's conninfo URL, e.g.
    ``postgresql://vendor:secret@db:5432/vl2v``) or a SQLite file path. ``synchronous`` is SQLite's;
    ``lease_s`` and ``pool_size`` PostgreSQL's (see :mod:`vendor_server.ledger.postgres`)."""
    if is_postgres_url(db):
        from vendor_server.ledger.postgres import PostgresLedger  # psycopg only for those who use it

        return PostgresLedger(str(db), idempotency_ttl_s=idempotency_ttl_s, lease_s=lease_s, pool_size=pool_size)
    return SqliteLedger(db, idempotency_ttl_s=idempotency_ttl_s, synchronous=synchronous)
