"""Settings of ``vl2v pretrain-student``, kept apart from the training code so that building the
command line (every ``vl2v`` call does it) never imports torch or timm."""

from __future__ import annotations

from dataclasses import dataclass

#: default backbone: timm's ResNet-10-T (4.9 M parameters, 512-d features) is the smallest timm
#: ResNet, trains fastest on CPU and, saved in fp16 (9.8 MB), fits the 20 MB budget of a committed
#: checkpoint that ResNet-18 (22 MB in fp16) would exceed
DEFAULT_ARCH = "resnet10t"


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the result; a partial run resumes only under the same config."""

    arch: str = DEFAULT_ARCH
    steps: int = 500
    batch_size: int = 64
    size: int = 64
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 0.05
    pool_per_class: int = 120
    eval_per_class: int = 20
    save_every: int = 50
