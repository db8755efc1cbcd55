"""The container files, checked without a Docker engine (CI has none).

Two layers: the YAML/Dockerfile structure read with pyyaml (always), and the compose CLI's own
``config`` (validation, interpolation, override merging) run with ``DOCKER_HOST`` pointing at a socket
that does not exist, which proves no daemon is involved. The CLI comes from Debian's
``docker-compose`` package or the ``docker compose`` plugin.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = "docker-compose.yml"
GPU = "docker-compose.gpu.yml"
HOSTNET = "docker-compose.hostnet.yml"
DOCKERFILES = {"vendor": ROOT / "docker" / "vendor.Dockerfile", "client": ROOT / "docker" / "client.Dockerfile"}
VENDOR_SERVE = ["vl2v-vendor", "serve", "--host", "0.0.0.0", "--port", "8000", "--db", "/data/ledger/vendor.sqlite3"]


def demo_command(vendor_url: str) -> list[str]:
    """The client's main job, as the issue fixes it; only the vendor's address varies by network."""
    return [
        "demo",
        "--vendor",
        "vl2v",
        "--vendor-url",
        vendor_url,
        "--api-key-file",
        "/keys/client.key",
        "--out",
        "/results",
    ]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def mount_targets(service: dict) -> dict[str, str]:
    """``target -> source`` for a service's volumes, short (``source:target[:mode]``) or long syntax
    (what ``docker compose config`` prints)."""
    pairs = (
        (entry["source"], entry["target"]) if isinstance(entry, dict) else entry.split(":")[:2]
        for entry in service.get("volumes", [])
    )
    return {target: source for source, target in pairs}


def dockerfile_instructions(path: Path) -> list[str]:
    """Instructions with comments dropped and continuation lines joined."""
    text = re.sub(r"^\s*#.*\n", "", path.read_text(), flags=re.M)
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def exec_form(instructions: list[str], keyword: str) -> list[str]:
    (line,) = [i for i in instructions if i.startswith(keyword + " ")]
    return yaml.safe_load(line[len(keyword) :])  # a JSON array is valid YAML


def test_services_wiring() -> None:
    services = load(BASE)["services"]
    assert set(services) == {"vendor", "keys", "client"}
    vendor, keys, client = services["vendor"], services["keys"], services["client"]

    assert "/healthz" in " ".join(vendor["healthcheck"]["test"])
    assert {"/data/ledger", "/data/model"} <= set(mount_targets(vendor))
    assert "ports" not in vendor, "published ports clash with the host-network override"

    assert keys["depends_on"] == {"vendor": {"condition": "service_healthy"}}
    assert (keys["build"], keys["image"]) == (vendor["build"], vendor["image"])
    assert mount_targets(keys)["/data/ledger"] == mount_targets(vendor)["/data/ledger"]
    script = keys["command"][0]
    assert script.startswith("if [ -s /keys/client.key ]"), "an existing key must be kept, not re-minted"
    assert "vl2v-vendor keys create --db /data/ledger/vendor.sqlite3" in script

    assert client["depends_on"] == {
        "vendor": {"condition": "service_healthy"},
        "keys": {"condition": "service_completed_successfully"},
    }
    assert client["command"] == demo_command("http://vendor:8000")
    client_mounts = mount_targets(client)
    assert client_mounts["/results"] == "./results"
    assert client_mounts["/keys"] == mount_targets(keys)["/keys"]
    assert "client-keys:/keys:ro" in client["volumes"]
    assert set(load(BASE)["volumes"]) >= {"vendor-ledger", "vendor-model", "client-keys", "client-work"}


def test_overrides() -> None:
    gpu = load(GPU)["services"]
    assert set(gpu) == {"client"}
    (device,) = gpu["client"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]

    hostnet = load(HOSTNET)["services"]
    assert set(hostnet) == set(load(BASE)["services"])
    assert all(service["network_mode"] == "host" for service in hostnet.values())
    assert all(service["build"]["network"] == "host" for service in hostnet.values()), "builds reach loopback"
    assert hostnet["client"]["command"] == demo_command("http://127.0.0.1:8000")
    assert hostnet["vendor"]["command"] == [*VENDOR_SERVE[:2], "--host", "127.0.0.1", *VENDOR_SERVE[4:]], (
        "loopback only"
    )


def test_dockerfiles() -> None:
    parsed = {name: dockerfile_instructions(path) for name, path in DOCKERFILES.items()}
    for instructions in parsed.values():
        assert instructions[0] == "ARG BASE_IMAGE=python:3.11-slim"
        assert instructions[1] == "FROM ${BASE_IMAGE}"
        assert any(i.startswith("USER ") and i != "USER root" for i in instructions), "must run as non-root"
        assert any(i.startswith("RUN python3 -m venv") for i in instructions), "a venv keeps Debian-python bases usable"
    # The shared prefix is what lets the two images share their multi-GB torch layer.
    prefix = parsed["vendor"][: parsed["vendor"].index("RUN pip install /src && rm -rf /src") + 1]
    assert parsed["client"][: len(prefix)] == prefix
    assert exec_form(parsed["vendor"], "CMD") == VENDOR_SERVE
    assert exec_form(parsed["client"], "ENTRYPOINT") == ["vl2v"]
    assert exec_form(parsed["client"], "CMD") == load(BASE)["services"]["client"]["command"]

    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "results", "**/__pycache__"} <= set(ignored)


def compose_cli() -> list[str] | None:
    """The compose CLI on this machine: the v2 plugin if ``docker compose`` works, else v1."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_config(tmp_path: Path, *files: str, quiet: bool = False) -> dict | None:
    """Run ``<compose> -f ... config`` on copies of the files, with no daemon reachable."""
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose CLI: apt-get install docker-compose (or the docker compose plugin)")
    for name in files:
        shutil.copy(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VL2V_", "COMPOSE_", "DOCKER_"))}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-daemon.sock"
    args = [*cli, "--project-directory", str(tmp_path), *(a for f in files for a in ("-f", str(tmp_path / f)))]
    done = subprocess.run(
        [*args, "config", *(["-q"] if quiet else [])], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return None if quiet else yaml.safe_load(done.stdout)


@pytest.mark.parametrize("files", [(BASE,), (BASE, GPU), (BASE, HOSTNET), (BASE, GPU, HOSTNET)])
def test_compose_cli_validates(tmp_path: Path, files: tuple[str, ...]) -> None:
    compose_config(tmp_path, *files, quiet=True)


def test_compose_cli_merges_overrides(tmp_path: Path) -> None:
    merged = compose_config(tmp_path, BASE, GPU, HOSTNET)["services"]
    assert {name: s.get("network_mode") for name, s in merged.items()} == dict.fromkeys(merged, "host")
    assert merged["client"]["command"] == demo_command("http://127.0.0.1:8000")
    assert merged["client"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "deploy" not in merged["vendor"]
    # the base file's wiring survives the merge
    assert merged["client"]["depends_on"]["keys"]["condition"] == "service_completed_successfully"
    assert mount_targets(merged["client"])["/results"] == str(tmp_path / "results")
    assert merged["client"]["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
