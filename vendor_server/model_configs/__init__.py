"""open_clip model configs of the vendor's own architectures (``vl2v-tiny``)."""

from __future__ import annotations

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).parent


def register_model_configs() -> None:
    """Make ``open_clip.create_model_and_transforms('vl2v-tiny', ...)`` know our configs (idempotent)."""
    open_clip.add_model_config(CONFIG_DIR)
