"""``vl2v-vendor keys`` and ``serve`` as a vendor's operator uses them: the console script's own
``main`` on a real ledger file (in-process, so the suite doesn't pay a torch import per command), and
the real console script in a subprocess where what counts is all its terminal shows: a bad setting or
``--db`` is one error line, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

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
    for args in (
        ("keys", "revoke", "--db", db, "key_missing"),
        ("keys", "create", "--db", db, "--name", "x", "--budget", "-5"),
        ("serve", "--model", "no-such-model", "--pretrained", "none", "--db", db),
        ("serve", "--model", "vl2v-tiny", "--pretrained", str(tmp_path / "missing.pt"), "--db", db),
        ("pretrain", "--out", str(tmp_path / "t.pt"), "--ce-styles", "photo,oil"),
        ("pretrain", "--out", str(tmp_path / "t.pt"), "--ce-weight", "-1"),
    ):
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


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_serve_refuses_a_port_out_of_range(tmp_path, vendor, port):
    result = vendor("serve", "--pretrained", "none", "--db", str(tmp_path / "l.sqlite3"), "--port", port)
    assert result.returncode == 2 and result.stderr.startswith(f"vl2v-vendor: error: invalid setting --port={port}:")
    assert not (tmp_path / "l.sqlite3").exists()


def test_serve_refuses_a_port_in_use_in_one_line_before_loading_anything(tmp_path, vendor):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = vendor("serve", "--pretrained", "none", "--db", str(tmp_path / "l.sqlite3"), "--port", str(port))
    assert result.returncode == 2
    assert result.stderr == f"vl2v-vendor: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert not (tmp_path / "l.sqlite3").exists()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The real console script in its own process, with only ``env`` of the VL2V_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")}
    return subprocess.run(
        [sys.executable, "-m", "vendor_server.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *mentions: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    # open_clip may log a warning while the model loads; the error itself is the last line, alone
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vl2v-vendor: error:") and all(m in last for m in mentions), result.stderr


def test_a_bad_environment_setting_is_a_one_line_error(tmp_path):
    bad = {"VL2V_VENDOR_MAX_BATCH_SIZE": "abc"}
    assert_one_line_error(
        run_cli("serve", "--pretrained", "none", "--db", str(tmp_path / "l.sqlite3"), **bad),
        "VL2V_VENDOR_MAX_BATCH_SIZE",
        "'abc'",
    )
    assert_one_line_error(run_cli("keys", "list", **bad), "VL2V_VENDOR_MAX_BATCH_SIZE")  # the default --db reads it too
    assert_one_line_error(run_cli("keys", "list", VL2V_VENDOR_DB_SYNCHRONOUS="sometimes"), "VL2V_VENDOR_DB_SYNCHRONOUS")
    assert not (tmp_path / "l.sqlite3").exists()


def test_a_db_that_is_not_a_ledger_is_a_one_line_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a SQLite database\n" * 20)
    under_a_file = str(text / "ledger.sqlite3")  # unwritable whoever runs it (root included)
    for args in (
        ("keys", "list", "--db", str(text)),
        ("keys", "list", "--db", str(tmp_path)),  # a folder: not advised to create a key there
        ("keys", "create", "--db", str(text), "--name", "x", "--budget", "1"),
        ("keys", "create", "--db", under_a_file, "--name", "x", "--budget", "1"),
        ("keys", "create", "--db", str(tmp_path), "--name", "x", "--budget", "1"),
    ):  # a folder
        assert_one_line_error(run_cli(*args), "cannot use", args[args.index("--db") + 1], "as the ledger")
    for db in (str(text), under_a_file):
        assert_one_line_error(run_cli("serve", "--pretrained", "none", "--db", db), "cannot use", db)
    # the ledger is opened before the model is loaded: a bad --db is what is reported, at once
    missing = str(tmp_path / "missing.pt")
    assert_one_line_error(run_cli("serve", "--pretrained", missing, "--db", str(text)), "cannot use", str(text))
    assert text.read_text() == "this is not a SQLite database\n" * 20  # left as it was
