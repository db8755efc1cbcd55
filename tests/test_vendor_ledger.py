"""The SQLite ledger on its own: atomic charges from many threads, refunds, crash recovery,
idempotency states. Real files, no server."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from vendor_server.ledger import Ledger, hash_secret, new_request_id
from vendor_server.ledger.errors import (
    BudgetExceeded,
    IdempotencyInProgress,
    IdempotencyMismatch,
    KeyNotFound,
    KeyRevoked,
    UnknownApiKey,
)


@pytest.fixture
def ledger(tmp_path):
    book = Ledger(tmp_path / "ledger.sqlite3")
    yield book
    book.close()


def test_secret_is_stored_only_as_a_hash(ledger, tmp_path):
    record, secret = ledger.create_key("acme", budget=10)
    assert ledger.authenticate(secret).id == record.id
    dump = "\n".join(sqlite3.connect(tmp_path / "ledger.sqlite3").iterdump())
    assert secret not in dump and hash_secret(secret) in dump
    with pytest.raises(UnknownApiKey):
        ledger.authenticate(secret + "x")
    ledger.revoke(record.id)
    with pytest.raises(KeyRevoked):
        ledger.authenticate(secret)
    with pytest.raises(KeyNotFound):
        ledger.topup("key_nope", 5)


def test_threads_never_overshoot_the_budget(tmp_path, ledger):
    record, _ = ledger.create_key("race", budget=100)
    others = [Ledger(tmp_path / "ledger.sqlite3") for _ in range(2)]  # separate connections, as other processes

    def charge(i: int) -> bool:
        try:
            (others + [ledger])[i % 3].charge(
                record.id, new_request_id(), images=i % 4, texts=3 - i % 4, body_sha256="h"
            )
            return True
        except BudgetExceeded:
            return False

    with ThreadPoolExecutor(16) as pool:
        ok = sum(pool.map(charge, range(80)))
    assert ok == 33 and ledger.key(record.id).used == 99
    for other in others:
        other.close()


def test_complete_refund_and_recover_keep_used_equal_to_charged(ledger, tmp_path):
    record, _ = ledger.create_key("books", budget=50)
    done, failed, crashed = new_request_id(), new_request_id(), new_request_id()
    assert ledger.charge(record.id, done, 2, 1, "a").remaining == 47
    ledger.complete(done, "{}")
    ledger.charge(record.id, failed, 0, 5, "b")
    ledger.refund(failed)
    ledger.charge(record.id, crashed, 4, 0, "c", idempotency_key="idem")
    assert ledger.key(record.id).used == 7
    ledger.close()

    reopened = Ledger(tmp_path / "ledger.sqlite3")  # as after kill -9: the reservation is still there
    assert reopened.recover() == 1
    assert reopened.key(record.id).used == 3
    usage = reopened.usage(record.id)
    assert (usage.images, usage.texts, usage.requests) == (2, 1, 1)
    # the crashed request's idempotency key is free again
    assert reopened.charge(record.id, new_request_id(), 4, 0, "c", idempotency_key="idem").replay is None
    reopened.close()


def test_idempotency_states(ledger):
    record, _ = ledger.create_key("idem", budget=10)
    first = new_request_id()
    ledger.charge(record.id, first, 0, 2, "body", idempotency_key="k")
    with pytest.raises(IdempotencyInProgress):
        ledger.charge(record.id, new_request_id(), 0, 2, "body", idempotency_key="k")
    with pytest.raises(IdempotencyMismatch):
        ledger.charge(record.id, new_request_id(), 0, 2, "other body", idempotency_key="k")
    ledger.complete(first, '{"stored": true}')
    replay = ledger.charge(record.id, new_request_id(), 0, 2, "body", idempotency_key="k")
    assert replay.replay == '{"stored": true}' and ledger.key(record.id).used == 2


def test_idempotency_expires(tmp_path):
    ledger = Ledger(tmp_path / "short.sqlite3", idempotency_ttl_s=0.0001)
    record, _ = ledger.create_key("ttl", budget=10)
    first = new_request_id()
    ledger.charge(record.id, first, 0, 1, "body", idempotency_key="k")
    ledger.complete(first, "{}")
    assert ledger.charge(record.id, new_request_id(), 0, 1, "body", idempotency_key="k").replay is None
    assert ledger.key(record.id).used == 2
    ledger.close()


def test_a_key_revoked_after_authentication_is_not_charged(ledger):
    record, secret = ledger.create_key("late", budget=10)
    ledger.authenticate(secret)  # the request got past auth ...
    ledger.revoke(record.id)  # ... then the operator revoked the key
    with pytest.raises(KeyRevoked):
        ledger.charge(record.id, new_request_id(), 1, 0, "sha")
    assert ledger.usage(record.id).used == 0
