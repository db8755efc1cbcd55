"""Request payloads for the vendor tests: real image files in each accepted format, and crafted
files (truncated, decompression bombs) that the service must refuse; and what the tests read back
from a real server (error codes, the ledger's books, the server process's CPU time)."""

from __future__ import annotations

import base64
import functools
import io
import itertools
import os
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from shared.protocol import ErrorResponse, decode_vector

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"not zlib at all") + png_chunk(b"IEND", b"")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and a correct CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def one_bit_png(width: int = 4096, height: int = 4096) -> bytes:
    """A valid all-black 1-bit PNG: about 2 kB on the wire for 4096x4096, but width x height pixels
    (50 MB as RGB) once decoded, which is what makes it a cheap way to make a server work."""
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def raw_png(width: int, height: int, rows: int | None = None, interlaced: bool = False) -> bytes:
    """A grey 8-bit RGB PNG built by hand (Pillow writes no interlaced PNGs); ``rows`` < the needed
    scanlines makes its compressed data end early, as a cut-off upload's would."""
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    lines = (
        b"\x00" + b"\x80" * 3 * -(-(width - x0) // dx)
        for x0, y0, dx, dy in passes
        if width > x0 and height > y0
        for _ in range(-(-(height - y0) // dy))
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, int(interlaced))
    idat = zlib.compress(b"".join(itertools.islice(lines, rows)))
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def short_png(width: int, height: int, rows: int = 1) -> bytes:
    """A PNG (8-bit RGB) whose header declares ``width x height`` but whose data, a complete and
    valid zlib stream with correct CRCs, holds only ``rows`` rows: a decoder that does not check the
    data against the header pads the rest with black."""
    return raw_png(width, height, rows=rows)


def jpeg_header_bomb(width: int, height: int) -> bytes:
    """A real baseline JPEG whose frame header (SOF0) is patched to declare ``width x height``."""
    data = bytearray(image_file("JPEG", size=(16, 16)))
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), then height and width
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def vectors(response_json: dict) -> np.ndarray:
    """The response's embeddings as an ``[N, D]`` array, in input order."""
    rows = sorted(response_json["data"], key=lambda d: d["index"])
    return np.stack([decode_vector(d["embedding"]) for d in rows])


def error_code(response) -> str:
    """The machine-readable ``error.code`` of an error response, after checking the body has the API's
    one error shape (``{"error": {"type", "code", "message"}}``)."""
    return ErrorResponse.model_validate_json(response.content).error.code


def charged_events(db) -> tuple[int, int, dict[str, int]]:
    """``(sum of keys.used, sum of charged events' queries, events by status)`` read straight from SQLite."""
    with sqlite3.connect(db) as conn:
        used = conn.execute("SELECT COALESCE(SUM(used), 0) FROM keys").fetchone()[0]
        charged = conn.execute(
            "SELECT COALESCE(SUM(queries), 0) FROM usage_events WHERE status = 'charged'"
        ).fetchone()[0]
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM usage_events GROUP BY status").fetchall())
    return used, charged, statuses


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used so far, from ``/proc`` (None where
    there is no ``/proc``): what a request cost a server, whatever else runs on the machine."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    fields = stat.read_text().rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
