"""Shared fixtures. The vendor fixtures start the *real* service (``python -m vendor_server.cli
serve``, uvicorn, SQLite) as a subprocess on a free loopback port (:mod:`client_distill.buy.local_vendor`):

- ``vendor_server_factory(**env)`` → :class:`VendorServer`: a fresh server on its own ledger,
  ``vl2v-tiny`` at random init unless told otherwise; ``env`` are extra environment variables such
  as ``VL2V_VENDOR_MAX_PIXELS="1000"`` or ``VL2V_ADMIN_TOKEN="t"``. Stopped at the end of the session.
- ``vendor_server``: one such server shared by the whole session (admin token
  :data:`ADMIN_TOKEN`, small body/image limits from :data:`SHARED_LIMITS`). Create a key per test
  (``server.create_key(budget=...)``) so tests never see each other's usage.
- ``vl2v_checkpoint(seed)`` → a ``vl2v-tiny`` checkpoint file of seeded random weights, for a vendor
  whose weights must differ from another vendor's on purpose, or be swapped under a running client
  (``vendor_server_factory(pretrained=str(path))``); ``--pretrained none`` alone is seed 0 every time.

``VL2V_TEST_VENDOR_ENGINE=onnx pytest ...`` (or ``=openvino``) starts every one of these vendors on that engine
(``VL2V_VENDOR_ENGINE``), so the vendor tests run on every engine; unset, they run on the default.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from postgres_server import postgres_db, postgres_server  # noqa: F401  (fixtures: a real PostgreSQL)

from client_distill.buy.local_vendor import LocalVendor, VendorStartError, free_port, start_vendor

#: no test pays torch.compile's start-up (a sweep's fork server compiles the augmentation);
#: tests/test_augment.py turns it on for the test of the compiled kernels themselves
os.environ["VL2V_COMPILE"] = "0"
#: every vendor the tests start (default engine openvino) keeps its engine exports, one per weights revision,
#: in one folder outside the user's home, reused by later runs (each start checks what it reuses)
ENGINE_CACHE = Path(tempfile.gettempdir()) / f"vl2v-test-engine-cache-{os.getuid()}"
os.environ["VL2V_VENDOR_ENGINE_CACHE_DIR"] = str(ENGINE_CACHE)

ADMIN_TOKEN = "test-admin-token"
SHARED_LIMITS = {
    "VL2V_VENDOR_MAX_BODY_BYTES": "600000",
    "VL2V_VENDOR_MAX_IMAGE_BYTES": "100000",
    "VL2V_VENDOR_MAX_PIXELS": "1000000",
    "VL2V_VENDOR_MAX_TEXT_LENGTH": "500",
    "VL2V_ADMIN_TOKEN": ADMIN_TOKEN,
}
READY_TIMEOUT_S = 120


@dataclass
class VendorServer:
    """A running ``vl2v-vendor serve`` process and what a test needs to talk to it."""

    db: Path | str  # a SQLite file, or a postgresql:// URL (tests/postgres_server.py)
    log: Path
    env: dict[str, str]
    model: str = "vl2v-tiny"
    pretrained: str = "none"
    port: int = 0
    running: LocalVendor | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VendorServer:
        """Start (or restart, on the same ledger) and wait until ``/readyz`` says ready."""
        self.port = free_port()  # looked up here, so a test can pin the port of a restart by patching it
        # the developer's own VL2V_* settings must not change what the tests see
        clean = {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")}
        clean["VL2V_VENDOR_ENGINE_CACHE_DIR"] = str(ENGINE_CACHE)
        if engine := os.environ.get("VL2V_TEST_VENDOR_ENGINE"):
            clean["VL2V_VENDOR_ENGINE"] = engine
        try:
            self.running = start_vendor(
                "--model",
                self.model,
                "--pretrained",
                self.pretrained,
                "--db",
                str(self.db),
                "--log-level",
                "warning",
                port=self.port,
                env={**clean, **self.env},
                log=self.log,
                ready_timeout_s=READY_TIMEOUT_S,
            )
        except VendorStartError as exc:
            raise RuntimeError(f"{exc}:\n{self.log.read_text()}") from None
        return self

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()

    def kill9(self) -> None:
        """Crash the server the hard way (SIGKILL: no shutdown hooks, no flushing)."""
        assert self.running is not None
        self.running.process.kill()
        self.running.process.wait()

    def create_key(self, budget: int = 1000, rate_limit: float | None = None, name: str = "test") -> str:
        """A new API key's secret, written straight into the server's ledger (as ``keys create`` does)."""
        from vendor_server.ledger import open_ledger

        ledger = open_ledger(self.db)
        try:
            return ledger.create_key(name, budget, rate_limit)[1]
        finally:
            ledger.close()

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        """An httpx client for this server, authenticated with ``key`` when given."""
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)


@pytest.fixture(scope="session")
def vendor_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    started: list[VendorServer] = []

    def factory(model: str = "vl2v-tiny", pretrained: str = "none", **env: str) -> VendorServer:
        tmp = tmp_path_factory.mktemp("vendor")
        server = VendorServer(
            db=tmp / "ledger.sqlite3", log=tmp / "server.log", env=env, model=model, pretrained=pretrained
        )
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def vendor_server(vendor_server_factory) -> VendorServer:
    return vendor_server_factory(**SHARED_LIMITS)


@pytest.fixture(scope="session")
def vl2v_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    made: dict[int, Path] = {}

    def make(seed: int) -> Path:
        if seed not in made:
            import open_clip
            import torch

            from vendor_server.model_configs import register_model_configs

            register_model_configs()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = open_clip.create_model("vl2v-tiny")
            path = tmp_path_factory.mktemp("weights") / f"vl2v-tiny-seed{seed}.pt"
            # float16, as ``vl2v-vendor pretrain`` writes the vendor's own checkpoint
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
            made[seed] = path
        return made[seed]

    return make
