"""Resolution-independent drawing primitives.

Every class family is drawn as a list of :class:`Part` in *object units* (a box of [-1, 1]², y down);
styles rasterise the parts at whatever canvas size is asked for, so one drawing serves 32 px and 224 px
alike. Parts carry a colour *role* rather than a colour so a style can decide how roles look (flat
colours, a palette, pencil lines, glowing outlines...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: colour roles a part may take; the scene maps them to RGB per image
ROLES = ("main", "accent", "dark", "light")


@dataclass(frozen=True)
class Part:
    """A filled polygon (``closed``) or a stroked polyline, in object units until :func:`place` maps
    it to canvas pixels. ``width`` is the stroke width of an open line, in the same units."""

    points: np.ndarray
    closed: bool = True
    role: str = "main"
    width: float = 0.0


def polygon(points, role: str = "main") -> Part:
    return Part(np.asarray(points, dtype=float), True, role)


def line(points, width: float, role: str = "dark") -> Part:
    return Part(np.asarray(points, dtype=float), False, role, width)


def ellipse(cx: float, cy: float, rx: float, ry: float, role: str = "main", rot: float = 0.0, n: int = 32) -> Part:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return polygon(_rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], 1), rot) + (cx, cy), role)


def rect(x0: float, y0: float, x1: float, y1: float, role: str = "main") -> Part:
    return polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], role)


def regular(cx: float, cy: float, r: float, n: int, rot: float = 0.0, role: str = "main") -> Part:
    t = rot + np.linspace(0, 2 * np.pi, n, endpoint=False) - np.pi / 2
    return polygon(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1), role)


def star(cx: float, cy: float, r_out: float, r_in: float, n: int, rot: float = 0.0, role: str = "main") -> Part:
    t = rot + np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) - np.pi / 2
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    return polygon(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1), role)


def arc(
    cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, width: float, role: str = "dark", n: int = 16
) -> Part:
    t = np.linspace(a0, a1, n)
    return line(np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1), width, role)


def limb(p0, p1, w0: float, w1: float | None = None, role: str = "main") -> Part:
    """A filled tapered bar from ``p0`` to ``p1`` (legs, necks, handles): unlike a stroked line it has
    an outline, so outline styles draw it as a shape."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    w1 = w0 if w1 is None else w1
    return polygon([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2], role)


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def fit(parts: list[Part]) -> list[Part]:
    """Recentre and rescale a drawing so its bounding box spans [-1, 1] on the longer side: families
    vary their proportions freely and the scene's scale nuisance stays meaningful."""
    pts = np.concatenate([p.points for p in parts])
    lo, hi = pts.min(0), pts.max(0)
    centre, half = (lo + hi) / 2, max((hi - lo).max() / 2, 1e-6)
    return [replace(p, points=(p.points - centre) / half, width=p.width / half) for p in parts]


def place(
    parts: list[Part], angle: float, scale: float, centre: tuple[float, float], flip: bool, canvas: int
) -> list[Part]:
    """Map object units to canvas pixels: optional mirror, rotation (radians), then ``scale`` (the
    object's full extent as a fraction of the canvas side) and ``centre`` (canvas fractions)."""
    out = []
    for p in parts:
        pts = p.points * (-1 if flip else 1, 1)
        pts = _rotate(pts, angle) * (scale * canvas / 2) + np.asarray(centre) * canvas
        out.append(replace(p, points=pts, width=p.width * scale * canvas / 2))
    return out
