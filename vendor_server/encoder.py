"""The served model as two pure functions: images or texts in, L2-normalised float32 rows out.

The model applies its *own* preprocessing here, so clients send ordinary image files and never
need to know the vendor's resolution or normalisation. Preprocessing is a separate step
(:meth:`Encoder.prepare_image`, thread-safe) so the server runs it on its decoding pool, next to
the decoding, while the model thread is busy with the previous batch; :meth:`Encoder.encode_images`
takes prepared arrays (or images, prepared on the spot).

This class is the *torch* engine, the reference; :mod:`vendor_server.engines` has the others (ONNX
Runtime, OpenVINO) and picks one. On a GPU the forward runs under bf16 autocast; the weights stay float32 and
the revision is taken before they move, so it names the same weights on every device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vendor_server import models
from vendor_server.engines.pixels import PixelPipeline


class Encoder:
    """One loaded CLIP. Not thread-safe by design: the batcher calls it from a single worker thread
    (except :meth:`prepare_image`, which only reads the transform)."""

    #: what ``/v1/models`` says runs the forward pass
    engine = "torch"
    #: whether the torch forward runs under bf16 autocast on a GPU (an engine that only checks itself
    #: against torch wants the float32 reference)
    autocast_bf16 = True
    #: None: a forward takes the batch as it comes. N: every forward runs on exactly N rows (the last part
    #: padded with copies of its first row), so that a row's embedding does not depend on the batch it came
    #: in with: the kernels' arithmetic varies with the batch size (a row computed among 7 differs from the
    #: same row among 64 by up to ~1e-7), and a server's batches depend on its traffic
    fixed_batch: int | None = None

    def __init__(self, name: str, pretrained: str, seed: int = 0, device: str = "cpu"):
        self.name = name
        self.model, preprocess, self.tokenizer = models.create(name, pretrained, seed)
        self.revision = models.weights_revision(self.model)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.prepare_image = PixelPipeline(preprocess)
        size = self.model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        # what the model card states besides the dimension: how sharp its zero-shot logits are, and its size
        self.logit_scale = float(self.model.logit_scale.detach().exp()) if hasattr(self.model, "logit_scale") else None
        self.image_params = sum(p.numel() for p in self.model.visual.parameters())
        self._start()
        self.embed_dim = int(self.encode_texts(["warm-up"]).shape[1])

    @property
    def precision(self) -> str:
        """The forward's arithmetic, as ``/v1/models`` states it: bf16 autocast on a GPU, else float32."""
        return "bf16" if self.autocast_bf16 and self.device.type == "cuda" else "float32"

    def _start(self) -> None:
        """Where an engine builds its runtime, once the torch model is loaded (the torch engine has none)."""

    def encode_images(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """Rows for images, each a PIL image or :meth:`prepare_image`'s array; stacked in one copy."""
        pixels = np.stack([img if isinstance(img, np.ndarray) else self.prepare_image(img) for img in images])
        return self._in_batches(self.encode_pixels, pixels)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._in_batches(self.encode_tokens, self.tokenizer(list(texts)))

    def _in_batches(self, forward: Callable[[Any], np.ndarray], batch: Any) -> np.ndarray:
        """``forward(batch)``, or with :attr:`fixed_batch` set, ``forward`` on parts of exactly that many rows."""
        size, n = self.fixed_batch, len(batch)
        if size is None or n == 0:
            return forward(batch)
        parts = []
        for start in range(0, n, size):
            rows = list(range(start, min(start + size, n)))
            parts.append(forward(batch[rows + [start] * (size - len(rows))])[: len(rows)])
        return np.concatenate(parts)

    @torch.inference_mode()
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The image tower on a ``(N, 3, H, W)`` float32 batch."""
        with self._autocast():
            return _normalised(self.model.encode_image(torch.from_numpy(pixels).to(self.device, non_blocking=True)))

    @torch.inference_mode()
    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """The text tower on the tokenizer's ``(N, context)`` ids."""
        with self._autocast():
            return _normalised(self.model.encode_text(tokens.to(self.device)))

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16 and self.device.type == "cuda"
        )


def _normalised(features: torch.Tensor) -> np.ndarray:
    return F.normalize(features.float(), dim=-1).cpu().numpy()
