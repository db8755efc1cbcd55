"""A tiny DomainBed-layout world for the distillation tests: coloured-square images in a few domains,
a teacher set of random unit text vectors with image vectors near their class's text vector, a small
timm student saved as a project checkpoint (32 px input, seeded random init), and a loopback stand-in
for the vendor in online mode."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import open_dataset
from client_distill.train.students import IMAGENET_MEAN, IMAGENET_STD, Student, save_student

DOMAINS = ("art", "photo", "sketch")
CLASSES = ("cat", "dog")
COLOURS = {"cat": (220, 40, 40), "dog": (40, 40, 220)}
BACKGROUNDS = {"art": (240, 220, 120), "photo": (128, 128, 128), "sketch": (255, 255, 255)}


def make_images(root: Path, per_class: int = 6, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for d in DOMAINS:
        for c in CLASSES:
            folder = root / d / c
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                img = np.zeros((size, size, 3), np.uint8) + np.array(BACKGROUNDS[d], np.uint8)
                x, y = rng.integers(0, size // 2, 2)
                img[y : y + size // 2, x : x + size // 2] = COLOURS[c]
                Image.fromarray(img).save(folder / f"{n}.png")
    return root


def make_teacher_set(
    data: Path, out: Path, dim: int = 16, fraction: float = 1.0, views: int = 1, seed: int = 0, meta: dict | None = None
) -> TeacherSet:
    """Text vectors: random unit vectors; image vectors: the class's text vector plus noise; ``meta``
    as `vl2v embed` writes it (its ``seed`` redraws views ≥ 1)."""
    rng = np.random.default_rng(seed)
    ds = open_dataset(data)
    text = rng.normal(size=(len(ds.classes), dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    images = {}
    for d in ds.domains:
        for s in ds.samples(d):
            if rng.random() < fraction:
                v = text[s.label] + 0.5 * rng.normal(size=(views, dim))
                images[s.path] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
    prompts = [[f"a photo of a {c}"] for c in ds.classes]
    ts = TeacherSet(
        classes=ds.classes, prompts=prompts, text_embeddings=text, image_embeddings=images, meta=dict(meta or {})
    )
    ts.save(out)
    return ts


def make_student(path: Path, arch: str = "resnet10t") -> Path:
    with torch.random.fork_rng(devices=[]):  # the same weights in every process (torch seeds itself randomly)
        torch.manual_seed(0)
        body = timm.create_model(arch, pretrained=False, num_classes=0)
    student = Student(
        body, name="tiny", arch=arch, feature_dim=body.num_features, input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    save_student(student, path)
    return path


def make_finished_runs(root: Path, runs: dict[str, tuple[str, dict]], per_class: int, **teacher: object) -> Path:
    """``root/runs/<name>``: each of ``runs`` (name → method, hparams) trained to the end with the
    smoke profile on a tiny world of ``per_class`` images per class and domain, sketch held out; the
    teacher set is :func:`make_teacher_set`'s with ``teacher``'s options."""
    from client_distill.train.run import RunSpec, run_distill

    data = make_images(root / "data", per_class=per_class)
    make_teacher_set(data, root / "teacher", **teacher)
    make_student(root / "student.pt", arch="resnet10t_half")
    for name, (method, hparams) in runs.items():
        spec = RunSpec(
            method=method,
            data=str(data),
            test_domain="sketch",
            teacher=str(root / "teacher"),
            student=str(root / "student.pt"),
            profile="smoke",
            hparams=hparams,
        )
        run_distill(spec, root / "runs" / name)
    return root


class LoopbackVendor:
    """Stands in for the vendor in online mode: a deterministic unit vector per distinct image; counts
    the images it was paid for and records their sizes."""

    def __init__(self, dim: int):
        self.dim, self.paid, self.sizes = dim, 0, set()

    def embed_images(self, images: list[bytes]) -> np.ndarray:
        self.paid += len(images)
        out = []
        for b in images:
            self.sizes.add(Image.open(io.BytesIO(b)).size)
            v = np.random.default_rng(int(hashlib.sha256(b).hexdigest()[:8], 16)).normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)
