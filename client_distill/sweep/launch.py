"""What every launcher of a sweep's runs shares: the options (``vl2v sweep --launcher --workers --threads
--address``), the :class:`Launcher` interface, and :func:`run_job`, the entry point of one run in the
process a launcher gave it (the sweep's environment and directory, output to the run's ``log.txt``).

The launchers: :mod:`client_distill.sweep.local` (processes forked from a preloaded server, the default)
and :mod:`client_distill.sweep.ray_pool` (Ray tasks); :mod:`client_distill.sweep.launchers` opens one by
name. What a run executes is a job of :mod:`client_distill.sweep.jobs`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: the exit status of a job stopped by Ctrl-C (``shared.cli.call``'s, the shell's 128 + SIGINT)
INTERRUPTED = 130


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
