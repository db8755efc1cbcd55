"""The baselines ADiP is compared with: the teacher's zero-shot classifier, ERM, linear probing,
LP-FT, and textbook logit KD (paper §3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from client_distill.methods.base import BACKBONE, HEAD, Method, Stage, Targets, kd_loss
from client_distill.methods.registry import register_method

FULL = frozenset({BACKBONE, HEAD})


class Classifier(Method):
    """A student with a linear classifier (F→C) trained with cross-entropy; the linear head predicts, and
    is what an export computes (KD's text head only teaches)."""

    export_head = "linear"
    needs_text = False
    uses_teacher_images = False

    def build_head(self) -> nn.Module:
        return nn.Linear(self.student.feature_dim, self.num_classes)

    def loss(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        return F.cross_entropy(self.head(self.features(x)).float(), targets.labels)

    def logits(self, x: torch.Tensor | None, teacher_image: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.student(x))


@register_method
class ERM(Classifier):
    """DomainBed ERM: full fine-tuning with a linear head."""

    name = "erm"
    stages = (Stage("train", FULL),)


@register_method
class LinearProbe(Classifier):
    """Linear probe: only the classifier on the frozen student."""

    name = "lp"
    stages = (Stage("probe", frozenset({HEAD})),)


@register_method
class LPFT(Classifier):
    """LP-FT (Kumar et al. 2022): a linear probe, then full fine-tuning from the best probe checkpoint."""

    name = "lp_ft"
    stages = (Stage("probe", frozenset({HEAD})), Stage("finetune", FULL, init_from_best=True))


@register_method
class KD(Classifier):
    """Textbook logit KD from the teacher's zero-shot classifier (teacher logits = s·cos(I^t, T_c) at its own scale s,
    computed from cached embeddings) into a student with a linear head; τ and α in the hparams."""

    name = "kd"
    needs_text = True
    uses_teacher_images = True
    stages = (Stage("train", FULL),)

    def loss(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        student_logits = self.head(self.features(x))
        teacher_logits = self.text_head(targets.image)
        hp = self.hparams
        return kd_loss(
            student_logits,
            teacher_logits,
            targets.labels,
            targets.has_image,
            float(hp["kd_tau"]),
            float(hp["kd_alpha"]),
        )


@register_method
class ZeroShot(Method):
    """The teacher itself: s·cos(I^t_x, T_c) from the teacher's embeddings of the evaluated images.
    Nothing is trained; the image queries it needs are evaluation queries, counted apart from the
    training budget."""

    name = "zero_shot"
    stages = ()
    needs_student = False
    uses_teacher_images = False
    needs_teacher_at_eval = True

    def parts(self) -> dict[str, nn.Module]:
        return {}

    def logits(self, x: torch.Tensor | None, teacher_image: torch.Tensor | None = None) -> torch.Tensor:
        return self.text_head(teacher_image)
