"""What bounds the work a request can cause, and what it costs: image data checked against its
header (PNG, interlaced or not), the server's decoding pool, prices by size, idempotent replays
answered before any decoding, the request fields the vendor supports, seeded random weights and an
owner-only ledger."""

from __future__ import annotations

import asyncio
import io
import os

import numpy as np
import pytest
from PIL import Image
from vendor_payloads import b64, image_file, image_item, raw_png

from client_distill.adapters.errors import BudgetExhausted
from client_distill.adapters.registry import create_adapter
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.teacher import Teacher
from vendor_server import models
from vendor_server.api_errors import InvalidInput, Overloaded
from vendor_server.decoding import DecodePool
from vendor_server.images import ImageLimits, decode_image, inspect_image
from vendor_server.ledger import Ledger

LIMITS = ImageLimits(max_bytes=10_000_000, max_pixels=2000 * 2000)


@pytest.mark.parametrize("interlaced", [False, True])
def test_complete_png_decodes_and_a_cut_one_is_refused(interlaced):
    img = decode_image(b64(raw_png(37, 23, interlaced=interlaced)), LIMITS, 0)
    assert img.size == (37, 23) and img.getpixel((36, 22)) == (128, 128, 128)
    for rows in (1, 22):  # Pillow alone would pad the missing rows with black and say nothing
        with pytest.raises(InvalidInput, match="stream too short") as exc:
            decode_image(b64(raw_png(37, 23, rows=rows, interlaced=interlaced)), LIMITS, 0)
        assert exc.value.code == "invalid_image"


def test_png_pixels_are_pillows_for_every_8_bit_colour_type():
    """PNGs decode through libspng (one pass that also refuses short data): the RGB pixels must be what
    Pillow's ``convert("RGB")`` gives, for every 8-bit colour type, transparency, 1 bit and Adam7; a
    16-bit greyscale PNG is scaled to 8 bits (its high byte), where Pillow clips it to white."""
    rgb = np.random.default_rng(0).integers(0, 256, (17, 33, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=50)
    cases = {
        "RGB": (Image.fromarray(rgb), {}),
        "RGBA": (Image.fromarray(np.dstack([rgb, rgb[..., :1]])), {}),
        "L": (Image.fromarray(rgb[..., 0]), {}),
        "LA": (Image.fromarray(rgb[..., :2].copy()).convert("LA"), {}),
        "P": (palette, {}),
        "P with tRNS": (palette, {"transparency": 3}),
        "1": (Image.fromarray(rgb[..., 0]).convert("1"), {}),
        "RGB with tRNS": (Image.fromarray(rgb), {"transparency": (1, 2, 3)}),
    }
    for name, (image, options) in cases.items():
        buf = io.BytesIO()
        image.save(buf, format="PNG", **options)
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert np.array_equal(np.asarray(decode_image(b64(buf.getvalue()), LIMITS, 0)), expected), name
    adam7 = raw_png(37, 23, interlaced=True)
    expected = np.asarray(Image.open(io.BytesIO(adam7)).convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(b64(adam7), LIMITS, 0)), expected)
    grey16 = rgb[..., 0].astype(np.uint16) * 257 + 3
    buf = io.BytesIO()
    Image.fromarray(grey16).save(buf, format="PNG")
    decoded = np.asarray(decode_image(b64(buf.getvalue()), LIMITS, 0))
    assert np.array_equal(decoded, np.repeat((grey16 >> 8).astype(np.uint8)[..., None], 3, axis=2))


def test_inspection_reads_headers_only_and_checks_the_declared_type():
    cut = raw_png(1500, 1500, rows=1)
    image = inspect_image(b64(cut), LIMITS, 4)  # a cut file passes inspection: only decoding reads the data
    assert (image.format, image.width, image.height, image.pixels, image.index) == ("PNG", 1500, 1500, 2_250_000, 4)
    with pytest.raises(InvalidInput) as exc:
        inspect_image("data:image/png;base64," + b64(image_file("JPEG")), LIMITS, 0)
    assert exc.value.code == "image_type_mismatch" and "JPEG" in exc.value.message


def test_decode_pool_bounds_pixels_in_flight_and_says_503_when_full():
    async def scenario() -> None:
        pool = DecodePool(workers=1, max_pixels=100, wait_s=0.2)
        pool.start()
        try:
            async with pool.reserve(80):
                assert pool.pixels_in_use == 80
                with pytest.raises(Overloaded) as exc:
                    async with pool.reserve(30):
                        pass
                assert exc.value.code == "decoding_busy" and exc.value.headers["Retry-After"] == "1"
                waiter = asyncio.create_task(_hold(pool, 30))
                await asyncio.sleep(0.05)
                assert not waiter.done()  # waits for the 80 to be released, not refused
            await asyncio.wait_for(waiter, 1)
            assert pool.pixels_in_use == 0
            good, bad = (inspect_image(b64(image_file("PNG", size=(9, 7))), LIMITS, i) for i in (0, 1))
            assert [img.size for img in await pool.decode([good, good])] == [(9, 7), (9, 7)]
            broken = inspect_image(b64(raw_png(40, 40, rows=2)), LIMITS, 1)
            with pytest.raises(InvalidInput, match=r"input\[1\]"):
                await pool.decode([good, broken])
        finally:
            pool.stop()

    asyncio.run(scenario())


async def _hold(pool: DecodePool, pixels: int) -> None:
    async with pool.reserve(pixels):
        assert pool.pixels_in_use == pixels


def test_images_can_be_priced_by_size(vendor_server_factory, tmp_path):
    server = vendor_server_factory(VL2V_VENDOR_PIXELS_PER_QUERY="1000")
    key = server.create_key(budget=20)
    with server.client(key) as client:
        card = client.get("/v1/models").json()["data"][0]
        assert card["pixels_per_query"] == 1000
        body = {"input": ["a text", image_item("PNG", size=(64, 40))]}  # 2,560 px → 3 queries, + 1 text
        r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["usage"] | {"remaining": None} == {
            "images": 1,
            "texts": 1,
            "queries": 4,
            "prompt_tokens": 4,
            "total_tokens": 4,
            "remaining": None,
        }
        big = {"input": [image_item("PNG", size=(200, 200))]}  # 40 queries: refused from the header, unpaid
        r = client.post("/v1/embeddings", json=big)
        assert r.status_code == 402 and r.json()["error"]["requested"] == 40
        assert client.get("/v1/usage").json()["used"] == 4
    # the client reads the price from the card and reserves it before sending, so its budget holds
    buyer = server.create_key(budget=1000)
    cache = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("vl2v", server.url, buyer), cache, budget=8) as teacher:
        teacher.embed_images([image_file("PNG", size=(64, 40), seed=s) for s in (1, 2)])  # 3 queries each
        assert teacher.paid == teacher.reserved == 6
        with pytest.raises(BudgetExhausted):
            teacher.embed_images([image_file("PNG", size=(64, 40), seed=3)])  # 6 + 3 > 8: never sent
        assert teacher.reserved == 6
    with server.client(buyer) as client:
        assert client.get("/v1/usage").json()["used"] == 6
    cache.close()


def test_a_replay_is_answered_even_when_the_budget_is_spent(vendor_server):
    key = vendor_server.create_key(budget=2)
    body = {"input": [image_item("PNG", seed=1), image_item("PNG", seed=2)]}
    with vendor_server.client(key, headers={"Idempotency-Key": "batch-1"}) as client:
        first = client.post("/v1/embeddings", json=body)
        again = client.post("/v1/embeddings", json=body)
        other = client.post("/v1/embeddings", json={"input": ["x"]}, headers={"Idempotency-Key": "batch-2"})
        assert client.get("/v1/usage").json()["used"] == 2
    assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 402  # a new key with no budget left is refused before its items are read


def test_supported_openai_jina_and_infinity_fields(vendor_server):
    key = vendor_server.create_key(budget=10)
    with vendor_server.client(key) as client:
        dim = client.get("/v1/models").json()["data"][0]["embedding_dim"]
        same = client.post("/v1/embeddings", json={"input": ["a"], "dimensions": dim, "user": "u-1"})
        assert same.status_code == 200, same.text
        shorter = client.post("/v1/embeddings", json={"input": ["a"], "dimensions": dim - 1})
        assert shorter.status_code == 400 and shorter.json()["error"]["code"] == "unsupported_dimensions"
        jina = client.post(
            "/v1/embeddings", json={"input": [{"text": "a"}], "embedding_type": "base64", "normalized": True}
        )
        assert jina.status_code == 200 and isinstance(jina.json()["data"][0]["embedding"], str)
        uri = "data:image/png;base64," + b64(image_file("PNG"))
        as_image = client.post("/v1/embeddings", json={"input": [uri], "modality": "image"})
        assert as_image.status_code == 200 and as_image.json()["usage"]["images"] == 1
        assert client.get("/v1/usage").json()["used"] == 3


def test_random_init_is_seeded():
    def revision(seed: int) -> str:
        return models.weights_revision(models.create("vl2v-tiny", "none", seed)[0])

    assert revision(0) == revision(0) != revision(1)


def test_ledger_files_are_owner_only(tmp_path):
    Ledger(tmp_path / "new.sqlite3").close()
    old = tmp_path / "old.sqlite3"
    Ledger(old).close()
    old.chmod(0o644)  # as an earlier version left it
    Ledger(old).close()
    for path in (tmp_path / "new.sqlite3", old):
        assert os.stat(path).st_mode & 0o777 == 0o600
