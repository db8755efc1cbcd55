"""Textures and raster helpers the styles share. Noise is drawn on a fixed coarse grid and resized, so
a texture looks the same at any image size."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from shared.world.scene import Element


def noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth value noise in [0, 1], shape ``[size, size, channels]``."""
    grid = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    img = Image.fromarray(grid.squeeze(-1) if channels == 1 else grid).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32).reshape(size, size, channels) / 255.0


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255


def recolour(rgb, saturation: float = 1.0, value: float = 1.0, hue_shift: float = 0.0) -> tuple[int, int, int]:
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))
    r, g, b = colorsys.hsv_to_rgb((h + hue_shift) % 1.0, min(s * saturation, 1.0), min(v * value, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _xy(points: np.ndarray) -> list[tuple[float, float]]:
    return [tuple(p) for p in points]


def paint(
    img: Image.Image,
    element: Element,
    fill=None,
    outline=None,
    width: float = 0.0,
    line_colour=None,
    jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> None:
    """Draw an element's parts back to front onto ``img``.

    ``fill``: ``None`` to use the role colours, a colour to fill every part with it (e.g. the paper's
    colour, to hide what is behind in a line drawing), or ``False`` for no fill. ``outline`` and
    ``width`` stroke closed parts; open lines use ``line_colour`` (default: their role colour, or the
    outline colour when there is one). ``jitter`` (pixels) shakes points for a hand-drawn line."""
    draw = ImageDraw.Draw(img)
    for part in element.parts:
        pts = part.points
        if jitter and rng is not None:
            pts = pts + rng.normal(0, jitter, pts.shape)
        role_rgb = element.colours[part.role]
        if part.closed:
            colour = role_rgb if fill is None else (fill or None)
            w = int(round(width)) if outline is not None else 0
            draw.polygon(_xy(pts), fill=colour, outline=outline if w else None, width=max(w, 1))
        else:
            colour = line_colour or (outline if outline is not None else role_rgb)
            w = max(1, int(round(part.width if outline is None else max(width, part.width * 0.5))))
            draw.line(_xy(pts), fill=colour, width=w, joint="curve")


def mask(element: Element, size: int) -> np.ndarray:
    """The element's silhouette, float ``[size, size, 1]`` in [0, 1]."""
    img = Image.new("L", (size, size), 0)
    paint(img, element, fill=255, line_colour=255)
    return np.asarray(img, dtype=np.float32)[..., None] / 255.0


def layer(element: Element, size: int, colours=None) -> np.ndarray:
    """The element painted in its (or the given) role colours on black, float ``[size, size, 3]``."""
    if colours is not None:
        element = Element(element.parts, colours, element.kind)
    img = Image.new("RGB", (size, size), 0)
    paint(img, element)
    return np.asarray(img, dtype=np.float32)


def blur(arr: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur (sigma ``radius`` pixels) of a float ``[H, W, C]`` image, edges reflected."""
    if radius <= 0:
        return arr
    R = max(1, int(np.ceil(3 * radius)))
    w = np.exp(-0.5 * (np.arange(-R, R + 1) / radius) ** 2)
    w /= w.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * arr.ndim
        pad[axis] = (R, R)
        padded = np.pad(arr, pad, mode="reflect")
        n = arr.shape[axis]
        arr = sum(wk * np.take(padded, np.arange(k, k + n), axis=axis) for k, wk in enumerate(w))
    return arr.astype(np.float32)


def to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
