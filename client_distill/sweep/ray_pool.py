"""The ``ray`` launcher: a sweep's runs as Ray tasks, on a local Ray instance or an existing cluster.

``vl2v sweep --launcher ray`` starts a local Ray instance (every core of this machine);
``--address auto`` joins the cluster this machine is a node of (``ray start``), ``--address HOST:PORT``
or ``ray://HOST:10001`` a given one. Ray places each run where its resources are free: one CPU per run
(``--threads N``: N CPUs, N torch threads), and one GPU too when the cluster has GPUs, since a run
trains on a GPU whenever it sees one and one that was not given a GPU would share it unaccounted.

Each task calls the per-run entry point of every launcher, :func:`client_distill.sweep.launch.run_job`, so
a run behaves the same on either launcher: the same job (:mod:`client_distill.sweep.jobs`), output to
the run's ``log.txt``, the same exit statuses. Each task runs in a Ray worker process of its own
(``max_calls=1``), as isolated as the local pool's forked processes: a crash or a leak ends with its
run, and the worker's stdout, which :func:`run_job` points at the run's log, is never reused.
Resuming is the run folders' own (:mod:`client_distill.train.run_folder`): the sweep skips runs with
``done``; a partial run resumes from its ``checkpoint.pt`` wherever it lands, so a task Ray retries
after losing its node also resumes.

What a cluster needs: ``vl2v`` installed on every node, and the sweep's files (data, teacher sets,
run folders) on a filesystem mounted at the same path everywhere; a task runs in the sweep's working
directory. Teacher sets are bought by the sweep on this machine before any task starts; a run talks
to the vendor only in ``--teacher-mode online``, with the sweep's ``VL2V_*`` settings (the only
variables a task takes from the sweep: the rest of its environment is its node's, ``PATH``,
``CUDA_VISIBLE_DEVICES`` and all).

``ray`` is imported only when this launcher is chosen; it is the ``ray`` extra (``pip install
'vl2v[ray]'``), which ``dev`` includes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType
from typing import Any

from client_distill.errors import UsageError
from client_distill.sweep.launch import INTERRUPTED, LaunchOptions, run_job

#: the sweep's settings, handed to every task (see :class:`client_distill.buy.settings.ClientSettings`)
FORWARDED_PREFIX = "VL2V_"
#: attempts after a task's worker or node dies (not after a run's own failure): the run resumes
MAX_RETRIES = 2
#: what Ray Client says when its proxy could not start the server of this connection: the server process
#: died at start, reported as such, or found by the proxy as a zombie when it reads the process's command line
#: ("Initialization failure from server: ... psutil.ZombieProcess")
CLIENT_SERVER_FAILED = ("Starting Ray client server failed", "ZombieProcess")
#: connections tried when that happens
CLIENT_SERVER_ATTEMPTS = 3


def import_ray() -> ModuleType:
    """``ray``, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--launcher ray needs Ray, which is not installed: pip install 'vl2v[ray]'") from None
    return ray


def forwarded_env() -> dict[str, str]:
    """The part of the sweep's environment a run takes with it: its ``VL2V_*`` settings."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX)}


#: how long a cluster's address may take to accept a connection
CONNECT_TIMEOUT_S = 10


def check_reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` or ``ray://HOST:PORT`` address nothing answers at, at once: Ray itself
    retries a dead address for minutes, printing warnings. ``auto`` is Ray's to resolve."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc}); is `ray start --head` running there?") from None


class NodeSetupError(RuntimeError):
    """A node cannot run the sweep's runs: the sweep's directory is not there."""


def run_on_node(
    job: Callable[..., int], args: tuple, out: str, threads: int, forwarded: dict[str, str], cwd: str
) -> int:
    """The Ray task: :func:`run_job` with this node's environment and the sweep's ``VL2V_*`` settings."""
    if not Path(cwd).is_dir():
        raise NodeSetupError(
            f"the sweep's directory {cwd} does not exist on node {socket.gethostname()}: "
            "a sweep on a Ray cluster needs its files on a filesystem shared at the same path by every node"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(FORWARDED_PREFIX)} | forwarded
    return run_job(job, args, out, threads, env, cwd)


class RayPool(contextlib.AbstractContextManager):
    """Runs as Ray tasks (see the module docstring); connected from ``__init__`` to ``__exit__``."""

    def __init__(self, address: str | None = None, threads: int | None = None):
        ray = self._ray = import_ray()
        #: CPUs (and torch threads) per run
        self.threads = threads or 1
        quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address is not None:
            check_reachable(address)
        for attempt in range(1, CLIENT_SERVER_ATTEMPTS + 1):
            try:
                if address is None:  # a fresh local instance, never a cluster found by chance
                    ray.init(address="local", include_dashboard=False, **quiet)
                else:
                    ray.init(address=address, **quiet)
                break
            except (ConnectionError, ValueError, RuntimeError) as exc:
                # Ray Client's proxy starts a server process per connection, and that start fails now
                # and then (the process dies before it logs a line); a new connection gets a new one
                transient = any(m in str(exc) for m in CLIENT_SERVER_FAILED) and attempt < CLIENT_SERVER_ATTEMPTS
                if not transient:
                    raise UsageError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
                ray.shutdown()
                print(
                    f"warning: the Ray cluster at {address} failed to start a client server; retrying", file=sys.stderr
                )
        self._gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if biggest < self.threads:
            print(
                f"warning: no node of the Ray cluster has {self.threads} CPUs (the largest has {biggest:g}); "
                "runs wait until one joins",
                file=sys.stderr,
            )
        self._task = ray.remote(max_calls=1, max_retries=MAX_RETRIES)(run_on_node)
        self._refs: list[Any] = []

    @classmethod
    def from_options(cls, options: LaunchOptions) -> RayPool:
        return cls(options.address, options.threads)

    def submit(self, job: Callable[..., int], args: tuple, out: Path, threads: int) -> Future:
        """Queue ``job(*args)`` as a task of ``threads`` CPUs (and a GPU where the cluster has them); the
        future's result is its exit status, 1 if the task itself failed (the error appended to
        ``out/log.txt``), :data:`INTERRUPTED` if it was cancelled."""
        ref = self._task.options(num_cpus=threads, num_gpus=self._gpus).remote(
            job, args, str(out), threads, forwarded_env(), os.getcwd()
        )
        self._refs.append(ref)
        status: Future = Future()
        ref.future().add_done_callback(lambda done: status.set_result(self._status(done, Path(out))))
        return status

    def _status(self, done: Future, out: Path) -> int:
        error = done.exception()
        if error is None:
            return int(done.result())
        if isinstance(error, self._ray.exceptions.TaskCancelledError):
            return INTERRUPTED
        with contextlib.suppress(OSError):  # the run's log, where the sweep's summary points
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.txt", "a") as log:
                print(f"vl2v sweep: the Ray task of this run failed: {error}", file=log)
        return 1

    def cancel(self) -> None:
        """Start no queued run, and interrupt the runs in flight (a ``KeyboardInterrupt`` in each,
        as a Ctrl-C would): on a cluster the sweep's Ctrl-C reaches no run by itself. An interrupted
        run resumes from its last checkpoint."""
        for ref in self._refs:
            with contextlib.suppress(Exception):  # a task that already ended
                self._ray.cancel(ref)

    def __exit__(self, *exc: object) -> None:
        self._ray.shutdown()
