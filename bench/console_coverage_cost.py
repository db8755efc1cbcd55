"""What the console's extraction-coverage counters cost per request, measured side by side with them
on and off.

1. In process, the request path's own work: counting a request's answer and binning its image
   embeddings (:class:`vendor_server.console.traffic.TrafficRecorder`), in µs per request of 1, 4 and
   16 images, at the served model's embedding size and at CLIP ViT-B's (512); and the background
   flush's database work (the upserts into a real SQLite ledger), per request flushed.
2. End to end: ``bench/vendor_load.py`` against a real vendor, alternately with the counters on and
   off (``--no-coverage``; on-off, off-on, …, so a slow drift of the machine's load cancels out),
   ``--rounds`` times each, same seed: throughput and 200-latency p50/p99.

    python bench/console_coverage_cost.py                           # 2 rounds of 16 clients x 20 s each way
    python bench/console_coverage_cost.py --rounds 3 --seconds 30

The load runs share the machine with whatever else runs on it: read their spread (each round is
printed) before reading a difference into them; part 1 is the cost itself, without that noise."""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vendor_server.console.coverage import FIT_SAMPLE
from vendor_server.console.traffic import TrafficRecorder
from vendor_server.ledger import open_ledger
from vendor_server.ledger.reports import LedgerReports

HERE = Path(__file__).resolve().parent
SUMMARY = re.compile(r"= ([\d.]+)/s; 200 latency p50 (\d+) ms, p99 (\d+) ms")


def recorder_cost(dim: int, images: int, repeats: int = 5) -> tuple[float, float]:
    """µs per request on the request path (answer counted, images binned), and µs per request of the
    flush that adds them to a SQLite ledger: the least of ``repeats`` runs (the least disturbed by
    whatever else the machine runs)."""
    runs = [_recorder_run(dim, images) for _ in range(repeats)]
    return min(path for path, _ in runs), min(flush for _, flush in runs)


def _recorder_run(dim: int, images: int, requests: int = 2000) -> tuple[float, float]:
    """One run: ``requests`` requests from 8 keys, every image a fresh embedding."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = open_ledger(Path(tmp) / "ledger.sqlite3")
        recorder = TrafficRecorder(LedgerReports(ledger), coverage=True)
        recorder.images("fit", list(rng.normal(size=(FIT_SAMPLE, dim)).astype(np.float32)))
        recorder.flush()  # fits the partition
        batches = [list(rng.normal(size=(images, dim)).astype(np.float32)) for _ in range(requests)]
        started = time.perf_counter()
        for i, rows in enumerate(batches):
            recorder.answered(f"key{i % 8}", 200)
            recorder.images(f"key{i % 8}", rows)
        path = (time.perf_counter() - started) / requests
        started = time.perf_counter()
        recorder.flush()
        flush = (time.perf_counter() - started) / requests
        ledger.close()
    return path * 1e6, flush * 1e6


def load_round(coverage: bool, clients: int, seconds: float, seed: int) -> tuple[float, int, int]:
    command = [sys.executable, str(HERE / "vendor_load.py"), "--clients", str(clients), "--seconds", str(seconds)]
    command += ["--seed", str(seed), *([] if coverage else ["--no-coverage"])]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 600).stdout
    found = SUMMARY.search(out)
    if found is None:
        raise RuntimeError(f"no summary line in the load run's output:\n{out}")
    return float(found.group(1)), int(found.group(2)), int(found.group(3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="load runs each way, alternating (default 2)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print("1. in process: µs per request (request path / background flush into SQLite), least of 5 runs")
    for dim in (128, 512):
        cells = "  ".join(
            f"{n:>2} image(s): {path:6.1f} / {flush:6.1f}"
            for n in (1, 4, 16)
            for path, flush in [recorder_cost(dim, n)]
        )
        print(f"   dim {dim:>3}: {cells}")
    if args.rounds <= 0:
        return 0
    print(f"2. end to end: bench/vendor_load.py, {args.clients} clients x {args.seconds:g} s, alternating", flush=True)
    runs: dict[bool, list[tuple[float, int, int]]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for coverage in (True, False) if round_ % 2 == 0 else (False, True):  # ABBA: drift cancels out
            rate, p50, p99 = load_round(coverage, args.clients, args.seconds, args.seed)
            runs[coverage].append((rate, p50, p99))
            print(
                f"   round {round_ + 1}, counters {'on ' if coverage else 'off'}: {rate:7.1f} answers/s, "
                f"p50 {p50} ms, p99 {p99} ms",
                flush=True,
            )
    for coverage in (True, False):
        rates = [r for r, _, _ in runs[coverage]]
        print(
            f"   counters {'on ' if coverage else 'off'}: median {statistics.median(rates):.1f} answers/s, "
            f"p50 {statistics.median(p for _, p, _ in runs[coverage]):.0f} ms "
            f"(rounds: {', '.join(f'{r:.1f}' for r in rates)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
