"""What a request costs, in queries: one per text, and per image one query or, when the vendor
prices by size (``pixels_per_query`` > 0), one per started ``pixels_per_query`` pixels.

The default is the flat price of hosted embedding APIs (an image is one item whatever its size);
a vendor whose decoding cost matters can charge a 16-megapixel upload more than a 64×64 one. The
price is computed from the sizes the image *headers* declare, before anything is decoded, so the
budget check that precedes decoding already knows the full cost."""

from __future__ import annotations

from collections.abc import Iterable

from shared.protocol import image_queries


def request_queries(texts: int, image_pixels: Iterable[int], pixels_per_query: int) -> int:
    """The queries a request of ``texts`` texts and images of ``image_pixels`` pixels costs."""
    return texts + sum(image_queries(p, pixels_per_query) for p in image_pixels)
