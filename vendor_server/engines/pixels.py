"""The model's own image preprocessing as a function from a decoded image to a ready ``(3, H, W)``
float32 array, cheap enough to run on the decoding pool instead of the model thread.

open_clip's transform is a torchvision ``Compose``: geometry on the PIL image (resize, crop, mode),
then ``ToTensor`` and ``Normalize``. The geometry steps are kept as they are (the same PIL calls); the
last two are done here in NumPy, the same float32 operations in the same order (divide by 255, subtract
the mean, divide by the standard deviation), because torch's element-wise kernels start an OpenMP team
per calling thread: on the decoding threads they would fight the forward pass for the cores. A
transform of any other shape is used whole, through torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from torchvision import transforms as T

_TO_TENSOR = ("ToTensor", "MaybeToTensor")


class PixelPipeline:
    """``pipeline(image)`` → the model's input for one image, C-contiguous float32 ``(3, H, W)``."""

    def __init__(self, preprocess: Callable[[Image.Image], Any]):
        self._whole = preprocess
        steps = list(getattr(preprocess, "transforms", ()))
        names = [type(step).__name__ for step in steps]
        self._geometry: list[Callable[[Image.Image], Image.Image]] | None = None
        if len(steps) >= 2 and names[-2] in _TO_TENSOR and isinstance(steps[-1], T.Normalize):
            norm = steps[-1]
            self._geometry = steps[:-2]
            self._mean = np.asarray(norm.mean, dtype=np.float32).reshape(3, 1, 1)
            self._std = np.asarray(norm.std, dtype=np.float32).reshape(3, 1, 1)

    @property
    def vectorised(self) -> bool:
        """Whether the NumPy path is in use (False: the whole transform runs through torch)."""
        return self._geometry is not None

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self._geometry is None:
            return np.ascontiguousarray(self._whole(image).numpy(), dtype=np.float32)
        for step in self._geometry:
            image = step(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.empty((3, image.height, image.width), dtype=np.float32)
        np.divide(np.asarray(image).transpose(2, 0, 1), np.float32(255), out=pixels)
        pixels -= self._mean
        pixels /= self._std
        return pixels
