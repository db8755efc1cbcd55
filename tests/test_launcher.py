"""The sweep's run launcher: runs forked from a preloaded server still see the sweep's *current*
environment and directory (not the server's, fixed when it started), and write everything to their log."""

from __future__ import annotations

import json

from client_distill.cli import main as vl2v
from client_distill.launcher import RunPool


def _logged_json(log) -> dict:
    text = log.read_text()
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def test_runs_get_the_sweeps_environment_and_directory_of_the_moment(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    with RunPool(1) as pool:
        monkeypatch.chdir(first)
        monkeypatch.setenv("VL2V_CACHE", "cache-a")
        assert pool.submit(vl2v, (["cache", "stats"],), tmp_path / "run1", 0).result() == 0
        monkeypatch.chdir(second)
        monkeypatch.setenv("VL2V_CACHE", "cache-b")
        assert pool.submit(vl2v, (["cache", "stats"],), tmp_path / "run2", 0).result() == 0
    assert _logged_json(tmp_path / "run1" / "log.txt")["directory"].endswith("cache-a")
    assert _logged_json(tmp_path / "run2" / "log.txt")["directory"].endswith("cache-b")
    assert (first / "cache-a").is_dir() and (second / "cache-b").is_dir() and not (first / "cache-b").exists()


def test_a_failing_run_reports_its_status_and_its_error_in_its_log(tmp_path):
    argv = [
        "distill",
        "--method",
        "adip",
        "--data",
        str(tmp_path / "missing"),
        "--test-domain",
        "sketch",
        "--out",
        str(tmp_path / "x"),
    ]
    with RunPool(2) as pool:
        statuses = [pool.submit(vl2v, (argv,), tmp_path / f"run{i}", 1).result() for i in range(2)]
    assert statuses == [2, 2]
    for i in range(2):
        log = (tmp_path / f"run{i}" / "log.txt").read_text()
        assert "vl2v: error:" in log and "missing" in log and "Traceback" not in log
