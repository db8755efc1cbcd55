"""The ledger's contract on both backends (SQLite and a real PostgreSQL started by the fixture), and
what only the shared one has to get right: budgets never overshot by several ledger instances (as
replicas) charging one key at once, recovery that refunds a dead instance's reservations and never a
live one's, schema versions and migrations (a SQLite ledger written by the previous release opens and
upgrades; a PostgreSQL one from a newer vendor is refused; replicas starting together upgrade once),
per-key rate limits shared by instances, and the database stopped under a ledger and started again."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from postgres_server import PostgresServer

from vendor_server.api_errors import RateLimited
from vendor_server.cli import main
from vendor_server.ledger import SqlLedger, new_request_id, open_ledger
from vendor_server.ledger.errors import (
    BudgetExceeded,
    IdempotencyInProgress,
    IdempotencyMismatch,
    KeyRevoked,
    LedgerUnreachable,
    UnknownApiKey,
    UnsupportedSchema,
)
from vendor_server.ledger.postgres import PostgresLedger
from vendor_server.ledger.schema import MIGRATIONS, POSTGRES_SCHEMA_VERSION, SCHEMA_VERSION
from vendor_server.ratelimit import SharedRateLimiter, limiter_for
from vendor_server.settings import load_settings

LEASE_S = 2.0


@pytest.fixture(params=["sqlite", "postgres"])
def book(request: pytest.FixtureRequest, tmp_path) -> Iterator[SqlLedger]:
    db = str(tmp_path / "ledger.sqlite3") if request.param == "sqlite" else request.getfixturevalue("postgres_db")
    ledger = open_ledger(db, lease_s=LEASE_S)
    yield ledger
    ledger.close()


def test_the_contract_holds_on_both_backends(book):
    record, secret = book.create_key("books", budget=10, rate_limit_qps=5)
    assert book.authenticate(secret).id == record.id
    with pytest.raises(UnknownApiKey):
        book.authenticate(secret + "x")
    done, failed, idem = new_request_id(), new_request_id(), new_request_id()
    assert book.charge(record.id, done, 2, 1, "a").remaining == 7
    book.complete(done, "{}")
    book.charge(record.id, failed, 0, 4, "b")
    book.refund(failed)
    book.charge(record.id, idem, 0, 2, "body", idempotency_key="k")
    with pytest.raises(IdempotencyInProgress):
        book.charge(record.id, new_request_id(), 0, 2, "body", idempotency_key="k")
    with pytest.raises(IdempotencyMismatch):
        book.replay(record.id, "k", "other body")
    book.complete(idem, '{"stored": 1}')
    assert book.replay(record.id, "k", "body") == '{"stored": 1}'
    assert book.charge(record.id, new_request_id(), 0, 2, "body", idempotency_key="k").replay == '{"stored": 1}'
    with pytest.raises(BudgetExceeded):
        book.charge(record.id, new_request_id(), 0, 6, "c")
    assert book.topup(record.id, 5).budget == 15
    usage = book.usage(record.id)
    assert (usage.used, usage.images, usage.texts, usage.requests) == (5, 2, 3, 2)
    book.revoke(record.id)
    with pytest.raises(KeyRevoked):
        book.charge(record.id, new_request_id(), 0, 1, "d")
    assert [key.id for key in book.keys()] == [record.id]


def test_replicas_charging_one_key_at_once_never_overshoot_its_budget(postgres_db):
    replicas = [open_ledger(postgres_db, lease_s=LEASE_S) for _ in range(3)]
    try:
        record, _ = replicas[0].create_key("race", budget=30)

        def charge(i: int) -> bool:
            request_id = new_request_id()
            try:
                replicas[i % 3].charge(record.id, request_id, 0, 1, f"b{i}")
            except BudgetExceeded:
                return False
            replicas[i % 3].complete(request_id, "{}")
            return True

        with ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(charge, range(60)))
        assert outcomes.count(True) == 30
        assert replicas[1].key(record.id).used == 30
    finally:
        for replica in replicas:
            replica.close()


def test_recovery_refunds_a_dead_instances_reservations_and_never_a_live_ones(postgres_db):
    alive, dying = open_ledger(postgres_db, lease_s=LEASE_S), open_ledger(postgres_db, lease_s=LEASE_S)
    assert isinstance(dying, PostgresLedger)
    try:
        record, _ = alive.create_key("crash", budget=10)
        alive.charge(record.id, new_request_id(), 0, 2, "live", idempotency_key="live")
        dying.charge(record.id, new_request_id(), 0, 3, "dead", idempotency_key="dead")
        starting = open_ledger(postgres_db, lease_s=LEASE_S)  # a replica (re)starting while both run
        assert starting.recover() == 0 and starting.key(record.id).used == 5
        # `dying` stops renewing its heartbeat, as a process killed with -9 does
        dying._closing.set()
        dying._wake.set()
        dying._thread.join()
        deadline = time.monotonic() + 5 * LEASE_S
        while starting.key(record.id).used != 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the live instances' heartbeats recover it, about LEASE_S later
        assert starting.key(record.id).used == 2
        # its idempotency key is free again; the live one's is still in flight
        assert starting.charge(record.id, new_request_id(), 0, 3, "dead", idempotency_key="dead").replay is None
        with pytest.raises(IdempotencyInProgress):
            starting.replay(record.id, "live", "live")
        starting.close()
    finally:
        alive.close()
        dying._pool.close()


def test_postgres_schema_is_versioned_upgraded_once_and_a_newer_one_refused(postgres_db):
    with ThreadPoolExecutor(4) as pool:  # replicas starting together on an empty database
        ledgers = list(pool.map(lambda _: open_ledger(postgres_db, lease_s=LEASE_S), range(4)))
    for ledger in ledgers:
        ledger.close()
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM vl2v_schema").fetchall() == [(POSTGRES_SCHEMA_VERSION,)]
        conn.execute("UPDATE vl2v_schema SET version = version + 1")
    with pytest.raises(UnsupportedSchema, match="newer vl2v-vendor"):
        open_ledger(postgres_db)
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM vl2v_schema").fetchone() == (POSTGRES_SCHEMA_VERSION + 1,)


def test_a_sqlite_ledger_of_the_previous_release_opens_and_upgrades(tmp_path):
    """Version 2 is what the vendor wrote before the PostgreSQL backend (and before ``instance_id``)."""
    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:2]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO keys VALUES ('key_v2', 'old', 'sha', 10, 3, NULL, 0, 1.0)")
    db.execute("INSERT INTO usage_events VALUES ('req_ok', 'key_v2', 0, 1, 1, NULL, 'a', 'charged', 1.0, 2.0)")
    db.execute("INSERT INTO usage_events VALUES ('req_lost', 'key_v2', 0, 2, 2, NULL, 'b', 'reserved', 3.0, NULL)")
    db.close()

    ledger = open_ledger(path)
    try:
        assert ledger.recover() == 1 and ledger.key("key_v2").used == 1
        request_id = new_request_id()
        ledger.charge("key_v2", request_id, 0, 1, "c")
        ledger.complete(request_id, "{}")
    finally:
        ledger.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    owners = dict(db.execute("SELECT request_id, instance_id FROM usage_events").fetchall())
    db.close()
    assert owners["req_ok"] is None and owners[request_id].startswith("inst_")


def test_a_keys_rate_limit_is_shared_by_every_instance(postgres_db):
    ledgers = [open_ledger(postgres_db, lease_s=LEASE_S) for _ in range(3)]
    try:
        limiters = [limiter_for(ledger) for ledger in ledgers]  # what the app does with a shared ledger
        assert all(isinstance(limiter, SharedRateLimiter) for limiter in limiters)
        passed = 0
        for i in range(12):
            try:
                limiters[i % 3].hit("key:shared", 5.0)
                passed += 1
            except RateLimited as exc:
                assert int(exc.headers["Retry-After"]) >= 1
        assert 5 <= passed <= 6  # a burst of 5, and at most one refilled while the 12 ran
    finally:
        for ledger in ledgers:
            ledger.close()


@pytest.mark.slow
def test_the_database_stopped_and_started_under_a_ledger(postgres_server: PostgresServer):
    url = postgres_server.create_database()
    ledger = open_ledger(url, lease_s=LEASE_S)
    try:
        record, _ = ledger.create_key("outage", budget=10)
        in_flight = new_request_id()
        ledger.charge(record.id, in_flight, 0, 2, "x")
        postgres_server.stop()
        try:
            with pytest.raises(LedgerUnreachable):
                ledger.complete(in_flight, "{}")
            with pytest.raises(LedgerUnreachable):
                ledger.refund(in_flight)  # kept, and retried once the database is back
            started = time.monotonic()
            with pytest.raises(LedgerUnreachable):
                ledger.authenticate("anything")
            assert time.monotonic() - started < 0.5  # refused at once while down, no thread held
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if ledger.key(record.id).used == 0:
                    break
            except LedgerUnreachable:
                pass
            time.sleep(0.2)
        assert ledger.key(record.id).used == 0
        assert ledger.usage(record.id).requests == 0
    finally:
        ledger.close()


def test_ledger_threads_stop_with_the_ledger(postgres_db):
    before = threading.active_count()
    open_ledger(postgres_db).close()
    assert threading.active_count() <= before


def test_keys_cli_and_env_name_a_postgres_ledger(postgres_db, capsys, monkeypatch):
    assert main(["keys", "create", "--db", postgres_db, "--name", "cli", "--budget", "7"]) == 0
    secret = capsys.readouterr().out.strip()
    monkeypatch.delenv("VL2V_VENDOR_DB", raising=False)
    monkeypatch.setenv("VL2V_DB", postgres_db)  # the deployment's name for it
    assert load_settings().db == postgres_db
    assert main(["keys", "list"]) == 0
    assert " cli " in capsys.readouterr().out
    ledger = open_ledger(postgres_db)
    try:
        assert ledger.authenticate(secret).budget == 7
    finally:
        ledger.close()


def test_workers_need_a_shared_ledger(tmp_path, capsys):
    assert main(["serve", "--workers", "2", "--db", str(tmp_path / "one.sqlite3")]) == 2
    assert "needs a ledger the workers can share" in capsys.readouterr().err
