"""The paper's (DomainBed's) training augmentation on one PIL image, as torchvision composes it: what
``vl2v embed`` draws the augmented views it buys with (:func:`seeded_view`). Training augments whole
batches of tensors instead (:mod:`client_distill.train.augment`, the same distributions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import to_pil_image

from client_distill.data.datasets import seed_hash


def train_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """DomainBed / VL2V-ADiP source-domain augmentation: RandomResizedCrop(scale 0.7–1), horizontal
    flip, ColorJitter(0.3, 0.3, 0.3, 0.3), RandomGrayscale(0.1), then normalisation."""
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.3, 0.3),
            T.RandomGrayscale(p=0.1),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def seeded_view(image: Image.Image, seed: int, path: str, view: int) -> Image.Image:
    """View ``view`` ≥ 1 of a bought image, the picture ``vl2v embed`` sends for it: the training
    augmentation at the image's shorter side, not normalised, drawn from ``seed_hash(seed, path,
    view)`` (the global RNG is left as it was). Embedding and training both call this, so a student
    trained on a bought view sees exactly the picture the teacher embedded."""
    augment = train_transform(min(image.size), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_hash(seed, path, view))
        return to_pil_image(augment(image).clamp(0, 1))
