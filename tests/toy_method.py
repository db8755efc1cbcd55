"""A method that exists only in this file, to show that a new method is one new file: the student, a
projection into the teacher's space and the zero-shot text head, trained end to end with cross-entropy
on the text head's logits (the class prompts are its only teacher signal). Importing this module
registers it; nothing else in the client names it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from client_distill.methods.base import BACKBONE, HEAD, Method, Stage, Targets
from client_distill.methods.registry import register_method


@register_method
class TextHeadCrossEntropy(Method):
    name = "toy_text_ce"
    stages = (Stage("train", frozenset({BACKBONE, HEAD})),)
    hparam_defaults = {"freeze_bn": False}  # what makes it itself: BatchNorm trains
    export_head = "text"
    uses_teacher_images = False

    def build_head(self) -> nn.Module:
        return nn.Linear(self.student.feature_dim, self.text_head.weight.shape[1])

    def loss(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        return F.cross_entropy(self.text_head(self.head(self.features(x))).float(), targets.labels)

    def logits(self, x: torch.Tensor | None, teacher_image: torch.Tensor | None = None) -> torch.Tensor:
        return self.text_head(self.head(self.student(x)))
