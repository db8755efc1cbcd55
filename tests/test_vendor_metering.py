"""Metering against a real server: atomic charging under concurrency, idempotent retries, rate
limits, overload, and a ledger that survives kill -9."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from vendor_payloads import b64, charged_events, image_item, vectors

from vendor_server.ledger import Ledger


def test_50_concurrent_requests_race_for_100_queries(vendor_server):
    key = vendor_server.create_key(budget=100, rate_limit=1000)
    with vendor_server.client(key, limits=httpx.Limits(max_connections=50)) as client:

        def post(i: int) -> httpx.Response:
            return client.post("/v1/embeddings", json={"input": [f"text {i} {j}" for j in range(4)]})

        with ThreadPoolExecutor(50) as pool:
            responses = list(pool.map(post, range(50)))
        codes = [r.status_code for r in responses]
        assert codes.count(200) == 25 and codes.count(402) == 25, codes
        usage = client.get("/v1/usage").json()
    assert (usage["used"], usage["remaining"], usage["requests"], usage["texts"]) == (100, 0, 25, 100)
    assert sorted(r.json()["usage"]["remaining"] for r in responses if r.status_code == 200) == list(range(0, 100, 4))


def test_idempotent_retry_is_charged_once(vendor_server):
    key = vendor_server.create_key(budget=20)
    body = {"input": ["a retried request", image_item(seed=5)], "encoding_format": "base64"}
    with vendor_server.client(key, headers={"Idempotency-Key": "k-1"}) as client:
        first = client.post("/v1/embeddings", json=body)
        again = client.post("/v1/embeddings", json=body)
        assert first.status_code == again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        np.testing.assert_array_equal(vectors(first.json()), vectors(again.json()))
        assert client.get("/v1/usage").json()["used"] == 2
        other = client.post("/v1/embeddings", json={**body, "input": ["something else"]})
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        fresh = client.post("/v1/embeddings", json=body, headers={"Idempotency-Key": "k-2"})
        assert fresh.status_code == 200 and "Idempotent-Replayed" not in fresh.headers
        assert client.get("/v1/usage").json()["used"] == 4


@pytest.mark.slow
def test_idempotency_key_in_flight_is_409(vendor_server):
    """A retry that arrives while the first attempt is still encoding gets 409, and is not charged."""
    key = vendor_server.create_key(budget=100_000)
    gradient = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8)[:, None, None], (64, 64, 3))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gradient)).save(buf, format="PNG")
    body = {"input": [{"image": b64(buf.getvalue())}] * 256}  # slow to encode, small on the wire
    with vendor_server.client(key) as client:
        for attempt in range(5):
            headers = {"Idempotency-Key": f"slow-{attempt}"}
            first: dict[str, httpx.Response] = {}
            worker = threading.Thread(
                target=lambda h=headers, f=first: f.setdefault("r", client.post("/v1/embeddings", json=body, headers=h))
            )
            used_before = client.get("/v1/usage").json()["used"]
            worker.start()
            while client.get("/v1/usage").json()["used"] == used_before and worker.is_alive():
                pass  # wait until the first attempt is charged, i.e. in flight
            retry = client.post("/v1/embeddings", json=body, headers=headers)
            worker.join()
            assert first["r"].status_code == 200
            if retry.status_code == 409:
                assert retry.json()["error"]["code"] == "idempotency_in_flight" and "Retry-After" in retry.headers
                assert client.get("/v1/usage").json()["used"] == used_before + 256
                return
            assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    pytest.fail("the retry never overlapped the first attempt")


def test_429_rate_limited_with_retry_after_and_not_charged(vendor_server):
    key = vendor_server.create_key(budget=100, rate_limit=0.1)  # a burst of 1, then one request per 10 s
    with vendor_server.client(key) as client:
        codes = [client.post("/v1/embeddings", json={"input": ["r"]}).status_code for _ in range(3)]
        limited = client.post("/v1/embeddings", json={"input": ["r"]})
    assert codes[0] == 200 and limited.status_code == 429, (codes, limited.status_code)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert limited.headers["X-RateLimit-Remaining"] == "0" and limited.headers["X-RateLimit-Limit"] == "1"
    assert limited.headers["RateLimit"].startswith('"requests";r=0;t=')
    ledger = Ledger(vendor_server.db)
    try:
        assert ledger.usage(ledger.authenticate(key).id).used == codes.count(200)
    finally:
        ledger.close()


@pytest.mark.slow
def test_503_overloaded_when_the_queue_is_full(vendor_server_factory):
    server = vendor_server_factory(VL2V_VENDOR_QUEUE_LIMIT="32", VL2V_VENDOR_MAX_BATCH_SIZE="8")
    key = server.create_key(budget=100_000, rate_limit=1000)
    body = {"input": [image_item(seed=i, size=(128, 128)) for i in range(32)]}
    with server.client(key, limits=httpx.Limits(max_connections=16)) as client:
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda _: client.post("/v1/embeddings", json=body), range(16)))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.json()["error"]["code"] == "overloaded" and int(busy.headers["Retry-After"]) >= 1
        assert client.get("/v1/usage").json()["used"] == 32 * codes.count(200)
        # the admin API is off on a server started without VL2V_ADMIN_TOKEN
        off = client.get("/admin/keys", headers={"Authorization": "Bearer anything"})
        assert off.status_code == 404 and off.json()["error"]["code"] == "admin_disabled"


@pytest.mark.slow
def test_kill_9_mid_traffic_then_restart_keeps_exact_books(vendor_server_factory):
    server = vendor_server_factory()
    keys = [server.create_key(budget=10_000, rate_limit=1000, name=f"k{i}") for i in range(3)]
    served = {k: 0 for k in keys}
    stop = threading.Event()

    def traffic(key: str) -> None:
        with server.client(key, timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = client.post(
                        "/v1/embeddings", json={"input": [f"{key[-4:]} {i}", image_item(seed=i % 5)] * (1 + i % 3)}
                    )
                except httpx.HTTPError:
                    return  # the server died under us
                if r.status_code == 200:
                    served[key] += r.json()["usage"]["queries"]

    threads = [threading.Thread(target=traffic, args=(k,)) for k in keys for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while sum(served.values()) < 60 and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert sum(served.values()) >= 60, "traffic never got going"

    server.start()  # same ledger file
    used, charged, statuses = charged_events(server.db)
    assert used == charged, (used, charged, statuses)
    assert "reserved" not in statuses  # what the crash interrupted was refunded at startup
    for key in keys:
        with server.client(key) as client:
            usage = client.get("/v1/usage").json()
            # every answered request is paid; at most the requests that completed on the server just as it
            # died (answer lost in transit) add to that
            assert usage["used"] >= served[key]
            assert client.post("/v1/embeddings", json={"input": ["after restart"]}).status_code == 200
    assert charged_events(server.db)[0] == used + 3
