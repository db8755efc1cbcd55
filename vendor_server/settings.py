"""The vendor's configuration: one pydantic-settings object, filled from ``VL2V_VENDOR_*`` environment
variables and overridden by ``vl2v-vendor serve`` flags, so a container and a shell configure it alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vendor_server.errors import VendorCliError

#: the vendor's own pretrained checkpoint (produced by ``vl2v-vendor pretrain``), served by default
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "vl2v-tiny-synth.pt"
DEFAULT_MODEL = "vl2v-tiny"


class VendorSettings(BaseSettings):
    """Everything the service can be told. Limits exist so one client can't exhaust memory or CPU."""

    model_config = SettingsConfigDict(env_prefix="VL2V_VENDOR_", extra="ignore")

    model: str = DEFAULT_MODEL
    #: open_clip tag, checkpoint path, or ``none``; ``None`` = the default checkpoint if present
    pretrained: str | None = None
    #: seeds a random-init model (``--pretrained none``), so a restart serves the same weights
    seed: int = 0
    #: what runs the forward passes (vendor_server.engines): torch (the reference), onnx (ONNX Runtime),
    #: openvino (OpenVINO on the CPU, bf16 or float32, the faster measured), or auto: openvino on a CPU, torch
    #: on a GPU
    engine: Literal["auto", "torch", "onnx", "openvino"] = "auto"
    #: auto: the GPU when torch sees one (bf16 autocast for torch, the CUDA provider for onnx), else the CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: where the onnx and openvino engines keep their exports; unset: next to the weights file, else
    #: ~/.cache/vl2v-vendor/onnx
    engine_cache_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: a SQLite file (one vendor process), or a ``postgresql://`` URL (N processes share it); read from
    #: ``VL2V_VENDOR_DB``, or ``VL2V_DB`` (the name the deployment docs use), the first one set
    db: str = Field(
        "vl2v-vendor.sqlite3", validation_alias=AliasChoices("VL2V_VENDOR_DB", "VL2V_DB", "db"), min_length=1
    )
    #: NORMAL (WAL) survives kill -9 of the server; FULL also survives power loss, at ~6 ms per commit
    db_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    #: PostgreSQL: a vendor process silent for this long is taken for dead and its reservations are
    #: refunded (vendor_server.ledger.postgres); it renews its heartbeat every third of it
    db_lease_s: float = Field(30.0, ge=1)
    #: PostgreSQL: connections per vendor process
    db_pool_size: int = Field(10, ge=1)
    #: uvicorn worker processes on this host (more than 1 needs the PostgreSQL ledger)
    workers: int = Field(1, ge=1)
    #: enables ``/admin``; read from ``VL2V_ADMIN_TOKEN`` (no prefix: it is a secret, not a tuning knob)
    admin_token: str | None = Field(default=None, validation_alias=AliasChoices("VL2V_ADMIN_TOKEN", "admin_token"))

    max_items: int = Field(256, ge=1, description="input items per request")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=64)
    max_pixels: int = Field(4096 * 4096, ge=1, description="declared pixels of one image")
    max_request_pixels: int = Field(4 * 4096 * 4096, ge=1, description="declared pixels of all images in a request")
    # decoding is bounded per server too (vendor_server.decoding): threads, and pixels decoding or
    # held decoded at once (about 4 bytes each), waited for at most decode_wait_s before a 503
    decode_workers: int = Field(2, ge=1)
    decode_pixel_budget: int = Field(8 * 4096 * 4096, ge=1)
    decode_wait_s: float = Field(10.0, gt=0)
    max_text_length: int = Field(4096, ge=1, description="characters per text item")

    #: unset: chosen at start-up by timing the engine (vendor_server.engines.batch_size)
    max_batch_size: int | None = Field(None, ge=1, description="items per model forward pass")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a lone item waits for company")
    #: unset: a forward takes the batch as it comes; N: every forward runs on exactly N rows (padded), so an
    #: item's embedding is the same bits whatever it was batched with (vendor_server.encoder.Encoder.fixed_batch)
    fixed_batch: int | None = Field(None, ge=1, description="rows of every forward pass, for bit-reproducible rows")
    queue_limit: int = Field(2048, ge=1, description="admitted items in flight before 503")

    default_rate_limit: float = Field(50.0, gt=0, description="requests/s per key unless the key sets its own")
    price_per_query: float = Field(0.001, ge=0)
    #: 0 (the default): an image is one query whatever its size; N: ceil(pixels / N) queries
    pixels_per_query: int = Field(0, ge=0)
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)
    #: count the embedding-space cells each key's images reach, for the console's extraction coverage
    #: (vendor_server.console.coverage); 0 turns the counting off
    coverage: bool = True

    def ledger_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`vendor_server.ledger.open_ledger` these settings give ``db``."""
        return {
            "idempotency_ttl_s": self.idempotency_ttl_s,
            "synchronous": self.db_synchronous,
            "lease_s": self.db_lease_s,
            "pool_size": self.db_pool_size,
        }

    @field_validator("db", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:
        """A ``Path`` (as code that built settings before URLs were allowed passes) is its text."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _budgets_hold_a_request(self) -> VendorSettings:
        if self.decode_pixel_budget < self.max_request_pixels:
            raise ValueError(
                f"decode_pixel_budget ({self.decode_pixel_budget}) must be at least max_request_pixels "
                f"({self.max_request_pixels}), or a request within the limits could never be decoded"
            )
        return self

    def pretrained_source(self) -> str:
        """What to load: the explicit choice, else the vendor checkpoint for the default model, else none."""
        if self.pretrained:
            return self.pretrained
        if self.model == DEFAULT_MODEL and DEFAULT_WEIGHTS.exists():
            return str(DEFAULT_WEIGHTS)
        return "none"


def load_settings(**overrides: object) -> VendorSettings:
    """The settings for a command: the environment, then ``overrides`` (its flags).

    A bad ``VL2V_VENDOR_*`` value is the operator's mistake, so it comes out as one line naming the
    variable (or flag), its value and what was wrong, instead of pydantic's multi-line traceback."""
    try:
        return VendorSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_setting_name(err['loc'], overrides)}={err['input']!r}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        raise VendorCliError(f"invalid setting {problems}") from None


def _setting_name(loc: tuple, overrides: dict) -> str:
    field = str(loc[0])
    return (
        "--" + field.replace("_", "-")
        if field in overrides
        else VendorSettings.model_config["env_prefix"] + field.upper()
    )
