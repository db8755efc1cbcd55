"""Load, and kill -9, against a real vendor, then every key's books reconciled three ways.

Starts ``vl2v-vendor serve`` on 127.0.0.1 with a fresh ledger (the vendor's own model), creates four
keys through the admin API (two open ones, one with a budget of 500, one limited to 5 requests/s)
and runs N concurrent clients (one connection each, asyncio + httpx) for T seconds. Each client
sends a mix of text, image and mixed requests (1-8 items); some carry an ``Idempotency-Key`` and
are resent after their answer (a replay, not charged again), sent twice at once (one is charged,
the other gets 409 or the replay), or reused with a different body (422). With ``--kill K`` every
request carries a key, and the vendor is killed with SIGKILL K times mid-load and restarted on the
same ledger; clients whose answer was lost resend with the same key until they get one.

At the end, per key: responses by status, the queries the clients saw charged (``usage.queries``
of each logical request answered 200, once however many times it was resent), the vendor's
``used`` from ``GET /v1/usage``, and from the SQLite ledger itself ``keys.used``, the sum of the
key's charged events, reservations left, and idempotency keys charged more than once. A key
reconciles when the four counts agree exactly and nothing is left reserved or charged twice. After
each restart: the reservations the crash left were refunded (none left from before the kill).

    python bench/vendor_load.py                               # 64 clients x 60 s
    python bench/vendor_load.py --clients 16 --seconds 15
    python bench/vendor_load.py --kill                        # the kill -9 run, 3 kills (each restart loads the model)
    python bench/vendor_load.py --no-coverage                 # the console's coverage counters off

Exit status 0 when every key reconciles and no answer was a 5xx, else 1. Loopback only; the vendor
is stopped (or killed) before the script exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import io
import json
import os
import random
import secrets
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from client_distill.buy.local_vendor import LocalVendor, free_port, start_vendor

EMBEDDINGS = "/v1/embeddings"
IDEMPOTENCY = "Idempotency-Key"
#: a request whose answer is lost is resent at most this long after the load ends
GRACE_S = 120.0
WORDS = ("cat", "dog", "house", "tree", "boat", "car", "bird", "horse", "cup", "key", "fish", "flower")


@dataclass(frozen=True)
class KeySpec:
    name: str
    budget: int
    rate_limit_qps: float


KEYS = (
    KeySpec("open-1", 10**9, 100_000),
    KeySpec("open-2", 10**9, 100_000),
    KeySpec("budget-500", 500, 100_000),
    KeySpec("limited-5qps", 10**9, 5),
)


@dataclass
class Tally:
    """One key's books as its clients saw them."""

    statuses: Counter = field(default_factory=Counter)  # every attempt by answer status; "conn" = no answer
    charged: int = 0  # queries of logical requests answered 200, each counted once
    logical: int = 0
    replays: int = 0  # 200s with Idempotent-Replayed
    resent_after_lost_answer: int = 0  # logical requests sent, answer lost (kill -9), resent ...
    lost_then_replayed: int = 0  # ... whose resend was a replay (charged before the crash)
    double_billed: int = 0  # a logical request answered 200 twice, neither a replay
    reuse_accepted: int = 0  # an Idempotency-Key reused with a different body, and charged
    in_doubt: int = 0  # answers lost without a key to resend with: charged or not, unknown
    latencies: list[float] = field(default_factory=list)


@dataclass
class Logical:
    """One logical request: the same body (and key) however many times it is sent."""

    body: bytes
    idempotency_key: str | None
    counted: bool = False
    fresh_200s: int = 0
    lost: bool = False  # an attempt reached the vendor and its answer was lost


# --- the workload ------------------------------------------------------------------------------------


def image_pool(n: int = 32, size: int = 64, seed: int = 0) -> list[str]:
    """Small PNG and JPEG files (noise over gradients), base64, made once before the clock starts."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    pool = []
    for i in range(n):
        base = np.stack([np.sin(xx * rng.uniform(1, 9) + rng.uniform(0, 6)) for _ in range(3)], -1) * yy[..., None]
        pixels = np.clip(127 + 100 * base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG" if i % 2 else "JPEG")
        pool.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return pool


def request_body(rng: random.Random, pool: list[str], client: int, n: int) -> bytes:
    """Half texts (1-8), 30 % images (1-4), 20 % one text with 1-3 images."""

    def text() -> str:
        return f"client {client} request {n}: a photo of a {rng.choice(WORDS)} ({rng.random():.6f})"

    kind = rng.random()
    if kind < 0.5:
        items: list = [text() for _ in range(rng.randint(1, 8))]
    elif kind < 0.8:
        items = [{"image": rng.choice(pool)} for _ in range(rng.randint(1, 4))]
    else:
        items = [{"text": text()}, *({"image": rng.choice(pool)} for _ in range(rng.randint(1, 3)))]
    return json.dumps({"input": items, "encoding_format": "base64"}).encode()


# --- one client ----------------------------------------------------------------------------------------


class Load:
    def __init__(self, args: argparse.Namespace, url: str, secrets_by_key: dict[str, str]):
        self.args = args
        self.url = url
        self.secrets = secrets_by_key
        self.tallies = {spec.name: Tally() for spec in KEYS}
        self.stop = asyncio.Event()
        self.hard_deadline = float("inf")  # monotonic; set when the load ends
        self.kill_failures = 0  # restarts after which a reservation from before the kill was left
        self.pool = image_pool(seed=args.seed)

    async def send(self, client: httpx.AsyncClient, tally: Tally, req: Logical) -> httpx.Response | None:
        """Send until there is an answer to act on; None when an answer was lost and cannot be resent."""
        headers = {IDEMPOTENCY: req.idempotency_key} if req.idempotency_key else {}
        while True:
            started = time.monotonic()
            try:
                response = await client.post(EMBEDDINGS, content=req.body, headers=headers)
            except httpx.TransportError as exc:
                tally.statuses["conn"] += 1
                never_sent = isinstance(exc, httpx.ConnectError)  # refused: the vendor is down, nothing charged
                if req.idempotency_key is None or time.monotonic() > self.hard_deadline:
                    tally.in_doubt += not never_sent
                    return None
                req.lost |= not never_sent
                await asyncio.sleep(0.25)  # the vendor is down (kill -9) or restarting: resend, same key
                continue
            tally.statuses[response.status_code] += 1
            if response.status_code == 200:
                tally.latencies.append(time.monotonic() - started)
                self.record_200(tally, req, response)
                return response
            retry = response.status_code in (409, 503) or (response.status_code == 429 and req.lost)
            if retry and req.idempotency_key and time.monotonic() < self.hard_deadline:
                # 409: the same key is still being processed; 503: overloaded or starting; 429 on the resend
                # of a request whose answer was lost, which the vendor may have charged: a client must
                # keep resending it until it learns the outcome, or it has paid for an answer it never got.
                # None of the three is charged.
                await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))
                continue
            return response

    def record_200(self, tally: Tally, req: Logical, response: httpx.Response) -> None:
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        tally.replays += replayed
        if not replayed:
            req.fresh_200s += 1
            if req.fresh_200s == 2:
                tally.double_billed += 1
        if not req.counted:
            req.counted = True
            tally.charged += response.json()["usage"]["queries"]
            if req.lost:
                tally.resent_after_lost_answer += 1
                tally.lost_then_replayed += replayed

    async def client(self, number: int) -> None:
        spec = KEYS[number % len(KEYS)]
        tally = self.tallies[spec.name]
        rng = random.Random(self.args.seed * 100_003 + number)
        headers = {"Authorization": f"Bearer {self.secrets[spec.name]}", "Content-Type": "application/json"}
        timeout = httpx.Timeout(GRACE_S, connect=5.0)
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, limits=limits, verify=False
        ) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                await self.one_logical(client, tally, rng, number, n)

    async def one_logical(
        self, client: httpx.AsyncClient, tally: Tally, rng: random.Random, number: int, n: int
    ) -> None:
        idempotent = self.args.kill > 0 or rng.random() < self.args.idempotent_share
        req = Logical(
            request_body(rng, self.pool, number, n), f"c{number}-{n}-{uuid.uuid4().hex}" if idempotent else None
        )
        tally.logical += 1
        twin = idempotent and rng.random() < 0.1
        if twin:  # the same request twice at once: one is charged, the other is a 409 or the replay
            answers = await asyncio.gather(self.send(client, tally, req), self.send(client, tally, req))
            response = next((a for a in answers if a is not None and a.status_code == 200), answers[0])
        else:
            response = await self.send(client, tally, req)
        if response is None:
            return
        if response.status_code == 402:
            await asyncio.sleep(0.2)  # a client whose key is spent would stop; this one only slows down
        elif response.status_code == 429:
            await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 2.0))
        elif response.status_code == 200 and idempotent:
            roll = rng.random()
            if roll < 0.5:  # a retry of a request that was answered: a replay, not charged again
                await self.send(client, tally, req)
            elif roll < 0.55:  # the key reused for another body: 422, not charged
                other = Logical(request_body(rng, self.pool, number, -n), req.idempotency_key)
                answer = await self.send(client, tally, other)
                if answer is not None and answer.status_code == 200:
                    tally.reuse_accepted += 1


# --- the vendor ----------------------------------------------------------------------------------------


@dataclass
class Vendor:
    db: Path
    log: Path
    port: int
    env: dict[str, str]
    running: LocalVendor | None = None

    def start(self) -> None:
        self.running = start_vendor(
            "--db", str(self.db), "--log-level", "warning", port=self.port, env=self.env, log=self.log
        )

    def kill9(self) -> None:
        assert self.running is not None
        self.running.process.kill()
        self.running.process.wait()

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(timeout_s=30)


def create_keys(url: str, admin_token: str) -> dict[str, str]:
    secrets_by_key = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30) as admin:
        for spec in KEYS:
            body = {"name": spec.name, "budget": spec.budget, "rate_limit_qps": spec.rate_limit_qps}
            response = admin.post("/admin/keys", json=body)
            response.raise_for_status()
            secrets_by_key[spec.name] = response.json()["secret"]
    return secrets_by_key


def reserved_before(db: Path, moment: float) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM usage_events WHERE status = 'reserved' AND created < ?", (moment,)
        ).fetchone()[0]


def refunded_by_recovery(db: Path, killed: float, restarted: float) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM usage_events WHERE status = 'refunded' AND created < ? AND finished BETWEEN ? AND ?",
            (killed, killed, restarted),
        ).fetchone()[0]


def ledger_books(db: Path, key_id: str) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        used, budget = conn.execute("SELECT used, budget FROM keys WHERE id = ?", (key_id,)).fetchone()
        charged, reserved = conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN status = 'charged' THEN queries END), 0), "
            "COUNT(CASE WHEN status = 'reserved' THEN 1 END) FROM usage_events WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT idempotency_key FROM usage_events WHERE key_id = ? AND status = 'charged' "
            "AND idempotency_key IS NOT NULL GROUP BY idempotency_key HAVING COUNT(*) > 1)",
            (key_id,),
        ).fetchone()[0]
    return {"used": used, "budget": budget, "charged": charged, "reserved": reserved, "charged_twice": twice}


# --- the run -------------------------------------------------------------------------------------------


async def run_load(args: argparse.Namespace, vendor: Vendor, secrets_by_key: dict[str, str]) -> tuple[Load, float]:
    load = Load(args, f"http://127.0.0.1:{vendor.port}", secrets_by_key)
    started = time.monotonic()
    clients = [asyncio.create_task(load.client(i)) for i in range(args.clients)]
    end = started + args.seconds
    up_since = started
    for k in range(args.kill):
        await asyncio.sleep(max(0.0, started + args.seconds * (k + 1) / (args.kill + 1) - time.monotonic()))
        await asyncio.sleep(max(0.0, up_since + args.min_uptime - time.monotonic()))  # traffic before each kill
        at = time.monotonic() - started
        await asyncio.to_thread(vendor.kill9)
        killed = time.time()
        await asyncio.to_thread(vendor.start)  # same port, same ledger; clients resend meanwhile
        restarted, up_since = time.time(), time.monotonic()
        left = reserved_before(vendor.db, killed)
        refunded = refunded_by_recovery(vendor.db, killed, restarted)
        print(
            f"kill -9 #{k + 1} at {at:5.1f} s: restarted in {restarted - killed:4.1f} s; the crash left {refunded} "
            f"request(s) reserved, refunded at restart; reservations left from before the kill: {left}",
            flush=True,
        )
        load.kill_failures += left != 0
        end = max(end, up_since + args.min_uptime)  # traffic after the last restart too
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    load.stop.set()
    load.hard_deadline = time.monotonic() + GRACE_S
    elapsed = time.monotonic() - started
    done, pending = await asyncio.wait(clients, timeout=GRACE_S + 10)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    return load, elapsed


def api_usage(url: str, secret: str) -> dict:
    response = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def describe_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def report(args: argparse.Namespace, load: Load, elapsed: float, usage: dict, books: dict) -> bool:
    header = (
        f"{'key':<13} {'budget':>10} {'attempts':>8}  {'by status':<36} {'client':>8} {'/v1/usage':>9} "
        f"{'db used':>8} {'db events':>9} {'reserved':>8} {'twice':>5}  verdict"
    )
    print()
    print(header)
    print("-" * len(header))
    all_ok = True
    for spec in KEYS:
        tally, api, db = load.tallies[spec.name], usage[spec.name], books[spec.name]
        fivexx = sum(n for status, n in tally.statuses.items() if isinstance(status, int) and status >= 500)
        problems = []
        if not tally.charged == api["used"] == db["used"] == db["charged"]:
            problems.append("counts differ")
        if db["reserved"]:
            problems.append("reservations left")
        if db["charged_twice"] or tally.double_billed:
            problems.append("billed twice")
        if tally.reuse_accepted:
            problems.append("key reuse charged")
        if tally.in_doubt:
            problems.append(f"{tally.in_doubt} in doubt")
        if db["used"] > db["budget"]:
            problems.append("over budget")
        if fivexx:
            problems.append(f"{fivexx} 5xx")
        all_ok &= not problems
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(tally.statuses.items(), key=lambda kv: str(kv[0])))
        budget = f"{spec.budget:,}" if spec.budget < 10**9 else "1e9"
        print(
            f"{spec.name:<13} {budget:>10} {sum(tally.statuses.values()):>8}  {statuses:<36} {tally.charged:>8} "
            f"{api['used']:>9} {db['used']:>8} {db['charged']:>9} {db['reserved']:>8} {db['charged_twice']:>5}  "
            f"{'ok' if not problems else 'FAIL: ' + ', '.join(problems)}"
        )
    attempts = sum(sum(t.statuses.values()) for t in load.tallies.values())
    fivexx = sum(n for t in load.tallies.values() for s, n in t.statuses.items() if isinstance(s, int) and s >= 500)
    lost = sum(t.statuses["conn"] for t in load.tallies.values())
    answers = attempts - lost
    latencies = sorted(x for t in load.tallies.values() for x in t.latencies)
    p50, p99 = (latencies[int(q * (len(latencies) - 1))] if latencies else 0.0 for q in (0.5, 0.99))
    replays = sum(t.replays for t in load.tallies.values())
    resent = sum(t.resent_after_lost_answer for t in load.tallies.values())
    resent_replayed = sum(t.lost_then_replayed for t in load.tallies.values())
    logical = sum(t.logical for t in load.tallies.values())
    spent = books["budget-500"]["used"]
    print()
    print(
        f"{answers:,} answers ({logical:,} logical requests) in {elapsed:.1f} s = {answers / elapsed:.1f}/s; "
        f"200 latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; 5xx: {fivexx}; "
        f"attempts without an answer: {lost}"
    )
    print(
        f"idempotent replays: {replays}; budget-500 key: used {spent} of 500"
        f"{' (stopped at exactly 500)' if spent == 500 else ''}"
    )
    if args.kill:
        print(
            f"in flight at a kill and resent with the same Idempotency-Key: {resent} logical requests "
            f"({resent_replayed} answered by a replay: charged before the crash; {resent - resent_replayed} charged "
            f"on the resend: not charged before it); idempotency keys charged twice: "
            f"{sum(b['charged_twice'] for b in books.values())}"
        )
    kill_failures = load.kill_failures
    ok = all_ok and fivexx == 0 and kill_failures == 0
    print(
        "RESULT: "
        + (
            "every key reconciles exactly, no 5xx" + (", no reservation survived a restart" if args.kill else "")
            if ok
            else "FAILED (see the table"
            + (f"; {kill_failures} restart(s) left reservations" if kill_failures else "")
            + ")"
        )
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    parser.add_argument(
        "--kill",
        type=int,
        nargs="?",
        const=3,
        default=0,
        metavar="K",
        help="kill -9 the vendor K times mid-load and restart it on the same ledger (--kill alone: 3)",
    )
    parser.add_argument(
        "--min-uptime", type=float, default=3.0, help="seconds of traffic before each kill and after the last restart"
    )
    parser.add_argument(
        "--idempotent-share", type=float, default=0.3, help="requests with an Idempotency-Key (no --kill)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-coverage",
        action="store_true",
        help="serve with the console's coverage counters off (VL2V_VENDOR_COVERAGE=0), to measure what they cost",
    )
    parser.add_argument("--workdir", type=Path, help="where the ledger and the vendor's log go (default: a temp dir)")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.kill < 0:
        parser.error("--clients must be >= 1, --seconds > 0, --kill >= 0")

    python = os.path.relpath(sys.executable)
    print("command:", shlex.join([sys.executable if python.startswith("..") else python, *sys.argv]))
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vl2v-load-")))
        workdir.mkdir(parents=True, exist_ok=True)
        admin_token = secrets.token_urlsafe(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")}  # the bench's own settings only
        env["VL2V_ADMIN_TOKEN"] = admin_token
        if args.no_coverage:
            env["VL2V_VENDOR_COVERAGE"] = "0"
        vendor = Vendor(db=workdir / "ledger.sqlite3", log=workdir / "vendor.log", port=free_port(), env=env)
        stack.callback(vendor.stop)
        vendor.start()
        url = f"http://127.0.0.1:{vendor.port}"
        card = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]
        print(
            f"vendor: {card['id']} (revision {card['revision']}) on {url}, ledger {vendor.db}; commit "
            f"{describe_commit()}; {os.cpu_count()} cores; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        )
        print(
            f"load: {args.clients} clients x {args.seconds:g} s over {len(KEYS)} keys "
            f"({', '.join(s.name for s in KEYS)}); Idempotency-Key on "
            + ("every request (kill mode)" if args.kill else f"{args.idempotent_share:.0%} of requests")
            + (f"; kill -9 x {args.kill}" if args.kill else "")
            + f"; coverage counters {'off' if args.no_coverage else 'on'}",
            flush=True,
        )
        secrets_by_key = create_keys(url, admin_token)
        load, elapsed = asyncio.run(run_load(args, vendor, secrets_by_key))
        usage = {spec.name: api_usage(url, secrets_by_key[spec.name]) for spec in KEYS}
        vendor.stop()  # graceful: the books are read from the file with no server holding it
        books = {spec.name: ledger_books(vendor.db, usage[spec.name]["key_id"]) for spec in KEYS}
        ok = report(args, load, elapsed, usage, books)
        if not ok:
            print(f"(vendor log: {vendor.log})" if args.workdir else "(rerun with --workdir DIR to keep the log)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
