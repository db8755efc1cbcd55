"""Request payloads for the vendor tests: real image files in each accepted format, and crafted
files (truncated, decompression bombs) that the service must refuse."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image

from shared.protocol import decode_vector


def image_file(fmt: str = "PNG", size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_item(fmt: str = "PNG", seed: int = 0, data_uri: bool = False, **kwargs) -> dict[str, str]:
    encoded = b64(image_file(fmt, seed=seed, **kwargs))
    return {"image": f"data:image/{fmt.lower()};base64,{encoded}" if data_uri else encoded}


def png_header_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels but whose data is garbage: a service that
    decoded it fully would fail with 'corrupt' (400); one that checks the header first says 413."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"not zlib at all") + chunk(b"IEND", b"")


def vectors(response_json: dict) -> np.ndarray:
    """The response's embeddings as an ``[N, D]`` array, in input order."""
    rows = sorted(response_json["data"], key=lambda d: d["index"])
    return np.stack([decode_vector(d["embedding"]) for d in rows])
