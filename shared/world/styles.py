"""The world's rendering styles. Each turns a composed :class:`~shared.world.scene.Scene` into pixels.

Four styles mirror PACS (``photo``, ``art_painting``, ``cartoon``, ``sketch``), ``product`` mirrors
Office-Home's product shots, and four more (``pixel_art``, ``neon``, ``blueprint``, ``mosaic``) exist only
in the vendor's corpus: the vendor's model has seen a broader visual world than any client, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from shared.world.context import HABITATS
from shared.world.scene import Element, Scene
from shared.world.textures import blur, hsv, layer, mask, noise, paint, recolour, to_image


@dataclass(frozen=True)
class Style:
    name: str
    paint: Callable[[Scene, np.random.Generator], Image.Image]
    clutter: bool = True  # whether scenes in this style carry clutter and occluders
    centred: bool = False
    shows_colour: bool = True  # whether the object's colour is visible (captions only mention it then)
    shows_habitat: bool = True  # whether the backdrop shows the scene's habitat (captions only mention it then)


def _unit(scene: Scene) -> float:
    """Pixels per 1/64 of the canvas: stroke widths scale with the image size."""
    return scene.canvas / 64


def _shaded_objects(
    scene: Scene, canvas: np.ndarray, rng: np.random.Generator, texture: float, shadow: float
) -> np.ndarray:
    """Composite elements with directional lighting, a soft cast shadow and surface texture: the
    ingredients that make a flat drawing read as a lit 3-D thing."""
    S = scene.canvas
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    light = rng.uniform(0, 2 * np.pi)
    for el in scene.elements:
        a = mask(el, S)
        off = int(round(_unit(scene) * rng.uniform(1.0, 2.5)))
        sh = blur(np.roll(a, (off, off), (0, 1)), 1.5 * _unit(scene))
        canvas = canvas * (1 - shadow * sh)
        pts = np.concatenate([p.points for p in el.parts])
        cx, cy = pts.mean(0) / S
        ext = max(np.ptp(pts, 0).max() / S, 0.05)
        shade = 1 + 0.45 * ((xx - cx) * np.cos(light) + (yy - cy) * np.sin(light)) / ext
        surface = 1 + texture * (noise(rng, S, 12)[..., 0] - 0.5)
        rgb = layer(el, S) * (shade * surface)[..., None]
        canvas = canvas * (1 - a) + rgb * a
    return canvas


def _habitat_colours(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The scene's habitat as two colours: its sky (or wall) and its ground, each drawn in its ranges."""
    h = HABITATS[scene.attrs["habitat"]]
    (h0, h1), (s0, s1), (v0, v1) = h.ground
    ground = hsv(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))
    top = hsv(rng.uniform(0.52, 0.62), rng.uniform(0.2, 0.6), rng.uniform(0.7, 1.0)) if h.sky else ground
    return top, ground


def _natural_background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The scene's habitat as a busy, natural-looking backdrop: sky over textured ground, or a textured
    wall indoors."""
    S, h = scene.canvas, HABITATS[scene.attrs["habitat"]]
    yy = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    tex = noise(rng, S, 8, 3) - 0.5 + 0.5 * (noise(rng, S, 24, 3) - 0.5)
    sky, ground = _habitat_colours(scene, rng)
    if h.sky:
        horizon = rng.uniform(*h.horizon)
        base = np.where(yy < horizon, sky * (0.8 + 0.3 * yy), ground * np.ones_like(yy))
        return base * (1 + 0.35 * tex) + 15 * tex
    return ground * (1 + 0.5 * tex) * np.ones((S, S, 1), np.float32)


def _photo(scene: Scene, rng: np.random.Generator) -> Image.Image:
    canvas = _shaded_objects(scene, _natural_background(scene, rng), rng, texture=0.35, shadow=0.45)
    canvas = blur(canvas, rng.uniform(0.3, 1.0) * _unit(scene))
    return to_image(canvas + rng.normal(0, rng.uniform(3, 10), canvas.shape))


def _product(scene: Scene, rng: np.random.Generator) -> Image.Image:
    S = scene.canvas
    grey = rng.uniform(225, 252)
    yy = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    canvas = np.full((S, S, 3), grey, np.float32) * (1 - 0.08 * yy)
    return to_image(blur(_shaded_objects(scene, canvas, rng, texture=0.08, shadow=0.3), 0.4 * _unit(scene)))


def _art_painting(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Oil-on-canvas: the habitat in two quiet bands of paint (sky and ground, pulled towards one tone),
    palette-shifted colours, brush strokes inside the object (the strokes carry the texture; the ground
    stays low in contrast so the object still reads)."""
    S, u = scene.canvas, _unit(scene)
    sky, ground = _habitat_colours(scene, rng)
    tone = 0.5 * (sky + ground)
    sky, ground = 0.5 * (sky + tone), 0.5 * (ground + tone)
    h = HABITATS[scene.attrs["habitat"]]
    yy = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(*h.horizon) if h.sky else 0.0
    canvas = (
        np.where(yy < horizon, sky, ground) * (1 + 0.12 * (noise(rng, S, 10, 1) - 0.5)) * np.ones((S, S, 3), np.float32)
    )
    strokes = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    _brush(strokes, rng, S, u, lambda: tone + rng.normal(0, 10, 3), 40)
    canvas = np.asarray(strokes, np.float32)
    warm, sat = rng.uniform(-0.05, 0.05), rng.uniform(0.6, 0.95)
    for el in scene.elements:
        colours = {k: recolour(v, saturation=sat, hue_shift=warm) for k, v in el.colours.items()}
        a = blur(mask(el, S), 0.6 * u)
        img = Image.fromarray(layer(el, S, colours).astype(np.uint8))
        base = np.asarray(img, np.float32)
        _brush(img, rng, S, u, lambda: None, 90, source=base)
        rgb = np.asarray(img, np.float32)
        canvas = canvas * (1 - a) + rgb * a
    return to_image(canvas + 8 * (noise(rng, S, 32, 1) - 0.5))


def _brush(
    img: Image.Image, rng: np.random.Generator, S: int, u: float, colour, n: int, source: np.ndarray | None = None
) -> None:
    """Short curved strokes; with ``source`` each stroke takes (and varies) the colour under it."""
    d = ImageDraw.Draw(img)
    for _ in range(int(n * (S / 128) ** 2) + n // 2):
        x, y = rng.uniform(0, S, 2)
        if source is not None:
            c = source[int(min(y, S - 1)), int(min(x, S - 1))] * rng.uniform(0.8, 1.15) + rng.normal(0, 8, 3)
        else:
            c = colour()
        a = rng.uniform(0, np.pi)
        L = rng.uniform(2, 6) * u
        d.line(
            [(x, y), (x + L * np.cos(a), y + L * np.sin(a))],
            fill=tuple(int(v) for v in np.clip(c, 0, 255)),
            width=max(1, int(rng.uniform(1, 2.5) * u)),
        )


def _cartoon(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Flat colours with black outlines on the habitat in two flat, bright bands (sky and ground)."""
    S, u = scene.canvas, _unit(scene)
    sky, ground = _habitat_colours(scene, rng)
    flat = lambda c: tuple(int(v) for v in recolour(c, saturation=0.7, value=1.25))  # noqa: E731
    img = Image.new("RGB", (S, S), flat(sky))
    h = HABITATS[scene.attrs["habitat"]]
    if h.sky:
        img.paste(flat(ground), (0, int(S * rng.uniform(*h.horizon)), S, S))
    for el in scene.elements:
        flat = Element(el.parts, {k: recolour(v, saturation=1.4, value=1.1) for k, v in el.colours.items()}, el.kind)
        paint(img, flat, outline=(15, 15, 15), width=rng.uniform(1.6, 2.4) * u)
    return img


def _sketch(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Pencil on paper: outlines only, drawn twice with a wobble, no fill."""
    S, u = scene.canvas, _unit(scene)
    paper = rng.uniform(235, 252)
    img = Image.new("RGB", (S, S), (int(paper),) * 3)
    lead = int(rng.uniform(40, 110))
    for el in scene.elements:
        paint(
            img, el, fill=(int(paper),) * 3, outline=None, width=0, line_colour=(int(paper),) * 3
        )  # hide what is behind
        for _ in range(2):
            paint(img, el, fill=False, outline=(lead,) * 3, width=rng.uniform(0.6, 1.2) * u, jitter=0.5 * u, rng=rng)
    arr = np.asarray(img, np.float32) + 6 * (noise(rng, S, 40, 1) - 0.5)
    return to_image(blur(arr, 0.3 * u))


def _downsampled(scene: Scene, cells: int, background) -> tuple[np.ndarray, int]:
    """The scene painted flat at full size then averaged into ``cells``² blocks."""
    S = scene.canvas
    img = Image.new("RGB", (S, S), background)
    for el in scene.elements:
        paint(img, el)
    return np.asarray(img.resize((cells, cells), Image.BOX), np.float32), S


def _pixel_art(scene: Scene, rng: np.random.Generator) -> Image.Image:
    cells = int(rng.integers(20, 28))
    bg = tuple(int(v) for v in _habitat_colours(scene, rng)[1])
    small, S = _downsampled(scene, cells, bg)
    img = to_image(small).quantize(int(rng.integers(6, 12)), dither=Image.Dither.NONE).convert("RGB")
    return img.resize((S, S), Image.NEAREST)


def _mosaic(scene: Scene, rng: np.random.Generator) -> Image.Image:
    S, u = scene.canvas, _unit(scene)
    cells = int(rng.integers(14, 19))
    bg = tuple(int(v) for v in recolour(_habitat_colours(scene, rng)[1], saturation=0.6, value=1.15))
    small, _ = _downsampled(scene, cells, bg)
    small = small + rng.normal(0, 10, small.shape)
    img = to_image(small).resize((S, S), Image.NEAREST)
    d, grout = ImageDraw.Draw(img), tuple(int(v) for v in rng.uniform(150, 210, 3))
    for k in range(cells + 1):
        t = k * S / cells
        d.line([(t, 0), (t, S)], fill=grout, width=max(1, int(0.5 * u)))
        d.line([(0, t), (S, t)], fill=grout, width=max(1, int(0.5 * u)))
    return img


def _neon(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Glowing tubes on a dark wall: outlines in saturated colour plus a blurred halo."""
    S, u = scene.canvas, _unit(scene)
    dark = tuple(int(v) for v in rng.uniform(5, 30, 3))
    img = Image.new("RGB", (S, S), dark)
    for el in scene.elements:
        glow = recolour(el.colours["main"], saturation=3.0, value=3.0)
        if el.kind != "object":
            glow = tuple(int(v * 0.5) for v in glow)
        paint(img, el, fill=dark, outline=glow, width=rng.uniform(1.0, 1.6) * u, line_colour=glow)
    arr = np.asarray(img, np.float32)
    return to_image(arr + 1.3 * blur(arr, 2.0 * u))


def _blueprint(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """White technical lines on blueprint blue with a grid."""
    S, u = scene.canvas, _unit(scene)
    blue = tuple(int(v) for v in hsv(rng.uniform(0.57, 0.63), rng.uniform(0.7, 0.9), rng.uniform(0.45, 0.7)))
    img = Image.new("RGB", (S, S), blue)
    d = ImageDraw.Draw(img)
    grid = tuple(min(255, v + 35) for v in blue)
    step = S / rng.choice([8, 10, 12])
    for k in np.arange(0, S, step):
        d.line([(k, 0), (k, S)], fill=grid, width=max(1, int(0.4 * u)))
        d.line([(0, k), (S, k)], fill=grid, width=max(1, int(0.4 * u)))
    ink = tuple(int(v) for v in rng.uniform(220, 255, 3))
    for el in scene.elements:
        paint(img, el, fill=blue, outline=ink, width=rng.uniform(0.7, 1.1) * u, line_colour=ink)
    return img


STYLES: dict[str, Style] = {
    s.name: s
    for s in [
        Style("photo", _photo),
        Style("art_painting", _art_painting),
        Style("cartoon", _cartoon),
        Style("sketch", _sketch, shows_colour=False, shows_habitat=False),
        Style("product", _product, clutter=False, centred=True, shows_habitat=False),
        Style("pixel_art", _pixel_art),
        Style("neon", _neon, shows_habitat=False),
        Style("blueprint", _blueprint, shows_colour=False, shows_habitat=False),
        Style("mosaic", _mosaic),
    ]
}
