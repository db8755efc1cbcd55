"""Which CLIP the vendor serves: any open_clip model name or one of this project's architectures
(``vendor_server/model_configs``), and the ``--pretrained`` choice (open_clip tag, checkpoint file,
or ``none`` for random init); and the *revision* of the weights it serves (:func:`weights_revision`),
which ``/v1/models`` and every embeddings response report so that clients never mistake two sets of
weights published under one model name for the same model."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from vendor_server.errors import VendorCliError

if TYPE_CHECKING:
    import torch


def create(name: str, pretrained: str, seed: int = 0):
    """``(model, preprocess, tokenizer)`` for an open_clip model name, in eval mode on CPU.

    ``pretrained`` is an open_clip tag, a checkpoint path, or ``none``; a failure (unknown model,
    missing file, a tag that needs a download this machine can't do) is a user error. The weights
    are initialised from ``seed``, so ``none`` (random init) serves the same model after a restart."""
    import open_clip
    import torch

    from vendor_server.model_configs import register_model_configs

    register_model_configs()
    if not name.startswith("hf-hub:") and name not in open_clip.list_models():
        raise VendorCliError(f"unknown model {name!r}; try one of: vl2v-tiny, ViT-B-32, RN50, ...")
    source = None if pretrained.lower() == "none" else pretrained
    tags = open_clip.list_pretrained_tags_by_model(name)
    if source is not None and source not in tags and not Path(source).is_file():
        raise VendorCliError(
            f"--pretrained {pretrained!r} is neither a checkpoint file nor an open_clip tag of "
            f"{name} (tags: {', '.join(tags) or 'none'}; 'none' = random init)"
        )
    torch.manual_seed(seed)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=source)
    except (RuntimeError, ValueError, OSError) as exc:
        raise VendorCliError(f"cannot load {name} with pretrained={pretrained!r}: {exc}") from exc
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def weights_revision(model: torch.nn.Module) -> str:
    """The first 12 hex digits of a SHA-256 over the model's parameters and buffers (names, dtypes,
    shapes, bytes), computed once at start-up.

    A digest of what was *loaded*, not of where it came from: ``none`` (random init) gets a new
    revision whenever its ``--seed`` changes the weights; a retrained checkpoint at the
    same path, an open_clip tag whose upload changed and an ``hf-hub:`` model are all covered by
    the same rule, while a checkpoint re-saved with other metadata (optimizer state, step) keeps its
    revision. Hashing runs at ~1 GB/s, small next to loading the model."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]
