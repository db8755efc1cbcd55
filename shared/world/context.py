"""What usually comes with a class: its typical colours and the setting it is usually seen in.

Real domain-generalisation data is full of such correlations: giraffes are yellow and stand in savanna,
boats float on water, cups sit indoors. They hold in the renditions that show colour and a backdrop
(photos, paintings, cartoons) and vanish in those that do not (pencil sketches, studio product shots):
exactly the shortcuts a model fitted to the source domains learns and a new domain takes away. The world
draws an object's colour from its class's palette and its backdrop from its class's habitat with
probability :data:`TYPICAL`, and uniformly otherwise (a red elephant indoors happens, rarely).

A habitat is painted by the styles that draw a backdrop (:mod:`shared.world.styles`); captions may name
it ("a photo of a grey elephant in the savanna").

Each medium also has its own conventions (:func:`convention`): photos show a class with its own typical
look, while every other style draws it, as often, with the typical look of another class, fixed per style
(in this world's cartoons the elephant is usually the giraffe's yellow, in its savanna). Real media do
this too (a painted sky, a cartoon's palette, a sketch's missing backdrop), and it is what makes a domain
shift depend on the class: the images of one class move differently from one style to the next, so
class means taken from the source styles point at the wrong class in a new one, while the class's name,
whatever it is drawn like, does not move (the paper's Table A premise, E1 ≫ E3).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

#: how often an object takes its class's typical colour, and its scene its class's habitat
TYPICAL = 0.75


@dataclass(frozen=True)
class Habitat:
    """A backdrop: ground (hue, saturation, value ranges) under a sky, or a wall when ``sky`` is None."""

    name: str
    phrases: tuple[str, ...]
    ground: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    sky: bool = True
    horizon: tuple[float, float] = (0.5, 0.8)  # where the ground starts, as a fraction of the height


HABITATS: dict[str, Habitat] = {
    h.name: h
    for h in [
        Habitat("grassland", ("on grass", "in a meadow", "in a field"), ((0.24, 0.33), (0.45, 0.8), (0.35, 0.7))),
        Habitat("savanna", ("in the savanna", "on dry grass"), ((0.09, 0.13), (0.5, 0.8), (0.55, 0.85))),
        Habitat("sky", ("in the sky", "against the sky"), ((0.55, 0.62), (0.3, 0.6), (0.75, 1.0)), horizon=(0.92, 1.0)),
        Habitat("water", ("on the water", "in the sea"), ((0.5, 0.6), (0.55, 0.9), (0.35, 0.7)), horizon=(0.15, 0.45)),
        Habitat("snow", ("in the snow", "on snow"), ((0.55, 0.62), (0.0, 0.1), (0.88, 1.0))),
        Habitat("desert", ("in the desert", "on sand"), ((0.1, 0.14), (0.25, 0.45), (0.75, 0.95))),
        Habitat("street", ("on the street", "in town"), ((0.0, 1.0), (0.0, 0.08), (0.35, 0.6))),
        Habitat("indoors", ("indoors", "in a room"), ((0.03, 0.14), (0.15, 0.45), (0.45, 0.85)), sky=False),
    ]
}  # fmt: skip

#: each class's typical colours (names of :data:`shared.world.scene.COLOURS`) and habitat
TYPICAL_LOOK: dict[str, tuple[tuple[str, ...], str]] = {
    "circle": (("red", "blue"), "indoors"), "square": (("blue", "green"), "indoors"),
    "triangle": (("orange", "green"), "indoors"), "star": (("yellow", "orange"), "sky"),
    "heart": (("red", "pink"), "indoors"), "crescent": (("yellow", "white"), "sky"),
    "cross": (("red", "white"), "street"), "arrow": (("black", "red"), "street"),
    "diamond": (("blue", "teal"), "indoors"), "hexagon": (("yellow", "grey"), "indoors"),
    "lightning": (("yellow", "orange"), "sky"), "cloud": (("white", "grey"), "sky"),
    "droplet": (("blue", "teal"), "water"), "house": (("red", "brown", "white"), "street"),
    "tree": (("green", "brown"), "grassland"), "fish": (("orange", "yellow"), "water"),
    "car": (("red", "blue", "black"), "street"), "cup": (("white", "red"), "indoors"),
    "key": (("yellow", "grey"), "indoors"), "umbrella": (("black", "red", "purple"), "street"),
    "flower": (("pink", "purple", "yellow"), "grassland"), "boat": (("white", "red"), "water"),
    "bird": (("blue", "red", "yellow"), "sky"), "person": (("blue", "red", "green"), "street"),
    "guitar": (("brown", "orange"), "indoors"), "dog": (("brown", "black", "white"), "grassland"),
    "horse": (("brown", "black"), "grassland"), "elephant": (("grey",), "savanna"),
    "giraffe": (("yellow", "orange"), "savanna"), "sun": (("yellow", "orange"), "sky"),
    "apple": (("red", "green"), "indoors"), "mushroom": (("red", "brown"), "grassland"),
    "bottle": (("green", "teal"), "indoors"), "chair": (("brown", "black"), "indoors"),
    "table": (("brown",), "indoors"), "clock": (("white", "black"), "indoors"),
    "bell": (("yellow", "orange"), "indoors"), "candle": (("white", "red"), "indoors"),
    "rocket": (("white", "grey"), "sky"), "airplane": (("white", "grey"), "sky"),
    "light bulb": (("yellow", "white"), "indoors"), "hat": (("black", "brown"), "indoors"),
    "butterfly": (("orange", "blue", "purple"), "grassland"), "snowman": (("white",), "snow"),
    "leaf": (("green", "orange"), "grassland"), "cactus": (("green",), "desert"),
    "anchor": (("grey", "black"), "water"), "tent": (("orange", "green"), "grassland"),
}  # fmt: skip


@functools.cache
def convention(style: str) -> dict[str, str]:
    """Whose typical look each class takes in ``style``: its own in photos; in any other style, a
    derangement of the classes fixed by the style's name (no class keeps its own look)."""
    names = list(TYPICAL_LOOK)
    if style == "photo":
        return {name: name for name in names}
    rng = np.random.default_rng(zlib.crc32(style.encode()))
    while True:
        order = rng.permutation(len(names))
        if not np.any(order == np.arange(len(names))):
            return {name: names[j] for name, j in zip(names, order, strict=True)}


def draw_look(
    class_name: str, colours: list[str], rng: np.random.Generator, style: str = "photo"
) -> tuple[str, str, str]:
    """``(main colour, accent colour, habitat)`` of a fresh scene in ``style``: the typical colour and
    habitat of the class's look in that style (:func:`convention`) each with probability
    :data:`TYPICAL`, else uniform over ``colours`` / the habitats."""
    palette, habitat = TYPICAL_LOOK[convention(style)[class_name]]
    main = palette[rng.integers(len(palette))] if rng.random() < TYPICAL else colours[rng.integers(len(colours))]
    accent = colours[rng.integers(len(colours))]
    names = list(HABITATS)
    where = habitat if rng.random() < TYPICAL else names[rng.integers(len(names))]
    return main, accent, where
