"""Where a sweep's runs execute: worker processes forked from a server that imported torch, timm and
the training code once.

A run in a fresh ``python -m client_distill.cli distill`` process spends seconds importing those
before its first step: a large share of a short CPU run, paid again by every run of a sweep. A
``forkserver`` imports them once; each run is then a process forked from it, so runs stay as isolated
as separate processes — a crash or a leak ends with its run — without paying the imports again.
``bench/sweep_launch.py`` measures the difference. (One ``multiprocessing`` process per run, waited on
by a thread, rather than a ``ProcessPoolExecutor(max_tasks_per_child=1)``, whose worker replacement
hangs on Python 3.11-3.14 when a pool is shut down early: CPython issues 115634, 119592, 132969 — a
Ctrl-C did hang it here.)

A forked run does not inherit the sweep's state at the time of the fork but the server's, taken when
the server started; so each run gets its environment, working directory and thread count explicitly.

As with every ``multiprocessing`` start method but ``fork``, each run first imports the sweep's main
module: a script that calls :func:`client_distill.sweep.run.run_sweep` needs the usual
``if __name__ == "__main__":`` guard (Python says so, in the sweep's output, if it is missing). The
``vl2v`` command has it.

This pool is the ``local`` launcher, the default. :func:`open_launcher` opens a launcher by name
(:data:`LAUNCHERS`); the others live in their own modules, imported only when chosen, so the default
path never imports their engine (``ray``: :mod:`client_distill.sweep.ray_pool`). Every launcher runs a
job through the same :func:`run_job`.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from client_distill.errors import UsageError

#: the exit status of a job stopped by Ctrl-C (``shared.cli.call``'s, the shell's 128 + SIGINT)
INTERRUPTED = 130
#: what every ``vl2v distill`` run imports; the server imports it once
PRELOAD = ["torch", "timm", "client_distill.train.run", "client_distill.methods", "client_distill.commands.distill"]


@dataclass(frozen=True)
class LaunchOptions:
    """How a sweep launches its runs: ``vl2v sweep --launcher --workers --threads --address``."""

    launcher: str = "local"
    #: runs at a time (local launcher; on Ray the cluster's free resources decide)
    workers: int = 1
    #: torch threads per run (default: the launcher's, see :attr:`Launcher.threads`)
    threads: int | None = None
    #: the Ray cluster to run on (None: a local Ray instance; ``auto``: the cluster this machine is in)
    address: str | None = None


class Launcher(Protocol):
    """What :func:`client_distill.sweep.run.execute` needs of a launcher: queue jobs, cancel, close."""

    #: torch threads per run unless the sweep says otherwise
    threads: int

    def submit(self, job: Callable[..., int], args: tuple, out: Path, threads: int) -> Future: ...

    def cancel(self) -> None: ...

    def __enter__(self) -> Launcher: ...

    def __exit__(self, *exc: object) -> None: ...


#: launcher name → ``module:factory`` taking :class:`LaunchOptions`; a module is imported only when
#: its launcher is chosen
LAUNCHERS = {
    "local": "client_distill.sweep.launch:RunPool.from_options",
    "ray": "client_distill.sweep.ray_pool:RayPool.from_options",
}


def open_launcher(options: LaunchOptions) -> Launcher:
    """The launcher ``options.launcher`` names, opened with ``options``."""
    if options.launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {options.launcher!r}; known: {', '.join(sorted(LAUNCHERS))}")
    module, factory = LAUNCHERS[options.launcher].split(":")
    target: object = importlib.import_module(module)
    for name in factory.split("."):
        target = getattr(target, name)
    return target(options)  # type: ignore[operator]


class RunPool(contextlib.AbstractContextManager):
    """``workers`` jobs at a time, each in its own process forked from the preloaded server."""

    def __init__(self, workers: int, threads: int | None = None):
        #: the cores split between the workers, unless told
        self.threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
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
        return process.exitcode

    def cancel(self) -> None:
        """Start no queued run; runs in flight go on until they end (a Ctrl-C reaches them too)."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)


def _main(*args) -> None:
    sys.exit(run_job(*args))


def run_job(job: Callable[..., int], args: tuple, out: str, threads: int, env: dict[str, str], cwd: str) -> int:
    """In the worker: take the sweep's environment and directory, send stdout and stderr to
    ``out/log.txt`` (file descriptors, so torch's and tqdm's output land there too), run ``job(*args)``
    and return its exit status; an unexpected exception is logged there, as a process would print it."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "log.txt", "ab") as log:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(log.fileno(), stream.fileno())
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    try:
        return job(*args)
    except SystemExit as exc:  # argparse and friends
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except BaseException:  # the traceback belongs in the run's log, not pickled back to the sweep
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
