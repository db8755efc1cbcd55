"""Decoded images as uint8 tensors, so that training and evaluation never touch PIL per step.

Every image is decoded once, converted to RGB and resized to the student's input size (DomainBed's
evaluation resize: the whole image, no crop), and kept as ``[N, 3, S, S]`` uint8. The synthetic
tasks fit easily (2,800 images of 64 px are 34 MB); a real dataset that would not fit in
``max_bytes`` is decoded per batch instead (:class:`LazyImages`), by a pool of threads (Pillow
releases the GIL while it decodes). Either way a batch is ``images[indices]``.

Training crops come from the resized image, not from the original file: for square datasets (PACS,
the synthetic world) that is the same picture; for others the crop's aspect ratio is relative to the
resized image.

:func:`png_bytes` is the client's one PNG encoder, for the pictures it sends to the vendor.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from client_distill.data.datasets import Sample
from client_distill.data.image_files import decode

#: decode everything up front when it takes at most this much memory (else per batch)
DEFAULT_MAX_BYTES = 4 * 2**30
DECODE_THREADS = 4


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    """``image`` as PNG: lossless, so a picture sent to the vendor is exactly the one trained on, and
    the same picture always gives the same bytes (the same cache key) at one ``compress_level`` (zlib's
    0-9; Pillow's default 6 names every teacher set bought so far, so it stays the default)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def pictures_tensor(pictures: Sequence[np.ndarray]) -> torch.Tensor:
    """``[H, W, 3]`` uint8 arrays → one ``[N, 3, H, W]`` uint8 tensor."""
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()


class LazyImages:
    """Images decoded when a batch asks for them."""

    def __init__(self, root: Path, samples: Sequence[Sample], size: int):
        self.paths = [Path(root) / s.path for s in samples]
        self.size = size
        self._pool = ThreadPoolExecutor(DECODE_THREADS)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return pictures_tensor(list(self._pool.map(lambda i: decode(self.paths[i], self.size), index.tolist())))


def load_images(
    root: str | Path, samples: Sequence[Sample], size: int, max_bytes: int = DEFAULT_MAX_BYTES, desc: str = "decoding"
) -> torch.Tensor | LazyImages:
    """The pictures of ``samples``: a ``[N, 3, size, size]`` uint8 tensor, or :class:`LazyImages` when
    that tensor would exceed ``max_bytes``. Both are indexed by a tensor of sample positions."""
    root = Path(root)
    if len(samples) * 3 * size * size > max_bytes:
        return LazyImages(root, samples, size)
    if not samples:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        pictures = list(
            tqdm(
                pool.map(lambda s: decode(root / s.path, size), samples),
                total=len(samples),
                desc=desc,
                unit="img",
                leave=False,
                disable=len(samples) < 2000,
            )
        )
    return pictures_tensor(pictures)
