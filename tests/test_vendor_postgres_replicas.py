"""Three real vendor processes (``vl2v-vendor serve --db postgresql://…`` on loopback) on one real
PostgreSQL ledger, as replicas behind a load balancer would run: the budget race across replicas,
one ``Idempotency-Key`` sent to two replicas at once, a key's rate limit across replicas, the
database stopped mid-load, and a replica killed with -9 mid-load. After each, the books are read
straight from PostgreSQL: ``used == SUM(charged events)`` per key and no reservation left.

The cluster (its own PostgreSQL, three replicas with a 2 s lease) is started once for the module;
a test that stops a replica or the database leaves them running again."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from conftest import VendorServer
from postgres_server import PostgresServer, start_postgres

from vendor_server.ledger import open_ledger

LEASE_S = "2"
READY_TIMEOUT_S = 180


def alive(replica: VendorServer) -> bool:
    return replica.running is not None and replica.running.process.poll() is None


@dataclass
class Cluster:
    postgres: PostgresServer
    db: str
    replicas: list[VendorServer]

    def create_key(self, budget: int, rate_limit: float | None = 1000.0) -> tuple[str, str]:
        """``(key id, secret)``, written straight into the shared ledger (as ``keys create`` does)."""
        secret = self.replicas[0].create_key(budget, rate_limit)
        ledger = open_ledger(self.db)
        try:
            return ledger.authenticate(secret).id, secret
        finally:
            ledger.close()

    def books(self, key_id: str) -> tuple[int, int, dict[str, int]]:
        """``(keys.used, SUM(queries) of charged events, events by status)`` of one key, from PostgreSQL."""
        with psycopg.connect(self.db) as conn:
            used = conn.execute("SELECT used FROM keys WHERE id = %s", (key_id,)).fetchone()[0]
            charged = conn.execute(
                "SELECT COALESCE(SUM(queries), 0) FROM usage_events WHERE key_id = %s AND status = 'charged'",
                (key_id,),
            ).fetchone()[0]
            statuses = dict(
                conn.execute(
                    "SELECT status, COUNT(*) FROM usage_events WHERE key_id = %s GROUP BY status", (key_id,)
                ).fetchall()
            )
        return int(used), int(charged), statuses

    def settled_books(self, key_id: str, timeout_s: float = 20.0) -> tuple[int, int, dict[str, int]]:
        """The books once nothing is reserved any more (a dead replica's reservations are refunded
        about a lease after it stopped; a replica's own deferred refunds once the database is back)."""
        deadline = time.monotonic() + timeout_s
        books = self.books(key_id)
        while books[2].get("reserved") and time.monotonic() < deadline:
            time.sleep(0.25)
            books = self.books(key_id)
        return books


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    postgres = start_postgres()
    tmp = tmp_path_factory.mktemp("replicas")
    replicas: list[VendorServer] = []
    try:
        db = postgres.create_database()
        env = {"VL2V_VENDOR_DB_LEASE_S": LEASE_S, "OMP_NUM_THREADS": "1"}
        replicas = [VendorServer(db=db, log=tmp / f"replica{i}.log", env=env) for i in range(3)]
        with ThreadPoolExecutor(3) as pool:  # the model loads overlap
            list(pool.map(VendorServer.start, replicas))
        yield Cluster(postgres, db, replicas)
    finally:
        for replica in replicas:
            replica.stop()
        postgres.destroy()


def body(text: str) -> dict:
    return {"input": [text], "model": "vl2v-tiny"}


def headers(secret: str, idempotency_key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}


def test_sixty_requests_on_three_replicas_against_a_budget_of_thirty(cluster):
    key_id, secret = cluster.create_key(budget=30)

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        cluster.replicas[i % 3].url + "/v1/embeddings", json=body(f"race {i}"), headers=headers(secret)
                    )
                    for i in range(60)
                )
            )

    responses = asyncio.run(all_at_once())
    statuses = Counter(r.status_code for r in responses)
    used, charged, events = cluster.settled_books(key_id)
    print(f"\nrace: 60 requests on 3 replicas, budget 30: {dict(statuses)}; used={used}, charged={charged}, {events}")
    assert statuses == {200: 30, 402: 30}
    assert used == charged == 30 and events == {"charged": 30}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"budget_exhausted"}


def test_one_idempotency_key_sent_to_two_replicas_at_once_is_charged_once(cluster):
    key_id, secret = cluster.create_key(budget=100)

    def send(replica: VendorServer, key: str, text: str) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            while True:  # a 409 says the twin is in flight: retry, as the client does
                r = client.post(replica.url + "/v1/embeddings", json=body(text), headers=headers(secret, key))
                if r.status_code != 409:
                    return r
                time.sleep(0.05)

    rounds, replayed = 8, 0
    with ThreadPoolExecutor(2) as pool:
        for n in range(rounds):
            key = f"idem-{uuid.uuid4()}"
            pair = list(pool.map(lambda i, k=key, n=n: send(cluster.replicas[i], k, f"twin {n}"), (0, 1)))
            assert [r.status_code for r in pair] == [200, 200]
            assert pair[0].json()["data"] == pair[1].json()["data"]
            replayed += sum(r.headers.get("Idempotent-Replayed") == "true" for r in pair)
    used, charged, events = cluster.settled_books(key_id)
    print(f"\nidempotency: {rounds} keys each sent to 2 replicas at once: {replayed} replays, used={used}, {events}")
    assert replayed == rounds
    assert used == charged == rounds and events == {"charged": rounds}


def test_a_keys_rate_limit_holds_across_replicas(cluster):
    _, secret = cluster.create_key(budget=100, rate_limit=2.0)
    statuses = []
    with httpx.Client(timeout=60) as client:
        started = time.monotonic()
        for i in range(9):
            statuses.append(
                client.post(
                    cluster.replicas[i % 3].url + "/v1/embeddings", json=body(f"rl {i}"), headers=headers(secret)
                ).status_code
            )
        elapsed = time.monotonic() - started
    # a burst of 2 and 2 more per second: one replica alone would have let 2 through per replica
    assert statuses.count(200) <= 2 + int(2 * elapsed) + 1, (statuses, elapsed)
    assert statuses.count(429) >= 9 - (2 + int(2 * elapsed) + 1)


class Load:
    """``threads`` clients sending one-text requests round-robin to the replicas until stopped; each
    logical request has its own ``Idempotency-Key`` and is resent (same key, same body) to the next
    replica when one cannot be reached, as a client behind a load balancer would."""

    def __init__(self, cluster: Cluster, secret: str, threads: int = 6, resend: bool = True) -> None:
        self.cluster, self.secret, self.resend = cluster, secret, resend
        self.stop = threading.Event()
        self.lock = threading.Lock()
        #: (sent, answered, status, headers in lower case), times by time.monotonic()
        self.answers: list[tuple[float, float, int, dict[str, str]]] = []
        self.served: set[str] = set()  # idempotency keys answered 200
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _run(self, worker: int) -> None:
        n, turn = 0, worker
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                key, text = f"load-{worker}-{n}-{uuid.uuid4().hex[:6]}", f"load {worker} {n}"
                n += 1
                while not self.stop.is_set():
                    replica = self.cluster.replicas[turn % 3]
                    turn += 1
                    if not alive(replica):
                        continue
                    sent = time.monotonic()
                    try:
                        r = client.post(
                            replica.url + "/v1/embeddings", json=body(text), headers=headers(self.secret, key)
                        )
                    except httpx.TransportError:
                        if self.resend:
                            continue
                        break
                    with self.lock:
                        self.answers.append(
                            (sent, time.monotonic(), r.status_code, {k.lower(): v for k, v in r.headers.items()})
                        )
                        if r.status_code == 200:
                            self.served.add(key)
                    if r.status_code == 409 or (r.status_code == 503 and self.resend):
                        time.sleep(0.1)
                        continue
                    break


@pytest.mark.slow
def test_postgres_stopped_mid_load_answers_503_charges_nothing_unanswered_and_resumes(cluster):
    key_id, secret = cluster.create_key(budget=100_000)
    with Load(cluster, secret, resend=False) as load:
        time.sleep(2)
        cluster.postgres.stop()  # returns once the server is down (pg_ctl -w): a fast shutdown takes a while
        stopped = time.monotonic()
        time.sleep(3)
        restarting = time.monotonic()  # the server accepts connections before pg_ctl -w returns
        cluster.postgres.start()
        restarted = time.monotonic()
        deadline = restarted + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with load.lock:
                if sum(1 for _, when, status, _ in load.answers if when > restarted + 0.5 and status == 200) >= 10:
                    break
    statuses = Counter(status for _, _, status, _ in load.answers)
    # sent once PostgreSQL was down and answered before it was started again: nothing can be charged, so
    # 503 (a request charged just before the stop may still be answered 200 while its batch runs)
    during = Counter(status for sent, when, status, _ in load.answers if stopped < sent and when < restarting)
    resumed = next((when for _, when, status, _ in load.answers if when > restarted and status == 200), None)
    used, charged, events = cluster.settled_books(key_id)
    print(
        f"\noutage: {dict(statuses)} in all, {dict(during)} while PostgreSQL was down; served again "
        f"{(resumed or float('nan')) - restarted:.1f} s after it restarted; used={used}, charged={charged}, {events}"
    )
    assert set(statuses) <= {200, 503}, statuses
    assert during and set(during) == {503}
    assert all("retry-after" in h for _, _, status, h in load.answers if status == 503)
    assert resumed is not None
    assert used == charged == statuses[200] and "reserved" not in events


@pytest.mark.slow
def test_a_replica_killed_mid_load_the_others_go_on_and_the_books_reconcile(cluster):
    key_id, secret = cluster.create_key(budget=100_000)
    victim = cluster.replicas[2]
    try:
        with Load(cluster, secret) as load:
            time.sleep(2)
            victim.kill9()
            killed = time.monotonic()
            time.sleep(3)
        after = sum(1 for _, when, status, _ in load.answers if when > killed and status == 200)
        used, charged, events = cluster.settled_books(key_id, timeout_s=10 * float(LEASE_S))
        print(
            f"\nkill -9: {len(load.served)} requests served ({after} after the kill), used={used}, "
            f"charged={charged}, {events}"
        )
        assert after > 0
        assert used == charged == len(load.served) and "reserved" not in events
    finally:
        if not alive(victim):
            victim.start()


@pytest.mark.slow
def test_uvicorn_workers_share_the_ledger(cluster, tmp_path):
    """``serve --workers 2``: two worker processes behind one port, one ledger, one budget."""
    db = cluster.postgres.create_database()
    env = {"OMP_NUM_THREADS": "1", "VL2V_VENDOR_WORKERS": "2"}  # serve --workers 2, from the environment
    workers = VendorServer(db=db, log=tmp_path / "workers.log", env=env).start()
    try:
        ledger = open_ledger(db)
        try:
            record, secret = ledger.create_key("workers", 10, 1000.0)
        finally:
            ledger.close()

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(
                    *(
                        client.post(workers.url + "/v1/embeddings", json=body(f"w {i}"), headers=headers(secret))
                        for i in range(16)
                    )
                )

        time.sleep(3)  # both workers past start-up (readyz answered by the first one)
        statuses = Counter(r.status_code for r in asyncio.run(burst()))
        with psycopg.connect(db) as conn:
            owners = conn.execute(
                "SELECT COUNT(DISTINCT instance_id) FROM usage_events WHERE key_id = %s", (record.id,)
            ).fetchone()[0]
            instances = conn.execute("SELECT COUNT(*) FROM ledger_instances").fetchone()[0]
        print(f"\nworkers: {dict(statuses)}; {owners} worker(s) charged, {instances} ledger instances")
        assert statuses == {200: 10, 402: 6}
        assert instances == 2
    finally:
        workers.stop()
