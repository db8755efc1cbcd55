"""`vl2v demo` end to end, shrunk to seconds: with its own vendor process (started and stopped by the
demo) and switched to a Jina-format vendor purely by environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_vendors import Script, serve

pytestmark = pytest.mark.slow

TINY = {
    "demo": {"task": "synth-pacs", "per_class": 4, "seed": 0, "key_budget": 500},
    "dataset": "synth-pacs",
    "student": "vl2v-photo-resnet",
    "profile": "smoke",
    "embed": {"strategy": "random", "views": 1},
    "methods": ["zero_shot", "adip"],
    "budgets": [0.5],
    "test_domains": ["sketch"],
    "seeds": [0],
}


def _demo(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(TINY))
    argv = [
        sys.executable,
        "-m",
        "client_distill.cli",
        "demo",
        "--out",
        str(tmp_path / "results"),
        "--data",
        str(tmp_path / "data"),
        "--config",
        str(config),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")}
    return subprocess.run(
        argv, env={**clean, **env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )


def _teacher_manifests(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (results / "runs" / "teachers").glob("*/manifest.json")]


def test_demo_runs_its_own_vendor_and_stops_it(tmp_path: Path) -> None:
    done = _demo(tmp_path, {})
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / "results"
    report = (results / "report.md").read_text()
    assert "adip" in report and "zero_shot" in report
    assert (results / "accuracy_vs_budget.png").stat().st_size > 1000
    assert "vendor stopped" in done.stdout
    manifests = _teacher_manifests(results)
    assert manifests and all(m["vendor"] == "vl2v" for m in manifests)
    # a second run is warm: data, paid embeddings and finished runs are reused, nothing is bought
    again = _demo(tmp_path, {})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep (2 already done)" in again.stderr


def test_demo_switches_to_a_jina_vendor_by_environment(tmp_path: Path) -> None:
    script = Script()
    with serve("jina", script) as url:
        done = _demo(tmp_path, {"VL2V_VENDOR": "jina", "VL2V_VENDOR_URL": url, "VL2V_API_KEY": "jina-test-key"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "results" / "report.md").is_file()
    assert "vendor ready" not in done.stdout  # no local vendor was started
    assert script.requests, "the Jina-format server was never called"
    headers, body = script.requests[0]
    assert headers["authorization"] == "Bearer jina-test-key"
    assert isinstance(body["input"], list) and all(set(item) <= {"text", "image"} for item in body["input"])
    assert all(m["vendor"] == "jina" for m in _teacher_manifests(tmp_path / "results"))
