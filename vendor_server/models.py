"""Which CLIP the vendor serves: any open_clip model name or one of this project's architectures
(``vendor_server/model_configs``), and the ``--pretrained`` choice (open_clip tag, checkpoint file,
or ``none`` for random init)."""

from __future__ import annotations

from pathlib import Path

from vendor_server.errors import VendorCliError


def create(name: str, pretrained: str):
    """``(model, preprocess, tokenizer)`` for an open_clip model name, in eval mode on CPU.

    ``pretrained`` is an open_clip tag, a checkpoint path, or ``none``; a failure (unknown model,
    missing file, a tag that needs a download this machine can't do) is a user error."""
    import open_clip

    from vendor_server.model_configs import register_model_configs

    register_model_configs()
    if not name.startswith("hf-hub:") and name not in open_clip.list_models():
        raise VendorCliError(f"unknown model {name!r}; try one of: vl2v-tiny, ViT-B-32, RN50, ...")
    source = None if pretrained.lower() == "none" else pretrained
    tags = open_clip.list_pretrained_tags_by_model(name)
    if source is not None and source not in tags and not Path(source).is_file():
        raise VendorCliError(f"--pretrained {pretrained!r} is neither a checkpoint file nor an open_clip tag of "
                             f"{name} (tags: {', '.join(tags) or 'none'}; 'none' = random init)")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=source)
    except (RuntimeError, ValueError, OSError) as exc:
        raise VendorCliError(f"cannot load {name} with pretrained={pretrained!r}: {exc}") from exc
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)

