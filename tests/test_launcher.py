"""The sweep's run launcher: runs forked from a preloaded server still see the sweep's *current*
environment and directory (not the server's, fixed when it started), and write everything to their log."""

from __future__ import annotations

import json
import os
from concurrent.futures import Future

from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.embed import PurchaseOrder
from client_distill.buy.vendor import VendorConfig
from client_distill.cli import main as vl2v
from client_distill.sweep import run as sweep_run
from client_distill.sweep.launch import INTERRUPTED
from client_distill.sweep.local import RunPool
from client_distill.train.augment import RUN_THREADS_ENV


def _logged_json(log) -> dict:
    text = log.read_text()
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def test_runs_get_the_sweeps_environment_and_directory_of_the_moment(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    for cache in (first / "cache-a", second / "cache-b"):  # `cache stats` reads a cache, it makes none
        EmbeddingCache(cache).close()
    with RunPool(1) as pool:
        monkeypatch.chdir(first)
        monkeypatch.setenv("VL2V_CACHE", "cache-a")
        assert pool.submit(vl2v, (["cache", "stats"],), tmp_path / "run1", 0).result() == 0
        monkeypatch.chdir(second)
        monkeypatch.setenv("VL2V_CACHE", "cache-b")
        assert pool.submit(vl2v, (["cache", "stats"],), tmp_path / "run2", 0).result() == 0
    assert _logged_json(tmp_path / "run1" / "log.txt")["directory"].endswith("cache-a")
    assert _logged_json(tmp_path / "run2" / "log.txt")["directory"].endswith("cache-b")
    assert not (first / "cache-b").exists() and not (second / "cache-a").exists()


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


def _interrupted() -> int:
    raise KeyboardInterrupt


def _ok(*_: object) -> int:
    return 0


def _explode() -> None:
    raise RuntimeError("cannot load")  # as a run of a server that predates an edit of the sweep's code


class _Unloadable:
    """An argument its run's process cannot unpickle: the process dies before the run starts."""

    def __reduce__(self):
        return _explode, ()


def test_an_interrupted_run_starts_no_queued_run(tmp_path):
    """A Ctrl-C reaches the runs in flight before the sweep cancels its queue: the worker whose run was
    interrupted must not start the next queued run (which the Ctrl-C would never reach)."""
    with RunPool(1) as pool:
        futures = [pool.submit(_interrupted, (), tmp_path / "a", 0)] + [
            pool.submit(_ok, (), tmp_path / f"b{i}", 0) for i in range(2)
        ]
        statuses = [f.result() for f in futures]
    assert statuses == [INTERRUPTED, INTERRUPTED, INTERRUPTED]
    assert not (tmp_path / "b0").exists() and not (tmp_path / "b1").exists()  # never started


def test_a_run_whose_process_dies_before_starting_is_recorded_and_the_sweep_goes_on(tmp_path):
    """Its folder does not exist yet: the launcher makes it to record how the process ended, rather
    than failing the whole sweep on the missing log."""
    with RunPool(1) as pool:
        status = pool.submit(_ok, (_Unloadable(),), tmp_path / "dead", 0).result()
        assert pool.submit(_ok, (), tmp_path / "next", 0).result() == 0
    assert status != 0 and "this run's process ended with" in (tmp_path / "dead" / "log.txt").read_text()


def test_a_sweeps_purchases_start_the_fork_server_for_the_thread_count_of_its_runs(tmp_path, monkeypatch):
    """A sweep's first process starts the fork server, which compiles the augmentation for the thread
    count ``VL2V_RUN_THREADS`` holds at that moment (client_distill/train/compiled.py), and a run with
    another count augments eagerly. The purchases come first: their one-worker pool must announce the
    runs' count, not its own (every core)."""
    announced = []

    class Recording(RunPool):  # what the server would be started with, without starting one
        def submit(self, job, args, out, threads):
            announced.append(os.environ[RUN_THREADS_ENV])
            out.mkdir(parents=True)
            (out / "manifest.json").write_text('{"complete": true}')
            done: Future = Future()
            done.set_result(0)
            return done

    monkeypatch.setattr(sweep_run, "RunPool", Recording)
    run_threads = (os.cpu_count() or 1) + 1  # never what a pool of one worker takes by itself
    teacher_set = str(tmp_path / "set")
    order = PurchaseOrder(data=str(tmp_path / "data"), out=teacher_set, max_queries=1)
    sweep_run.buy_teacher_sets({teacher_set: order}, {teacher_set}, VendorConfig(), run_threads)
    assert announced == [str(run_threads)]
