"""Composing one image's scene: the object's pose and colours plus the nuisances (clutter behind it,
an occluder in front of it). Styles then decide how the composed scene looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.world.classes import draw
from shared.world.context import draw_look
from shared.world.geometry import Part, ellipse, line, place, polygon, rect

#: named colours an object can take; the name goes into captions
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 40, 40),
    "orange": (235, 130, 30),
    "yellow": (230, 200, 40),
    "green": (50, 150, 60),
    "blue": (40, 90, 205),
    "purple": (130, 60, 175),
    "pink": (235, 120, 175),
    "brown": (125, 78, 40),
    "grey": (128, 128, 128),
    "black": (40, 40, 40),
    "white": (238, 238, 238),
    "teal": (30, 150, 150),
}


@dataclass
class Element:
    """Something drawn in the scene, in canvas pixels, with its role → RGB colours."""

    parts: list[Part]
    colours: dict[str, tuple[int, int, int]]
    kind: str  # "object", "clutter" or "occluder"


@dataclass
class Scene:
    canvas: int
    elements: list[Element]  # back to front
    attrs: dict = field(default_factory=dict)

    @property
    def object(self) -> Element:
        return next(e for e in self.elements if e.kind == "object")


def _jitter(rgb, rng: np.random.Generator, amount: float = 18) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + rng.normal(0, amount, 3), 0, 255))


def role_colours(main: tuple[int, int, int], accent: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
    """Derived roles keep an object's parts apart (a darker door, a lighter window) whatever its colour."""
    m = np.asarray(main, float)
    dark = m * 0.45 if m.mean() > 60 else m + 70
    return {
        "main": main,
        "accent": accent,
        "dark": tuple(int(v) for v in dark),
        "light": tuple(int(v) for v in m + (255 - m) * 0.6),
    }


def _clutter(rng: np.random.Generator, canvas: int) -> Element:
    """A small thing that belongs to no class (a pebble, a twig, a dot): background clutter."""
    kind = rng.integers(3)
    if kind == 0:
        t = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 8))))
        parts = [polygon(np.stack([np.cos(t), np.sin(t)], 1) * rng.uniform(0.6, 1.0, (len(t), 1)))]
    elif kind == 1:
        parts = [line(rng.uniform(-1, 1, (int(rng.integers(2, 4)), 2)), 0.15, "main")]
    else:
        parts = [ellipse(0, 0, 1, rng.uniform(0.5, 1.0))]
    placed = place(
        parts, rng.uniform(0, 2 * np.pi), rng.uniform(0.06, 0.16), tuple(rng.uniform(0.05, 0.95, 2)), False, canvas
    )
    colour = _jitter(list(COLOURS.values())[rng.integers(len(COLOURS))], rng, 25)
    return Element(placed, role_colours(colour, colour), "clutter")


def _occluder(rng: np.random.Generator, centre, scale: float, canvas: int) -> Element:
    """A plain box or disc in front of part of the object (partial occlusion)."""
    shape = rect(-1, -1, 1, 1) if rng.random() < 0.5 else ellipse(0, 0, 1, 1)
    side = rng.uniform(0, 2 * np.pi)
    at = np.asarray(centre) + scale * 0.5 * np.array([np.cos(side), np.sin(side)])
    placed = place([shape], rng.uniform(0, np.pi), scale * rng.uniform(0.3, 0.45), tuple(at), False, canvas)
    grey = int(rng.uniform(90, 200))
    colour = _jitter((grey, grey, grey), rng, 20)
    return Element(placed, role_colours(colour, colour), "occluder")


def compose(
    class_name: str,
    rng: np.random.Generator,
    canvas: int,
    clutter: bool = True,
    centred: bool = False,
    style: str = "photo",
) -> Scene:
    """Draw a member of ``class_name`` and place it with a colour and a habitat (usually its class's:
    :mod:`shared.world.context`), a random pose, position and scale; add clutter and, sometimes, an
    occluder. ``attrs`` records what a caption may mention; ``style`` picks the medium's conventions."""
    parts = draw(class_name, rng)
    colour, accent, habitat = draw_look(class_name, list(COLOURS), rng, style)
    scale = rng.uniform(0.5, 0.85)
    room = (1 - scale) / 2 if not centred else 0.03
    centre = (0.5 + rng.uniform(-room, room), 0.5 + rng.uniform(-room, room))
    angle, flip = rng.uniform(-0.35, 0.35), bool(rng.random() < 0.5)
    obj = Element(
        place(parts, angle, scale, centre, flip, canvas),
        role_colours(_jitter(COLOURS[colour], rng), _jitter(COLOURS[accent], rng)),
        "object",
    )
    n_clutter = int(rng.integers(0, 4)) if clutter else 0
    elements = [_clutter(rng, canvas) for _ in range(n_clutter)] + [obj]
    occluded = clutter and rng.random() < 0.25
    if occluded:
        elements.append(_occluder(rng, centre, scale, canvas))
    attrs = {
        "colour": colour,
        "habitat": habitat,
        "scale": round(float(scale), 3),
        "x": round(float(centre[0]), 3),
        "y": round(float(centre[1]), 3),
        "angle": round(float(np.degrees(angle)), 1),
        "flip": flip,
        "clutter": n_clutter,
        "occluded": bool(occluded),
    }
    return Scene(canvas, elements, attrs)
