"""Settings of ``vl2v pretrain-student``, kept apart from the training code so that building the
command line (every ``vl2v`` call does it) never imports torch or timm."""

from __future__ import annotations

from dataclasses import dataclass

#: default backbone: a half-width ResNet-10-T (1.2 M parameters, registered with timm by
#: :mod:`client_distill.train.students`), cheap enough on two CPU cores for every method to converge
DEFAULT_ARCH = "resnet10t_half"
#: the ImageNet stand-in's corpus: photos plus the styles only the vendor's world has, and no style any
#: client task holds out; every one of the world's 48 classes
BROAD_STYLES = ("photo", "pixel_art", "neon", "blueprint", "mosaic")


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the result; a partial run resumes only under the same config."""

    arch: str = DEFAULT_ARCH
    styles: tuple[str, ...] = BROAD_STYLES
    steps: int = 3000
    batch_size: int = 128
    size: int = 64
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 0.05
    pool_per_class: int = 100  # images rendered per class and style
    eval_per_class: int = 20  # test images per class and style
    save_every: int = 50
