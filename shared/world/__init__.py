"""The synthetic multi-style world: 48 drawn object families × 9 rendering styles, with captions.

It is the project's offline miniature of the paper's setting: the vendor's CLIP is pretrained on every
style, a student on ``photo`` only, and clients hold a few styles of a task (see :data:`TASKS`).
Everything is deterministic given the ``numpy`` generator passed in.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.world.captions import caption
from shared.world.classes import CLASS_NAMES
from shared.world.scene import compose
from shared.world.styles import STYLES
from shared.world.tasks import CLIENT_STYLES, TASKS, Task

STYLE_NAMES: tuple[str, ...] = tuple(STYLES)
#: rendering happens at this multiple of the requested size, then is downsampled (anti-aliasing)
SUPERSAMPLE = 2


def render(class_name: str, style: str, rng: np.random.Generator, size: int = 64) -> tuple[Image.Image, dict]:
    """One image of a fresh ``class_name`` member in ``style``: ``(RGB image size×size, attrs)``.
    ``attrs`` holds the nuisances drawn (colour, scale, position, angle, clutter, occlusion)."""
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class {class_name!r}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLE_NAMES)}")
    look = STYLES[style]
    scene = compose(class_name, rng, size * SUPERSAMPLE, clutter=look.clutter, centred=look.centred, style=style)
    img = look.paint(scene, rng).resize((size, size), Image.LANCZOS)
    return img, scene.attrs


__all__ = ["CLASS_NAMES", "STYLE_NAMES", "CLIENT_STYLES", "TASKS", "Task", "render", "caption"]
