"""``bench/vendor_load.py``, the vendor's load and kill -9 bench, run small: 8 clients, one kill -9
mid-load and a restart on the same ledger. Every key's books must reconcile exactly (what the
clients saw charged == ``/v1/usage`` == ``keys.used`` == the sum of charged events), nothing may be
left reserved after the restart, and a request resent with the same ``Idempotency-Key`` (after its
answer was lost in the crash, or on purpose) is billed once. It keeps the bench itself working;
``test_vendor_metering.py`` has the in-process kill -9 check of the ledger."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kill_9_mid_load_keeps_exact_books_and_bills_idempotent_resends_once(tmp_path):
    command = [sys.executable, "bench/vendor_load.py", "--clients", "8", "--seconds", "4", "--kill", "1"]
    run = subprocess.run(
        [*command, "--min-uptime", "2", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr + (tmp_path / "vendor.log").read_text()
    assert "reservations left from before the kill: 0" in out
    assert "RESULT: every key reconciles exactly, no 5xx, no reservation survived a restart" in out
    assert int(re.search(r"idempotent replays: (\d+)", out).group(1)) > 0
    assert re.search(r"idempotency keys charged twice: 0\b", out)
    for key in ("open-1", "open-2", "budget-500", "limited-5qps"):
        assert re.search(rf"^{key} .* ok$", out, re.M), out
