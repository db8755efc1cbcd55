"""The ledger's schema version and migrations: a ledger written before versions existed is upgraded in
place with its keys and usage intact; a new one starts at the current version; one written by a newer
vl2v-vendor is refused untouched (in the CLI as one line)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vendor_server.cli import main
from vendor_server.ledger import Ledger, hash_secret, new_request_id
from vendor_server.ledger.errors import UnsupportedSchema
from vendor_server.ledger.reports import LedgerReports
from vendor_server.ledger.schema import MIGRATIONS, SCHEMA_VERSION, schema_version

#: the schema as vl2v-vendor created it before it had a version (``git show 8314966:vendor_server/ledger.py``),
#: kept literally: the migrations must take exactly these files forward
V0_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    budget INTEGER NOT NULL CHECK (budget >= 0),
    used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= budget),
    rate_limit_qps REAL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_events (
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
);
CREATE INDEX IF NOT EXISTS usage_events_by_key ON usage_events(key_id, status);
CREATE INDEX IF NOT EXISTS usage_events_by_status ON usage_events(status);
CREATE TABLE IF NOT EXISTS idempotency (
    key_id TEXT NOT NULL REFERENCES keys(id),
    idempotency_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_flight', 'done')),
    response TEXT,
    expires REAL NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency(expires);
"""
SECRET = "vl2v-sk-written-by-the-unversioned-vendor"


def v0_ledger(path: Path) -> None:
    """A ledger as the unversioned vendor left it: one key with budget 10, 3 queries charged on one
    completed request whose idempotent answer is stored, and one reservation a crash left behind."""
    db = sqlite3.connect(path)
    db.executescript(V0_SCHEMA)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO keys VALUES ('key_old', 'legacy', ?, 10, 5, NULL, 0, 1.0)", (hash_secret(SECRET),))
    db.execute("INSERT INTO usage_events VALUES ('req_done', 'key_old', 1, 2, 3, 'idem', 'body', 'charged', 1.0, 2.0)")
    db.execute("INSERT INTO usage_events VALUES ('req_lost', 'key_old', 2, 0, 2, NULL, 'b2', 'reserved', 3.0, NULL)")
    db.execute("INSERT INTO idempotency VALUES ('key_old', 'idem', 'body', 'req_done', 'done', '{\"old\": 1}', 1e12)")
    db.commit()
    db.close()


def indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return schema_version(db)
    finally:
        db.close()


def test_an_unversioned_ledger_is_upgraded_with_its_data_intact(tmp_path):
    path = tmp_path / "old.sqlite3"
    v0_ledger(path)
    assert version_of(path) == 0 and "idempotency_by_request" not in indexes(path)

    ledger = Ledger(path)
    try:
        assert version_of(path) == SCHEMA_VERSION and "idempotency_by_request" in indexes(path)
        key = ledger.authenticate(SECRET)
        assert (key.id, key.name, key.budget, key.used) == ("key_old", "legacy", 10, 5)
        assert ledger.recover() == 1 and ledger.key("key_old").used == 3  # the crashed reservation, refunded
        usage = ledger.usage("key_old")
        assert (usage.images, usage.texts, usage.requests) == (1, 2, 1)
        assert ledger.charge("key_old", new_request_id(), 0, 2, "body", idempotency_key="idem").replay == '{"old": 1}'
        fresh = new_request_id()
        assert ledger.charge("key_old", fresh, 1, 1, "new").remaining == 5
        ledger.complete(fresh, "{}")
        assert ledger.key("key_old").used == 5
    finally:
        ledger.close()
    Ledger(path).close()  # opening a current ledger again changes nothing
    assert version_of(path) == SCHEMA_VERSION


def test_a_charge_sweeps_its_keys_expired_replays_by_index(tmp_path):
    """Every charge first deletes its key's expired idempotency rows: a range scan of the (key, expiry)
    index, not a walk of every row the key holds in the replay window."""
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    db = sqlite3.connect(path)
    try:
        plan = " ".join(
            row[-1]
            for row in db.execute(
                "EXPLAIN QUERY PLAN DELETE FROM idempotency WHERE key_id = ? AND expires <= ? AND status = 'done'",
                ("key_x", 1.0),
            )
        )
    finally:
        db.close()
    assert "idempotency_by_key_expiry (key_id=? AND expires<?)" in plan, plan


def test_a_ledger_of_the_previous_release_gains_the_consoles_counters(tmp_path):
    """Version 3 (before the operator console): its books intact, the console's tables added, empty."""
    path = tmp_path / "v3.sqlite3"
    v0_ledger(path)
    db = sqlite3.connect(path, isolation_level=None)
    for statement in (statement for migration in MIGRATIONS[:3] for statement in migration):
        db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.close()

    ledger = Ledger(path)
    try:
        assert version_of(path) == SCHEMA_VERSION == 5
        assert (ledger.key("key_old").used, ledger.usage("key_old").requests) == (5, 2)
        reports = LedgerReports(ledger)
        assert reports.coverage(recent_since=0.0) == ([], 0) and reports.partition() is None
        reports.add({(1, "key_old", "200"): 1}, {})
        assert reports.outcomes_by_key(0) == {"key_old": {"200": 1}}
    finally:
        ledger.close()


def test_a_new_ledger_starts_at_the_current_version(tmp_path):
    path = tmp_path / "new.sqlite3"
    Ledger(path).close()
    assert version_of(path) == SCHEMA_VERSION
    assert {"usage_events_by_key", "idempotency_by_expiry", "idempotency_by_request"} <= indexes(path)


def test_a_ledger_from_a_newer_vendor_is_refused_untouched(tmp_path, capsys):
    path = tmp_path / "future.sqlite3"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()

    with pytest.raises(UnsupportedSchema, match=f"schema version {SCHEMA_VERSION + 1}"):
        Ledger(path)
    assert main(["keys", "list", "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vl2v-vendor: error:") and len(err.strip().splitlines()) == 1, err
    assert "newer vl2v-vendor" in err and "Traceback" not in err
    assert path.read_bytes() == before and version_of(path) == SCHEMA_VERSION + 1
