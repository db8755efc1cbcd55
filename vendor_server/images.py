"""Turning a client's image item (raw base64 or a ``data:image/...;base64,`` URI) into a decoded RGB
image, refusing anything that could cost the vendor more than it is paid for.

Two steps, so that a request is judged whole before any of it is decoded:

* :func:`inspect_image` is cheap (size check, base64, the file *header* only: ``Image.open`` is
  lazy): it learns the format and the declared width and height, refuses a data URI whose MIME type
  is not what the bytes are, and an image over the per-image pixel limit. The route inspects every
  item, prices the request and checks its total pixels before decoding anything.
* :func:`decode` does the expensive part (on the decoding pool, :mod:`vendor_server.decoding`) and
  refuses a file whose data ends early. Pillow pads a PNG whose compressed stream stops short with
  black pixels without complaint, so PNGs are decoded by libspng (``pyspng``), which refuses data
  that does not fill the size the header declares, or a cut file, in the one pass that decodes it
  (checking Pillow's output instead meant inflating every PNG twice: 0.7 of 1.6 ms for a 224-px photo).
  pyspng does not check CRCs, so :func:`_check_crcs` does, one ``zlib.crc32`` per chunk (about 1 % of a
  decode), and a corrupted upload is still refused. For 8-bit PNGs of every colour type, interlaced or
  not, the RGB pixels are Pillow's ``convert("RGB")``, bit for bit (tested); a 16-bit greyscale PNG is
  scaled to 8 bits where Pillow clips it to white. Chunks after the image data are not read (Pillow's
  own limits have judged the ones before it at inspection)."""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass

import pyspng
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
    if image.format == "PNG":
        try:
            _check_crcs(image.data)
            pixels = pyspng.load(image.data, format="RGB")
        except (EOFError, RuntimeError) as exc:  # pyspng's one error type: libspng's message says what is wrong
            raise _corrupt(image, exc) from exc
        return Image.fromarray(pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # inspect_image's limit decided
            img = Image.open(io.BytesIO(image.data), formats=(image.format,))
            img.load()
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise _corrupt(image, exc) from exc


def _check_crcs(data: bytes) -> None:
    """Raise ``EOFError`` at the first chunk whose CRC is wrong: pyspng
    has libspng skip CRCs (and the zlib checksum) for speed, and a corrupted upload must not decode to
    other pixels. A CRC costs ~1 % of the decoding."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return  # a cut chunk: libspng refuses it as such
        if zlib.crc32(memoryview(data)[pos + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            raise EOFError(f"the {data[pos + 4 : pos + 8].decode('latin-1')} chunk's CRC is wrong")
        if data[pos + 4 : pos + 8] == b"IEND":
            return
        pos = end + 4


def _corrupt(image: InspectedImage, exc: Exception) -> InvalidInput:
    return InvalidInput(f"input[{image.index}]: image data is truncated or corrupt ({exc})", code="invalid_image")


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


def _too_large(index: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"input[{index}]: image exceeds {max_bytes} bytes", code="image_too_large", limit=max_bytes)


def _too_many_pixels(index: int, max_pixels: int, size: str = "the image") -> PayloadTooLarge:
    return PayloadTooLarge(
        f"input[{index}]: {size} has more than {max_pixels} pixels", code="too_many_pixels", limit=max_pixels
    )
