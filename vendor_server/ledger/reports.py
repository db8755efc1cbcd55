"""What the operator console (:mod:`vendor_server.console`) reads from the ledger and the counters it
adds to it, as SQL both backends accept, next to the rest of the ledger's SQL.

Two kinds of numbers, both from the database every replica shares (never one process's memory):

- the books themselves: per-key usage over time is a ``GROUP BY`` over ``usage_events`` (the charged
  requests, the same rows ``keys.used`` sums);
- counters the books do not hold: every ``/v1`` answer per key, hour and outcome
  (``request_outcomes``), and per key the cells of the embedding-space partition its image queries
  reached (``coverage_cells``). Vendor processes add to them in batches (:meth:`LedgerReports.add`),
  each batch one transaction of upserts (``INSERT … ON CONFLICT … DO UPDATE``), in a fixed row order
  so that two replicas flushing at once cannot deadlock on PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from vendor_server.ledger.core import Db, SqlLedger

#: rows per upsert statement (4 columns: within SQLite's oldest limit of 999 bound parameters)
UPSERT_ROWS = 200
#: the outcomes ``request_outcomes`` counts, in the order the console shows them
OUTCOMES = ("200", "402", "429", "4xx", "5xx")


def outcome_of(status: int) -> str:
    """The outcome class of an HTTP status: success, out of budget, rate limited, another refusal, or
    the vendor's failure."""
    if status < 400:
        return "200"
    if status in (402, 429):
        return str(status)
    return "4xx" if status < 500 else "5xx"


@dataclass(frozen=True)
class KeyCoverage:
    """How much of the partition one key's image queries reached."""

    key_id: str
    #: distinct cells reached, ever
    cells: int
    #: images those cells were counted from
    images: int
    #: cells first reached in the last ``recent_s`` seconds (see :meth:`LedgerReports.coverage`)
    new_cells: int


class LedgerReports:
    """The console's reads and counters over one ledger. Uses the backend's transaction hooks, as the
    rest of the ledger package does; thread-safe as far as the ledger is."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger

    # --- counters ---------------------------------------------------------------------------------

    def add(
        self,
        outcomes: Mapping[tuple[int, str, str], int],
        cells: Mapping[tuple[str, int], tuple[int, float]],
    ) -> None:
        """Add a batch: ``outcomes[(hour, key_id, outcome)] = requests`` and
        ``cells[(key_id, cell)] = (images, first seen)``; a cell's first sighting is kept once stored."""
        if not outcomes and not cells:
            return
        outcome_rows = [(*bucket, requests) for bucket, requests in sorted(outcomes.items())]
        cell_rows = [(*cell, *counts) for cell, counts in sorted(cells.items())]
        with self.ledger._tx() as db:
            _upsert(
                db,
                "request_outcomes (hour, key_id, outcome, requests)",
                outcome_rows,
                "(hour, key_id, outcome) DO UPDATE SET requests = request_outcomes.requests + excluded.requests",
            )
            _upsert(
                db,
                "coverage_cells (key_id, cell, images, first_seen)",
                cell_rows,
                "(key_id, cell) DO UPDATE SET images = coverage_cells.images + excluded.images",
            )

    def partition(self) -> tuple[int, int, list[float]] | None:
        """The stored coverage partition ``(seed, dim, thresholds)``, if one was fitted."""
        with self.ledger._read() as db:
            row = db.execute("SELECT seed, dim, thresholds FROM coverage_partition WHERE id = 1").fetchone()
        return None if row is None else (int(row["seed"]), int(row["dim"]), json.loads(row["thresholds"]))

    def store_partition(self, seed: int, dim: int, thresholds: list[float]) -> tuple[int, int, list[float]]:
        """Keep this partition unless one is stored already (another replica fitted it first); the stored one."""
        with self.ledger._tx() as db:
            db.execute(
                "INSERT INTO coverage_partition (id, seed, dim, thresholds, created) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (seed, dim, json.dumps(thresholds), time.time()),
            )
        stored = self.partition()
        assert stored is not None  # just written, or there before
        return stored

    # --- reads ------------------------------------------------------------------------------------

    def usage_series(self, since: float, bucket_s: int, key_id: str | None = None) -> dict[int, tuple[int, int]]:
        """Charged ``(queries, requests)`` per time bucket (``floor(created / bucket_s)``) since ``since``,
        of one key or of all."""
        where, params = _key_filter(key_id)
        with self.ledger._read() as db:
            rows = db.execute(
                f"SELECT {self.ledger.TIME_BUCKET.format(column='created')} AS bucket, SUM(queries) AS queries, "
                "COUNT(*) AS requests "
                f"FROM usage_events WHERE status = 'charged' AND created >= ?{where} GROUP BY bucket",
                (bucket_s, since, *params),
            ).fetchall()
        return {int(row["bucket"]): (int(row["queries"]), int(row["requests"])) for row in rows}

    def outcome_series(self, since_hour: int, key_id: str | None = None) -> dict[int, dict[str, int]]:
        """Answers per hour and outcome since ``since_hour`` (epoch hours), of one key or of all."""
        where, params = _key_filter(key_id)
        with self.ledger._read() as db:
            rows = db.execute(
                "SELECT hour, outcome, SUM(requests) AS requests FROM request_outcomes "
                f"WHERE hour >= ?{where} GROUP BY hour, outcome",
                (since_hour, *params),
            ).fetchall()
        series: dict[int, dict[str, int]] = {}
        for row in rows:
            series.setdefault(int(row["hour"]), {})[row["outcome"]] = int(row["requests"])
        return series

    def outcomes_by_key(self, since_hour: int) -> dict[str, dict[str, int]]:
        """Answers per key and outcome since ``since_hour`` (epoch hours)."""
        with self.ledger._read() as db:
            rows = db.execute(
                "SELECT key_id, outcome, SUM(requests) AS requests FROM request_outcomes WHERE hour >= ? "
                "GROUP BY key_id, outcome",
                (since_hour,),
            ).fetchall()
        totals: dict[str, dict[str, int]] = {}
        for row in rows:
            totals.setdefault(row["key_id"], {})[row["outcome"]] = int(row["requests"])
        return totals

    def last_use(self) -> dict[str, float]:
        """Each key's latest request that was not refunded (epoch seconds)."""
        with self.ledger._read() as db:
            rows = db.execute(
                "SELECT key_id, MAX(created) AS last FROM usage_events WHERE status != 'refunded' GROUP BY key_id"
            ).fetchall()
        return {row["key_id"]: float(row["last"]) for row in rows}

    def coverage(self, recent_since: float) -> tuple[list[KeyCoverage], int]:
        """Per key the cells reached (and how many since ``recent_since``), most first; and the cells
        all keys together reached."""
        with self.ledger._read() as db:
            rows = db.execute(
                "SELECT key_id, COUNT(*) AS cells, SUM(images) AS images, "
                "SUM(CASE WHEN first_seen >= ? THEN 1 ELSE 0 END) AS new_cells "
                "FROM coverage_cells GROUP BY key_id",
                (recent_since,),
            ).fetchall()
            total = db.execute("SELECT COUNT(DISTINCT cell) AS cells FROM coverage_cells").fetchone()
        assert total is not None  # an aggregate always has its one row
        ranked = sorted(
            (KeyCoverage(row["key_id"], int(row["cells"]), int(row["images"]), int(row["new_cells"])) for row in rows),
            key=lambda c: (-c.cells, -c.new_cells, c.key_id),
        )
        return ranked, int(total["cells"])

    def coverage_growth(self, key_id: str, bucket_s: int) -> dict[int, int]:
        """Cells one key reached for the first time, per time bucket of ``bucket_s`` seconds."""
        with self.ledger._read() as db:
            rows = db.execute(
                f"SELECT {self.ledger.TIME_BUCKET.format(column='first_seen')} AS bucket, COUNT(*) AS cells "
                "FROM coverage_cells WHERE key_id = ? GROUP BY bucket",
                (bucket_s, key_id),
            ).fetchall()
        return {int(row["bucket"]): int(row["cells"]) for row in rows}


def _upsert(db: Db, into: str, rows: list[tuple], conflict: str) -> None:
    """``INSERT INTO into VALUES rows… ON CONFLICT conflict``, :data:`UPSERT_ROWS` rows per statement
    (one round trip each on PostgreSQL; rows are distinct, as one statement must not touch a row twice)."""
    for start in range(0, len(rows), UPSERT_ROWS):
        chunk = rows[start : start + UPSERT_ROWS]
        marks = ", ".join("(" + ", ".join("?" for _ in row) + ")" for row in chunk)
        db.execute(f"INSERT INTO {into} VALUES {marks} ON CONFLICT {conflict}", [v for row in chunk for v in row])


def _key_filter(key_id: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if key_id is None else (" AND key_id = ?", (key_id,))
