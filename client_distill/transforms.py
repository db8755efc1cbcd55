"""Image transforms for students: the paper's (DomainBed's) training augmentation and a plain eval
resize, both normalised with the student's own mean/std so a student always sees the statistics
it was pretrained with."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T


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


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Evaluation: resize the whole image to ``size``×``size`` (as DomainBed, no crop), normalise."""
    return T.Compose([T.Resize((size, size), antialias=True), T.ToTensor(), T.Normalize(mean, std)])
