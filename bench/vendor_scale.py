"""The vendor on a shared PostgreSQL ledger, in one bounded run on loopback:

1. served throughput of ``vl2v-tiny`` with 1 and 3 vendor processes (``serve --workers N``) on one
   PostgreSQL ledger: single-image requests from concurrent clients, images answered per second;
2. the ledger's added latency per request, SQLite vs PostgreSQL, side by side: the ledger calls one
   embeddings request makes (authenticate, take a token from the key's rate bucket, charge,
   complete), timed in this process, sequentially, p50 and p99; PostgreSQL with its default
   durability and with ``synchronous_commit=off`` (set per connection in the URL), which is nearer
   to what SQLite's ``synchronous=NORMAL`` promises.

PostgreSQL is a fresh cluster started for the run (Debian's package, as the tests start it:
``tests/postgres_server.py``) with its default durability (fsync on each commit); SQLite runs as
the vendor runs it (WAL, ``synchronous=NORMAL``). Everything is stopped at the end.

    python bench/vendor_scale.py                      # ~1.5 minutes on 2 cores
    python bench/vendor_scale.py --images 600 --requests 1000

Measured 2026-12-01 on 2 CPU cores shared with other jobs (defaults): 1 process 84.7 / 71.8 images/s,
3 processes 48.4 / 62.5 (two runs): on 2 cores three copies of the model only compete for them; the
replicas are for more cores or hosts. Ledger work per request, p50 / p99 ms: SQLite 0.28 / 4.9,
PostgreSQL 3.1 / 5.3 (fsync per commit), 2.1 / 3.2 with ``synchronous_commit=off``: a few loopback round
trips (authenticate, rate bucket, charge, complete) where SQLite makes none.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ``vl2v-vendor serve`` sets it

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' PostgreSQL starter

import numpy as np  # noqa: E402
from postgres_server import start_postgres  # noqa: E402
from vendor_throughput import body, served_images_per_s, synthetic_jpegs  # noqa: E402

from client_distill.buy.local_vendor import start_vendor  # noqa: E402
from vendor_server.ledger import SqlLedger, new_request_id, open_ledger  # noqa: E402
from vendor_server.ratelimit import limiter_for  # noqa: E402

CLIENTS = 32
#: a libpq URL option: this connection's commits do not wait for the WAL to reach the disk
ASYNC_COMMIT = "?options=-c%20synchronous_commit%3Doff"


def throughput(db: str, processes: int, files: list[bytes], rounds: int) -> float:
    """Images/s served by ``processes`` workers on ledger ``db`` (the median of ``rounds``)."""
    ledger = open_ledger(db)
    try:
        _, key = ledger.create_key(f"bench-{processes}", budget=10**9, rate_limit_qps=1e6)
    finally:
        ledger.close()
    threads = max(1, (os.cpu_count() or 1) // processes)  # the processes share the cores, not multiply them
    vendor = start_vendor(
        *("--model", "vl2v-tiny", "--pretrained", "none", "--db", db, "--log-level", "warning"),
        *("--workers", str(processes)),
        env={**os.environ, "OMP_NUM_THREADS": str(threads), "VL2V_VENDOR_QUEUE_LIMIT": "100000"},
        ready_timeout_s=300,
    )
    try:
        time.sleep(2 * processes)  # /readyz answers when the first worker is up; let the others load too
        bodies = [body([f]) for f in files]
        asyncio.run(served_images_per_s(vendor.url, key, bodies[:CLIENTS], CLIENTS, CLIENTS))  # warm-up
        rates = [asyncio.run(served_images_per_s(vendor.url, key, bodies, len(files), CLIENTS)) for _ in range(rounds)]
    finally:
        vendor.stop(timeout_s=30)
    return float(np.median(rates))


def ledger_latency_ms(ledger: SqlLedger, requests: int) -> list[float]:
    """Milliseconds of ledger work per request, as one embeddings request does it."""
    record, secret = ledger.create_key("latency", budget=10**9, rate_limit_qps=1e6)
    limiter = limiter_for(ledger)
    times = []
    for i in range(requests + 20):
        start = time.perf_counter()
        key = ledger.authenticate(secret)
        limiter.hit("key:" + key.id, key.rate_limit_qps or 50.0)
        request_id = new_request_id()
        ledger.charge(key.id, request_id, 0, 1, f"body {i}", idempotency_key=f"idem {i}")
        ledger.complete(request_id, '{"data": []}')
        times.append((time.perf_counter() - start) * 1000)
    assert ledger.key(record.id).used == requests + 20
    return times[20:]  # without the warm-up (connections, prepared statements)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="single-image requests per throughput round")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds per setting (median reported)")
    parser.add_argument("--requests", type=int, default=500, help="requests timed per ledger for the latency")
    args = parser.parse_args()

    postgres = start_postgres(durable=True)
    try:
        files = synthetic_jpegs(args.images, 64)
        served = {n: throughput(postgres.create_database(), n, files, args.rounds) for n in (1, 3)}
        latency: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            ledgers = (
                ("SQLite (WAL, synchronous=NORMAL)", str(Path(tmp) / "bench.sqlite3")),
                ("PostgreSQL (defaults: fsync per commit)", postgres.create_database()),
                # what SQLite's NORMAL promises (kill -9 of the server loses nothing; power loss may) is
                # closer to this: the commit does not wait for the WAL flush
                ("PostgreSQL, synchronous_commit=off", postgres.create_database() + ASYNC_COMMIT),
            )
            for name, db in ledgers:
                ledger = open_ledger(db)
                try:
                    latency[name] = ledger_latency_ms(ledger, args.requests)
                finally:
                    ledger.close()
    finally:
        postgres.destroy()

    print(
        f"\nvl2v-tiny on a PostgreSQL ledger, {CLIENTS} concurrent single-image clients ({args.images} JPEGs of "
        f"64x64 px per round, median of {args.rounds}), {os.cpu_count()} CPU cores:\n"
    )
    print("| vendor processes | served images/s | vs 1 process |")
    print("|---:|---:|---:|")
    for n, rate in served.items():
        print(f"| {n} | {rate:.1f} | {rate / served[1]:.2f}x |")
    print(
        f"\nledger work per request (authenticate, rate limit, charge, complete), {args.requests} requests in a row:\n"
    )
    print("| ledger | p50 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for name, times in latency.items():
        print(f"| {name} | {percentile(times, 50):.2f} | {percentile(times, 99):.2f} | {statistics.fmean(times):.2f} |")


if __name__ == "__main__":
    main()
