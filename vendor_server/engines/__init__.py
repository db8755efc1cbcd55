"""The engines that run the served model's forward passes, and which one a server uses.

``torch`` (:class:`vendor_server.encoder.Encoder`) is the reference; ``onnx``
(:class:`vendor_server.engines.onnx.OnnxEncoder`) runs an export of the same weights in ONNX Runtime,
checked against torch at start-up; ``openvino`` (:class:`vendor_server.engines.openvino.OpenVinoEncoder`)
compiles that export with OpenVINO for the CPU, in bf16 or float32, whichever is faster here of those
whose rows agree. ``auto`` (the default) is the fastest measured for the device: openvino on a CPU (served
1.1-3.7x infinity-emb on the three CPUs measured, the most where bf16 pays; docs/benchmarks.md), torch on
a GPU, and torch with a warning for a model whose export cannot be made or does not reproduce it. ``auto``
devices are the GPU when torch sees one, else the CPU. Imports are deferred so that importing this package
(the preprocessing, say) loads no runtime."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vendor_server.errors import VendorCliError

log = logging.getLogger("vl2v.vendor")

if TYPE_CHECKING:
    from vendor_server.encoder import Encoder
    from vendor_server.settings import VendorSettings

ENGINES = ("auto", "torch", "onnx", "openvino")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for a setting of :data:`DEVICES`; ``cuda`` without a GPU is the operator's error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise VendorCliError("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    return device


def resolve_engine(engine: str, device: str) -> str:
    """The engine of :data:`ENGINES` that runs on ``device`` (``cpu`` or ``cuda``): ``auto`` is openvino on
    a CPU and torch on a GPU (OpenVINO's GPU plugin is Intel's, not CUDA)."""
    if engine == "auto":
        return "openvino" if device == "cpu" else "torch"
    return engine


def open_encoder(settings: VendorSettings) -> Encoder:
    """The encoder ``settings`` ask for: its model, weights, engine and device, and its forward's batch
    (``fixed_batch``: set after loading, so the start-up checks run as every engine's do)."""
    encoder = _open(settings)
    encoder.fixed_batch = settings.fixed_batch
    return encoder


def _open(settings: VendorSettings) -> Encoder:
    from vendor_server.encoder import Encoder

    device = resolve_device(settings.device)
    engine = resolve_engine(settings.engine, device)
    args = (settings.model, settings.pretrained_source(), settings.seed, device)
    if engine == "torch":
        return Encoder(*args)
    from vendor_server.engines.onnx import OnnxEncoder
    from vendor_server.engines.openvino import OpenVinoEncoder

    cache = Path(settings.engine_cache_dir) if settings.engine_cache_dir else None
    try:
        return (OpenVinoEncoder if engine == "openvino" else OnnxEncoder)(*args, cache_dir=cache)
    except VendorCliError as exc:
        if settings.engine != "auto":
            raise
        # a model the exporter cannot take, or whose export does not reproduce it: auto serves it anyway
        log.warning("engine auto: %s; serving with torch instead", exc)
        return Encoder(*args)
