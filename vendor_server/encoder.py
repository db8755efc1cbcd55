"""The served model as two pure functions: images (PIL) or texts in, L2-normalised float32 rows out.

The model applies its *own* preprocessing here, so clients send ordinary image files and never
need to know the vendor's resolution or normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vendor_server import models


class Encoder:
    """One loaded CLIP. Not thread-safe by design: the batcher calls it from a single worker thread."""

    def __init__(self, name: str, pretrained: str, seed: int = 0):
        self.name = name
        self.model, self.preprocess, self.tokenizer = models.create(name, pretrained, seed)
        size = self.model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.embed_dim = int(self.encode_texts(["warm-up"]).shape[1])
        # what the model card states besides the dimension: how sharp its zero-shot logits are, and its size
        self.logit_scale = float(self.model.logit_scale.detach().exp()) if hasattr(self.model, "logit_scale") else None
        self.image_params = sum(p.numel() for p in self.model.visual.parameters())

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        pixels = torch.stack([self.preprocess(img) for img in images])
        return _normalised(self.model.encode_image(pixels))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return _normalised(self.model.encode_text(self.tokenizer(list(texts))))


def _normalised(features: torch.Tensor) -> np.ndarray:
    return F.normalize(features.float(), dim=-1).numpy().astype(np.float32, copy=False)
