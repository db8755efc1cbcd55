"""The white-box student of VL2V-SD: the teacher's own open_clip image tower, loaded from local files.

Only a client that has been given the teacher's weights can run SD; the student name
``openclip:CONFIG.json:CHECKPOINT.pt`` names the open_clip model config and the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import open_clip

from client_distill.errors import UsageError
from client_distill.students import Student

PREFIX = "openclip:"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def is_clip_tower(name: str) -> bool:
    return name.startswith(PREFIX)


def load_clip_image_tower(name: str, pretrained: bool = True) -> Student:
    """``openclip:CONFIG.json:CHECKPOINT`` → a :class:`Student` whose features are the tower's output
    embedding (after its projection, so already in the teacher's space: ``feature_dim`` = embed dim)."""
    try:
        config, checkpoint = name[len(PREFIX) :].split(":", 1)
    except ValueError:
        raise UsageError(f"white-box student must be {PREFIX}CONFIG.json:CHECKPOINT, got {name!r}") from None
    for path in (config, checkpoint):
        if not Path(path).is_file():
            raise UsageError(f"white-box student: {path} does not exist")
    open_clip.add_model_config(config)
    model = open_clip.create_model(Path(config).stem, pretrained=checkpoint if pretrained else None)
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    size = visual.image_size
    return Student(
        visual,
        name=name,
        arch=f"{PREFIX}{Path(config).stem}",
        feature_dim=int(visual.output_dim),
        input_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        mean=cfg.get("mean", OPENAI_MEAN),
        std=cfg.get("std", OPENAI_STD),
    )
