"""The method registry: ``@register_method`` on a class makes it a method by its ``name``;
:func:`method_class` and :func:`create_method` find it. The first lookup imports every module of this
package (each registers its classes), so a method is one new module and nothing else."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import torch
from torch import nn

from client_distill.errors import UsageError
from client_distill.methods.base import CLIP_LOGIT_SCALE, Method

_METHODS: dict[str, type[Method]] = {}
_loaded = False
M = TypeVar("M", bound=type[Method])


def register_method(cls: M) -> M:
    """Class decorator: the method ``cls.name`` (declared in the class itself, not inherited), available
    to :func:`create_method`, ``vl2v distill --method`` and sweeps."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f'{cls.__qualname__} declares no `name = "..."` of its own to be registered under')
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method {name!r} registered twice")
    if not issubclass(cls, Method):
        raise TypeError(f"{cls.__qualname__} is not a Method")
    _METHODS[name] = cls
    return cls


def registered() -> list[str]:
    """The names registered so far, without loading anything (the catalog's run-time part)."""
    return list(_METHODS)


def methods() -> Mapping[str, type[Method]]:
    """Every registered method by name; the first call imports this package's modules."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            importlib.import_module(f"{__package__}.{module.name}")
        _loaded = True
    return MappingProxyType(_METHODS)


def method_class(name: str, has_text: bool = True) -> type[Method]:
    """The class registered as ``name``; a user error if unknown, or if it needs the teacher's text
    embeddings and ``has_text`` is False (checked before anything expensive is built)."""
    known = methods()
    if name not in known:
        raise UsageError(f"unknown method {name!r}; choose from {', '.join(sorted(known))}")
    if known[name].needs_text and not has_text:
        raise UsageError(f"method {name!r} needs the teacher's class text embeddings: pass --teacher DIR")
    return known[name]


def create_method(
    name: str,
    *,
    student: nn.Module | None,
    text_embeddings: torch.Tensor | None,
    num_classes: int,
    hparams: dict[str, Any],
    logit_scale: float = CLIP_LOGIT_SCALE,
) -> Method:
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
