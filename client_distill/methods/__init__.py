"""Distillation methods, one small class each, in one registry (``create_method(name, ...)``)."""

from client_distill.methods import adip, baselines  # noqa: F401  (registers the methods)
from client_distill.methods.base import Method, Stage, Targets, TextHead, cosine_distill_loss, kd_loss
from client_distill.methods.registry import METHODS, create_method, register_method

__all__ = [
    "METHODS",
    "Method",
    "Stage",
    "Targets",
    "TextHead",
    "cosine_distill_loss",
    "create_method",
    "kd_loss",
    "register_method",
]
