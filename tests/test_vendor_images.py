"""Image items: accepted formats and the refusals, decided before any expensive decode."""

from __future__ import annotations

import pytest
from vendor_payloads import b64, image_file, png_header_bomb

from vendor_server.api_errors import InvalidInput, PayloadTooLarge
from vendor_server.images import ImageLimits, decode_image

LIMITS = ImageLimits(max_bytes=200_000, max_pixels=500 * 500)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_formats_decode_to_rgb(fmt):
    img = decode_image(f"data:image/{fmt.lower()};base64," + b64(image_file(fmt, size=(30, 20))), LIMITS, 0)
    assert img.mode == "RGB" and img.size == (30, 20)


def test_grey_and_alpha_images_become_rgb():
    from io import BytesIO

    from PIL import Image

    for mode in ("L", "RGBA", "P"):
        buf = BytesIO()
        Image.new(mode, (8, 8)).save(buf, format="PNG")
        assert decode_image(b64(buf.getvalue()), LIMITS, 0).mode == "RGB"


@pytest.mark.parametrize("size", [(501, 500), (100_000, 100_000), (65_535, 65_535)])
def test_bombs_are_refused_from_the_header(size):
    with pytest.raises(PayloadTooLarge) as exc:
        decode_image(b64(png_header_bomb(*size)), LIMITS, 3)
    assert exc.value.code == "too_many_pixels" and "input[3]" in exc.value.message


def test_a_header_within_limits_with_garbage_data_is_invalid():
    with pytest.raises(InvalidInput) as exc:
        decode_image(b64(png_header_bomb(100, 100)), LIMITS, 0)
    assert exc.value.code == "invalid_image"


def test_oversized_payload_refused_before_base64_decoding():
    with pytest.raises(PayloadTooLarge) as exc:
        decode_image("A" * 400_000, LIMITS, 0)  # would decode to 300 kB
    assert exc.value.code == "image_too_large"


@pytest.mark.parametrize("item", ["", "@@@@", b64(b"GIF89a" + b"\0" * 20), b64(image_file("JPEG")[:-200])])
def test_invalid_items_are_400(item):
    with pytest.raises(InvalidInput):
        decode_image(item, LIMITS, 0)
