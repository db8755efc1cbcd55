"""`client_distill.buy.local_vendor`: a vendor that cannot start is reported at once, naming its log.
(Starting one that works is what every vendor fixture in conftest.py does.)"""

from __future__ import annotations

import os

import pytest

from client_distill.buy.local_vendor import VendorStartError, start_vendor


def test_a_vendor_that_exits_is_reported_with_its_log(tmp_path):
    not_a_ledger = tmp_path / "notes.txt"
    not_a_ledger.write_text("not SQLite\n" * 20)
    log = tmp_path / "vendor.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")}
    with pytest.raises(VendorStartError, match=r"exited with status 2 before it was ready \(log: .*vendor.log\)"):
        start_vendor("--pretrained", "none", "--db", str(not_a_ledger), env=clean, log=log, ready_timeout_s=120)
    assert "cannot use" in log.read_text()  # the vendor's own one-line error, kept for the operator
