"""The method registry: ``@register_method("adip")`` on a class, ``create_method("adip", ...)`` to build one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from client_distill.errors import UsageError
from client_distill.methods.base import CLIP_LOGIT_SCALE
from client_distill.train.runspec import METHOD_NAMES

METHODS: dict[str, type] = {}
M = TypeVar("M", bound=type)


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make the method available to ``create_method`` and ``vl2v distill --method``."""

    def wrap(cls: M) -> M:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        if name not in METHOD_NAMES:
            raise ValueError(
                f"method {name!r} is missing from client_distill.train.runspec.METHOD_NAMES (the CLI's torch-free list)"
            )
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def method_class(name: str, has_text: bool = True) -> type:
    """The class registered as ``name``; a user error if unknown, or if it needs the teacher's text
    embeddings and ``has_text`` is False (checked before anything expensive is built)."""
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    if METHODS[name].needs_text and not has_text:
        raise UsageError(f"method {name!r} needs the teacher's class text embeddings: pass --teacher DIR")
    return METHODS[name]


def create_method(
    name: str,
    *,
    student: nn.Module | None,
    text_embeddings: torch.Tensor | None,
    num_classes: int,
    hparams: dict[str, Any],
    logit_scale: float = CLIP_LOGIT_SCALE,
):
    """Build method ``name`` around ``student`` (None for ``zero_shot``), with the teacher's class text
    embeddings ``[C, D]`` (None for methods that never use the teacher) and its logit scale."""
    cls = method_class(name, has_text=text_embeddings is not None)
    if cls.needs_student and student is None:
        raise UsageError(f"method {name!r} needs a student")
    return cls(
        student=student,
        text_embeddings=text_embeddings,
        num_classes=num_classes,
        hparams=hparams,
        logit_scale=logit_scale,
    )
