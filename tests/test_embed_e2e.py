"""`vl2v embed` end to end against a REAL `vl2v-vendor serve` (uvicorn, SQLite ledger) on loopback:
budget exactness (vendor usage == client ledger == unique items), free reruns, a vendor SIGKILLed
mid-extraction, a client interrupted (SIGINT) and SIGKILLed mid-run, a rate-limited key, and an
exhausted budget."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import default_sigint
from shape_drawings import make_dataset

from client_distill.adapters.registry import create_adapter
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.embed import view_bytes
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.teacher import Teacher
from client_distill.buy.teacher_set import TeacherSet
from client_distill.cli import main as vl2v
from client_distill.data.datasets import Sample

ROOT = Path(__file__).resolve().parents[1]


def embed_cmd(server_url: str, key: str, data: Path, cache: Path, out: Path, budget: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "client_distill.cli",
        "embed",
        "--vendor",
        "vl2v",
        "--vendor-url",
        server_url,
        "--api-key",
        key,
        "--data",
        str(data),
        "--split",
        "all",
        "--max-queries",
        str(budget),
        "--cache",
        str(cache),
        "--out",
        str(out),
        *extra,
    ]


def run_embed(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(embed_cmd(*args, **kwargs), cwd=ROOT, capture_output=True, text=True, timeout=600)


def vendor_used(server, key: str) -> int:
    """The vendor's own count for ``key`` (``/v1/usage`` is rate-limited like everything else)."""
    with server.client(key) as client:
        for _ in range(50):
            response = client.get("/v1/usage")
            if response.status_code != 429:
                return response.json()["used"]
            time.sleep(float(response.headers.get("Retry-After", "0.2")))
    raise AssertionError("usage endpoint kept answering 429")


def client_ledger(cache_dir: Path) -> dict:
    cache = EmbeddingCache(cache_dir)
    try:
        return ledger_totals(cache)
    finally:
        cache.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=4)  # 24 images


@pytest.mark.slow
def test_budget_is_exact_and_reruns_are_free(vendor_server, data, tmp_path):
    key = vendor_server.create_key(budget=1000)
    cache, out = tmp_path / "cache", tmp_path / "set"
    # 3 prompts + 27 image views (13 images x 2 views + the 14th image's view 0)
    done = run_embed(vendor_server.url, key, data, cache, out, 30, "--views", "2", "--batch-size", "8")
    assert done.returncode == 0, done.stderr
    assert vendor_used(vendor_server, key) == 30 == client_ledger(cache)["paid"]
    teacher_set = TeacherSet.load(out)
    assert len(teacher_set.image_embeddings) == 14 and teacher_set.text_embeddings.shape == (3, 128)
    views = sorted(v.shape[0] for v in teacher_set.image_embeddings.values())
    assert views == [1] + [2] * 13
    # an augmented view is a different, reproducible input (a random-init teacher maps all to ~one point)
    sample = Sample(next(iter(teacher_set.image_embeddings)), 0, "photo")
    assert view_bytes(data, sample, 1, 0) == view_bytes(data, sample, 1, 0) != view_bytes(data, sample, 0, 0)
    stats = EmbeddingCache(cache).stats()
    assert stats["entries"] == 30
    assert teacher_set.meta["complete"] and teacher_set.meta["vendor_usage"]["used"] == 30
    with vendor_server.client() as client:
        card = client.get("/v1/models").json()["data"][0]
    assert teacher_set.meta["model_revision"] == card["revision"]
    # the model card travels with the set: the teacher's own logit scale (KD and the text head use it) and size
    assert (
        teacher_set.meta["logit_scale"] == card["logit_scale"] > 0
        and teacher_set.meta["model_card"]["image_params"] == card["image_params"] > 0
    )

    again = run_embed(vendor_server.url, key, data, cache, out, 30, "--views", "2", "--batch-size", "8")
    assert again.returncode == 0, again.stderr
    q = json.loads((out / "manifest.json").read_text())["queries"]
    assert q["paid_this_run"] == 0 and q["cache_hits_this_run"] == 30
    # a larger budget extends the same plan: the first 30 queries are hits, only the rest is paid
    more = run_embed(vendor_server.url, key, data, cache, out, 60, "--views", "2", "--batch-size", "8")
    assert more.returncode == 0, more.stderr
    assert vendor_used(vendor_server, key) == 3 + 24 * 2 == client_ledger(cache)["paid"]
    assert json.loads((out / "manifest.json").read_text())["queries"]["paid_this_run"] == 21


@pytest.mark.slow
def test_exhausted_vendor_budget_ends_clearly_with_a_usable_partial_set(vendor_server, data, tmp_path):
    key = vendor_server.create_key(budget=10)
    cache, out = tmp_path / "cache", tmp_path / "set"
    done = run_embed(vendor_server.url, key, data, cache, out, 100, "--batch-size", "4", "--concurrency", "1")
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert "budget_exhausted" in message and "partial teacher set" in message and "Traceback" not in done.stderr
    assert vendor_used(vendor_server, key) == 7 == client_ledger(cache)["paid"]  # 3 prompts + one batch of 4
    partial = TeacherSet.load(out)
    assert len(partial.image_embeddings) == 4 and partial.meta["complete"] is False

    from vendor_server.ledger import Ledger  # the vendor's admin tops the key up

    ledger = Ledger(vendor_server.db)
    try:
        ledger.topup(ledger.authenticate(key).id, 100)
    finally:
        ledger.close()
    rerun = run_embed(vendor_server.url, key, data, cache, out, 100, "--batch-size", "4", "--concurrency", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert vendor_used(vendor_server, key) == 3 + 24 == client_ledger(cache)["paid"]
    assert len(TeacherSet.load(out).image_embeddings) == 24


@pytest.mark.slow
def test_rate_limited_key_still_completes(vendor_server, tmp_path):
    key = vendor_server.create_key(budget=100, rate_limit=2.0)
    texts = [f"a photo of shape {i}" for i in range(12)]
    with Teacher(
        create_adapter("vl2v", vendor_server.url, key, batch_limit=2, concurrency=4), EmbeddingCache(tmp_path)
    ) as teacher:
        vectors = teacher.embed_texts(texts)
        assert teacher.adapter.retries > 0  # it was told to wait (429 + Retry-After) and did
    assert vectors.shape == (12, 128)
    assert vendor_used(vendor_server, key) == 12 == ledger_totals(EmbeddingCache(tmp_path))["paid"]


@pytest.mark.slow
def test_online_mode_pays_every_call_and_the_ledger_agrees(vendor_server, tmp_path):
    """cache=False (the official recipe's re-query of every view): identical content bought twice
    is charged twice by the vendor, and the client's ledger says so too."""
    key = vendor_server.create_key(budget=100)
    cache = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("vl2v", vendor_server.url, key), cache, use_cache=False) as teacher:
        teacher.embed_texts(["a photo of a circle", "a photo of a square"])
        teacher.embed_texts(["a photo of a circle", "a photo of a square"])
        assert teacher.paid == 4
    assert vendor_used(vendor_server, key) == 4 == ledger_totals(cache)["paid"]
    assert cache.stats()["entries"] == 0


def wait_for_usage(server, key: str, at_least: int, process: subprocess.Popen, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        used = vendor_used(server, key)
        if used >= at_least:
            return used
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"usage stayed below {at_least}")


@pytest.mark.slow
def test_client_killed_mid_run_rebuys_nothing(vendor_server, tmp_path):
    data = make_dataset(tmp_path / "shapes", per_class=8)  # 48 images
    key = vendor_server.create_key(budget=1000, rate_limit=4.0)
    cache, out = tmp_path / "cache", tmp_path / "set"
    args = (vendor_server.url, key, data, cache, out, 1000, "--batch-size", "2", "--concurrency", "2")
    # Ctrl-C first: a clean stop that keeps what was bought and writes the partial set
    process = subprocess.Popen(
        embed_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    wait_for_usage(vendor_server, key, 7, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "rerun to continue" in stderr and "Traceback" not in stderr
    assert TeacherSet.load(out).meta["complete"] is False
    # then the hard way
    process = subprocess.Popen(embed_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_usage(vendor_server, key, 21, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    at_kill = client_ledger(cache)
    assert 0 < at_kill["paid"] < 51
    rerun = run_embed(*args)
    assert rerun.returncode == 0, rerun.stderr
    final = client_ledger(cache)
    assert vendor_used(vendor_server, key) == 3 + 48 == final["paid"]  # nothing bought twice
    assert final["in_doubt"] == 0  # the lost answers were replayed by their idempotency keys
    q = json.loads((out / "manifest.json").read_text())["queries"]
    print(f"client SIGKILL: ledger at kill {at_kill}; rerun paid {q['paid_this_run']}, hits {q['cache_hits_this_run']}")


@pytest.mark.slow
def test_vendor_killed_mid_extraction_and_restarted(vendor_server_factory, vl2v_checkpoint, monkeypatch, tmp_path):
    # a checkpoint, so the restarted vendor serves the same weights (random init differs at every start,
    # and the client would rightly stop: tests/test_model_revision.py)
    server = vendor_server_factory(pretrained=str(vl2v_checkpoint(0)))
    data = make_dataset(tmp_path / "shapes", per_class=8)
    key = server.create_key(budget=1000, rate_limit=5.0)
    cache, out = tmp_path / "cache", tmp_path / "set"
    process = subprocess.Popen(
        embed_cmd(server.url, key, data, cache, out, 1000, "--batch-size", "2", "--concurrency", "2"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    used_at_kill = wait_for_usage(server, key, 15, process)
    server.kill9()
    port = server.port
    # restart on the same port (the client keeps its URL); conftest picks ports via free_port()
    monkeypatch.setattr(sys.modules[type(server).__module__], "free_port", lambda: port)
    server.start()
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    final = client_ledger(cache)
    assert vendor_used(server, key) == 3 + 48 == final["paid"] and final["in_doubt"] == 0
    assert len(TeacherSet.load(out).image_embeddings) == 48
    print(f"vendor SIGKILL at vendor usage {used_at_kill}: {stdout.strip()}")


def run_cli(argv: list[str]) -> int:
    """The real ``vl2v`` frame (one-line user errors), in this process."""
    return vl2v(argv)


def test_no_url_is_a_one_line_error(tmp_path, data, monkeypatch, capsys):
    monkeypatch.delenv("VL2V_VENDOR_URL", raising=False)
    argv = [
        "embed",
        "--data",
        str(data),
        "--max-queries",
        "5",
        "--out",
        str(tmp_path / "o"),
        "--cache",
        str(tmp_path / "c"),
    ]
    assert run_cli(argv) == 2
    assert "VL2V_VENDOR_URL" in capsys.readouterr().err


def test_unreachable_vendor_is_a_one_line_error(tmp_path, data, capsys):
    argv = embed_cmd("http://127.0.0.1:9", "k", data, tmp_path / "c", tmp_path / "o", 5, "--retry-deadline", "1")[3:]
    assert run_cli(argv) == 2
    assert "vendor unavailable" in capsys.readouterr().err
