"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package (``initdb``/``pg_ctl``,
found on ``PATH`` or under ``/usr/lib/postgresql/*/bin``), a fresh cluster in a temporary data
directory, listening on a free loopback port (and a unix socket inside the data directory), stopped
and deleted afterwards.

PostgreSQL refuses to run as root, so as root (CI, containers) the cluster belongs to, and the server
runs as, the ``postgres`` user the package creates; as anyone else, as that user. Authentication is
``trust`` on loopback only: the server is the test's own, and nothing else can reach it.

Without the binaries the tests that need them skip, saying so; with ``VL2V_REQUIRE_POSTGRES=1`` (set
by ``.ci/run``) a missing PostgreSQL fails them instead, so CI cannot pass by skipping them.

Fixtures: ``postgres_server`` (one per session) and ``postgres_db`` (a fresh database on it per test,
as a ``postgresql://`` URL)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from required import missing

from client_distill.buy.local_vendor import free_port

REQUIRE_ENV = "VL2V_REQUIRE_POSTGRES"


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def require_postgres() -> Path:
    """The binaries' folder, or skip (fail under ``VL2V_REQUIRE_POSTGRES=1``) naming what is missing."""
    found = postgres_bin()
    if found is None:
        reason = (
            "PostgreSQL is not installed (no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin); "
            "install Debian's postgresql package (.ci/run does) to run the shared-ledger tests"
        )
        missing(reason, REQUIRE_ENV)
    return found


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``data`` on ``127.0.0.1:port``; ``stop()``/``start()`` may be called
    mid-test (a database outage), ``destroy()`` removes it."""

    bin: Path
    root: Path
    port: int
    user: str | None  # who runs the server: None = whoever runs the tests
    #: PostgreSQL's default durability (fsync per commit); the tests turn it off, benchmarks keep it
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user=self.user,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c max_connections=200"
        )
        if not self.durable:  # the tests' data is thrown away; what they check is concurrency, not disks
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: connections are cut, open transactions rolled back)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            user=self.user,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(durable: bool = False) -> PostgresServer:
    """A fresh cluster, started (skips or fails as :func:`require_postgres` says when there is none;
    outside pytest, that is an exception too)."""
    bin_dir = require_postgres()
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="vl2v-pg-"))  # not under pytest's tmp: its folders are 0700 root
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin=bin_dir, root=root, port=free_port(), user=user, durable=durable)
    try:
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.log.read_text() if server.log.exists() else ""
        server.destroy()
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from None
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.destroy()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()
