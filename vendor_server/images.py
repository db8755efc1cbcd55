"""Turning a client's image item (raw base64 or a ``data:image/...;base64,`` URI) into a decoded RGB
image, refusing anything that could cost the vendor more than it is paid for.

Order matters: the encoded size is checked before base64 decoding, and the pixel count is read from
the file header (``Image.open`` is lazy) before ``load()``, so decompression bombs never get
decoded."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile

from vendor_server.api_errors import InvalidInput, PayloadTooLarge

FORMATS = ("PNG", "JPEG", "WEBP")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*);base64,", re.I)
_MIME_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/webp"}

# a truncated file is the client's error (400), never silently padded with grey
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


def decode_image(item: str, limits: ImageLimits, index: int) -> Image.Image:
    """The RGB image in one input item; ``index`` only makes error messages point at the item."""
    payload = _strip_data_uri(item, index)
    if len(payload) * 3 // 4 > limits.max_bytes + 3:
        raise PayloadTooLarge(
            f"input[{index}]: image exceeds {limits.max_bytes} bytes", code="image_too_large", limit=limits.max_bytes
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"input[{index}]: image is not valid base64 ({exc})", code="invalid_base64") from exc
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"input[{index}]: image exceeds {limits.max_bytes} bytes", code="image_too_large", limit=limits.max_bytes
        )
    return _open_checked(data, limits.max_pixels, index)


def _strip_data_uri(item: str, index: int) -> str:
    match = _DATA_URI.match(item)
    if match is None:
        return item.strip()
    mime = (match.group("mime") or "").lower()
    if mime not in _MIME_TYPES:
        raise InvalidInput(
            f"input[{index}]: unsupported media type {mime or '(none)'}; send PNG, JPEG or WebP",
            code="unsupported_image_format",
        )
    return item[match.end() :].strip()


def _open_checked(data: bytes, max_pixels: int, index: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides below
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(index, max_pixels) from exc
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"input[{index}]: not a PNG, JPEG or WebP image", code="invalid_image") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise _too_many_pixels(index, max_pixels, f"{width}x{height}")
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"input[{index}]: image data is truncated or corrupt ({exc})", code="invalid_image") from exc
    return img.convert("RGB")


def _too_many_pixels(index: int, max_pixels: int, size: str = "the image") -> PayloadTooLarge:
    return PayloadTooLarge(
        f"input[{index}]: {size} has more than {max_pixels} pixels", code="too_many_pixels", limit=max_pixels
    )
