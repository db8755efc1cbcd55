"""The vendor's HTTP contract against a real server: shapes, images, every 4xx, headers, metrics."""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pytest
from conftest import ADMIN_TOKEN
from vendor_payloads import b64, image_file, image_item, png_header_bomb, vectors

from shared.protocol import ErrorResponse, ModelList
from vendor_server.routes.embeddings import INLINE_PARSE_BYTES

JSON = {"Content-Type": "application/json"}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy")


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate(response.json()).error
    assert error.code == code, response.text
    return response.json()["error"]


def test_texts_and_images_in_input_order_normalised(vendor_server):
    key = vendor_server.create_key(budget=100)
    body = {"input": ["a photo of a cat", image_item("PNG", seed=1), {"text": "a dog"}, image_item("JPEG", seed=2)]}
    with vendor_server.client(key) as client:
        r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["object"] == "list" and out["model"] == "vl2v-tiny"
        assert [d["index"] for d in out["data"]] == [0, 1, 2, 3]
        assert out["usage"] == {
            "images": 2,
            "texts": 2,
            "queries": 4,
            "prompt_tokens": 4,
            "total_tokens": 4,
            "remaining": 96,
        }
        emb = vectors(out)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        # the same items alone give the same rows: order is kept through the batcher
        alone = client.post(
            "/v1/embeddings", json={"input": [body["input"][3], "a photo of a cat"], "encoding_format": "base64"}
        )
        np.testing.assert_allclose(vectors(alone.json()), emb[[3, 0]], atol=1e-5)
        dim = client.get("/v1/models").json()["data"][0]["embedding_dim"]
        assert emb.shape == (4, dim)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("data_uri", [False, True])
def test_image_formats_raw_base64_and_data_uri(vendor_server, fmt, data_uri):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        r = client.post("/v1/embeddings", json={"input": [image_item(fmt, data_uri=data_uri)]})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["images"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"input": [{"image": "!!!not base64!!!"}]}, "invalid_base64"),
        ({"input": [{"image": b64(b"plain text, not an image")}]}, "invalid_image"),
        ({"input": [{"image": b64(image_file("PNG", size=(64, 64))[:300])}]}, "invalid_image"),  # truncated
        ({"input": [{"image": b64(image_file("GIF"))}]}, "invalid_image"),  # not accepted
        ({"input": [{"image": "data:text/plain;base64," + b64(b"hi")}]}, "unsupported_image_format"),
        ({"input": []}, "empty_input"),
        ({"input": ""}, "empty_text"),  # refused as hosted APIs refuse it, not embedded and charged
        ({"input": ["a photo of a cat", {"text": ""}]}, "empty_text"),
        ({"input": [1, 2, 3]}, "invalid_input"),  # token ids
        ({"input": [{"video": "x"}]}, "invalid_input"),
        ({"input": ["a"], "encoding_format": "int8"}, "invalid_input"),
        ({"model": "vl2v-tiny"}, "invalid_input"),
    ],
)
def test_400_invalid_input_is_not_charged(vendor_server, body, code):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        error_of(client.post("/v1/embeddings", json=body), 400, code)
        error_of(client.post("/v1/embeddings", content=b'{"input": ["unterminated', headers=JSON), 400, "invalid_json")
        assert client.get("/v1/usage").json()["used"] == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"input": ["' + b"x" * 100_000, "invalid_json"),
        (json.dumps({"input": [{"video": "x" * 100_000}]}).encode(), "invalid_input"),
    ],
)
def test_400_for_large_bodies_parsed_off_the_event_loop(vendor_server, content, code):
    assert len(content) > INLINE_PARSE_BYTES  # so the server parses it on a worker thread: same answers
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        error_of(client.post("/v1/embeddings", content=content, headers=JSON), 400, code)
        assert client.get("/v1/usage").json()["used"] == 0


@pytest.mark.parametrize(
    ("item", "code"),
    [
        (["x" * 501], "text_too_long"),
        ([{"image": b64(image_file("PNG", size=(300, 300)))}], "image_too_large"),  # ~270 kB > 100 kB
        ([{"image": b64(png_header_bomb(20_000, 20_000))}], "too_many_pixels"),  # refused from the header
        ([{"image": b64(png_header_bomb(1001, 1000))}], "too_many_pixels"),
        (["t"] * 257, "too_many_items"),
        (["y" * 400] * 1600, "payload_too_large"),  # 640 kB body > 600 kB
    ],
)
def test_413_limits_are_not_charged(vendor_server, item, code):
    key = vendor_server.create_key(budget=10_000)
    with vendor_server.client(key) as client:
        error = error_of(client.post("/v1/embeddings", json={"input": item}), 413, code)
        assert error["limit"] > 0
        assert client.get("/v1/usage").json()["used"] == 0


def test_a_trailing_slash_is_served_not_redirected(vendor_server):
    """A base URL ending in "/v1/" joined by hand: the same answer and charge, never a 307 to a POST."""
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        plain = client.post("/v1/embeddings", json={"input": ["a cat"]})
        slashed = client.post("/v1/embeddings/", json={"input": ["a cat"]})
        assert slashed.status_code == 200, slashed.text
        np.testing.assert_allclose(vectors(slashed.json()), vectors(plain.json()), atol=1e-6)
        assert slashed.json()["usage"]["remaining"] == 8
        error_of(client.post("/v1/embeddings/", json={"input": []}), 400, "empty_input")  # the same checks


def test_401_403_404(vendor_server):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client() as anonymous:
        error_of(anonymous.post("/v1/embeddings", json={"input": ["a"]}), 401, "invalid_api_key")
        error_of(
            anonymous.post("/v1/embeddings", json={"input": ["a"]}, headers={"Authorization": "Bearer nope"}),
            401,
            "invalid_api_key",
        )
        error_of(anonymous.get("/v1/usage"), 401, "invalid_api_key")
        error_of(anonymous.get("/no/such/route"), 404, "not_found")
    with vendor_server.client(key) as client:
        error_of(client.post("/v1/embeddings", json={"model": "ViT-H-14", "input": ["a"]}), 404, "model_not_found")
        key_id = client.get("/v1/usage").json()["key_id"]
    with vendor_server.client(ADMIN_TOKEN) as admin:
        assert admin.post(f"/admin/keys/{key_id}/revoke").json()["revoked"] is True
    with vendor_server.client(key) as client:
        error_of(client.post("/v1/embeddings", json={"input": ["a"]}), 403, "key_revoked")


def test_402_budget_exhausted_reports_the_numbers(vendor_server):
    key = vendor_server.create_key(budget=5)
    with vendor_server.client(key) as client:
        assert client.post("/v1/embeddings", json={"input": ["a", "b", "c"]}).status_code == 200
        error = error_of(client.post("/v1/embeddings", json={"input": ["a", "b", "c"]}), 402, "budget_exhausted")
        assert (error["used"], error["budget"], error["remaining"], error["requested"]) == (3, 5, 2, 3)
        assert client.post("/v1/embeddings", json={"input": ["a", "b"]}).json()["usage"]["remaining"] == 0


def test_every_response_has_request_id_and_rate_limit_headers(vendor_server):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        responses = [
            client.post("/v1/embeddings", json={"input": ["a"]}),
            client.post("/v1/embeddings", json={"input": []}),
            client.get("/v1/models"),
            client.get("/v1/usage"),
            client.get("/healthz"),
            client.get("/readyz"),
            client.get("/metrics"),
            client.get("/nowhere"),
            client.put("/v1/embeddings"),
            client.post("/v1/embeddings", json={"input": ["a"]}, headers={"Authorization": "Bearer bad"}),
        ]
    ids = set()
    for r in responses:
        assert r.headers["X-Request-Id"].startswith("req_"), r.request.url
        ids.add(r.headers["X-Request-Id"])
        for name in RATE_HEADERS:
            assert name in r.headers, (name, r.request.url)
    assert len(ids) == len(responses)
    assert responses[8].status_code == 405 and "error" in responses[8].json()
    policy = responses[0].headers["RateLimit-Policy"]
    assert policy.startswith('"requests";q=') and ";w=" in policy


def test_usage_is_the_callers_own(vendor_server):
    a, b = vendor_server.create_key(budget=50, name="a"), vendor_server.create_key(budget=70, name="b")
    with vendor_server.client(a) as client_a, vendor_server.client(b) as client_b:
        client_a.post("/v1/embeddings", json={"input": ["x", image_item()]})
        ua, ub = client_a.get("/v1/usage").json(), client_b.get("/v1/usage").json()
    assert (ua["name"], ua["used"], ua["images"], ua["texts"], ua["requests"], ua["remaining"]) == ("a", 2, 1, 1, 1, 48)
    assert (ub["name"], ub["used"], ub["remaining"]) == ("b", 0, 70)


def test_models_health_and_metrics(vendor_server):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        answer = client.post("/v1/embeddings", json={"input": ["m1", "m2", image_item()]}).json()
        models = ModelList.model_validate(client.get("/v1/models").json())
        assert models.data[0].id == "vl2v-tiny" and models.data[0].price_per_query > 0
        # the default engine on a CPU (tests/conftest.py can set another), and what it computes in
        card = models.data[0]
        assert card.engine == (os.environ.get("VL2V_TEST_VENDOR_ENGINE") or "openvino") and card.device == "cpu"
        assert card.precision in ("bf16", "float32")
        # the served weights' digest, on the card and on every answer (tests/test_model_revision.py)
        assert (
            re.fullmatch("[0-9a-f]{12}", models.data[0].revision or "")
            and answer["model_revision"] == models.data[0].revision
        )
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "ready"
        text = client.get("/metrics").text
        key_id = client.get("/v1/usage").json()["key_id"]
    assert 'vl2v_vendor_queries_charged_total{modality="image"}' in text
    assert 'vl2v_vendor_requests_total{method="POST",route="/v1/embeddings",status="200"}' in text
    assert "vl2v_vendor_batch_size_count" in text and "vl2v_vendor_queue_depth" in text
    assert key_id not in text and key not in text  # no per-key labels


def test_admin_api(vendor_server):
    with vendor_server.client(ADMIN_TOKEN) as admin:
        created = admin.post("/admin/keys", json={"name": "via-admin", "budget": 3, "rate_limit_qps": 5})
        assert created.status_code == 201, created.text
        secret, key_id = created.json()["secret"], created.json()["key_id"]
        assert key_id in {k["key_id"] for k in admin.get("/admin/keys").json()["data"]}
        assert "secret" not in admin.get("/admin/keys").json()["data"][0]
        with vendor_server.client(secret) as client:
            assert client.post("/v1/embeddings", json={"input": ["a", "b", "c"]}).status_code == 200
            assert client.post("/v1/embeddings", json={"input": ["d"]}).status_code == 402
            assert admin.post(f"/admin/keys/{key_id}/topup", json={"queries": 2}).json()["remaining"] == 2
            assert client.post("/v1/embeddings", json={"input": ["d"]}).status_code == 200
        usage = admin.get(f"/admin/keys/{key_id}/usage").json()
        assert (usage["used"], usage["budget"], usage["rate_limit_qps"]) == (4, 5, 5)
        error_of(admin.get("/admin/keys/key_missing/usage"), 404, "key_not_found")
        error_of(admin.post("/admin/keys", json={"name": "x", "budget": -1}), 400, "invalid_input")
    with vendor_server.client("wrong-token") as intruder:
        error_of(intruder.get("/admin/keys"), 403, "invalid_admin_token")
    with vendor_server.client() as anonymous:
        error_of(anonymous.get("/admin/keys"), 403, "invalid_admin_token")


def test_base64_encoding_is_float32_little_endian(vendor_server):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        as_float = client.post("/v1/embeddings", json={"input": "same text", "encoding_format": "float"}).json()
        as_b64 = client.post("/v1/embeddings", json={"input": "same text", "encoding_format": "base64"}).json()
    raw = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(raw, np.asarray(as_float["data"][0]["embedding"], dtype=np.float32), atol=1e-6)
