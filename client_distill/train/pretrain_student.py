"""Pretrain a student on a corpus of the synthetic world: the project's ImageNet stand-in.

The paper's students start from ImageNet weights: supervised features from a broad corpus that already
carry over, imperfectly, to renditions the corpus hardly has (PACS's art, cartoons and sketches). The
default corpus here plays that part: every one of the world's 48 classes in ``photo`` and in the four
styles only the vendor's world has (pixel art, neon, blueprint, mosaic), and in **no** style a client
task holds out (art painting, cartoon, sketch, product). ``--styles photo`` gives the narrower
photo-only start (``vl2v-photo-resnet``), kept for comparison.

Images come from a pool rendered once per run (rendering is the slow part on two CPU cores) and are
augmented per step with ImageNet-style crops and flips, no colour or greyscale augmentation, as an
ImageNet model is trained. Every step's batch and augmentation are seeded by ``(seed, step)``, so a run
resumed from its partial state gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch import nn
from tqdm import tqdm

from client_distill.data.datasets import seed_hash
from client_distill.errors import UsageError
from client_distill.train.augment import BatchAugment, normalise
from client_distill.train.pretrain_student_config import PretrainConfig
from client_distill.train.run_folder import save_atomic
from client_distill.train.students import IMAGENET_MEAN, IMAGENET_STD, Student, save_student
from shared.world import CLASS_NAMES, CLIENT_STYLES, STYLE_NAMES, render
from shared.world.streams import Stream, stream_rng

#: rendering processes (rendering the photo pool and the test sets is a large part of a run)
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)


def corpus_words(seed: int, part: int, style: str, class_name: str, k: int) -> list[int]:
    """The seed words of image ``k`` of a (style, class) cell in the student's stream: ``part`` 0 is the
    training pool, 1 the test sets (so the two never share an image)."""
    return [seed, part, STYLE_NAMES.index(style), CLASS_NAMES.index(class_name), k]


def _render_one(job: tuple[str, str, list[int], int]) -> np.ndarray:
    cls, style, words, size = job
    img, _ = render(cls, style, stream_rng(Stream.STUDENT, *words), size=size)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _render_images(jobs: list[tuple[str, str, list[int]]], size: int, desc: str, workers: int) -> torch.Tensor:
    """Render ``(class, style, seed words in the student's stream)`` jobs into a ``[N, 3, size, size]`` uint8 tensor, in
    ``workers`` processes (each image has its own generator, so the result does not depend on them)."""
    tasks = [(cls, style, words, size) for cls, style, words in jobs]
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        images = pool.map(_render_one, tasks, chunksize=32) if pool else map(_render_one, tasks)
        arrays = list(tqdm(images, total=len(tasks), desc=desc, unit="img", leave=False))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def check_styles(styles: tuple[str, ...]) -> None:
    """Refuse an empty corpus or a style the world does not have."""
    unknown = [s for s in styles if s not in STYLE_NAMES]
    if not styles or unknown:
        raise UsageError(f"styles must be among {', '.join(STYLE_NAMES)}; got {', '.join(styles) or 'none'}")


def render_pool(config: PretrainConfig, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pool: ``pool_per_class`` images of every world class in every corpus style."""
    jobs = [
        (cls, style, corpus_words(config.seed, 0, style, cls, k))
        for style in config.styles
        for cls in CLASS_NAMES
        for k in range(config.pool_per_class)
    ]
    labels = torch.tensor(
        [c for _ in config.styles for c in range(len(CLASS_NAMES)) for _ in range(config.pool_per_class)]
    )
    return _render_images(jobs, config.size, f"rendering {'+'.join(config.styles)} pool", workers), labels


def evaluate_styles(student: Student, config: PretrainConfig, workers: int) -> dict[str, float]:
    """Accuracy of the pretraining classifier on fresh images of each corpus style (how well it
    learned) and of each client style the corpus lacks (how far its whole pipeline carries over)."""
    styles = list(config.styles) + [s for s in CLIENT_STYLES if s not in config.styles]
    labels = torch.tensor([c for c in range(len(CLASS_NAMES)) for _ in range(config.eval_per_class)])
    student.eval()
    accuracy = {}
    for style in styles:
        jobs = [
            (cls, style, corpus_words(config.seed, 1, style, cls, k))
            for cls in CLASS_NAMES
            for k in range(config.eval_per_class)
        ]
        images = normalise(
            _render_images(jobs, config.size, f"rendering {style} test set", workers).float() / 255,
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
        with torch.no_grad():
            logits = torch.cat([student.head_logits(student(chunk)) for chunk in images.split(256)])
        accuracy[style] = float((logits.argmax(1) == labels).float().mean())
    return accuracy


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine decay to zero."""
    warmup = max(1, total // 20)
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class _Run:
    """The mutable state of one pretraining run, saved as a whole for resuming."""

    def __init__(self, config: PretrainConfig) -> None:
        if not timm.is_model(config.arch):
            raise UsageError(f"unknown timm architecture {config.arch!r} (see timm.list_models())")
        check_styles(config.styles)
        torch.manual_seed(config.seed)
        body = timm.create_model(config.arch, pretrained=False, num_classes=0)
        self.student = Student(
            body,
            name=config.arch,
            arch=config.arch,
            feature_dim=body.num_features,
            input_size=config.size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
        self.classifier = nn.Linear(body.num_features, len(CLASS_NAMES))
        params = list(self.student.parameters()) + list(self.classifier.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: _lr_factor(step, config.steps))
        self.step = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "student": self.student.state_dict(),
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.student.load_state_dict(state["student"])
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def pretrain_student(
    out: str | Path,
    config: PretrainConfig | None = None,
    stop_after: int | None = None,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, Any] | None:
    """Train, save the student checkpoint to ``out`` (with its photo classifier as ``head``) and
    return its metadata. Partial state lives in ``<out>.partial/`` and is resumed from, then removed.

    ``stop_after`` ends this session once that many steps are done (and on Ctrl-C), keeping the
    partial state and returning None, so a long run can be split over several sessions.
    ``workers`` processes render images (the result does not depend on it). ``config`` None is the
    default :class:`PretrainConfig`.
    """
    config = config or PretrainConfig()
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    state_file, pool_file = work / "state.pt", work / "pool.pt"
    started = time.monotonic()
    run = _Run(config)
    work.mkdir(parents=True, exist_ok=True)
    pool = torch.load(pool_file, weights_only=True) if pool_file.is_file() else None
    if pool is not None and pool["config"] != _plain(config):
        raise UsageError(f"{work} holds a partial run with other settings; delete it or rerun with the same settings")
    if pool is None:
        images, labels = render_pool(config, workers)
        pool = {"config": _plain(config), "images": images, "labels": labels}
        save_atomic(pool, pool_file)
    if state_file.is_file():
        run.load_state_dict(torch.load(state_file, weights_only=True))

    last = config.steps if stop_after is None else min(stop_after, config.steps)
    try:
        _train(run, pool, config, last, state_file)
    finally:
        save_atomic(run.state_dict(), state_file)
    if run.step < config.steps:
        return None

    head = {
        "classes": list(CLASS_NAMES),
        "weight": run.classifier.weight.detach(),
        "bias": run.classifier.bias.detach(),
    }
    run.student.head = head
    accuracy = evaluate_styles(run.student, config, workers)
    meta = {
        "config": _plain(config),
        "style_accuracy": accuracy,
        "seconds_last_session": round(time.monotonic() - started, 1),
    }
    save_student(run.student, out, head=head, meta=meta)
    shutil.rmtree(work)
    return meta


def _plain(config: PretrainConfig) -> dict[str, Any]:
    """The config as JSON-like data (tuples as lists), as it is stored and compared."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _train(run: _Run, pool: dict[str, Any], config: PretrainConfig, last: int, state_file: Path) -> None:
    """Steps ``run.step .. last - 1``, saving to ``state_file`` every ``save_every`` steps; the batch
    and augmentation of a step depend only on ``(seed, step)``, which is what makes resuming exact."""
    augment = BatchAugment(config.size, IMAGENET_MEAN, IMAGENET_STD, scale=(0.5, 1.0), jitter=0.0, grayscale_p=0.0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    run.student.train()
    run.student.to(memory_format=torch.channels_last)
    with tqdm(total=config.steps, initial=run.step, desc=f"pretraining {config.arch}", unit="step") as bar:
        while run.step < last:
            generator = torch.Generator().manual_seed(seed_hash(config.seed, run.step))
            index = torch.randint(len(pool["labels"]), (config.batch_size,), generator=generator)
            x = augment(pool["images"][index], generator).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(run.classifier(run.student(x)), pool["labels"][index])
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            run.scheduler.step()
            run.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
            if run.step % config.save_every == 0:
                save_atomic(run.state_dict(), state_file)
