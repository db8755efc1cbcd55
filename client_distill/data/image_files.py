"""An image file as the student sees it, without torch: the one decoding that training, evaluation
(:mod:`client_distill.data.image_store`) and prediction from an ONNX export (:mod:`client_distill.deploy.predict`,
which must not import torch) share, so an export classifies exactly the pixels its run was scored on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def decode(path: str | Path, size: int) -> np.ndarray:
    """One image file as ``[size, size, 3]`` uint8 RGB (the whole image; antialiased bilinear resize when needed)."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(rgb, dtype=np.uint8)
