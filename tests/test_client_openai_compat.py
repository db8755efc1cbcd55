"""The ``openai`` adapter against OpenAI-compatible servers it did not write, as they are: the base URL
taken as the OpenAI SDK takes it (``/embeddings`` appended, ``/v1`` only where the server has it), and
a provider's item and body limits learned from its size refusals (halving, never paying twice).

The server here is a small infinity look-alike on 127.0.0.1: FastAPI + pydantic validation, routes at
the root unless given a prefix (``infinity_emb v2`` and ``--url-prefix /v1``), at most 32 images per
request (a list longer than that gets FastAPI's own 422, as infinity's does), an optional body-size cap
answered 413, and a tally of what it charged (one query per item of every 200)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
import numpy as np
import pytest
from fake_vendors import DIM, fake_vector, png_bytes, serve_app
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from client_distill.adapters.base import data_uri
from client_distill.adapters.errors import InvalidInput
from client_distill.adapters.limits import too_large
from client_distill.adapters.registry import create_adapter
from client_distill.buy.cache import CacheDirLimits, EmbeddingCache
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.teacher import Teacher
from client_distill.buy.vendor import VendorConfig

MAX_IMAGES = 32  # infinity's default per-request cap for images


class TextRequest(BaseModel):
    model: str
    input: Annotated[list[str], Field(min_length=1, max_length=2048)] | str
    modality: Literal["text"] = "text"
    encoding_format: Literal["float", "base64"] = "float"


class ImageRequest(BaseModel):
    model: str
    input: Annotated[list[str], Field(min_length=1, max_length=MAX_IMAGES)]
    modality: Literal["image"]
    encoding_format: Literal["float", "base64"] = "float"


@dataclass
class Infinity:
    """What the look-alike saw: each embeddings request's item count and status, and queries charged."""

    prefix: str = ""
    max_body: int | None = None
    requests: list[tuple[int, int]] = field(default_factory=list)  # (items, status)
    charged: dict[str, int] = field(default_factory=dict)  # content -> times charged

    def app(self) -> FastAPI:
        app = FastAPI()
        router = APIRouter(prefix=self.prefix)

        @app.middleware("http")
        async def body_cap_and_tally(request: Request, call_next: Any) -> Any:
            declared = int(request.headers.get("content-length") or 0)
            if self.max_body is not None and declared > self.max_body:
                self.requests.append((-1, 413))
                message = f"Request body too large: {declared} bytes, the maximum is {self.max_body}"
                return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, 413)
            response = await call_next(request)
            if response.status_code == 422:  # FastAPI's own validation answer, as infinity's
                self.requests.append((0, 422))
            return response

        @router.get("/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "clip-vit-b-32", "object": "model"}]}

        @router.post("/embeddings")
        async def embeddings(req: TextRequest | ImageRequest) -> dict[str, Any]:
            inputs = [req.input] if isinstance(req.input, str) else req.input
            contents = [("img:" if req.modality == "image" else "") + s for s in inputs]
            self.requests.append((len(contents), 200))
            for c in contents:
                self.charged[c] = self.charged.get(c, 0) + 1
            data = [{"object": "embedding", "index": i, "embedding": fake_vector(c)} for i, c in enumerate(contents)]
            return {"object": "list", "model": req.model, "data": data, "usage": {"prompt_tokens": len(data)}}

        app.include_router(router)
        return app

    def refused(self) -> list[int]:
        return [n for n, status in self.requests if status != 200]


def serve(vendor: Infinity):
    """Run ``vendor`` on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    return serve_app(vendor.app())


def embed(adapter, modality, payloads, spend=None):
    async def go():
        async with adapter:
            return await adapter.embed_many(modality, payloads, spend)

    return asyncio.run(go())


# -- item 7: the base URL as the OpenAI SDK takes it -------------------------------------------------------


def test_the_url_is_used_as_given_without_a_prefix():
    vendor = Infinity()
    with serve(vendor) as url:
        texts = embed(create_adapter("openai", url, "k"), "text", ["a dog", "a cat"])  # model from GET /models
        images = embed(create_adapter("openai", url + "/", "k", batch_limit=2), "image", [png_bytes(1), png_bytes(2)])
    assert texts.shape == images.shape == (2, DIM) and vendor.requests == [(2, 200), (2, 200)]
    np.testing.assert_allclose(texts[1], fake_vector("a cat") / np.linalg.norm(fake_vector("a cat")), atol=1e-6)


def test_a_v1_prefix_is_given_in_the_url_and_a_wrong_url_says_so():
    vendor = Infinity(prefix="/v1")
    with serve(vendor) as url:
        assert embed(create_adapter("openai", url + "/v1", "k"), "text", ["x"]).shape == (1, DIM)
        with pytest.raises(InvalidInput, match=r"404 for http://127\.0\.0\.1:\d+/embeddings.*include /v1"):
            embed(create_adapter("openai", url, "k", model="clip-vit-b-32"), "text", ["x"])


def test_the_openai_adapter_against_our_own_vendor_at_v1(vendor_server):
    key = vendor_server.create_key(budget=10)
    texts = embed(create_adapter("openai", vendor_server.url + "/v1", key), "text", ["a photo of a dog", "a cat"])
    assert texts.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    with vendor_server.client(key) as client:
        assert client.get("/v1/usage").json()["used"] == 2


# -- item 8: a provider's item and body limits, learned ------------------------------------------------------


def test_a_422_list_too_long_is_learned_with_the_default_settings(tmp_path):
    """infinity's 32-image cap met with the adapter's default 2,048: one refusal names the cap, the rest
    goes in requests of 32, each image is charged once, and the client's ledger agrees."""
    vendor = Infinity()
    images = [png_bytes(i, size=8) for i in range(70)]
    cache = EmbeddingCache(tmp_path)
    with serve(vendor) as url:
        adapter = create_adapter("openai", url, "k")
        with Teacher(adapter, cache) as teacher:
            vectors = teacher.embed_images(images)
            texts = teacher.embed_texts([f"prompt {i}" for i in range(40)])
    assert vectors.shape == (70, DIM) and texts.shape == (40, DIM)
    assert [n for n, status in vendor.requests if status == 200] == [32, 32, 6, 40]  # texts keep their limit
    assert len(vendor.refused()) == 1  # the 422 named the cap: no blind halving
    assert adapter.item_limit("image") == MAX_IMAGES and adapter.item_limit("text") == adapter.batch_limit
    assert sorted(set(vendor.charged.values())) == [1] and len(vendor.charged) == 110
    assert ledger_totals(cache) == {"paid": 110, "in_doubt": 0, "batches": 5}  # the refused one released
    cache.close()


def test_a_413_body_cap_halves_until_it_passes_and_pays_nothing_twice(tmp_path):
    images = [png_bytes(i, size=16) for i in range(12)]
    one = len(
        httpx.Request("POST", "http://x", json={"model": "clip-vit-b-32", "input": [data_uri(images[0])]}).content
    )
    vendor = Infinity(max_body=int(one * 3.5))  # 3 images per request pass, 6 do not (a 413 names no count)
    cache = EmbeddingCache(tmp_path)
    with serve(vendor) as url:
        adapter = create_adapter("openai", url, "k", batch_limit=12, concurrency=1)
        with Teacher(adapter, cache) as teacher:
            assert teacher.embed_images(images).shape == (12, DIM)
            assert teacher.reserved == teacher.paid == 12  # each refused batch was released before its halves
    sizes = [n for n, status in vendor.requests if status == 200]
    assert sum(sizes) == 12 and max(sizes) == adapter.item_limit("image") and adapter.item_limit("image") < 12
    assert len(vendor.refused()) == 2  # 12 -> 6 -> 3: each refusal halves
    assert sorted(set(vendor.charged.values())) == [1]
    assert ledger_totals(cache) == {"paid": 12, "in_doubt": 0, "batches": len(sizes) + 2}  # refused: released
    cache.close()


def test_a_single_item_still_refused_is_a_clear_error_not_a_loop(tmp_path):
    vendor = Infinity(max_body=200)  # smaller than any image request
    spend = Spend()
    with serve(vendor) as url:
        with pytest.raises(InvalidInput, match="refuses even a single image item.*413"):
            embed(
                create_adapter("openai", url, "k", batch_limit=8, model="m"),
                "image",
                [png_bytes(i) for i in range(8)],
                spend,
            )
    assert vendor.refused() == [-1] * 4  # 8, 4, 2, 1 items
    assert spend.reserved == 0 and spend.released == 8 + 4 + 2 + 1


def test_other_400s_are_not_taken_for_a_size_limit():
    script_answers = {"error": {"message": "input[0] is not a valid data URI", "type": "invalid_request_error"}}
    response = httpx.Response(400, json=script_answers, request=httpx.Request("POST", "http://x/embeddings"))
    assert too_large(response) is None
    echoed = {"detail": [{"type": "string_type", "msg": "Input should be a valid string", "input": ["a batch"]}]}
    assert too_large(httpx.Response(422, json=echoed, request=response.request)) is None  # the echo is not read
    ours = {"error": {"code": "too_many_items", "message": "300 items in one request; the limit is 256"}}
    refused = too_large(httpx.Response(413, json=ours, request=response.request))
    assert refused is not None and refused.limit == 256
    one_item = {"error": {"code": "text_too_long", "message": "input[3]: text longer than 500 characters"}}
    assert too_large(httpx.Response(413, json=one_item, request=response.request)) is None  # no batch size helps


def test_the_learned_limit_is_kept_in_the_cache_for_the_next_run(tmp_path):
    vendor = Infinity()
    images = [png_bytes(i, size=8) for i in range(40)]
    config = VendorConfig(vendor="openai", api_key="k", concurrency=4, retry_deadline=60.0, cache=str(tmp_path))
    with serve(vendor) as url:
        config = config.model_copy(update={"vendor_url": url})
        embed(config.open_adapter(), "image", images[:35])
        first = len(vendor.requests)
        embed(config.open_adapter(), "image", images)  # a new run: starts at 32, no refusal
        assert vendor.requests[first:] == [(32, 200), (8, 200)]
        config = config.model_copy(update={"batch_size": 64})  # an explicit size is tried as given
        embed(config.open_adapter(), "image", images)
        assert vendor.requests[first + 2] == (0, 422)
    assert CacheDirLimits(tmp_path).learned_limit(f"openai|{url}/embeddings|clip-vit-b-32|image") == MAX_IMAGES


class Spend:
    """A spend guard that counts what was reserved and released."""

    def __init__(self) -> None:
        self.reserved = self.released = 0

    def reserve(self, batch_id: str, modality: str, n: int) -> None:
        self.reserved += n

    def release(self, batch_id: str, n: int) -> None:
        self.reserved -= n
        self.released += n
