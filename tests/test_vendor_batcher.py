"""The micro-batcher keeps coalesced requests apart when the model fails: only the request whose input
breaks the model gets the error (and, through the HTTP API, its refund); its batch neighbours are answered
and charged as usual. The model is real code that raises for one specific input, not a mock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import numpy as np

from vendor_server.app import create_app
from vendor_server.batcher import MicroBatcher
from vendor_server.encoder import Encoder
from vendor_server.ledger import Ledger
from vendor_server.metrics import Metrics
from vendor_server.settings import VendorSettings

POISON = "the one input this model cannot take"


class Recorder:
    """A text model that embeds a text as its length, keeps every batch it is given, and fails on ``POISON``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if POISON in texts:
            raise RuntimeError("the model broke on this input")
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)


def encode_concurrently(model: Recorder, *requests: list[str]) -> list:
    """Each request's rows (or its exception), all submitted at once to a batcher that coalesces them."""

    async def scenario() -> list:
        batcher = MicroBatcher({"text": model}, max_batch_size=64, max_wait_ms=200, queue_limit=1000, metrics=Metrics())
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.encode("text", texts) for texts in requests), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(scenario())


def lengths(rows) -> list[float]:
    return [float(row[0]) for row in rows]


def test_a_failing_request_fails_alone_and_its_neighbours_are_answered():
    model = Recorder()
    first, bad, last = encode_concurrently(model, ["a", "bb"], ["ccc", POISON], ["dddd"])
    assert model.batches[0] == ["a", "bb", "ccc", POISON, "dddd"]  # they did share one forward pass
    assert model.batches[1:] == [["a", "bb"], ["ccc", POISON], ["dddd"]]  # then each request alone
    assert lengths(first) == [1, 2] and lengths(last) == [4]
    assert isinstance(bad, RuntimeError)


def test_no_retry_when_nothing_fails_or_the_batch_is_one_request():
    model = Recorder()
    first, second = encode_concurrently(model, ["a"], ["bb", "ccc"])
    assert lengths(first) == [1] and lengths(second) == [2, 3]
    assert model.batches == [["a", "bb", "ccc"]]  # the fast path: one forward pass, nothing more

    model = Recorder()
    (alone,) = encode_concurrently(model, ["a", POISON])
    assert isinstance(alone, RuntimeError) and model.batches == [["a", POISON]]  # nobody to isolate from


class PoisonedEncoder(Encoder):
    """The real ``vl2v-tiny`` whose text tower fails on ``POISON``, recording the batches it runs."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        super().__init__("vl2v-tiny", "none")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if POISON in texts:
            raise RuntimeError("the model broke on this input")
        return super().encode_texts(texts)


def test_through_the_api_only_the_bad_request_errors_and_is_refunded(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    ledger = Ledger(db)
    requests = {"good": ["a photo of a cat", "a dog"], "bad": ["a fish", POISON], "also good": ["a house"]}
    secrets = {name: ledger.create_key(name, budget=10)[1] for name in requests}
    encoder = PoisonedEncoder()
    encoder.batches.clear()  # the warm-up
    # the batch closes when all 5 items are in, however slowly they arrive
    settings = VendorSettings(db=db, max_batch_size=5, max_wait_ms=10_000, default_rate_limit=100)
    app = create_app(settings, encoder)

    async def post_all() -> list[httpx.Response]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vendor", timeout=60) as client,
        ):
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/embeddings", json={"input": texts}, headers={"Authorization": f"Bearer {secrets[name]}"}
                    )
                    for name, texts in requests.items()
                )
            )

    answers = dict(zip(requests, asyncio.run(post_all()), strict=True))
    assert sorted(encoder.batches[0]) == sorted(t for texts in requests.values() for t in texts)  # one shared batch
    assert answers["bad"].status_code == 500 and answers["bad"].json()["error"]["code"] == "inference_failed"
    for name in ("good", "also good"):
        assert answers[name].status_code == 200, answers[name].text
        rows = np.array([d["embedding"] for d in answers[name].json()["data"]])
        np.testing.assert_allclose(rows, Encoder.encode_texts(encoder, requests[name]), atol=1e-5)
    used = {name: ledger.authenticate(secret).used for name, secret in secrets.items()}
    assert used == {"good": 2, "bad": 0, "also good": 1}
    ledger.close()
