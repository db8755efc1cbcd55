"""A tiny DomainBed-layout image folder of drawn shapes, for tests that buy embeddings of real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
DOMAINS = ("photo", "sketch")


def make_dataset(root: Path, per_class: int) -> Path:
    """``root/<domain>/<class>/<n>.png``: two domains of small, distinct drawings."""
    rng = np.random.default_rng(0)
    for domain in DOMAINS:
        for cls in CLASSES:
            folder = root / domain / cls
            folder.mkdir(parents=True)
            for n in range(per_class):
                img = Image.new("RGB", (48, 48), tuple(int(c) for c in rng.integers(0, 255, 3)))
                x, y = (int(v) for v in rng.integers(4, 20, 2))
                shape = [x, y, x + 20, y + 20]
                draw = ImageDraw.Draw(img)
                fill = tuple(int(c) for c in rng.integers(0, 255, 3))
                if cls == "circle":
                    draw.ellipse(shape, fill=fill)
                elif cls == "square":
                    draw.rectangle(shape, fill=fill)
                else:
                    draw.polygon([(x, y + 20), (x + 10, y), (x + 20, y + 20)], fill=fill)
                img.save(folder / f"{n}.png")
    return root
