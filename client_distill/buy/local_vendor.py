"""Our vendor as a local process, for client-side tooling (the demo, the tests, the benchmarks): pick a
free loopback port, start ``vl2v-vendor serve`` on it, wait until ``/readyz`` says the model is
loaded, stop it afterwards.

The vendor is launched as a program, ``python -m vendor_server.cli`` with this interpreter (what the
``vl2v-vendor`` console script runs, found without a ``PATH`` lookup or an activated venv), and
never imported: the client side only ever talks to it over HTTP."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from client_distill.errors import Vl2vError

LOOPBACK = "127.0.0.1"
#: the ``vl2v-vendor`` command line, run by this interpreter
VENDOR_CLI = (sys.executable, "-m", "vendor_server.cli")


class VendorStartError(Vl2vError):
    """The local vendor exited, or was not ready in time; it has been stopped."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call (the OS's pick). Another process could
    take it before the caller binds it; the vendor would then fail to start, loudly."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def vendor_cli(*args: str) -> list[str]:
    """The command line of ``vl2v-vendor ARGS...``, e.g. ``vendor_cli("keys", "create", ...)``."""
    return [*VENDOR_CLI, *args]


@dataclass
class LocalVendor:
    """A ``vl2v-vendor serve`` process on ``127.0.0.1:port``."""

    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (a graceful shutdown: in-flight requests finish, the ledger is closed), then
        SIGKILL if it has not exited after ``timeout_s``."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_vendor(
    *serve_args: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    ready_timeout_s: float = 180.0,
) -> LocalVendor:
    """Run ``vl2v-vendor serve --host 127.0.0.1 --port PORT SERVE_ARGS...`` (``port``: a free one when
    not given) and return once ``/readyz`` answers 200, i.e. the model is loaded.

    ``env`` replaces the child's environment (None: this one's). The child's output is appended to
    ``log`` when given, else it goes to this process's terminal. Raises :class:`VendorStartError`,
    naming the log, if the vendor exits first or is not ready after ``ready_timeout_s``."""
    port = port or free_port()
    command = vendor_cli("serve", "--host", LOOPBACK, "--port", str(port), *serve_args)
    with open(log, "ab") if log is not None else contextlib.nullcontext() as out:
        process = subprocess.Popen(
            command,
            env=None if env is None else dict(env),
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
        )
    vendor = LocalVendor(process, port)
    try:
        _wait_ready(vendor, ready_timeout_s)
    except BaseException as exc:
        vendor.stop()
        if isinstance(exc, VendorStartError) and log is not None:
            raise VendorStartError(f"{exc} (log: {log})") from None
        raise
    return vendor


def _wait_ready(vendor: LocalVendor, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if vendor.process.poll() is not None:
            raise VendorStartError(f"the vendor exited with status {vendor.process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{vendor.url}/readyz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise VendorStartError(f"the vendor at {vendor.url} was not ready after {timeout_s:.0f} s")
