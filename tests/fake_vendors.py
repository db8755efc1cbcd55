"""Scripted fakes of the vendors the client can buy from, in their wire formats: ``openai``
(OpenAI/infinity), ``jina``, and ``vl2v`` (ours, :mod:`shared.protocol`). One scripted behaviour,
two ways to reach it:

- :func:`mock_transport`: an ``httpx.MockTransport`` for an adapter's ``transport=``, no server and
  no clock: for unit tests of wire formats, error mapping and retries. A scripted
  ``httpx.TransportError`` is raised as the network would raise it.
- :func:`serve`: the same answers from a real uvicorn server on a free 127.0.0.1 port, for the
  end-to-end tests that must cross a real socket (and for subprocesses, which can't share a transport).

A :class:`Script` says which errors come before success and records every embeddings request."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from client_distill.buy.local_vendor import free_port
from shared.protocol import encode_vector

DIM = 8
#: what an error entry of a script answers: (status, JSON body, headers)
ErrorAnswer = tuple[int, Any, dict[str, str]]
#: OpenAI's answer when an account is out of credit (a 429 that must not be retried)
QUOTA: ErrorAnswer = (
    429,
    {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    },
    {},
)


def fake_vector(content: str) -> list[float]:
    """A deterministic, deliberately un-normalised vector for an input."""
    seed = int.from_bytes(hashlib.sha256(content.encode()).digest()[:8], "little")
    return (np.random.default_rng(seed).normal(size=DIM) * 3.0).tolist()


@dataclass
class Script:
    """What the fake vendor does: ``errors`` are answered in order before any success (an
    ``httpx.TransportError`` entry is raised instead, by :func:`mock_transport` only), after
    ``succeed_first`` successful answers; ``requests`` records (headers, body) of each embeddings
    request as it arrives. ``revision`` is the weights revision a ``vl2v`` fake reports."""

    errors: list[ErrorAnswer | httpx.TransportError] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    succeed_first: int = 0
    revision: str = "rev-1"


def _item_content(flavour: str, body: dict[str, Any]) -> list[str]:
    if flavour in ("jina", "vl2v"):
        return [it.get("text") or "img:" + it["image"] for it in body["input"]]
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    prefix = "img:" if body.get("modality") == "image" else ""
    return [prefix + s for s in inputs]


def model_list(flavour: str, script: Script) -> dict[str, Any]:
    """``GET /v1/models``: one model; the ``vl2v`` fake describes it as our vendor does."""
    if flavour == "vl2v":
        card = {
            "id": "vl2v-tiny",
            "object": "model",
            "embedding_dim": DIM,
            "image_size": 32,
            "price_per_query": 0.001,
            "revision": script.revision,
        }
        return {"object": "list", "data": [card]}
    return {"object": "list", "data": [{"id": f"{flavour}-clip", "object": "model"}]}


def answer(flavour: str, script: Script, headers: Mapping[str, str], body: dict[str, Any]) -> ErrorAnswer:
    """The scripted answer to one embeddings request: the next queued error, else the embeddings."""
    script.requests.append((dict(headers), body))
    if script.errors and script.succeed_first <= 0:
        error = script.errors.pop(0)
        if isinstance(error, httpx.TransportError):
            raise error
        return error
    script.succeed_first -= 1
    contents = _item_content(flavour, body)
    if flavour == "vl2v":
        fmt = body.get("encoding_format", "float")
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(np.array(fake_vector(c)), fmt)}
            for i, c in enumerate(contents)
        ]
        n_images = sum("image" in item for item in body["input"])
        usage = {
            "images": n_images,
            "texts": len(data) - n_images,
            "queries": len(data),
            "prompt_tokens": len(data),
            "total_tokens": len(data),
        }
        return (
            200,
            {
                "object": "list",
                "model": body.get("model"),
                "model_revision": script.revision,
                "data": data,
                "usage": usage,
            },
            {},
        )
    data = [{"object": "embedding", "index": i, "embedding": fake_vector(c)} for i, c in enumerate(contents)]
    data.reverse()  # vendors may answer out of order; `index` says where each belongs
    return (
        200,
        {
            "object": "list",
            "model": body.get("model"),
            "data": data,
            "usage": {"prompt_tokens": 7 * len(data), "total_tokens": 7 * len(data)},
        },
        {},
    )


def mock_transport(flavour: str, script: Script) -> httpx.MockTransport:
    """The fake ``flavour`` vendor as an httpx transport: ``Adapter(..., transport=mock_transport(...))``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if (request.method, request.url.path) == ("GET", "/v1/models"):
            return httpx.Response(200, json=model_list(flavour, script))
        if (request.method, request.url.path) == ("POST", "/v1/embeddings"):
            status, payload, headers = answer(flavour, script, request.headers, json.loads(request.content))
            return httpx.Response(status, json=payload, headers=headers)
        return httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


def make_app(flavour: str, script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return model_list(flavour, script)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        status, payload, headers = answer(flavour, script, request.headers, await request.json())
        return JSONResponse(payload, status_code=status, headers=headers)

    return app


@contextmanager
def serve(flavour: str, script: Script) -> Iterator[str]:
    """Run a fake ``flavour`` vendor on loopback; yields its base URL."""
    with serve_app(make_app(flavour, script)) as url:
        yield url


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port, in a thread; yields ``http://127.0.0.1:PORT``."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake vendor did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def png_bytes(seed: int, size: int = 16) -> bytes:
    """A small, distinct PNG file."""
    import io

    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
