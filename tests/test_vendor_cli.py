"""``vl2v-vendor keys`` and ``serve`` as a vendor's operator uses them: the console script's own
``main`` on a real ledger file (in-process, so the suite doesn't pay a torch import per command)."""

from __future__ import annotations

import json
import subprocess

import pytest

from vendor_server.cli import main
from vendor_server.ledger import SECRET_PREFIX, Ledger


@pytest.fixture
def vendor(capsys):
    def run(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


def test_keys_lifecycle(tmp_path, vendor):
    db = str(tmp_path / "ledger.sqlite3")
    created = vendor("keys", "create", "--db", db, "--name", "acme", "--budget", "100", "--rate-limit", "5")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n" and secret.startswith(SECRET_PREFIX)  # the secret alone
    ledger = Ledger(db)
    key_id = ledger.authenticate(secret).id
    ledger.close()

    listing = vendor("keys", "list", "--db", db).stdout
    assert key_id in listing and "acme" in listing and secret not in listing
    assert json.loads(vendor("keys", "topup", "--db", db, key_id, "--queries", "50").stdout)["budget"] == 150
    usage = json.loads(vendor("keys", "usage", "--db", db, key_id).stdout)
    assert (usage["used"], usage["remaining"], usage["rate_limit_qps"], usage["revoked"]) == (0, 150, 5.0, False)
    assert json.loads(vendor("keys", "revoke", "--db", db, key_id).stdout)["revoked"] is True


def test_user_errors_are_one_line(tmp_path, vendor):
    db = str(tmp_path / "ledger.sqlite3")
    for args in (("keys", "revoke", "--db", db, "key_missing"),
                 ("keys", "create", "--db", db, "--name", "x", "--budget", "-5"),
                 ("serve", "--model", "no-such-model", "--pretrained", "none", "--db", db),
                 ("serve", "--model", "vl2v-tiny", "--pretrained", str(tmp_path / "missing.pt"), "--db", db)):
        result = vendor(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("vl2v-vendor: error:") and "Traceback" not in result.stderr, result.stderr


def test_settings_come_from_the_environment(monkeypatch):
    from vendor_server.settings import DEFAULT_WEIGHTS, VendorSettings

    monkeypatch.setenv("VL2V_VENDOR_MAX_ITEMS", "7")
    monkeypatch.setenv("VL2V_VENDOR_PORT", "9123")
    monkeypatch.setenv("VL2V_ADMIN_TOKEN", "s3cret")
    settings = VendorSettings()
    assert (settings.max_items, settings.port, settings.admin_token) == (7, 9123, "s3cret")
    assert VendorSettings(port=1).port == 1  # flags override the environment
    assert VendorSettings(model="ViT-B-32").pretrained_source() == "none"
    assert VendorSettings(pretrained="x.pt").pretrained_source() == "x.pt"
    expected = str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "none"
    assert VendorSettings().pretrained_source() == expected


def test_keys_commands_other_than_create_refuse_a_missing_ledger(tmp_path, vendor):
    db = tmp_path / "typo.sqlite3"
    listed = vendor("keys", "list", "--db", str(db))
    assert listed.returncode == 2 and "no ledger at" in listed.stderr and "Traceback" not in listed.stderr
    assert not db.exists()  # nothing was created behind the operator's back
