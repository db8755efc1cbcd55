"""The `openai` and `jina` adapters against real loopback servers speaking those wire formats:
request shapes, auth, batching, error mapping, retries honouring Retry-After, and budget errors
that are never retried."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest
from fake_vendors import Script, fake_vector, png_bytes, serve

from client_distill.adapters.errors import AuthError, BudgetExhausted, InvalidInput, TransientError
from client_distill.adapters.registry import create_adapter
from client_distill.errors import UsageError


def embed(adapter, modality, payloads, spend=None):
    async def go():
        async with adapter:
            return await adapter.embed_many(modality, payloads, spend)

    return asyncio.run(go())


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


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


def test_openai_texts_and_images_wire_format():
    script = Script()
    images = [png_bytes(i) for i in range(3)]
    with serve("openai", script) as url:
        texts = embed(create_adapter("openai", url + "/v1", "sk-test"), "text", ["a dog", "a cat"])
        vecs = embed(create_adapter("openai", url, "sk-test", batch_limit=2), "image", images)
    assert texts.dtype == np.float32 and texts.shape == (2, 8)
    np.testing.assert_allclose(texts[1], unit(fake_vector("a cat")), atol=1e-6)  # index order kept
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    headers, body = script.requests[0]  # only POSTs are recorded
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {"model": "openai-clip", "input": ["a dog", "a cat"], "encoding_format": "float"}
    image_bodies = [b for _, b in script.requests[1:]]
    assert [len(b["input"]) for b in image_bodies] == [2, 1]  # batched to the limit
    assert all(b["modality"] == "image" for b in image_bodies)
    uri = image_bodies[0]["input"][0]
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == images[0]
    expected = unit(fake_vector("img:" + uri))
    np.testing.assert_allclose(vecs[0], expected, atol=1e-6)


def test_jina_items_options_and_stable_idempotency_key():
    script = Script()
    image = png_bytes(7)
    with serve("jina", script) as url:
        embed(create_adapter("jina", url, "jina_x"), "text", ["a photo of a dog"])
        embed(create_adapter("jina", url, "jina_x"), "image", [image])
        embed(create_adapter("jina", url, "jina_x"), "image", [image])
    (h_text, text_body), (h1, img_body), (h2, _) = script.requests
    assert text_body == {"model": "jina-clip-v2", "input": [{"text": "a photo of a dog"}], "normalized": True, "embedding_type": "float"}
    assert img_body["input"] == [{"image": base64.b64encode(image).decode()}]
    assert h1["idempotency-key"] == h2["idempotency-key"] != h_text["idempotency-key"]


@pytest.mark.parametrize(
    "status,body,headers",
    [
        (429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}, {"Retry-After": "1"}),
        (503, {"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}}, {"Retry-After": "1"}),
    ],
)
def test_transient_errors_are_retried_after_retry_after(status, body, headers):
    script = Script(errors=[(status, body, headers)])
    spend = CountingSpend()
    with serve("openai", script) as url:
        t0 = time.monotonic()
        vecs = embed(create_adapter("openai", url, "k"), "text", ["x", "y"], spend)
        elapsed = time.monotonic() - t0
    assert vecs.shape == (2, 8) and len(script.requests) == 2
    assert elapsed >= 1.0  # waited as told
    assert spend.reserved == 2 and [c[0] for c in spend.calls] == ["reserve"]  # a refusal costs no new reservation


def test_5xx_and_timeouts_are_retried_with_backoff_and_rebudgeted():
    # a timeout may have been billed by a vendor without idempotency: the resend is reserved again
    script = Script(delays=[2.0], errors=[])
    spend = CountingSpend()
    with serve("openai", script) as url:
        adapter = create_adapter("openai", url, "k", timeout_s=0.5)
        vecs = embed(adapter, "text", ["slow"], spend)
    assert vecs.shape == (1, 8) and adapter.retries == 1
    assert spend.reserved == 2
    script = Script(errors=[(500, {"error": {"message": "boom", "code": "internal"}}, {})])
    with serve("openai", script) as url:
        assert embed(create_adapter("openai", url, "k"), "text", ["z"]).shape == (1, 8)
    assert len(script.requests) == 2


def test_client_budget_stops_an_ambiguous_resend():
    script = Script(delays=[2.0])
    spend = CountingSpend(budget=3)
    with serve("openai", script) as url, pytest.raises(BudgetExhausted):
        embed(create_adapter("openai", url, "k", timeout_s=0.5), "text", ["a", "b", "c"], spend)
    assert spend.reserved == 3 and len(script.requests) == 1  # never a second, possibly billed, send


@pytest.mark.parametrize(
    "flavour,status,body,exc",
    [
        ("openai", 429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}, BudgetExhausted),
        ("openai", 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}, AuthError),
        ("openai", 400, {"error": {"message": "bad input", "type": "invalid_request_error", "code": None}}, InvalidInput),
        ("jina", 403, {"detail": "AUTHZ_INSUFFICIENT_BALANCE: insufficient balance, please top up"}, BudgetExhausted),
        ("jina", 402, {"detail": "Payment required"}, BudgetExhausted),
        ("jina", 403, {"detail": "Forbidden: key not allowed for this model"}, AuthError),
        ("jina", 401, {"detail": "Failed to authenticate with the provided api key."}, AuthError),
    ],
)
def test_error_shapes_map_to_errors_that_are_never_retried(flavour, status, body, exc):
    script = Script(errors=[(status, body, {"Retry-After": "0"})])
    spend = CountingSpend()
    with serve(flavour, script) as url, pytest.raises(exc) as info:
        embed(create_adapter(flavour, url, "k"), "text", ["a"], spend)
    assert len(script.requests) == 1
    assert spend.reserved == 0  # the refusal gave its reservation back
    assert str(status) in str(info.value)


def test_sibling_batches_finish_after_a_budget_error():
    # batch 2 is refused for budget; batch 1 (answered) is delivered, nothing new starts after
    script = Script(errors=[], delays=[0.3])
    delivered = []
    with serve("openai", script) as url:
        script.errors.append((429, {"error": {"code": "insufficient_quota", "message": "quota"}}, {}))
        adapter = create_adapter("openai", url, "k", batch_limit=1, concurrency=2)

        async def go():
            async with adapter:
                await adapter.embed_many("text", ["a", "b", "c", "d"], None, lambda s, c, r: delivered.append(s))

        with pytest.raises(BudgetExhausted):
            asyncio.run(go())
    assert len(delivered) == 1 and len(script.requests) == 2


def test_registry_rejects_unknown_vendor_and_missing_url():
    with pytest.raises(UsageError):
        create_adapter("cohere", "http://127.0.0.1:1")
    with pytest.raises(UsageError):
        create_adapter("vl2v", "")


def test_retries_give_up_at_the_deadline():
    with pytest.raises(TransientError):
        embed(create_adapter("openai", "http://127.0.0.1:9", "k", model="m", retry_deadline_s=1.0), "text", ["a"])
