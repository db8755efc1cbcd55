"""The sweep config (YAML) as typed, validated models, without torch (``vl2v sweep --help`` stays fast).

Every key, with an example, is in ``docs/sweep-config.md``; ``vl2v sweep --help`` says the same in short.

``vendor`` and ``embed.vendor`` are :class:`~client_distill.buy.vendor.VendorConfig` (``vendor``,
``vendor_url``, ``api_key``, ``model``, ``concurrency``, ``batch_size``, ``retry_deadline``, ``cache``).
A config of an earlier version may still give them as ``vendor_args``, a list of the same settings as
``vl2v`` flags (``[--vendor-url, URL, --api-key, KEY]``); it is read into the typed fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from client_distill.buy.vendor import VendorConfig
from client_distill.errors import UsageError
from client_distill.methods.catalog import method_names
from client_distill.train.runspec import TEACHER_MODES, RunSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WithVendor(_Strict):
    """A section with a ``vendor`` field, which also takes the older ``vendor_args`` flag list."""

    vendor: VendorConfig = VendorConfig()

    @model_validator(mode="before")
    @classmethod
    def _vendor_args(cls, data: Any) -> Any:
        if isinstance(data, dict) and "vendor_args" in data:
            data = dict(data)
            if "vendor" in data:
                raise ValueError("give either `vendor` or `vendor_args` (its older spelling as flags), not both")
            argv = data.pop("vendor_args") or []
            if not isinstance(argv, list):
                raise ValueError("vendor_args is a list of vl2v vendor flags, e.g. [--vendor-url, URL]")
            data["vendor"] = VendorConfig.from_flags(argv)
        return data


class EmbedConfig(_WithVendor):
    """How the sweep buys its teacher sets (``vl2v embed``'s options; ``vendor``: whom from)."""

    strategy: Literal["random", "class_balanced", "kcenter", "uncertainty"] = "random"
    views: int = Field(1, ge=1)
    cache: str | None = None
    prompts: str | None = None
    student: str | None = None  # whose features kcenter and uncertainty use
    rounds: int = Field(4, ge=1)  # uncertainty's acquisition rounds

    def buyer(self) -> VendorConfig:
        """The vendor the sets are bought from, through ``cache`` where the section names one."""
        return self.vendor if self.cache is None else self.vendor.model_copy(update={"cache": self.cache})

    def identity(self) -> dict[str, Any]:
        """What of this section names a teacher set (with the set's domains, split, seed and queries):
        every setting but credentials, the vendor's as its public flags (as earlier versions named
        their sets, so that finished sets and runs keep their folders)."""
        return {
            "vendor_args": self.vendor.flags(),
            "strategy": self.strategy,
            "views": self.views,
            "cache": self.cache,
            "prompts": self.prompts,
            "student": self.student,
            # only where it changes what is bought, so that the sets of other strategies keep their folders
            **({"rounds": self.rounds} if self.strategy == "uncertainty" else {}),
        }


class SearchConfig(_Strict):
    """DomainBed's protocol: every method gets the same grid, each candidate runs on every target
    domain (``test_domains``) and seed listed here, and for each target a method keeps the candidate
    whose runs holding that target out have the best mean source-validation accuracy; every target of
    the protocol must be among these. Methods that buy images search at ``budget``."""

    grid: dict[str, list[Any]]
    seeds: list[int] = [0]
    test_domains: Literal["all"] | list[str] = "all"
    budget: float = Field(1.0, ge=0, le=1)

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid or any(not values for values in grid.values()):
            raise ValueError("the grid needs at least one hparam with at least one value")
        return grid


class DemoConfig(_Strict):
    """Settings of ``vl2v demo`` (the sweep itself ignores them)."""

    task: str = "synth-pacs"
    per_class: int = Field(40, ge=1)
    seed: int = 0
    key_budget: int = Field(100_000, ge=1)


class SweepConfig(_WithVendor):
    data: str
    dataset: str | None = None
    student: str = RunSpec.student
    pretrained: bool = True
    teacher: str | None = None
    teachers: dict[float, str] = {}
    methods: list[str]
    budgets: list[float] | None = None
    #: more points past the largest budget: every source image with this many views bought (view 0 the file,
    #: the others seeded augmentations), for methods that train on teacher images; needs ``embed``
    more_views: list[int] = []
    test_domains: Literal["all"] | list[str] = "all"
    seeds: list[int] = [0]
    profile: str = "paper"
    hparams: dict[str, Any] = {}
    search: SearchConfig | None = None
    searched: str | None = None
    teacher_modes: list[str] = ["cached"]
    online_methods: list[str] | None = None
    embed: EmbedConfig | None = None
    out: str
    demo: DemoConfig | None = None

    @field_validator("methods", "online_methods")
    @classmethod
    def _known_methods(cls, methods: list[str] | None) -> list[str] | None:
        known = method_names()
        unknown = [m for m in methods or [] if m not in known]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        return methods

    @field_validator("teacher_modes")
    @classmethod
    def _known_modes(cls, modes: list[str]) -> list[str]:
        if any(m not in TEACHER_MODES for m in modes):
            raise ValueError(f"teacher_modes must be among {TEACHER_MODES}")
        return modes

    @field_validator("budgets")
    @classmethod
    def _fractions(cls, budgets: list[float] | None) -> list[float] | None:
        if any(not 0 <= b <= 1 for b in budgets or []):
            raise ValueError("budgets are fractions in [0, 1]")
        return budgets

    @field_validator("more_views")
    @classmethod
    def _more_than_one(cls, views: list[int]) -> list[int]:
        if any(v < 2 for v in views):
            raise ValueError("more_views are numbers of views per image, each ≥ 2 (1 is the budgets' own)")
        return views

    @model_validator(mode="after")
    def _one_source_of_hparams(self) -> SweepConfig:
        if self.search is not None and self.searched is not None:
            raise ValueError("give either `search` (run it) or `searched` (use an earlier one's choice), not both")
        if self.more_views and self.embed is None:
            raise ValueError("more_views needs an `embed` section: the sweep buys those sets itself")
        return self


def _message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    return f"{where}: {first['msg']}" + (f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else "")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and check a sweep config; ``overrides`` (e.g. ``data``/``out`` chosen by ``vl2v demo``)
    replace the file's keys before the check."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read sweep config {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a sweep config is a YAML mapping")
    try:
        cfg = SweepConfig.model_validate({**raw, **(overrides or {})})
    except ValidationError as exc:
        raise UsageError(f"{path}: {_message(exc)}") from None
    if cfg.searched is not None and not Path(cfg.searched).is_absolute():
        cfg.searched = str(Path(path).resolve().parent / cfg.searched)
    return cfg
