"""The ``local`` launcher, the default: a sweep's runs as worker processes forked from a server that
imported torch, timm and the training code once.

A run in a fresh ``python -m client_distill.cli distill`` process spends seconds importing those
before its first step: a large share of a short CPU run, paid again by every run of a sweep. A
``forkserver`` imports them once; each run is then a process forked from it, so runs stay as isolated
as separate processes — a crash or a leak ends with its run — without paying the imports again.
``bench/sweep_launch.py`` measures the difference. (One ``multiprocessing`` process per run, waited on
by a thread, rather than a ``ProcessPoolExecutor(max_tasks_per_child=1)``, whose worker replacement
hangs on Python 3.11-3.14 when a pool is shut down early: CPython issues 115634, 119592, 132969 — a
Ctrl-C did hang it here.)

A forked run does not inherit the sweep's state at the time of the fork but the server's, taken when
the server started; so each run gets its environment, working directory and thread count explicitly
(:func:`~client_distill.sweep.launch.run_job`).

As with every ``multiprocessing`` start method but ``fork``, each run first imports the sweep's main
module: a script that calls :func:`client_distill.sweep.run.run_sweep` needs the usual
``if __name__ == "__main__":`` guard (Python says so, in the sweep's output, if it is missing). The
``vl2v`` command has it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from client_distill.sweep.launch import INTERRUPTED, LaunchOptions, run_job
from client_distill.train.augment import RUN_THREADS_ENV

#: what every run of a sweep imports (its jobs: the trainer, the purchase) and the compiled augmentation
#: kernel; the server imports (and compiles) them once
PRELOAD = ["torch", "timm", "client_distill.sweep.jobs", "client_distill.train.compiled"]


class RunPool(contextlib.AbstractContextManager):
    """``workers`` jobs at a time, each in its own process forked from the preloaded server."""

    def __init__(self, workers: int, threads: int | None = None):
        #: the cores split between the workers, unless told
        self.threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
        # the server (started with this environment) compiles the augmentation for the runs' thread count
        os.environ[RUN_THREADS_ENV] = str(self.threads)
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._pool = ThreadPoolExecutor(max(1, workers))
        self._stopping = threading.Event()

    @classmethod
    def from_options(cls, options: LaunchOptions) -> RunPool:
        return cls(options.workers, options.threads)

    def submit(self, job: Callable[..., int], args: tuple, out: Path, threads: int) -> Future:
        """Queue ``job(*args)``, a module-level function returning an exit status (output to
        ``out/log.txt``, ``threads`` torch threads if > 0); the future's result is that status."""
        return self._pool.submit(self._run, job, args, str(out), threads, dict(os.environ), os.getcwd())

    def _run(self, *args) -> int:
        # A Ctrl-C reaches the runs in flight (one process group) before the sweep's main thread gets to
        # cancel the queue; a worker thread whose run was interrupted would otherwise start the next
        # queued run at once, which the Ctrl-C never reaches. So an interrupted run stops the pool.
        if self._stopping.is_set():
            return INTERRUPTED
        process = self._ctx.Process(target=_main, args=args)
        process.start()
        process.join()
        if process.exitcode in (INTERRUPTED, -signal.SIGINT):
            self._stopping.set()
        elif process.exitcode:  # what ended it goes on record next to what the run itself wrote
            out = Path(args[2])  # (a process that died while starting, before the run made it, left no folder)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.txt", "a") as log:
                print(f"vl2v sweep: this run's process ended with {_status(process.exitcode)}", file=log)
        return process.exitcode

    def cancel(self) -> None:
        """Start no queued run; runs in flight go on until they end (a Ctrl-C reaches them too)."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)


def _status(exitcode: int) -> str:
    """``exit status N`` or ``signal NAME`` (a negative ``exitcode``, as :mod:`multiprocessing` reports one)."""
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-exitcode).name}"
        return f"signal {-exitcode}"
    return f"exit status {exitcode}"


def _main(*args) -> None:
    sys.exit(run_job(*args))
