"""The ``ray`` launcher against a real Ray head on loopback: a sweep given ``--address`` runs its runs
as tasks of that cluster, skips the finished ones and resumes the partial ones, and its Ctrl-C
cancels its tasks (issue 13, items 8-9).

The head is ``ray start --head --block`` in a session of its own; the fixture stops it with SIGTERM
(it then ends the processes it started) and SIGKILLs whatever of that session is left: Ray's
processes of this head and only those (``ray stop`` would end every Ray process of the machine,
another user's too)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import default_sigint
from test_sweep_report import write_config

from client_distill.buy.local_vendor import free_port
from client_distill.cli import main
from client_distill.errors import UsageError
from client_distill.sweep import ray_pool
from client_distill.sweep.config import load_config
from client_distill.sweep.plan import plan_sweep, run_name
from client_distill.train.run import run_distill

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_READY_S = 60
#: what `ray start --block` prints once every process of the head has started
READY = "This command will now block forever"
#: Ray swaps a loopback address for the machine's outward IP (a cluster spans machines); 0 keeps the
#: head and the sweep's driver on 127.0.0.1, as every server in these tests
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def _test_env() -> dict[str, str]:
    """This environment without the developer's own ``VL2V_*`` settings, on loopback."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")} | LOOPBACK_ENV


@dataclass
class RayHead:
    """A running Ray head: its address, its Ray Client's, its folder, the environment to join it with."""

    address: str
    client_address: str
    temp: Path
    env: dict[str, str]
    pid: int  # of `ray start`, whose session holds the head's processes

    def logs(self, pattern: str) -> str:
        """The head's logs named by ``pattern``, for a failing test's message."""
        return "".join(
            f"\n== {f.name}\n{f.read_text()[-3000:]}" for f in self.temp.glob(f"session_latest/logs/{pattern}")
        )

    def tasks(self) -> list[str]:
        """The runs executing on the head now: the processes its raylet started that run a task."""
        procs = _processes()
        raylets = {p.pid for p in procs if p.pgid == self.pid and "raylet" in p.args}
        return [p.args for p in procs if p.ppid in raylets and p.args.startswith("ray::run_on_node")]


@pytest.fixture
def ray_head() -> Iterator[RayHead]:
    """A Ray head of 2 CPUs on 127.0.0.1 (no dashboard, a 100 MB object store, every port the OS's
    pick), with token authentication on a token of its own, not the developer's ``~/.ray/auth_token``
    (Ray 2.60 enables token mode for ``ray start`` wherever that file exists). Its folder holds the
    workers' logs; it is a short one under /tmp, not ``tmp_path``: Ray's unix sockets live in it, and a
    socket's path is limited to 107 bytes."""
    temp = Path(tempfile.mkdtemp(prefix="vl2v-ray-"))
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = _test_env() | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port, client_port = free_port(), free_port()
    ports = {
        f"--{name}": str(free_port())
        for name in (
            "dashboard-port",
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-grpc-port",
            "dashboard-agent-listen-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    }
    argv = [RAY, "start", "--head", "--block", "--port", str(port), "--ray-client-server-port", str(client_port)]
    argv += ["--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false"]
    argv += ["--disable-usage-stats", "--object-store-memory", str(100 * 2**20), "--temp-dir", str(temp)]
    argv += [x for item in ports.items() for x in item]
    log = temp / "head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_READY_S
        # up when `ray start` says so, after its last process (the raylet): a Ray Client connecting
        # before then gets a server that fails to start, and hangs
        while READY not in log.read_text() or not _listening(port):
            assert head.poll() is None, f"ray start failed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no Ray head on port {port} after {HEAD_READY_S} s:\n{log.read_text()}"
            time.sleep(0.2)
        yield RayHead(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", temp, env, head.pid)
    finally:
        _stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop(head: subprocess.Popen) -> None:
    """SIGTERM to the head (``ray start --block`` then ends the processes it started, workers
    included: 2 s here; the same signal to its whole session at once takes 30 s), then SIGKILL to
    whatever of its session is left."""
    head.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _session(head.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)


@dataclass
class Process:
    pid: int
    ppid: int
    pgid: int
    state: str
    args: str  # as the process shows it: Ray's workers retitle themselves `ray::<task>`


def _processes() -> list[Process]:
    """Every process of the machine, from /proc (no ``ps`` needed, no column truncated)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # ended meanwhile
            continue
        state, ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]  # after the (command), which may hold spaces
        out.append(Process(int(entry.name), int(ppid), int(pgid), state, args))
    return out


def _session(pgid: int) -> list[str]:
    """The live processes of a process group, by command line (not zombies: an orphan's is reaped
    by PID 1, which in a container may never do it)."""
    return [p.args[:80] for p in _processes() if p.pgid == pgid and p.state != "Z"]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_sweep_on_a_ray_cluster_skips_finished_runs_and_resumes_partial_ones(ray_head, tmp_path):
    config = write_config(tmp_path, seeds=[0, 1, 2], hparams={"steps": 4, "checkpoint_freq": 2})
    finished, partial, fresh = [(s, tmp_path / "runs" / run_name(s)) for s in plan_sweep(load_config(config))[0]]
    run_distill(finished[0], finished[1])
    finished_mtime = (finished[1] / "results.jsonl").stat().st_mtime_ns
    # an interrupted run: a checkpoint at step 2, no `done`; its record is marked, so that a resumed
    # run (which keeps the records its checkpoint vouches for) can be told from a restarted one
    assert run_distill(partial[0], partial[1], stop_after=2) is None
    records = partial[1] / "results.jsonl"
    records.write_text(
        "".join(json.dumps({**json.loads(r), "before": True}) + "\n" for r in records.read_text().splitlines())
    )

    argv = [sys.executable, "-m", "client_distill.cli", "sweep", "--config", str(config)]
    sweep = subprocess.run(
        [*argv, "--launcher", "ray", "--address", ray_head.address],
        env=ray_head.env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert "2 runs finished, 1 already done, 0 failed" in sweep.stdout
    assert (finished[1] / "results.jsonl").stat().st_mtime_ns == finished_mtime  # skipped, untouched
    for out in (partial[1], fresh[1]):
        assert (out / "done").is_file(), (out / "log.txt").read_text()
    resumed = [json.loads(r) for r in records.read_text().splitlines()]
    assert resumed[0]["before"] and resumed[0]["step"] == 2 and resumed[-1]["model"] != "checkpoint"
    assert not any(r.get("before") for r in resumed[1:])
    # the two runs ran as tasks of that cluster, each in a worker of its own (max_calls=1)
    tasks = [log for log in ray_head.temp.glob("session_latest/logs/worker-*.out") if "run_on_node" in log.read_text()]
    assert len(tasks) == 2, sorted(p.name for p in ray_head.temp.glob("session_latest/logs/*"))  # a worker per run


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_cancels_a_ray_sweeps_tasks(ray_head, tmp_path):
    """On a cluster the sweep's Ctrl-C reaches no run by itself: the sweep cancels its tasks, queued
    and running, so nothing of it goes on once it has exited. Through Ray Client (``ray://``)."""
    config = write_config(tmp_path, seeds=[0, 1, 2], hparams={"steps": 4000, "checkpoint_freq": 2000})
    argv = [sys.executable, "-m", "client_distill.cli", "sweep", "--config", str(config), "--launcher", "ray"]
    with open(tmp_path / "sweep.log", "wb") as log:
        sweep = subprocess.Popen(
            [*argv, "--address", ray_head.client_address],
            env=ray_head.env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=default_sigint,
        )
    runs = tmp_path / "runs"
    try:
        deadline = time.monotonic() + 120
        while len(ray_head.tasks()) < 2 and time.monotonic() < deadline:  # two CPUs: two runs, one queued
            time.sleep(0.2)
        assert len(ray_head.tasks()) == 2, (tmp_path / "sweep.log").read_text() + ray_head.logs("ray_client_server*")
        os.killpg(sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C: the sweep only, the runs are Ray's
        assert sweep.wait(timeout=60) == 130
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while ray_head.tasks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_head.tasks()
    assert len(list(runs.glob("*/args.json"))) <= 2 and not list(runs.glob("*/done"))  # the queued run never started


def test_launcher_options_belong_to_their_launcher(tmp_path, capsys):
    config = str(write_config(tmp_path))
    assert main(["sweep", "--config", config, "--address", "auto"]) == 2
    assert "use it with --launcher ray" in capsys.readouterr().err
    assert main(["sweep", "--config", config, "--launcher", "ray", "--workers", "2"]) == 2
    assert "--workers is the local launcher's" in capsys.readouterr().err


def test_without_ray_the_ray_launcher_is_a_one_line_error(tmp_path):
    """``ray`` is an extra: a machine without it gets a line that says how to install it."""
    config = write_config(tmp_path)
    code = "import sys; sys.modules['ray'] = None; from client_distill.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "sweep", "--config", str(config), "--launcher", "ray"],
        env=_test_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "needs Ray, which is not installed: pip install 'vl2v[ray]'" in done.stderr


class _FlakyClientRay:
    """Stands in for ``ray`` where a real cluster cannot be made to fail on demand: Ray Client's proxy
    fails to start the server of ``failures`` connections, then connects."""

    def __init__(
        self, failures: int, message: str = "Starting Ray client server failed. See ray_client_server_23000.err"
    ):
        self.failures, self.message, self.inits, self.shutdowns = failures, message, 0, 0

    def init(self, address: str, **_: object) -> None:
        self.inits += 1
        if self.inits <= self.failures:
            raise RuntimeError(self.message)

    def shutdown(self) -> None:
        self.shutdowns += 1

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": 2.0}}]

    def remote(self, **_: object):
        return lambda fn: fn


#: how Ray Client reports a connection's server that died at start: in so many words, or as the zombie its
#: proxy found when reading the process's command line (seen in CI, 2026-12-07)
CLIENT_SERVER_DIED = (
    "Starting Ray client server failed. See ray_client_server_23000.err",
    "Initialization failure from server:\n Traceback (most recent call last):\n ... \n"
    "psutil.ZombieProcess: PID still exists but it's a zombie (pid=30373)",
)


@pytest.mark.parametrize("message", CLIENT_SERVER_DIED)
@pytest.mark.parametrize(("failures", "connects"), [(0, True), (2, True), (3, False)])
def test_a_failed_ray_client_server_start_is_retried_a_bounded_number_of_times(
    monkeypatch, capsys, failures, connects, message
):
    ray = _FlakyClientRay(failures, message)
    monkeypatch.setattr(ray_pool, "import_ray", lambda: ray)
    monkeypatch.setattr(ray_pool, "check_reachable", lambda address: None)
    if connects:
        ray_pool.RayPool("ray://127.0.0.1:1")
        assert ray.inits == failures + 1 and ray.shutdowns == failures
        assert capsys.readouterr().err.count("failed to start a client server; retrying") == failures
    else:
        with pytest.raises(UsageError, match="cannot connect to the Ray cluster at ray://127.0.0.1:1: (Starting|Init)"):
            ray_pool.RayPool("ray://127.0.0.1:1")
        assert ray.inits == ray_pool.CLIENT_SERVER_ATTEMPTS


def test_other_ray_connection_errors_are_not_retried(monkeypatch):
    ray = _FlakyClientRay(1, message="Could not find any running Ray instance")
    monkeypatch.setattr(ray_pool, "import_ray", lambda: ray)
    monkeypatch.setattr(ray_pool, "check_reachable", lambda address: None)
    with pytest.raises(UsageError, match="Could not find any running Ray instance"):
        ray_pool.RayPool("127.0.0.1:1")
    assert ray.inits == 1
