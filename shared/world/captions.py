"""Captions for the vendor's corpus: varied templates naming the class, the style and what is visible
(colour, size, position, clutter), with synonyms, so text supervision is rich but never a fixed label."""

from __future__ import annotations

import numpy as np

from shared.world.context import HABITATS
from shared.world.styles import STYLES

#: how a caption may call each style (the first is the canonical phrase)
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of", "a photograph of", "a picture of", "a snapshot of", "a real photo of"),
    "art_painting": (
        "a painting of",
        "an oil painting of",
        "an artwork of",
        "a painted picture of",
        "a canvas showing",
    ),
    "cartoon": (
        "a cartoon of",
        "a cartoon drawing of",
        "a clipart of",
        "a cartoon illustration of",
        "a comic drawing of",
    ),
    "sketch": ("a sketch of", "a pencil sketch of", "a pencil drawing of", "a line drawing of", "a doodle of"),
    "product": ("a product photo of", "a studio photo of", "a catalogue image of", "a product shot of"),
    "pixel_art": ("pixel art of", "a pixelated image of", "an 8-bit sprite of", "a retro game sprite of"),
    "neon": ("a neon sign of", "a glowing neon drawing of", "neon lights shaped like", "a neon outline of"),
    "blueprint": ("a blueprint of", "a technical drawing of", "a schematic of", "a blueprint drawing of"),
    "mosaic": ("a mosaic of", "a tile mosaic of", "a mosaic picture of", "a tiled artwork of"),
}

#: the style said after the noun ("a red fish, painted in oil")
STYLE_POSTFIX: dict[str, str] = {
    "photo": "in a photo",
    "art_painting": "painted in oil",
    "cartoon": "drawn as a cartoon",
    "sketch": "sketched in pencil",
    "product": "in a product shot",
    "pixel_art": "in pixel art",
    "neon": "in neon lights",
    "blueprint": "drawn as a blueprint",
    "mosaic": "made of mosaic tiles",
}

#: other names a caption may use for a class (the class name itself stays the most frequent, so the
#: zero-shot prompt "a photo of a {class}" is in-distribution; a synonym is said in 1 caption out of 4)
CLASS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "square": ("box shape",), "star": ("star shape",), "heart": ("heart shape",), "crescent": ("crescent moon",),
    "arrow": ("pointer",), "droplet": ("water drop", "raindrop"), "lightning": ("lightning bolt",),
    "house": ("home", "cottage"), "tree": ("oak tree",), "fish": ("goldfish",), "car": ("automobile", "motor car"),
    "cup": ("mug", "teacup"), "flower": ("blossom", "daisy"), "boat": ("sailboat", "ship"), "bird": ("songbird",),
    "person": ("human", "man", "woman"), "guitar": ("acoustic guitar",), "dog": ("puppy", "hound"),
    "horse": ("pony", "stallion"), "elephant": ("jumbo",), "giraffe": ("tall giraffe",), "bottle": ("flask",),
    "chair": ("seat",), "clock": ("wall clock",), "candle": ("taper",), "rocket": ("spaceship",),
    "airplane": ("aeroplane", "plane", "jet"), "light bulb": ("lightbulb", "lamp bulb"), "hat": ("top hat",),
    "snowman": ("snow man",), "anchor": ("ship anchor",), "tent": ("camping tent",), "sun": ("sunshine",),
}  # fmt: skip

_SIZES = {"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")}
_PLACES = {"left": ("on the left", "at the left side"), "right": ("on the right", "at the right side")}


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


#: how often a caption names the object's colour and its habitat, where the style shows them
COLOUR_SAID, HABITAT_SAID = 0.6, 0.3


def caption(class_name: str, style: str, attrs: dict, rng: np.random.Generator, context: float | None = None) -> str:
    """One caption for an image of ``class_name`` in ``style`` with attributes ``attrs`` (as
    returned by :func:`shared.world.render`), e.g. ``"a pencil sketch of a small fish on the left"``.
    ``context``: how often it names the colour and the habitat where they show, instead of
    :data:`COLOUR_SAID` and :data:`HABITAT_SAID` (a corpus whose captions describe the context more, so the
    teacher's image embedding must carry it; the random draws stay the same either way)."""
    synonyms = CLASS_SYNONYMS.get(class_name, ())
    name = synonyms[rng.integers(len(synonyms))] if synonyms and rng.random() < 0.25 else class_name
    phrases = STYLE_PHRASES[style]
    lead = phrases[rng.integers(len(phrases))]
    adjectives = []
    size = "small" if attrs["scale"] < 0.6 else "large" if attrs["scale"] > 0.78 else None
    if size and rng.random() < 0.5:
        adjectives.append(_SIZES[size][rng.integers(3)])
    if STYLES[style].shows_colour and rng.random() < (COLOUR_SAID if context is None else context):
        adjectives.append(attrs["colour"])
    noun = _article(" ".join([*adjectives, name]))
    extras = []
    side = "left" if attrs["x"] < 0.4 else "right" if attrs["x"] > 0.6 else None
    if side and rng.random() < 0.3:
        extras.append(_PLACES[side][rng.integers(2)])
    if STYLES[style].shows_habitat and rng.random() < (HABITAT_SAID if context is None else context):
        phrases = HABITATS[attrs["habitat"]].phrases
        extras.append(phrases[rng.integers(len(phrases))])
    if attrs["occluded"] and rng.random() < 0.4:
        extras.append("partly hidden")
    if attrs["clutter"] and rng.random() < 0.2:
        extras.append("among clutter")
    form = rng.integers(4)
    if form == 1:
        text = f"{noun} {STYLE_POSTFIX[style]}"
    elif form == 2:
        text = f"this is {lead} {noun}"
    else:
        text = f"{lead} {noun}"
    return " ".join([text, *extras])
