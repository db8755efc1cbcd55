"""A charge's cost against the size of its key's replay window, with and without the (key, expiry) index.

Every charge first deletes its key's expired idempotency rows (``Ledger.charge``). Before schema
version 5 the only index that query could use was the primary key (key, idempotency key), so the
delete walked every row the key held in the 24 h replay window, inside the ledger's write lock: a
key's charges got slower in proportion to its traffic of the last day. This script builds two SQLite
ledgers holding one key with ``--rows`` unexpired replay rows each, drops the index from one, and times
``--charges`` charges (each then completed) on both, interleaved, in one run.

    .venv/bin/python bench/ledger_replay_sweep.py              # 100,000 rows, 200 charges each

Measured (2-core machine, 2026-12-07, a protocol sweep running beside it): 100,000 rows, median charge
15.3 ms without the index, 0.080 ms with it (190×).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from vendor_server.ledger import Ledger, new_request_id


def ledger_with_replays(path: Path, rows: int, drop_index: bool) -> tuple[Ledger, str]:
    """A new ledger whose one key holds ``rows`` replay rows expiring in a day."""
    ledger = Ledger(path)
    key, _ = ledger.create_key("bench", 10**12)
    ledger.close()
    db = sqlite3.connect(path)
    expires = time.time() + 86_400
    db.executemany(
        "INSERT INTO idempotency VALUES (?, ?, 'h', ?, 'done', '{}', ?)",
        ((key.id, f"idem-{i}", f"req-{i}", expires) for i in range(rows)),
    )
    if drop_index:
        db.execute("DROP INDEX idempotency_by_key_expiry")
    db.commit()
    db.close()
    return Ledger(path), key.id


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000, help="replay rows the key holds")
    p.add_argument("--charges", type=int, default=200, help="timed charges per ledger")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = {
            name: ledger_with_replays(Path(tmp) / f"{name}.sqlite3", args.rows, drop)
            for name, drop in (("without index", True), ("with index", False))
        }
        times: dict[str, list[float]] = {name: [] for name in ledgers}
        for _ in range(args.charges):  # interleaved: load from elsewhere hits both alike
            for name, (ledger, key_id) in ledgers.items():
                request = new_request_id()
                start = time.perf_counter()
                ledger.charge(key_id, request, 1, 0, "body")
                times[name].append(time.perf_counter() - start)
                ledger.complete(request, "{}")
        for ledger, _ in ledgers.values():
            ledger.close()
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    for name, ms in median.items():
        print(f"{name:<14}: median charge {ms:8.3f} ms ({args.rows:,} replay rows, {args.charges} charges)")
    print(f"ratio without / with: {median['without index'] / median['with index']:.0f}×")


if __name__ == "__main__":
    main()
