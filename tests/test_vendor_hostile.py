"""The hostile-input corpus: what an adversarial caller sends a real vendor on loopback, one request
per case, each answered with a 4xx (never a 5xx), its machine-readable ``error.code``, quickly, with
little work on the server (CPU seconds of the server process), and **nothing charged** (the key's
usage and the whole ledger unchanged).

One server for the module, with the default per-image pixel limit (a 4096x4096 image is allowed)
and small body/image limits so that the oversized cases are cheap. The cases from issue 12 are
marked ``# issue 12``: a budget-0 key with an ``Idempotency-Key`` must not buy the decoding of 32
16-megapixel PNGs, a request is judged whole before anything in it is decoded, a PNG whose data
ends early is refused, unknown fields and non-JSON content types are refused, a data URI must say
what its bytes are, the request's total pixels are bounded, and 405 says what is allowed."""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN, VendorServer
from vendor_payloads import (
    PNG_SIGNATURE,
    b64,
    charged_events,
    error_code,
    image_file,
    image_item,
    jpeg_header_bomb,
    one_bit_png,
    png_header_bomb,
    process_cpu_seconds,
    short_png,
)

from shared.protocol import EMBEDDINGS_PATH, IDEMPOTENCY_HEADER

MEGA16 = 4096 * 4096
MAX_BODY = 2_000_000
MAX_IMAGE_BYTES = 500_000
MAX_TEXT = 4096
MAX_ITEMS = 256
ENV = {
    "VL2V_ADMIN_TOKEN": ADMIN_TOKEN,
    "VL2V_VENDOR_MAX_BODY_BYTES": str(MAX_BODY),
    "VL2V_VENDOR_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
    "VL2V_VENDOR_MAX_PIXELS": str(MEGA16),  # one 4096x4096 image is allowed ...
    "VL2V_VENDOR_MAX_REQUEST_PIXELS": str(4 * MEGA16),  # ... four of them in one request, not five
    "VL2V_VENDOR_MAX_TEXT_LENGTH": str(MAX_TEXT),
    "VL2V_VENDOR_MAX_ITEMS": str(MAX_ITEMS),
    "VL2V_VENDOR_DEFAULT_RATE_LIMIT": "10000",  # the failed-auth cases share one address's bucket
}
#: an answer later than this is a hang, whatever the case (a 2-core machine shared with other jobs)
TIME_LIMIT_S = 5.0
#: server CPU for refusing one request: a refusal must cost the vendor little, whatever the body says
CPU_LIMIT_S = 0.5

KEY, ADMIN = "key", "admin"  # Case.auth: the case's own API key, or the admin token
JSON = "application/json"


@dataclass(frozen=True)
class Ctx:
    """What a case may need to build its request: the case's key and the served model."""

    secret: str
    key_id: str
    dim: int


@dataclass(frozen=True)
class Case:
    id: str
    #: the expected ``(status, error.code)``; a few cases accept more than one (``alt``)
    status: int
    code: str
    #: a JSON value (sent with ``json.dumps``), raw bytes, or a function of :class:`Ctx` giving either
    body: Any = None
    raw: bool = False  # ``body`` is the bytes to send, not a value to serialise
    method: str = "POST"
    path: str | Callable[[Ctx], str] = EMBEDDINGS_PATH
    target: bytes | None = None  # the request target sent verbatim (no URL normalisation)
    content_type: str | None = JSON
    headers: dict[str, str | bytes] = field(default_factory=dict)
    #: KEY, ADMIN, None (no Authorization header), the header's raw value, or a function of Ctx giving it
    auth: str | bytes | Callable[[Ctx], str] | None = KEY
    budget: int = 1_000_000
    time_limit_s: float = TIME_LIMIT_S
    cpu_limit_s: float = CPU_LIMIT_S
    alt: tuple[tuple[int, str], ...] = ()
    allow: str | None = None  # a 405's Allow header must name this method
    #: send it with http.client: a request httpx will not make
    low_level: bool = False


def over_http_client(
    server: VendorServer, case: Case, url: str, headers: dict, content: bytes | None
) -> httpx.Response:
    """Send a request httpx refuses to make (a header value with trailing blanks, a ``Content-Length``
    that the body does not match) with the standard library's lower-level client."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=case.time_limit_s + 60)
    try:
        conn.putrequest(case.method, url.removeprefix(server.url), skip_accept_encoding=True)
        if content is not None:
            headers = {"Content-Length": str(len(content)), **headers}  # putrequest() does not add it
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(content)
        answer = conn.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        conn.close()


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A chunked body (no ``Content-Length``) of ``total`` bytes of JSON whitespace."""
    for _ in range(total // size + 1):
        yield b" " * size


def images(*payloads: bytes) -> dict:
    return {"input": [{"image": b64(p)} for p in payloads]}


def data_uri(mime: str, payload: bytes) -> dict:
    return {"input": [{"image": f"data:{mime};base64,{b64(payload)}"}]}


def bad_crc_png() -> bytes:
    """A 64x64 PNG whose image data was altered after its CRC was computed."""
    data = bytearray(image_file("PNG", size=(64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 40] ^= 0xFF
    return bytes(data)


def ihdr_only_png(width: int = 64, height: int = 64) -> bytes:
    return image_file("PNG", size=(width, height))[:33]  # signature + IHDR, no data, no IEND


def text(n: int) -> str:
    return "a photo of a cat " * (n // 17) + "x" * (n % 17)


CASES = [
    # --- malformed JSON -------------------------------------------------------------------------
    Case("json-unterminated", 400, "invalid_json", b'{"input": ["unterminated', raw=True),
    Case("json-empty-body", 400, "invalid_json", b"", raw=True),
    Case("json-not-json", 400, "invalid_json", b"input=a+photo", raw=True),
    Case("json-trailing-comma", 400, "invalid_json", b'{"input": ["a"],}', raw=True),
    Case("json-single-quotes", 400, "invalid_json", b"{'input': ['a']}", raw=True),
    Case("json-utf8-bom", 400, "invalid_json", b'\xef\xbb\xbf{"input": ["a"]}', raw=True),
    Case("json-invalid-utf8", 400, "invalid_json", b'{"input": ["\xff\xfe"]}', raw=True),
    Case("json-lone-surrogate", 400, "invalid_json", b'{"input": ["\\ud800"]}', raw=True),
    Case("json-raw-nul-in-string", 400, "invalid_json", b'{"input": ["a\x00b"]}', raw=True),
    Case("json-deep-arrays", 400, "invalid_json", b"[" * 100_000, raw=True),
    Case("json-deep-objects", 400, "invalid_json", b'{"input": ' + b'{"a": ' * 50_000, raw=True),
    Case("json-nan", 400, "invalid_input", b'{"input": ["a"], "encoding_format": NaN}', raw=True),
    Case("json-top-level-array", 400, "invalid_input", [{"input": "a"}]),
    Case("json-top-level-null", 400, "invalid_input", b"null", raw=True),
    Case("json-top-level-string", 400, "invalid_input", "a photo of a cat"),
    # --- wrong types ----------------------------------------------------------------------------
    Case("input-null", 400, "invalid_input", {"input": None}),
    Case("input-missing", 400, "invalid_input", {"encoding_format": "float"}),
    Case("input-number", 400, "invalid_input", {"input": 42}),
    Case("input-bool", 400, "invalid_input", {"input": True}),
    Case("input-object", 400, "invalid_input", {"input": {"text": "a"}}),
    Case("input-token-ids", 400, "invalid_input", {"input": [101, 2023, 102]}),
    Case("input-nested-lists", 400, "invalid_input", {"input": [["a", "b"]]}),
    Case("input-item-null", 400, "invalid_input", {"input": ["a", None]}),
    Case("input-image-number", 400, "invalid_input", {"input": [{"image": 5}]}),
    Case("input-text-and-image", 400, "invalid_input", {"input": [{"text": "a", "image": "b"}]}),
    Case("input-empty-item", 400, "invalid_input", {"input": [{}]}),
    Case("input-item-unknown-field", 400, "invalid_input", {"input": [{"text": "a", "lang": "en"}]}),
    Case("encoding-format-int8", 400, "invalid_input", {"input": ["a"], "encoding_format": "int8"}),
    Case("encoding-format-number", 400, "invalid_input", {"input": ["a"], "encoding_format": 5}),
    Case("model-number", 400, "invalid_input", {"input": ["a"], "model": 5}),
    Case("model-unknown", 404, "model_not_found", {"input": ["a"], "model": "ViT-H-14"}),
    Case("model-traversal", 404, "model_not_found", {"input": ["a"], "model": "../../../etc/passwd"}),
    Case("model-huge-name", 404, "model_not_found", {"input": ["a"], "model": "m" * 100_000}),
    # --- huge numbers -----------------------------------------------------------------------------
    Case("input-huge-float", 400, "invalid_input", b'{"input": 1e400}', raw=True),
    Case("input-huge-ints", 400, "invalid_input", {"input": [10**40, -(10**40)]}),
    Case("dimensions-huge", 400, "unsupported_dimensions", {"input": ["a"], "dimensions": 10**30}),  # issue 12
    Case("dimensions-infinite", 400, "invalid_input", b'{"input": ["a"], "dimensions": 1e400}', raw=True),
    # --- nested garbage and bulk ------------------------------------------------------------------
    Case("nested-image-items", 400, "invalid_input", {"input": [{"image": {"image": {"image": "x"}}}]}),
    Case("nested-mixed-garbage", 400, "invalid_input", {"input": [{"text": ["a", {"b": [None, 1.5]}]}]}),
    # 40,000 wrong items in 120 kB must cost about what refusing 257 costs. Found while writing this
    # corpus: validating every item builds ~3 error objects each (0.75 s and ~0.5 GB per 100,000), so
    # one 64 MB body of `[0,0,...]` from any key, even one with no budget, costs a server minutes of CPU
    # and tens of GB
    Case(
        "many-wrong-items",
        400,
        "invalid_input",
        {"input": [0] * 40_000},
        alt=((413, "too_many_items"),),
        cpu_limit_s=0.15,
    ),
    # --- unknown fields, dimensions (issue 12) ----------------------------------------------------
    Case("unknown-field", 400, "unknown_field", {"input": ["a"], "temperature": 0.5}),
    Case("unknown-field-typo", 400, "unknown_field", {"inputs": ["a"]}),
    Case(
        "unknown-fields-10k",
        400,
        "unknown_field",
        {"input": ["a"], **{f"field{i}": i for i in range(10_000)}},
    ),
    Case("dimensions-larger", 400, "unsupported_dimensions", lambda ctx: {"input": ["a"], "dimensions": ctx.dim + 1}),
    Case("dimensions-smaller", 400, "unsupported_dimensions", lambda ctx: {"input": ["a"], "dimensions": ctx.dim // 2}),
    Case("dimensions-zero", 400, "invalid_input", {"input": ["a"], "dimensions": 0}),
    # --- bad base64 -------------------------------------------------------------------------------
    Case("b64-garbage", 400, "invalid_base64", {"input": [{"image": "!!!not base64!!!"}]}),
    Case("b64-bad-padding", 400, "invalid_base64", {"input": [{"image": "abc"}]}),
    Case(
        "b64-inner-spaces",
        400,
        "invalid_base64",
        lambda ctx: {"input": [{"image": " ".join(b64(image_file("PNG")).partition("A")[::2])}]},
    ),
    Case("b64-non-ascii", 400, "invalid_base64", {"input": [{"image": "ÿÿÿÿ"}]}),
    Case("b64-in-data-uri", 400, "invalid_base64", {"input": [{"image": "data:image/png;base64,!!!!"}]}),
    Case("b64-empty", 400, "invalid_image", {"input": [{"image": ""}]}),
    # --- not images -------------------------------------------------------------------------------
    Case("not-image-text", 400, "invalid_image", images(b"plain text, not an image")),
    Case("not-image-gif", 400, "invalid_image", lambda ctx: images(image_file("GIF"))),
    Case("not-image-bmp", 400, "invalid_image", lambda ctx: images(image_file("BMP"))),
    Case("not-image-tiff", 400, "invalid_image", lambda ctx: images(image_file("TIFF"))),
    Case("not-image-pdf", 400, "invalid_image", images(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF")),
    Case("not-image-svg", 400, "invalid_image", images(b'<svg xmlns="http://www.w3.org/2000/svg" width="9"/>')),
    Case("not-image-random", 400, "invalid_image", images(bytes(range(256)) * 8)),
    Case("png-signature-only", 400, "invalid_image", images(PNG_SIGNATURE)),
    Case("png-zero-size", 400, "invalid_image", lambda ctx: images(png_header_bomb(0, 0))),
    # --- data URIs that lie -----------------------------------------------------------------------
    Case("data-uri-text-plain", 400, "unsupported_image_format", lambda ctx: data_uri("text/plain", image_file())),
    Case("data-uri-gif", 400, "unsupported_image_format", lambda ctx: data_uri("image/gif", image_file("GIF"))),
    Case("data-uri-svg", 400, "unsupported_image_format", data_uri("image/svg+xml", b"<svg/>")),
    Case("data-uri-no-mime", 400, "unsupported_image_format", lambda ctx: data_uri("", image_file())),
    # issue 12: the MIME type must be what the bytes are
    Case("data-uri-png-is-jpeg", 400, "image_type_mismatch", lambda ctx: data_uri("image/png", image_file("JPEG"))),
    Case("data-uri-jpeg-is-png", 400, "image_type_mismatch", lambda ctx: data_uri("image/jpeg", image_file("PNG"))),
    Case("data-uri-webp-is-png", 400, "image_type_mismatch", lambda ctx: data_uri("image/webp", image_file("PNG"))),
    # --- truncated and corrupt files --------------------------------------------------------------
    Case("png-cut-at-300-bytes", 400, "invalid_image", lambda ctx: images(image_file("PNG", size=(64, 64))[:300])),
    Case("jpeg-cut-in-half", 400, "invalid_image", lambda ctx: images(image_file("JPEG", size=(64, 64))[:400])),
    Case("png-ihdr-only", 400, "invalid_image", lambda ctx: images(ihdr_only_png())),
    Case("png-bad-crc", 400, "invalid_image", lambda ctx: images(bad_crc_png())),
    Case("png-garbage-data", 400, "invalid_image", lambda ctx: images(png_header_bomb(100, 100))),
    # issue 12: a complete zlib stream that holds one row of a 512x512 (and a 4000x4000) image
    Case("png-512-one-row", 400, "invalid_image", lambda ctx: images(short_png(512, 512))),
    Case("png-4000-one-row", 400, "invalid_image", lambda ctx: images(short_png(4000, 4000))),
    # --- decompression bombs, refused from the header -------------------------------------------------
    Case("png-header-20000", 413, "too_many_pixels", lambda ctx: images(png_header_bomb(20_000, 20_000))),
    Case("png-header-65535", 413, "too_many_pixels", lambda ctx: images(png_header_bomb(65_535, 65_535))),
    Case("png-1bit-4097x4096", 413, "too_many_pixels", lambda ctx: images(one_bit_png(4097, 4096))),
    Case("png-1bit-8192", 413, "too_many_pixels", lambda ctx: images(one_bit_png(8192, 8192))),
    Case("jpeg-header-65000", 413, "too_many_pixels", lambda ctx: images(jpeg_header_bomb(65_000, 65_000))),
    # issue 12, 1: an Idempotency-Key must not skip the budget check that comes before any decoding
    Case(
        "budget0-idempotent-32-4096px",
        402,
        "budget_exhausted",
        lambda ctx: images(*[one_bit_png()] * 32),
        budget=0,
        headers={IDEMPOTENCY_HEADER: "x"},
        time_limit_s=1.0,
    ),
    Case("budget0-32-4096px", 402, "budget_exhausted", lambda ctx: images(*[one_bit_png()] * 32), budget=0),
    Case("budget-short-by-one", 402, "budget_exhausted", {"input": ["a", "b", "c"]}, budget=2),
    # issue 12, 2: the whole request is judged before anything in it is decoded
    Case(
        "eight-4096px-then-invalid",
        400,
        "invalid_base64",
        lambda ctx: {"input": [{"image": b64(one_bit_png())}] * 8 + [{"image": "!!!not base64!!!"}]},
        time_limit_s=0.5,
        cpu_limit_s=0.25,
    ),
    # issue 12, 5: each image within the per-image limit, the request over the per-request one
    Case(
        "request-too-many-pixels",
        413,
        "request_too_many_pixels",
        lambda ctx: images(*[one_bit_png()] * 5),
        cpu_limit_s=0.25,
    ),
    # --- per-request limits -------------------------------------------------------------------------
    Case("too-many-texts", 413, "too_many_items", {"input": ["t"] * (MAX_ITEMS + 1)}),
    Case(
        "too-many-images",
        413,
        "too_many_items",
        lambda ctx: {"input": [image_item(size=(1, 1))] * (MAX_ITEMS + 1)},
    ),
    Case("text-too-long", 413, "text_too_long", {"input": ["ok", text(MAX_TEXT + 1)]}),
    Case("text-item-too-long", 413, "text_too_long", {"input": [{"text": "é" * (MAX_TEXT + 1)}]}),
    Case("bare-string-too-long", 413, "text_too_long", {"input": text(MAX_TEXT + 1)}),
    Case("image-too-large", 413, "image_too_large", {"input": [{"image": "A" * (MAX_IMAGE_BYTES * 4 // 3 + 400)}]}),
    Case("empty-input", 400, "empty_input", {"input": []}),
    # --- Idempotency-Key --------------------------------------------------------------------------
    Case(
        "idempotency-key-256", 400, "invalid_idempotency_key", {"input": ["a"]}, headers={IDEMPOTENCY_HEADER: "k" * 256}
    ),
    Case("idempotency-key-empty", 400, "invalid_idempotency_key", {"input": ["a"]}, headers={IDEMPOTENCY_HEADER: ""}),
    Case(
        "idempotency-key-8k", 400, "invalid_idempotency_key", {"input": ["a"]}, headers={IDEMPOTENCY_HEADER: "k" * 8000}
    ),
    # --- auth garbage -----------------------------------------------------------------------------
    Case("auth-missing", 401, "invalid_api_key", {"input": ["a"]}, auth=None),
    Case("auth-bearer-empty", 401, "invalid_api_key", {"input": ["a"]}, auth="Bearer ", low_level=True),
    Case("auth-bearer-word-only", 401, "invalid_api_key", {"input": ["a"]}, auth="Bearer"),
    Case("auth-basic", 401, "invalid_api_key", {"input": ["a"]}, auth="Basic dXNlcjpwYXNzd29yZA=="),
    Case("auth-wrong-key", 401, "invalid_api_key", {"input": ["a"]}, auth="Bearer vl2v-sk-" + "A" * 43),
    Case("auth-key-as-scheme", 401, "invalid_api_key", {"input": ["a"]}, auth=lambda ctx: ctx.secret),
    Case("auth-huge-bearer", 401, "invalid_api_key", {"input": ["a"]}, auth="Bearer " + "x" * 60_000),
    Case("auth-non-ascii-bytes", 401, "invalid_api_key", {"input": ["a"]}, auth=b"Bearer \xff\xfe\xfd"),
    Case("auth-utf8-bearer", 401, "invalid_api_key", {"input": ["a"]}, auth="Bearer ключ-🔑".encode()),
    Case("auth-admin-token-as-key", 401, "invalid_api_key", {"input": ["a"]}, auth=ADMIN),
    Case("usage-bad-auth", 401, "invalid_api_key", method="GET", path="/v1/usage", auth="Bearer nope"),
    # --- wrong methods (issue 12: 405 names what is allowed) ---------------------------------------
    Case("get-embeddings", 405, "method_not_allowed", method="GET", content_type=None, allow="POST"),
    Case("put-embeddings", 405, "method_not_allowed", {"input": ["a"]}, method="PUT", allow="POST"),
    Case("delete-embeddings", 405, "method_not_allowed", method="DELETE", content_type=None, allow="POST"),
    Case("patch-embeddings", 405, "method_not_allowed", {"input": ["a"]}, method="PATCH", allow="POST"),
    Case("options-embeddings", 405, "method_not_allowed", method="OPTIONS", content_type=None, allow="POST"),
    Case("post-models", 405, "method_not_allowed", {"input": ["a"]}, path="/v1/models", allow="GET"),
    Case("post-usage", 405, "method_not_allowed", {"input": ["a"]}, path="/v1/usage", allow="GET"),
    Case("delete-admin-keys", 405, "method_not_allowed", method="DELETE", path="/admin/keys", auth=ADMIN, allow="GET"),
    # --- unknown routes, path traversal ---------------------------------------------------------------
    Case("route-singular", 404, "not_found", {"input": ["a"]}, path="/v1/embedding"),
    Case("route-v2", 404, "not_found", {"input": ["a"]}, path="/v2/embeddings"),
    Case("route-case", 404, "not_found", {"input": ["a"]}, path="/V1/Embeddings"),
    Case("traversal-dot-dot", 404, "not_found", method="GET", content_type=None, target=b"/v1/../admin/keys"),
    Case("traversal-etc-passwd", 404, "not_found", method="GET", content_type=None, target=b"/v1/../../../etc/passwd"),
    Case("traversal-encoded", 404, "not_found", method="GET", content_type=None, target=b"/%2e%2e/%2e%2e/etc/passwd"),
    Case(
        "traversal-encoded-slash", 404, "not_found", method="GET", content_type=None, target=b"/v1/models%2f..%2fusage"
    ),
    Case("path-nul-byte", 404, "not_found", {"input": ["a"]}, target=b"/v1/embeddings%00"),
    Case(
        "admin-key-id-traversal",
        404,
        "not_found",
        method="GET",
        content_type=None,
        path="/admin/keys/..%2F..%2Fetc%2Fpasswd/usage",
        auth=ADMIN,
    ),
    Case("admin-key-id-unknown", 404, "key_not_found", method="GET", path="/admin/keys/key_0/usage", auth=ADMIN),
    # --- oversized bodies ---------------------------------------------------------------------------
    Case("body-over-limit", 413, "payload_too_large", lambda ctx: {"input": ["x" * 4000] * 500}),
    Case("body-chunked-over-limit", 413, "payload_too_large", lambda ctx: chunks(MAX_BODY + 1), raw=True),
    # a Content-Length of 1 TB and no body at all: the limit applies to what is declared
    Case("body-declared-1tb", 413, "payload_too_large", headers={"Content-Length": str(10**12)}, low_level=True),
    # --- wrong content types (issue 12: strict content type) ---------------------------------------
    Case("content-type-text-plain", 415, "unsupported_media_type", {"input": ["a"]}, content_type="text/plain"),
    Case(
        "content-type-form",
        415,
        "unsupported_media_type",
        b"input=a",
        raw=True,
        content_type="application/x-www-form-urlencoded",
    ),
    Case(
        "content-type-multipart",
        415,
        "unsupported_media_type",
        b'--b\r\nContent-Disposition: form-data; name="input"\r\n\r\na\r\n--b--\r\n',
        raw=True,
        content_type="multipart/form-data; boundary=b",
    ),
    Case(
        "content-type-xml", 415, "unsupported_media_type", b"<input>a</input>", raw=True, content_type="application/xml"
    ),
    Case("content-type-missing", 415, "unsupported_media_type", {"input": ["a"]}, content_type=None),
    # --- the admin surface ------------------------------------------------------------------------------
    Case("admin-no-token", 403, "invalid_admin_token", {"name": "x", "budget": 1}, path="/admin/keys", auth=None),
    Case("admin-api-key-as-token", 403, "invalid_admin_token", {"name": "x", "budget": 1}, path="/admin/keys"),
    Case("admin-budget-negative", 400, "invalid_input", {"name": "x", "budget": -1}, path="/admin/keys", auth=ADMIN),
    Case("admin-name-empty", 400, "invalid_input", {"name": "", "budget": 1}, path="/admin/keys", auth=ADMIN),
    Case(
        "admin-unknown-field",
        400,
        "invalid_input",
        {"name": "x", "budget": 1, "admin": True},
        path="/admin/keys",
        auth=ADMIN,
    ),
    Case(
        "admin-topup-zero",
        400,
        "invalid_input",
        {"queries": 0},
        path=lambda ctx: f"/admin/keys/{ctx.key_id}/topup",
        auth=ADMIN,
    ),
    # found while writing this corpus: numbers SQLite cannot store are a 500 (OverflowError)
    Case("admin-budget-huge", 400, "invalid_input", {"name": "x", "budget": 10**30}, path="/admin/keys", auth=ADMIN),
    Case(
        "admin-topup-huge",
        400,
        "invalid_input",
        {"queries": 10**30},
        path=lambda ctx: f"/admin/keys/{ctx.key_id}/topup",
        auth=ADMIN,
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorServer]:
    tmp = tmp_path_factory.mktemp("hostile")
    vendor = VendorServer(db=tmp / "ledger.sqlite3", log=tmp / "server.log", env=ENV).start()
    yield vendor
    vendor.stop()


@pytest.fixture(scope="module")
def dim(server: VendorServer) -> int:
    with server.client() as client:
        return client.get("/v1/models").json()["data"][0]["embedding_dim"]


@pytest.fixture(scope="module")
def api(server: VendorServer) -> Iterator[httpx.Client]:
    """A client for the bookkeeping reads around each case (the hostile request has its own)."""
    with httpx.Client(base_url=server.url, timeout=60, verify=False) as client:
        yield client


def account(api: httpx.Client, secret: str) -> dict[str, Any]:
    usage = api.get("/v1/usage", headers={"Authorization": f"Bearer {secret}"}).json()
    return {k: usage[k] for k in ("key_id", "budget", "used", "images", "texts", "requests")}


def books(server: VendorServer) -> tuple:
    """The whole ledger's state that a charge would change: keys, used, events by status."""
    used, charged, statuses = charged_events(server.db)
    with sqlite3.connect(server.db) as conn:
        keys = conn.execute("SELECT COUNT(*), COALESCE(SUM(budget), 0) FROM keys").fetchone()
    return used, charged, statuses, tuple(keys)


def build(case: Case, ctx: Ctx, server: VendorServer) -> tuple[str, dict[str, str | bytes], Any]:
    headers: dict[str, str | bytes] = {}
    auth = case.auth(ctx) if callable(case.auth) else case.auth
    if auth == KEY:
        headers["Authorization"] = f"Bearer {ctx.secret}"
    elif auth == ADMIN:
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    elif auth is not None:
        headers["Authorization"] = auth
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    headers.update(case.headers)
    body = case.body(ctx) if callable(case.body) else case.body
    content = body if case.raw or body is None else json.dumps(body).encode()
    path = case.path(ctx) if callable(case.path) else case.path
    return server.url + path, headers, content


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request_is_refused_cheaply_and_not_charged(
    server: VendorServer, api: httpx.Client, dim: int, case: Case
):
    secret = server.create_key(budget=case.budget, rate_limit=100_000, name=f"hostile-{case.id}")
    before = account(api, secret)
    ctx = Ctx(secret=secret, key_id=before["key_id"], dim=dim)
    url, headers, content = build(case, ctx, server)
    books_before = books(server)
    pid = server.running.process.pid
    cpu_before = process_cpu_seconds(pid)
    started = time.perf_counter()
    if case.low_level:
        response = over_http_client(server, case, url, headers, content)
    else:
        with httpx.Client(timeout=case.time_limit_s + 60, verify=False) as client:  # plain HTTP on loopback
            extensions = {"target": case.target} if case.target is not None else {}
            response = client.request(case.method, url, content=content, headers=headers, extensions=extensions)
    elapsed = time.perf_counter() - started
    cpu_after = process_cpu_seconds(pid)

    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    answer = (response.status_code, error_code(response))
    assert answer in ((case.status, case.code), *case.alt), response.text[:500]
    assert elapsed < case.time_limit_s, f"answered after {elapsed:.2f} s (bound {case.time_limit_s} s)"
    if cpu_before is not None and cpu_after is not None:
        spent = cpu_after - cpu_before
        assert spent < case.cpu_limit_s, f"the server spent {spent:.2f} CPU s (bound {case.cpu_limit_s} s)"
    if case.allow is not None:
        assert case.allow in response.headers.get("allow", ""), dict(response.headers)
    assert account(api, secret) == before, "the key was charged"
    assert books(server) == books_before, "the ledger changed"


def test_dimensions_equal_to_the_models_are_accepted(server: VendorServer, dim: int):
    """The other side of ``unsupported_dimensions``: asking for what the model gives is fine (and paid)."""
    secret = server.create_key(budget=10, rate_limit=100_000)
    with server.client(secret) as client:
        response = client.post(EMBEDDINGS_PATH, json={"input": ["a photo of a cat"], "dimensions": dim})
        assert response.status_code == 200, response.text
        assert len(response.json()["data"][0]["embedding"]) == dim
        assert client.get("/v1/usage").json()["used"] == 1


def test_after_the_corpus_the_server_is_healthy_and_its_books_balance(server: VendorServer):
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
    used, charged, statuses = charged_events(server.db)
    assert used == charged and "reserved" not in statuses, (used, charged, statuses)


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60 and len({case.id for case in CASES}) == len(CASES)
