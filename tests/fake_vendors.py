"""Small loopback servers that speak other vendors' wire formats (OpenAI/infinity, Jina), for the
client adapter tests. They are real HTTP servers (uvicorn on a free 127.0.0.1 port), scripted to
answer a queue of errors before succeeding, and they record every request they receive."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DIM = 8


def fake_vector(content: str) -> list[float]:
    """A deterministic, deliberately un-normalised vector for an input."""
    seed = int.from_bytes(hashlib.sha256(content.encode()).digest()[:8], "little")
    return (np.random.default_rng(seed).normal(size=DIM) * 3.0).tolist()


@dataclass
class Script:
    """What the server does: ``errors`` are answered in order (status, json body, headers) before
    any success; ``requests`` records (headers, body) of each request as it arrives."""

    errors: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # seconds to stall, per request in order
    succeed_first: int = 0  # successful answers before the queued errors start


def _item_content(flavour: str, body: dict[str, Any]) -> list[str]:
    if flavour == "jina":
        return [it.get("text") or "img:" + it["image"] for it in body["input"]]
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    prefix = "img:" if body.get("modality") == "image" else ""
    return [prefix + s for s in inputs]


def make_app(flavour: str, script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": f"{flavour}-clip", "object": "model"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        script.requests.append((dict(request.headers), body))
        if script.delays:
            await asyncio.sleep(script.delays.pop(0))
        if script.errors and script.succeed_first <= 0:
            status, payload, headers = script.errors.pop(0)
            return JSONResponse(payload, status_code=status, headers=headers)
        script.succeed_first -= 1
        contents = _item_content(flavour, body)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(c)} for i, c in enumerate(contents)]
        data.reverse()  # vendors may answer out of order; `index` says where each belongs
        return JSONResponse({"object": "list", "model": body.get("model"), "data": data,
                             "usage": {"prompt_tokens": 7 * len(data), "total_tokens": 7 * len(data)}})

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(flavour: str, script: Script) -> Iterator[str]:
    """Run a fake ``flavour`` vendor ("openai" or "jina") on loopback; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(flavour, script), host="127.0.0.1", port=port, log_level="warning"))
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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
