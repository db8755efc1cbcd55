"""What every method shares: stages with explicit freezing, the teacher targets of a batch, the
zero-shot text head, and the two loss functions (cosine distillation and textbook KD).

A method is an ``nn.Module`` whose ``forward`` is the training loss of its current stage (so a DDP
wrapper sees the forward it must synchronise) and whose ``logits`` is its prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

BACKBONE, HEAD = "backbone", "head"


@dataclass(frozen=True)
class Stage:
    """One training stage: which parts get gradients and an optimizer, and whether it starts from the
    best checkpoint (by source-domain validation accuracy) of the stage before it."""

    name: str
    trains: frozenset[str]
    init_from_best: bool = False


@dataclass
class Targets:
    """The supervision of one batch: labels, and the teacher image embedding where one was bought.

    ``image`` rows are zero where ``has_image`` is False; losses must mask those rows, which is what
    makes a run with a budget of 0 image queries valid."""

    labels: torch.Tensor  # [B] int64
    image: torch.Tensor  # [B, D] float32, unit norm where has_image
    has_image: torch.Tensor  # [B] bool


#: CLIP's logit scale, used when the vendor does not state its model's own (OpenAI, Jina)
CLIP_LOGIT_SCALE = 100.0


class TextHead(nn.Module):
    """The VLM's zero-shot classifier: ``s·cos(z, T_c)`` with zero bias, never trained (Predict).

    ``s`` is the teacher's own logit scale (``/v1/models`` states it; CLIP's is 100), as the paper's
    code builds the head from CLIP's ``logit_scale``. It does not change a prediction, but it sets the
    sharpness of the probabilities that KD distils and of the validation loss SWAD watches."""

    def __init__(self, text_embeddings: torch.Tensor, scale: float = CLIP_LOGIT_SCALE):
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("weight", F.normalize(text_embeddings.float(), dim=-1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z.float(), dim=-1) @ self.weight.T


def cosine_distill_loss(
    z: torch.Tensor, text_targets: torch.Tensor, image_targets: torch.Tensor, has_image: torch.Tensor, lam: float
) -> torch.Tensor:
    """ADiP/SD loss, per image ``λ·(−cos(z, I^t)) + (1−λ)·(−cos(z, T_y))``, averaged over the batch.

    With every image embedded and λ = 0.5 this is the paper's ``−(1/2n) Σ [cos(z,T_y) + cos(z,I^t)]``.
    An image without a bought embedding contributes only its text term (budget-aware training)."""
    z = F.normalize(z.float(), dim=-1)
    text_term = -(z * F.normalize(text_targets.float(), dim=-1)).sum(-1)
    image_term = -(z * F.normalize(image_targets.float(), dim=-1)).sum(-1) * has_image.float()
    return (lam * image_term + (1.0 - lam) * text_term).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    has_image: torch.Tensor,
    tau: float,
    alpha: float,
) -> torch.Tensor:
    """Textbook KD (Hinton et al.), per image ``(1−α)·CE(s, y) + α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ))``,
    averaged over the batch; an image without a teacher embedding has no teacher logits and gets CE only.
    The teacher logits are at the teacher's own scale (:class:`TextHead`), τ on top of it.

    Unlike the official code's KD (τ = 0.1, probabilities passed to ``kl_div``), this is a true KL."""
    s = student_logits.float()
    ce = F.cross_entropy(s, labels, reduction="none")
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    log_p_s = F.log_softmax(s / tau, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return ((1.0 - alpha) * ce + alpha * tau**2 * kl * has_image.float()).mean()


class Method(nn.Module):
    """Base of every method. A method is one subclass, registered with ``@register_method``
    (:mod:`client_distill.methods.registry`), that declares:

    - ``name``: what runs, sweeps and the command line call it (its own, not inherited);
    - ``stages``: what each stage trains (``()``: nothing, the teacher itself);
    - ``hparam_defaults``: the hparams that make it what it is (an ablation's λ), over the registry's
      defaults (:func:`client_distill.train.hparams.resolve_hparams`);
    - ``export_head``: how ``vl2v export`` folds it into one classifier: ``"text"``, the student, its
      head and the zero-shot text head ``s·cos(z, T_c)`` (which also takes other classes' prompts,
      ``--classes``); ``"linear"``, the student and its linear head; None, nothing to export;
    - the flags below, and ``build_head``, ``loss``, ``logits``."""

    name: ClassVar[str]
    stages: ClassVar[tuple[Stage, ...]]
    hparam_defaults: ClassVar[Mapping[str, Any]] = {}
    export_head: ClassVar[Literal["text", "linear"] | None] = None
    needs_text: ClassVar[bool] = True  # needs the teacher's class text embeddings
    needs_student: ClassVar[bool] = True
    uses_teacher_images: ClassVar[bool] = True  # the training loss uses I^t (so online mode queries)
    learns_without_images: ClassVar[bool] = True  # has a loss term when no image embedding was bought
    needs_teacher_at_eval: ClassVar[bool] = False  # predicts from the teacher's image embeddings

    def __init__(
        self,
        *,
        student: nn.Module | None,
        text_embeddings: torch.Tensor | None,
        num_classes: int,
        hparams: dict[str, Any],
        logit_scale: float = CLIP_LOGIT_SCALE,
    ):
        super().__init__()
        self.student = student
        self.hparams = hparams
        self.num_classes = num_classes
        self.text_head = TextHead(text_embeddings, logit_scale) if text_embeddings is not None else None
        self.head = self.build_head()
        self.stage: Stage | None = None

    def build_head(self) -> nn.Module:
        return nn.Identity()

    def parts(self) -> dict[str, nn.Module]:
        return {BACKBONE: self.student, HEAD: self.head}

    def set_stage(self, stage: Stage) -> None:
        """Freeze everything the stage does not train (``requires_grad=False``; a frozen backbone also
        runs in eval mode under ``no_grad``)."""
        self.stage = stage
        for part_name, part in self.parts().items():
            if part is not None:
                part.requires_grad_(part_name in stage.trains)
        self.train(self.training)

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if mode and self.stage is not None and self.student is not None:
            if BACKBONE not in self.stage.trains:
                self.student.eval()
            elif self.hparams.get("freeze_bn", True) and hasattr(self.student, "freeze_bn"):
                self.student.freeze_bn()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        assert self.stage is not None, "set_stage first"
        return [p for name, part in self.parts().items() if name in self.stage.trains for p in part.parameters()]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Student features; without a graph when the stage does not train the backbone."""
        if self.stage is not None and BACKBONE in self.stage.trains:
            return self.student(x)
        with torch.no_grad():
            return self.student(x)

    def forward(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        return self.loss(x, targets)

    def loss(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, x: torch.Tensor | None, teacher_image: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError
