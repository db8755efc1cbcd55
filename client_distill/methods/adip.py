"""VL2V-ADiP (Align, Distill, Predict), its ablations, and VL2V-SD: the student's (projected)
embedding is regressed onto the teacher's image embedding and its class text embedding by cosine,
and classifies with the teacher's text embeddings (paper §2)."""

from __future__ import annotations

import torch
from torch import nn

from client_distill.methods.base import BACKBONE, HEAD, Method, Stage, Targets, cosine_distill_loss
from client_distill.methods.registry import register_method


class CosineDistillMethod(Method):
    """Shared by ADiP, its ablations and SD: ``z = head(f(x))``, loss = cosine_distill_loss, logits =
    s·cos(z, T_c) at the teacher's logit scale s (which is also what an export computes)."""

    export_head = "text"

    def loss(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        z = self.head(self.features(x))
        text_targets = self.text_head.weight[targets.labels]
        return cosine_distill_loss(z, text_targets, targets.image, targets.has_image, float(self.hparams["lambda"]))

    def logits(self, x: torch.Tensor | None, teacher_image: torch.Tensor | None = None) -> torch.Tensor:
        return self.text_head(self.head(self.student(x)))


@register_method
class ADiP(CosineDistillMethod):
    """Align trains only the projection P (F→D, with bias) on the frozen student; Distill starts from the
    best Align checkpoint and trains only the backbone behind the frozen P, with a fresh optimizer."""

    name = "adip"
    stages = (
        Stage("align", frozenset({HEAD})),
        Stage("distill", frozenset({BACKBONE}), init_from_best=True),
    )

    def build_head(self) -> nn.Module:
        return nn.Linear(self.student.feature_dim, self.text_head.weight.shape[1], bias=True)


@register_method
class ADiPImageOnly(ADiP):
    """Ablation: both stages with the image term only (λ = 1). With no bought
    image embedding it has no loss at all, so a budget of 0 is refused rather than reported as chance."""

    name = "adip_image_only"
    hparam_defaults = {"lambda": 1.0}
    learns_without_images = False


@register_method
class ADiPTextOnly(ADiP):
    """Ablation: both stages with the text term only (λ = 0); needs no image query at all."""

    name = "adip_text_only"
    hparam_defaults = {"lambda": 0.0}
    uses_teacher_images = False


@register_method
class ADiPJoint(ADiP):
    """Ablation ("without the Align stage", the code's DFC_PLAIN_6): one stage, P and backbone together."""

    name = "adip_joint"
    stages = (Stage("joint", frozenset({BACKBONE, HEAD})),)


@register_method
class SelfDistill(CosineDistillMethod):
    """VL2V-SD (white-box): the student *is* the teacher's image tower (its output is already in the
    teacher's space), fine-tuned whole with the ADiP loss; no projection head, no Align stage."""

    name = "sd"
    stages = (Stage("finetune", frozenset({BACKBONE})),)
