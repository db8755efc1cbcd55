"""The client's configuration: one pydantic-settings object filled from ``VL2V_*`` environment variables.

``vl2v`` builds one :class:`ClientSettings` when it builds its parser and uses it as the defaults of
the flags that override it (``--vendor``, ``--vendor-url``, ``--api-key``, ``--model``, ``--cache``),
so a shell, a container and a sweep's child processes (which inherit the environment) configure the
client alike, and every variable is read in one place.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client_distill.adapters.registry import ADAPTERS
from client_distill.errors import UsageError


class ClientSettings(BaseSettings):
    """What the environment may set; each field is ``VL2V_<FIELD>`` (e.g. ``VL2V_VENDOR_URL``)."""

    # extra="ignore": the vendor's VL2V_VENDOR_* variables share the prefix and are not ours
    model_config = SettingsConfigDict(env_prefix="VL2V_", extra="ignore")

    #: the vendor's API flavour: a name in :data:`~client_distill.adapters.registry.ADAPTERS`
    vendor: str = "vl2v"
    vendor_url: str | None = None
    api_key: str | None = None
    #: the vendor's model id; ``None`` = the vendor's first
    model: str | None = None
    #: the embedding cache (and query ledger) folder; ``~`` is expanded where it is opened
    cache: Path = Path("~/.cache/vl2v/embeddings")

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, name: str) -> str:
        if name not in ADAPTERS:
            raise ValueError(f"not a known vendor (choose one of {', '.join(sorted(ADAPTERS))})")
        return name


def load_settings() -> ClientSettings:
    """The settings of this process's environment. A bad ``VL2V_*`` value is the user's mistake, so it
    comes out as one line naming the variable, its value and what was wrong, not as pydantic's
    multi-line report."""
    try:
        return ClientSettings()
    except ValidationError as exc:
        prefix = ClientSettings.model_config["env_prefix"]
        problems = "; ".join(
            f"{prefix}{str(err['loc'][0]).upper()}={err['input']!r}: {err['msg']}" for err in exc.errors()
        )
        raise UsageError(f"invalid setting {problems}") from None
