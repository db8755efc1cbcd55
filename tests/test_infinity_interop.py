"""`vl2v embed --vendor openai` end to end against a REAL third-party OpenAI-compatible server that this
project did not write: infinity-emb (pinned in tests/infinity/requirements.txt) serving a small
random-init CLIP built offline, on loopback, with vl2v's default settings (batch size, concurrency,
URL as the provider gives it).

Set-up (all done by the session fixtures; nothing to do by hand):

1. ``tests/infinity/setup.sh`` makes ``.venv-infinity`` at the repo root when it is missing or stale
   (2-3 min cold on 2 cores; instant afterwards). A venv of its own: infinity needs numpy<2,
   transformers and older click/rich/uvicorn than the project's venv has.
2. ``tests/infinity/make_tiny_clip.py`` writes the model folder (``CLIPModel`` of tiny sizes, seed 0,
   a byte-level BPE tokenizer whose vocabulary is made there; no hub access).
3. ``infinity_emb v2`` is started on a free loopback port with an API key, bounded by ``timeout``
   and stopped by the fixture; its log is kept in the session's tmp folder and shown on failure.

Infinity serves ``/embeddings`` and ``/models`` without a ``/v1`` prefix and takes at most 32 images
per request (422 past it); the dataset here has more than 32 images, so a run only completes if the
adapter learns that limit from the 422.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from shape_drawings import CLASSES, make_dataset

from client_distill.buy.local_vendor import free_port
from client_distill.buy.teacher_set import TeacherSet

ROOT = Path(__file__).resolve().parents[1]
INFINITY = ROOT / "tests" / "infinity"
VENV = ROOT / ".venv-infinity"
SETUP_TIMEOUT_S = 1500  # cold install measured at 2-3 min; generous for a loaded CI machine
READY_TIMEOUT_S = 180  # model load + warm-up measured at about 10 s
SERVER_LIFETIME_S = 1800  # `timeout` ends the server even if pytest itself is killed
API_KEY = "infinity-test-key"
MODEL = "tiny-clip"
DIM = 64  # make_tiny_clip.PROJECTION_DIM
PER_CLASS = 8  # 48 images; the default 'in' split keeps more than infinity's 32 per request


def tail(text: str, lines: int = 60) -> str:
    """The last ``lines`` lines of ``text``, without pip's notes on this machine's absent local index folders."""
    kept = [line for line in text.splitlines() if "is ignored: it is neither a file nor a directory" not in line]
    return "\n".join(kept[-lines:])


@dataclass
class InfinityServer:
    url: str
    log: Path
    model_dir: Path
    process: subprocess.Popen

    def post_lines(self) -> int:
        """How many ``POST /embeddings`` requests infinity has logged (uvicorn's access log)."""
        return len(re.findall(r'"POST /embeddings HTTP/1\.1"', self.log.read_text(errors="replace")))

    def embed(self, inputs: list[str], modality: str = "text") -> np.ndarray:
        """Infinity's own answer for ``inputs``, asked directly (the reference the client's set must match)."""
        body = {"model": MODEL, "input": inputs, "encoding_format": "float"}
        if modality == "image":
            body["modality"] = "image"
        response = httpx.post(
            f"{self.url}/embeddings", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )
        assert response.status_code == 200, response.text
        return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


@pytest.fixture(scope="session")
def infinity_venv() -> Path:
    """``.venv-infinity``, made by tests/infinity/setup.sh on first use (a no-op when up to date)."""
    setup = subprocess.Popen(
        ["bash", str(INFINITY / "setup.sh")],
        cwd=ROOT,
        env={**os.environ, "VENV": str(VENV)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout ends pip too, not only the shell
    )
    try:
        output, _ = setup.communicate(timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(setup.pid, signal.SIGKILL)
        output, _ = setup.communicate()
        pytest.fail(f"tests/infinity/setup.sh did not finish in {SETUP_TIMEOUT_S} s; its output:\n{tail(output)}")
    if setup.returncode != 0:
        pytest.fail(
            f"tests/infinity/setup.sh failed (exit {setup.returncode}); it installs infinity-emb into {VENV} "
            f"from the machine's pip configuration. Its output:\n{tail(output)}"
        )
    return VENV


@pytest.fixture(scope="session")
def infinity_server(infinity_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfinityServer]:
    work = tmp_path_factory.mktemp("infinity")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VL2V_", "INFINITY_", "HF_"))},
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",  # the access log reaches the file as each request is answered
        "HF_HOME": str(work / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    }
    model_dir = work / MODEL
    made = subprocess.run(
        [str(infinity_venv / "bin" / "python"), str(INFINITY / "make_tiny_clip.py"), str(model_dir)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if made.returncode != 0:
        pytest.fail(f"make_tiny_clip.py failed (exit {made.returncode}):\n{tail(made.stdout + made.stderr)}")

    port = free_port()
    log = work / "infinity.log"
    command = [
        "timeout",
        "--kill-after=10",
        str(SERVER_LIFETIME_S),
        str(infinity_venv / "bin" / "infinity_emb"),
        "v2",
        "--model-id",
        str(model_dir),
        "--served-model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--device",
        "cpu",
        "--no-compile",  # torch.compile on a 2-core CPU only adds minutes of start-up
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = InfinityServer(f"http://127.0.0.1:{port}", log, model_dir, process)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"infinity_emb exited with {process.returncode} before it was ready; its log:\n"
                    f"{tail(log.read_text(errors='replace'))}"
                )
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"infinity_emb not ready after {READY_TIMEOUT_S} s; its log:\n"
                    f"{tail(log.read_text(errors='replace'))}"
                )
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: `timeout` and infinity_emb
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_embed(server: InfinityServer, data: Path, cache: Path, out: Path) -> subprocess.CompletedProcess:
    """``vl2v embed`` as a user would type it: only the required flags, the provider's URL as it is, a key."""
    command = [
        sys.executable,
        "-m",
        "client_distill.cli",
        "embed",
        "--vendor",
        "openai",
        "--vendor-url",
        server.url,
        "--api-key",
        API_KEY,
        "--data",
        str(data),
        "--max-queries",
        "1000",
        "--cache",
        str(cache),
        "--out",
        str(out),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VL2V_")}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


@pytest.mark.slow
@pytest.mark.timeout(SETUP_TIMEOUT_S + 600)  # the first use also installs .venv-infinity
def test_vl2v_embed_buys_texts_and_images_from_a_real_infinity_server(infinity_server, tmp_path):
    data = make_dataset(tmp_path / "shapes", PER_CLASS)
    cache, out = tmp_path / "cache", tmp_path / "set"
    posts_before = infinity_server.post_lines()

    done = run_embed(infinity_server, data, cache, out)
    log = infinity_server.log.read_text(errors="replace")
    assert done.returncode == 0, f"vl2v embed failed:\n{done.stderr[-4000:]}\ninfinity's log:\n{tail(log)}"

    teacher_set = TeacherSet.load(out)
    q = json.loads((out / "manifest.json").read_text())["queries"]
    n_images = len(teacher_set.image_embeddings)
    assert n_images > 32, "the dataset must exceed infinity's 32 images per request"
    assert q["texts"] == len(CLASSES) and q["planned"] == len(CLASSES) + n_images
    assert q["paid_this_run"] == q["planned"] and q["cache_hits_this_run"] == 0 and teacher_set.meta["complete"]
    assert teacher_set.meta["vendor"] == "openai" and teacher_set.meta["model"] == MODEL
    assert teacher_set.classes == list(CLASSES)

    # shapes and norms: [C, D] texts, [1, D] per image (one view by default), all unit length
    assert teacher_set.text_embeddings.shape == (len(CLASSES), DIM) and teacher_set.dim == DIM
    assert all(v.shape == (1, DIM) for v in teacher_set.image_embeddings.values())
    images = np.concatenate(list(teacher_set.image_embeddings.values())).astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(teacher_set.text_embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=2e-3)  # stored as float16

    # the right vector under the right name: what infinity answers when asked directly, for every
    # bought image (so no batch was split, retried or reassembled out of order) and every class text
    paths = sorted(teacher_set.image_embeddings)
    direct = np.concatenate(
        [
            infinity_server.embed([data_uri(data / p) for p in paths[i : i + 16]], "image")
            for i in range(0, n_images, 16)
        ]
    )
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    bought = np.stack([teacher_set.image_embeddings[p][0].astype(np.float32) for p in paths])
    np.testing.assert_allclose(bought, direct, atol=3e-3)
    texts = infinity_server.embed([f"a photo of a {c}" for c in CLASSES])
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    np.testing.assert_allclose(teacher_set.text_embeddings, texts, atol=1e-4)
    assert len({tuple(np.round(v, 3)) for v in bought}) == n_images  # distinct images, distinct vectors

    # infinity refused the first over-long image batch (422) and the adapter recovered on its own
    assert re.search(r'"POST /embeddings HTTP/1\.1" 422', log), tail(log)

    # a second run with the same cache pays nothing and sends no embeddings request at all
    posts_after_first = infinity_server.post_lines()
    assert posts_after_first > posts_before
    again = run_embed(infinity_server, data, cache, out)
    assert again.returncode == 0, again.stderr[-4000:]
    q = json.loads((out / "manifest.json").read_text())["queries"]
    assert q["paid_this_run"] == 0 and q["cache_hits_this_run"] == len(CLASSES) + n_images
    # (the direct requests above were logged before this count was taken)
    assert infinity_server.post_lines() == posts_after_first
    # the same vectors (the cache keeps float16: equal to the bought ones within its rounding)
    rerun = TeacherSet.load(out)
    np.testing.assert_allclose(rerun.text_embeddings, teacher_set.text_embeddings, atol=1e-3)
    for p in paths:
        np.testing.assert_allclose(rerun.image_embeddings[p], teacher_set.image_embeddings[p], atol=1e-3)
