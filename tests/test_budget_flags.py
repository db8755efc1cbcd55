"""Every budget flag is checked when the command line is parsed: a bad value is a one-line error (exit
status 2, no traceback) before anything is imported, opened, built or bought; and a budget without the
teacher set it subsamples is an error, never silently ignored (issue 24)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from client_distill.errors import UsageError
from client_distill.train.run import run_distill
from client_distill.train.runspec import RunSpec

#: `vl2v ARGV...` in a fresh interpreter; prints whether torch was imported, then exits with its status
PROBE = """
import sys
from client_distill.cli import main
status = main(sys.argv[1:])
print("torch" in sys.modules)
sys.exit(status)
"""
DISTILL = ["distill", "--method", "adip", "--data", "d", "--test-domain", "t", "--out", "o"]


def vl2v(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vl2v: error:") and "Traceback" not in done.stderr, done.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert done.stdout.strip() == "False"  # refused before torch was even imported


@pytest.mark.parametrize("budget", ["1.5", "-0.1", "nan"])
def test_distill_budget_is_a_fraction(tmp_path, budget):
    done = vl2v(*DISTILL, "--teacher", "t", "--budget", budget, cwd=tmp_path)
    assert_one_line_error(done, "--budget", "[0, 1]")
    assert not (tmp_path / "o").exists()


def test_distill_budget_needs_a_teacher_set(tmp_path):
    assert_one_line_error(vl2v(*DISTILL, "--budget", "0.5", cwd=tmp_path), "--budget", "--teacher")


def test_embed_max_queries_is_at_least_one(tmp_path):
    argv = ("embed", "--data", "d", "--out", "o", "--max-queries", "0", "--cache", str(tmp_path / "cache"))
    assert_one_line_error(vl2v(*argv, cwd=tmp_path), "--max-queries")
    assert list(tmp_path.iterdir()) == []  # no cache opened, nothing written


def test_a_run_with_a_budget_and_no_teacher_set_is_refused_before_anything_is_built(tmp_path):
    spec = RunSpec(method="erm", data=str(tmp_path / "missing"), test_domain="t", budget=0.5)
    with pytest.raises(UsageError, match="teacher set"):
        run_distill(spec, tmp_path / "run")
    with pytest.raises(UsageError, match=r"fraction in \[0, 1\]"):
        run_distill(RunSpec(method="erm", data="d", test_domain="t", teacher="t", budget=2.0), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("action", "flag", "value"), [("create", "--budget", "-5"), ("topup", "--queries", "0")])
def test_the_vendors_query_counts_are_checked_before_the_ledger_is_opened(tmp_path, action, flag, value):
    db = tmp_path / "ledger.sqlite3"
    argv = ["keys", action, "--db", str(db), flag, value]
    argv += ["--name", "x"] if action == "create" else ["key_1"]
    done = subprocess.run([sys.executable, "-m", "vendor_server.cli", *argv], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("vl2v-vendor: error:") and flag in done.stderr
    assert "Traceback" not in done.stderr and not db.exists()  # no ledger created for a refused count
