"""The console's counters, kept in the shared ledger: each ``/v1`` answer (per key, hour and outcome) and,
when coverage is on, the partition cell of each served image embedding (per key).

Counting costs the request path a dictionary update (and for images one small matrix product, see
:mod:`vendor_server.console.coverage`); a background thread adds what was counted to the ledger every
:data:`FLUSH_S` seconds in one transaction (:meth:`~vendor_server.ledger.reports.LedgerReports.add`),
so each replica's counts reach the shared numbers within about a second and the charge path gains no
database round trip. What a process counted in its last second is lost if it is killed with -9: these
are a report for the operator, not the books (charges stay exact in ``usage_events``). While the
database is out of reach, counts are kept and added when it is back."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from vendor_server.console.coverage import FIT_SAMPLE, Partition
from vendor_server.ledger.errors import LedgerError
from vendor_server.ledger.reports import LedgerReports, outcome_of

log = logging.getLogger("vl2v.vendor")

#: how often counts go to the ledger
FLUSH_S = 1.0
#: image embeddings held while no partition is fitted yet (beyond it, they are not counted)
MAX_PENDING = 16 * FIT_SAMPLE


class TrafficRecorder:
    """Counts answers and image cells in memory; :meth:`start` runs the thread that adds them to the
    ledger, :meth:`stop` adds the rest. Thread-safe."""

    def __init__(self, reports: LedgerReports, coverage: bool) -> None:
        self.reports = reports
        self.coverage = coverage
        self._lock = threading.Lock()
        self._outcomes: Counter[tuple[int, str, str]] = Counter()
        self._cells: dict[tuple[str, int], tuple[int, float]] = {}
        #: image embeddings seen before the partition exists: (key id, rows, when)
        self._pending: list[tuple[str, np.ndarray, float]] = []
        self._partition: Partition | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the request path -------------------------------------------------------------------------

    def answered(self, key_id: str | None, status: int) -> None:
        """Count one ``/v1`` answer of ``status`` to ``key_id`` (None: no key authenticated)."""
        bucket = (int(time.time() // 3600), key_id or "", outcome_of(status))
        with self._lock:
            self._outcomes[bucket] += 1

    def images(self, key_id: str, embeddings: Sequence[np.ndarray], now: float | None = None) -> None:
        """Count the cells of the image embeddings served to ``key_id`` (at ``now``)."""
        if not self.coverage or len(embeddings) == 0:
            return
        rows = np.asarray(embeddings, dtype=np.float32)
        now = time.time() if now is None else now
        partition = self._partition
        if partition is not None and partition.dim != rows.shape[1]:
            return  # the ledger's partition is of another model's space (see docs/console.md)
        if partition is None:
            with self._lock:
                if sum(len(r) for _, r, _ in self._pending) < MAX_PENDING:
                    self._pending.append((key_id, rows, now))
            return
        cells = partition.cells(rows)
        with self._lock:
            self._count(key_id, cells, now)

    def _count(self, key_id: str, cells: np.ndarray, now: float) -> None:
        for cell in cells.tolist():
            images, first = self._cells.get((key_id, cell), (0, now))
            self._cells[(key_id, cell)] = (images + 1, first)

    # --- the background thread --------------------------------------------------------------------

    def start(self) -> None:
        """Load the stored partition (blocking: a ledger read) and start flushing."""
        if self.coverage:
            stored = self.reports.partition()
            if stored is not None:
                self._use(*stored)
        self._thread = threading.Thread(target=self._run, name="vl2v-console-counters", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and add what is left (unless the ledger is out of reach)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(LedgerError):
            self.flush()

    def flush(self) -> None:
        """Fit the partition once enough images were seen, and add the counts so far to the ledger."""
        if self.coverage and self._partition is None:
            self._fit()
        with self._lock:
            outcomes, self._outcomes = self._outcomes, Counter()
            cells, self._cells = self._cells, {}
        try:
            self.reports.add(outcomes, cells)
        except LedgerError:  # out of reach: keep them for the next flush
            with self._lock:
                self._outcomes.update(outcomes)
                for (key_id, cell), (images, first) in cells.items():
                    held, held_first = self._cells.get((key_id, cell), (0, first))
                    self._cells[(key_id, cell)] = (held + images, min(first, held_first))
            raise

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            try:
                self.flush()
            except LedgerError:
                continue
            except Exception:  # a bug must not end the counting
                log.exception("console counters: flush failed")

    def _fit(self) -> None:
        with self._lock:
            if sum(len(rows) for _, rows, _ in self._pending) < FIT_SAMPLE:
                return
            pending, self._pending = self._pending, []
        sample = np.concatenate([rows for _, rows, _ in pending])[:FIT_SAMPLE]
        fitted = Partition.fit(sample)
        stored = self.reports.store_partition(fitted.seed, fitted.dim, fitted.thresholds.tolist())
        self._use(*stored)
        for key_id, rows, when in pending:
            self.images(key_id, rows, when)

    def _use(self, seed: int, dim: int, thresholds: list[float]) -> None:
        self._partition = Partition(seed, dim, np.asarray(thresholds))
