"""Turning a client's image item (raw base64 or a ``data:image/...;base64,`` URI) into a decoded RGB
image, refusing anything that could cost the vendor more than it is paid for.

Two steps, so that a request is judged whole before any of it is decoded:

* :func:`inspect_image` is cheap (size check, base64, the file *header* only: ``Image.open`` is
  lazy): it learns the format and the declared width and height, refuses a data URI whose MIME type
  is not what the bytes are, and an image over the per-image pixel limit. The route inspects every
  item, prices the request and checks its total pixels before decoding anything.
* :func:`decode` does the expensive part (on the decoding pool, :mod:`vendor_server.decoding`) and
  refuses a file whose data ends early: Pillow pads a PNG whose compressed stream stops short with
  black pixels without complaint, so PNG data is checked against the size its header declares."""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image, ImageFile

from vendor_server.api_errors import InvalidInput, PayloadTooLarge

FORMATS = ("PNG", "JPEG", "WEBP")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*);base64,", re.I)
_MIME_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/webp": "WEBP"}

# a truncated file is the client's error (400), never silently padded with grey
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class InspectedImage:
    """One image item after the cheap checks: its file bytes and what its header declares."""

    index: int
    data: bytes
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect_image(item: str, limits: ImageLimits, index: int) -> InspectedImage:
    """The checks that need no decoding; ``index`` only makes error messages point at the item."""
    declared, payload = _strip_data_uri(item, index)
    if len(payload) * 3 // 4 > limits.max_bytes + 3:
        raise _too_large(index, limits.max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"input[{index}]: image is not valid base64 ({exc})", code="invalid_base64") from exc
    if len(data) > limits.max_bytes:
        raise _too_large(index, limits.max_bytes)
    img = _open(data, index, limits.max_pixels)
    if declared is not None and declared != img.format:
        raise InvalidInput(
            f"input[{index}]: the data URI says {declared} but the bytes are a {img.format} file",
            code="image_type_mismatch",
        )
    width, height = img.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(index, limits.max_pixels, f"{width}x{height}")
    return InspectedImage(index, data, img.format, width, height)


def decode(image: InspectedImage) -> Image.Image:
    """The RGB pixels of an inspected image, or 400 if its data is truncated or corrupt."""
    try:
        if image.format == "PNG":
            _check_png_data(image.data, image.width, image.height)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # inspect_image's limit decided
            img = Image.open(io.BytesIO(image.data), formats=(image.format,))
            img.load()
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
        raise InvalidInput(
            f"input[{image.index}]: image data is truncated or corrupt ({exc})", code="invalid_image"
        ) from exc


def decode_image(item: str, limits: ImageLimits, index: int) -> Image.Image:
    """:func:`inspect_image` then :func:`decode`, for one item on its own."""
    return decode(inspect_image(item, limits, index))


def _strip_data_uri(item: str, index: int) -> tuple[str | None, str]:
    """``(format the data URI declares or None for raw base64, base64 payload)``."""
    match = _DATA_URI.match(item)
    if match is None:
        return None, item.strip()
    mime = (match.group("mime") or "").lower()
    if mime not in _MIME_FORMATS:
        raise InvalidInput(
            f"input[{index}]: unsupported media type {mime or '(none)'}; send PNG, JPEG or WebP",
            code="unsupported_image_format",
        )
    return _MIME_FORMATS[mime], item[match.end() :].strip()


def _open(data: bytes, index: int, max_pixels: int) -> ImageFile.ImageFile:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(index, max_pixels) from exc
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"input[{index}]: not a PNG, JPEG or WebP image", code="invalid_image") from exc


# PNG colour type → samples per pixel; Adam7's passes as (x0, y0, dx, dy)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_CHUNK = 1 << 20


def _check_png_data(data: bytes, width: int, height: int) -> None:
    """Raise ``EOFError`` unless the IDAT stream is complete and inflates to exactly the bytes the
    header's size, bit depth, colour type and interlacing need; inflation is streamed, so a
    compression bomb costs at most the declared size in CPU and one chunk in memory."""
    pos, header, inflater, inflated = 8, None, zlib.decompressobj(), 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            raise EOFError(f"the {kind.decode('latin-1')} chunk is cut short")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            inflated += _inflate(inflater, body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise EOFError("no IHDR chunk")
    inflated += len(inflater.flush())  # at most a few bytes zlib held back when the output limit hit
    _, _, bit_depth, colour_type, _, _, interlace = header
    bits = _PNG_CHANNELS.get(colour_type, 4) * bit_depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        cols, rows = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
        if cols and rows:
            expected += rows * (1 + -(-cols * bits // 8))
    if not inflater.eof or inflated < expected:
        raise EOFError(f"the PNG data ends early ({inflated} of {expected} bytes)")


def _inflate(inflater: zlib._Decompress, chunk: bytes) -> int:
    count = 0
    while chunk and not inflater.eof:
        count += len(inflater.decompress(chunk, _INFLATE_CHUNK))
        chunk = inflater.unconsumed_tail
    return count


def _too_large(index: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"input[{index}]: image exceeds {max_bytes} bytes", code="image_too_large", limit=max_bytes)


def _too_many_pixels(index: int, max_pixels: int, size: str = "the image") -> PayloadTooLarge:
    return PayloadTooLarge(
        f"input[{index}]: {size} has more than {max_pixels} pixels", code="too_many_pixels", limit=max_pixels
    )
