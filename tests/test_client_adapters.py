"""The vendor adapters (`vl2v`, `openai`, `jina`): wire formats, error mapping, retries that honour
``Retry-After``, budget guards and retry exhaustion, against scripted fakes behind
``httpx.MockTransport`` (no server, no clock: the waits asked for are recorded, not slept); then one
end-to-end exchange per adapter with a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import time

import httpx
import numpy as np
import pytest
from fake_vendors import DIM, QUOTA, Script, fake_vector, mock_transport, png_bytes, serve

from client_distill.adapters.errors import (
    AdapterError,
    AuthError,
    BudgetExhausted,
    InvalidInput,
    ModelChanged,
    TransientError,
)
from client_distill.adapters.limits import too_large
from client_distill.adapters.registry import create_adapter
from client_distill.adapters.retry import MAX_RETRY_AFTER_S
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.teacher import Teacher
from client_distill.errors import UsageError

URL = "http://vendor.test"


def base_url(flavour: str, root: str = URL) -> str:
    """The URL to give an adapter of ``flavour`` for a fake serving ``/v1/...``: the ``openai`` adapter
    takes it as the OpenAI SDK does (with the ``/v1``), the others take the server root."""
    return root + "/v1" if flavour == "openai" else root


class Sleeps(list):
    """An adapter's ``sleep``: records each wait it asks for and returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class CountingSpend:
    def __init__(self, budget=None):
        self.budget, self.reserved, self.calls = budget, 0, []

    def reserve(self, batch_id, modality, n):
        if self.budget is not None and self.reserved + n > self.budget:
            raise BudgetExhausted("client budget")
        self.reserved += n
        self.calls.append(("reserve", batch_id, n))

    def release(self, batch_id, n):
        self.reserved -= n
        self.calls.append(("release", batch_id, n))


def fake(flavour: str, script: Script, sleeps: Sleeps | None = None, **kwargs):
    """An adapter of ``flavour`` wired to a fake vendor that follows ``script``."""
    return create_adapter(
        flavour,
        base_url(flavour),
        "k",
        transport=mock_transport(flavour, script),
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kwargs,
    )


def embed(adapter, modality, payloads, spend=None):
    async def go():
        async with adapter:
            return await adapter.embed_many(modality, payloads, spend)

    return asyncio.run(go())


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


# -- wire formats ------------------------------------------------------------------------------------


def test_openai_texts_and_images_wire_format():
    script = Script()
    images = [png_bytes(i) for i in range(3)]
    texts = embed(
        create_adapter("openai", URL + "/v1", "sk-test", transport=mock_transport("openai", script)),
        "text",
        ["a dog", "a cat"],
    )
    vecs = embed(fake("openai", script, batch_limit=2), "image", images)
    assert texts.dtype == np.float32 and texts.shape == (2, DIM)
    np.testing.assert_allclose(texts[1], unit(fake_vector("a cat")), atol=1e-6)  # index order kept
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    headers, body = script.requests[0]  # only embeddings requests are recorded
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {"model": "openai-clip", "input": ["a dog", "a cat"], "encoding_format": "float"}
    image_bodies = [b for _, b in script.requests[1:]]
    assert [len(b["input"]) for b in image_bodies] == [2, 1]  # batched to the limit
    assert all(b["modality"] == "image" for b in image_bodies)
    uri = image_bodies[0]["input"][0]
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == images[0]
    np.testing.assert_allclose(vecs[0], unit(fake_vector("img:" + uri)), atol=1e-6)


def test_jina_items_options_and_stable_idempotency_key():
    script = Script()
    image = png_bytes(7)
    embed(fake("jina", script), "text", ["a photo of a dog"])
    embed(fake("jina", script), "image", [image])
    embed(fake("jina", script), "image", [image])
    (h_text, text_body), (h1, img_body), (h2, _) = script.requests
    assert text_body == {
        "model": "jina-clip-v2",
        "input": [{"text": "a photo of a dog"}],
        "normalized": True,
        "embedding_type": "float",
    }
    assert img_body["input"] == [{"image": base64.b64encode(image).decode()}]
    assert h1["idempotency-key"] == h2["idempotency-key"] != h_text["idempotency-key"]


def test_vl2v_wire_format_revision_and_charged_queries():
    script = Script(revision="abc123")
    image = png_bytes(3)
    adapter = fake("vl2v", script)

    async def go():
        async with adapter:
            return await adapter.embed_batch("image", [image]), adapter.model_key

    result, model_key = asyncio.run(go())
    headers, body = script.requests[0]
    assert body["model"] == "vl2v-tiny" and body["encoding_format"] == "base64"  # the model /v1/models listed
    assert body["input"] == [{"image": "data:image/png;base64," + base64.b64encode(image).decode()}]
    assert headers["idempotency-key"] == result.batch_id and model_key == "vl2v-tiny@abc123"
    assert result.charged == 1 and result.usage["images"] == 1
    np.testing.assert_allclose(result.vectors[0], unit(fake_vector("img:" + body["input"][0]["image"])), atol=1e-6)


def test_vl2v_refuses_answers_from_other_weights():
    script = Script(revision="abc123")
    adapter = fake("vl2v", script)

    async def go():
        async with adapter:
            script.revision = "def456"  # the vendor restarted with a retrained checkpoint
            await adapter.embed_many("text", ["a"])

    with pytest.raises(ModelChanged):
        asyncio.run(go())
    assert len(script.requests) == 1  # never retried


def test_our_vendors_item_limit_is_read_from_the_limit_field_of_its_refusal():
    """Our vendor's 413 ``too_many_items`` states its item limit as a field (``error.limit``): the adapter
    goes straight to it, whatever the message's words say (the words are read only for vendors that send
    no field; halving would have sent 6 and 6)."""
    refusal = {"type": "invalid_request_error", "code": "too_many_items", "message": "too many items", "limit": 5}
    script = Script(errors=[(413, {"error": refusal}, {})])
    adapter = fake("vl2v", script)
    vecs = embed(adapter, "text", [f"t{i}" for i in range(12)])
    assert vecs.shape == (12, DIM) and adapter.item_limit("text") == 5
    assert [len(body["input"]) for _, body in script.requests] == [12, 5, 5, 2]
    words = {**refusal, "message": "12 items in one request; the limit is 256"}
    request = httpx.Request("POST", URL + "/v1/embeddings")
    assert too_large(httpx.Response(413, json={"error": words}, request=request)).limit == 5  # the field wins


# -- retries -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["openai", "jina", "vl2v"])
@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (503, "overloaded")])
def test_refusals_are_retried_after_the_retry_after_they_name(flavour, status, code):
    script = Script(errors=[(status, {"error": {"message": "later", "code": code}}, {"Retry-After": "3"})])
    spend, sleeps = CountingSpend(), Sleeps()
    adapter = fake(flavour, script, sleeps)
    vecs = embed(adapter, "text", ["x", "y"], spend)
    assert vecs.shape == (2, DIM) and len(script.requests) == 2 and adapter.retries == 1
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 3.25  # as told, plus a little jitter
    assert spend.reserved == 2 and [c[0] for c in spend.calls] == ["reserve"]  # a refusal was not billed


def test_a_retry_after_date_is_obeyed_up_to_the_cap():
    later = email.utils.formatdate(time.time() + 7200, usegmt=True)
    script = Script(errors=[(503, {"error": {"message": "maintenance"}}, {"Retry-After": later})])
    sleeps = Sleeps()
    embed(fake("openai", script, sleeps), "text", ["x"])
    assert MAX_RETRY_AFTER_S <= sleeps[0] <= MAX_RETRY_AFTER_S + 0.25


def test_without_retry_after_the_backoff_grows():
    boom = (500, {"error": {"message": "boom", "code": "internal"}}, {})
    script = Script(errors=[boom, boom, boom])
    sleeps = Sleeps()
    assert embed(fake("openai", script, sleeps), "text", ["z"]).shape == (1, DIM)
    assert len(script.requests) == 4
    # 0.25 s doubling per attempt, plus up to 0.5 s of jitter
    assert [0.25 <= sleeps[0] <= 0.75, 0.5 <= sleeps[1] <= 1.0, 1.0 <= sleeps[2] <= 1.5] == [True] * 3


@pytest.mark.parametrize(
    ("flavour", "error", "reservations"),
    [
        ("openai", httpx.ReadTimeout("read timed out"), 2),  # may have been billed: the resend is paid again
        ("vl2v", httpx.ReadTimeout("read timed out"), 1),  # an idempotent vendor replays the resend for free
        ("openai", httpx.ConnectError("connection refused"), 1),  # never reached the vendor: nothing billed
    ],
)
def test_network_failures_are_retried_and_rebudgeted_only_when_maybe_billed(flavour, error, reservations):
    script = Script(errors=[error])
    spend = CountingSpend()
    adapter = fake(flavour, script)
    assert embed(adapter, "text", ["slow"], spend).shape == (1, DIM)
    assert adapter.retries == 1 and len(script.requests) == 2
    assert spend.reserved == reservations
    first, second = (headers["idempotency-key"] for headers, _ in script.requests)
    assert first == second  # the same request, recognisable as such by a vendor that honours the key


def test_client_budget_stops_an_ambiguous_resend():
    script = Script(errors=[httpx.ReadTimeout("read timed out")])
    spend = CountingSpend(budget=3)
    with pytest.raises(BudgetExhausted):
        embed(fake("openai", script), "text", ["a", "b", "c"], spend)
    assert spend.reserved == 3 and len(script.requests) == 1  # never a second, possibly billed, send


def test_retries_run_out_after_max_attempts():
    overloaded = (503, {"error": {"message": "overloaded", "code": "overloaded"}}, {"Retry-After": "1"})
    script = Script(errors=[overloaded] * 10)
    spend, sleeps = CountingSpend(), Sleeps()
    adapter = fake("vl2v", script, sleeps, max_attempts=4)
    with pytest.raises(TransientError, match="503 overloaded"):
        embed(adapter, "text", ["a", "b"], spend)
    assert len(script.requests) == 4 and len(sleeps) == 3 and adapter.retries == 3
    # every send was refused before acceptance: nothing was billed, so nothing stays reserved
    assert spend.reserved == 0 and [c[0] for c in spend.calls] == ["reserve", "release"]


def test_ambiguous_failures_stay_booked_when_retries_run_out():
    boom = (500, {"error": {"message": "boom"}}, {})
    script = Script(errors=[boom] * 10)
    spend = CountingSpend()
    with pytest.raises(TransientError):
        embed(fake("openai", script, max_attempts=3), "text", ["a"], spend)
    assert spend.reserved == 3  # each send may have been billed by a vendor without idempotency keys


def test_each_wait_is_told_what_failed_and_when_the_retries_end():
    """What a progress line shows while the client waits on a vendor that does not answer."""
    script = Script(errors=[httpx.ConnectError("connection refused")] * 2)
    adapter = fake("openai", script, model="m", max_attempts=5)
    waits: list[str] = []
    adapter.retry.on_wait = waits.append
    embed(adapter, "text", ["a"])
    assert len(waits) == 2 and all("cannot connect" in w and "of at most 4" in w for w in waits)
    assert "retry 1 " in waits[0] and "retry 2 " in waits[1] and "giving up within 600 s" in waits[0]


def test_retries_give_up_at_the_deadline():
    script = Script(errors=[httpx.ConnectError("connection refused")] * 10)
    sleeps = Sleeps()
    with pytest.raises(TransientError, match="cannot connect"):
        embed(fake("openai", script, sleeps, model="m", retry_deadline_s=0), "text", ["a"])
    assert len(script.requests) == 1 and sleeps == []


# -- errors that are never retried ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavour", "status", "body", "exc"),
    [
        ("openai", *QUOTA[:2], BudgetExhausted),
        (
            "openai",
            401,
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            AuthError,
        ),
        (
            "openai",
            400,
            {"error": {"message": "bad input", "type": "invalid_request_error", "code": None}},
            InvalidInput,
        ),
        ("jina", 403, {"detail": "AUTHZ_INSUFFICIENT_BALANCE: insufficient balance, please top up"}, BudgetExhausted),
        ("jina", 402, {"detail": "Payment required"}, BudgetExhausted),
        ("jina", 403, {"detail": "Forbidden: key not allowed for this model"}, AuthError),
        ("jina", 401, {"detail": "Failed to authenticate with the provided api key."}, AuthError),
        (
            "vl2v",
            402,
            {
                "error": {
                    "type": "insufficient_budget",
                    "code": "budget_exhausted",
                    "message": "this request needs 1 queries but the key has 0 left",
                }
            },
            BudgetExhausted,
        ),
        ("vl2v", 403, {"error": {"type": "permission_error", "code": "key_revoked", "message": "revoked"}}, AuthError),
    ],
)
def test_error_shapes_map_to_errors_that_are_never_retried(flavour, status, body, exc):
    script = Script(errors=[(status, body, {"Retry-After": "0"})])
    spend, sleeps = CountingSpend(), Sleeps()
    with pytest.raises(exc) as info:
        embed(fake(flavour, script, sleeps), "text", ["a"], spend)
    assert len(script.requests) == 1 and sleeps == []
    assert spend.reserved == 0  # the refusal gave its reservation back
    assert str(status) in str(info.value)


def test_every_adapter_error_has_one_root():
    for exc in (TransientError("x"), BudgetExhausted("x"), AuthError("x"), InvalidInput("x"), ModelChanged("x")):
        assert isinstance(exc, AdapterError)


@pytest.mark.parametrize(("status", "cause"), [(503, TransientError), (404, InvalidInput)])
def test_vendor_usage_is_none_when_the_vendor_does_not_answer(tmp_path, status, cause):
    inner = mock_transport("vl2v", Script())

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/usage":
            return httpx.Response(status, json={"error": {"message": "not now"}})
        return inner.handler(request)

    def adapter():
        return create_adapter("vl2v", URL, "k", transport=httpx.MockTransport(handle), sleep=Sleeps(), max_attempts=2)

    async def usage():
        async with adapter() as vl2v:
            return await vl2v.usage()

    with pytest.raises(cause):  # what Teacher.vendor_usage takes for "no answer"
        asyncio.run(usage())
    cache = EmbeddingCache(tmp_path)
    with Teacher(adapter(), cache) as teacher:
        assert teacher.vendor_usage() is None
    cache.close()


def test_sibling_batches_finish_after_a_budget_error():
    # batch 1 ("b") is refused for budget while batch 0 ("a") is in flight: "a" is delivered, nothing new starts
    script = Script()
    refused = asyncio.Event()
    inner = mock_transport("openai", script)

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/embeddings":
            if b'"a"' in request.content:
                await refused.wait()
            else:
                script.errors.append(QUOTA)
                refused.set()
        return await inner.handle_async_request(request)

    delivered = []
    adapter = create_adapter(
        "openai", URL + "/v1", "k", transport=httpx.MockTransport(handle), batch_limit=1, concurrency=2
    )

    async def go():
        async with adapter:
            await adapter.embed_many("text", ["a", "b", "c", "d"], None, lambda s, c, r: delivered.append(s))

    with pytest.raises(BudgetExhausted):
        asyncio.run(go())
    assert delivered == [0] and len(script.requests) == 2


def test_registry_rejects_unknown_vendor_and_missing_url():
    with pytest.raises(UsageError):
        create_adapter("cohere", "http://127.0.0.1:1")
    with pytest.raises(UsageError):
        create_adapter("vl2v", "")


@pytest.mark.parametrize("url", ["localhost:8000", "127.0.0.1:8000", "ftp://host/v1", "http://"])
def test_registry_refuses_a_url_without_http_scheme_and_host(url):
    """Such a URL can never be reached: it is refused at once, not retried until the deadline."""
    with pytest.raises(UsageError, match="not an http:// or https:// URL"):
        create_adapter("vl2v", url)


# -- one real exchange per adapter ---------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["openai", "jina"])
def test_against_a_real_server_speaking_the_wire_format(flavour):
    script = Script(errors=[(503, {"error": {"message": "warming up"}}, {"Retry-After": "0"})])
    with serve(flavour, script) as url:
        vecs = embed(create_adapter(flavour, base_url(flavour, url), "k"), "image", [png_bytes(1), png_bytes(2)])
    assert vecs.shape == (2, DIM) and len(script.requests) == 2
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_vl2v_against_the_real_vendor(vendor_server):
    key = vendor_server.create_key(budget=10)
    adapter = create_adapter("vl2v", vendor_server.url, key)
    spend = CountingSpend()

    async def go():
        async with adapter:
            vectors = await adapter.embed_many("image", [png_bytes(1), png_bytes(2)], spend)
            texts = await adapter.embed_many("text", ["a photo of a dog"], spend)
            return vectors, texts, await adapter.usage()

    images, texts, usage = asyncio.run(go())
    assert images.shape[0] == 2 and texts.shape == (1, images.shape[1]) and adapter.revision
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert (usage["used"], usage["images"], usage["texts"]) == (3, 2, 1) and spend.reserved == 3
