"""The one hparams registry of every distillation method (DomainBed style): each hparam declared once,
with its default, its valid range and what it means; then the deviations a method declares in its class
(``hparam_defaults``), per-dataset and named-profile deviations, then the user's overrides.

The defaults are the paper's (VL2V-ADiP code, ``hparams_registry``): Adam, one learning rate of 5e-5
for every method and every stage, weight decay 0, 32 images per *source domain* per step, 5001 steps
per stage (every stage as long as every other), a checkpoint every 200 steps, λ = 0.5, SWAD on.

Profiles exist because those defaults do not fit a tiny CPU setting: ``--profile synth`` shortens the
stages for the synthetic world on two cores (and halves the batch). A profile never sets a per-method
value; the learning rate a protocol uses is chosen per method by the same source-validation search
(:mod:`client_distill.sweep.search`). Every results record carries the resolved hparams.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client_distill.errors import UsageError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class HParam:
    """One hparam: its default, a test of valid values and that test in words, and what it does."""

    default: Any
    valid: Callable[[Any], bool]
    range: str
    doc: str


def _positive(default: float, doc: str) -> HParam:
    return HParam(default, lambda v: _is_number(v) and v > 0, "a number > 0", doc)


def _fraction(default: float, doc: str) -> HParam:
    return HParam(default, lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]", doc)


def _count(default: int, doc: str) -> HParam:
    return HParam(default, lambda v: _is_int(v) and v >= 1, "an integer ≥ 1", doc)


def _flag(default: bool, doc: str) -> HParam:
    return HParam(default, lambda v: isinstance(v, bool), "true or false", doc)


HPARAMS: dict[str, HParam] = {
    "lr": _positive(5e-5, "Adam learning rate of every stage (the paper: 5e-5 for every method and stage)"),
    "weight_decay": HParam(0.0, lambda v: _is_number(v) and v >= 0, "a number ≥ 0", "Adam weight decay"),
    "batch_per_domain": _count(32, "images per source domain per step, concatenated (not in total)"),
    "steps": _count(5001, "steps of every stage (ADiP's Align and Distill each as long as ERM's one stage)"),
    "checkpoint_freq": _count(
        200, "evaluate source validation, checkpoint and close a SWAD segment every this many steps"
    ),
    "test_batch": _count(128, "evaluation batch size"),
    "lambda": _fraction(0.5, "ADiP/SD: weight of the image term; 1 − λ weighs the text term"),
    "kd_tau": _positive(4.0, "KD temperature, applied to the teacher's own-scale logits and the student's"),
    "kd_alpha": _fraction(0.5, "KD: (1 − α)·CE + α·τ²·KL"),
    "freeze_bn": _flag(True, "BatchNorm stays in eval mode (the paper's ResNets)"),
    "swad": _flag(
        True, "SWAD in the final stage; the run then outputs SWAD's average (the paper's numbers are SWAD's)"
    ),
    "swad_n_converge": _count(3, "SWAD: evaluations the loss must not fall below the first for the window to start"),
    "swad_n_tolerance": _count(6, "SWAD: evaluations above the tolerance that end the window"),
    "swad_tolerance_ratio": HParam(
        0.3, lambda v: _is_number(v) and v >= 0, "a number ≥ 0", "SWAD: tolerance over the converged loss"
    ),
    "amp": _flag(True, "bf16 autocast where the hardware has bf16 (CUDA; CPUs with AMX or AVX-512 BF16), else fp32"),
}
DEFAULTS: dict[str, Any] = {name: h.default for name, h in HPARAMS.items()}

#: per-dataset deviations (DomainNet is trained longer in the paper)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "domain_net": {"steps": 15001, "checkpoint_freq": 1000, "test_batch": 64},
}

#: named settings for where the paper's recipe does not fit; the same for every method
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    # the synthetic world on two CPU cores: short stages (the images are 64 px and the student small),
    # 16 images per source domain, a checkpoint every 20 steps so SWAD's window has segments to choose
    # from. The lr here is only the fallback of a run outside a protocol: a protocol searches it per
    # method on source validation (client_distill.sweep.search).
    "synth": {"lr": 3e-4, "steps": 200, "checkpoint_freq": 20, "batch_per_domain": 16, "test_batch": 256},
    # end-to-end tests: a handful of steps
    "smoke": {"lr": 1e-3, "steps": 6, "checkpoint_freq": 3, "batch_per_domain": 4, "test_batch": 64, "swad": False},
}


def parse_overrides(text: str) -> dict[str, Any]:
    """``--hparams`` JSON → dict (a user error if it is not a JSON object)."""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--hparams is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise UsageError("--hparams must be a JSON object, e.g. '{\"lr\": 1e-4}'")
    return overrides


def method_defaults(method: str) -> dict[str, Any]:
    """What method ``method`` declares as its own hparams (its class's ``hparam_defaults``: what makes an
    ablation what it is), each a known hparam."""
    from client_distill.methods.registry import method_class  # torch: only once a run resolves its hparams

    declared = dict(method_class(method).hparam_defaults)
    unknown = sorted(set(declared) - set(HPARAMS))
    if unknown:
        raise UsageError(f"method {method!r} declares unknown hparam(s) {', '.join(unknown)}")
    return declared


def resolve_hparams(
    method: str, profile: str = "paper", dataset: str | None = None, overrides: dict[str, Any] | str | None = None
) -> dict[str, Any]:
    """DEFAULTS ← method ← dataset ← profile ← overrides (a dict or a JSON object string), checked."""
    if profile not in PROFILES:
        raise UsageError(f"unknown hparams profile {profile!r}; choose from {', '.join(PROFILES)}")
    if isinstance(overrides, str):
        overrides = parse_overrides(overrides)
    hp = {**DEFAULTS, **method_defaults(method), **DATASET_DEFAULTS.get(dataset or "", {}), **PROFILES[profile]}
    for key, value in (overrides or {}).items():
        if key not in HPARAMS:
            raise UsageError(f"unknown hparam {key!r}; known: {', '.join(sorted(HPARAMS))}")
        hp[key] = value
    check(hp)
    return hp


def check(hp: dict[str, Any]) -> None:
    """Refuse a value of the wrong type or out of range before a run starts (a negative lr or 0 steps
    would otherwise train nonsense or fail deep inside torch), naming the key. Strings are refused too,
    numeric-looking ones included: YAML 1.1 reads ``lr: 1e-4`` as the string "1e-4"."""
    for key, value in hp.items():
        spec = HPARAMS[key]
        if not spec.valid(value):
            hint = (
                " (YAML reads 1e-4 as a string: write 1.0e-4)"
                if isinstance(value, str) and _looks_numeric(value)
                else ""
            )
            raise UsageError(f"hparam {key!r} must be {spec.range}, got {value!r}{hint}")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
