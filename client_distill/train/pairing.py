"""Pairing a run's training inputs with the teacher embeddings bought for them.

- :func:`budget_keep` draws which source images a budget < 1 keeps (what buying that fraction costs);
- :class:`TeacherTable` holds one source domain's bought embeddings as tensors, by sample position;
- :class:`SourceBatches` makes each step's minibatch: ``batch_per_domain`` images of every source
  domain, drawn with replacement (DomainBed's infinite loaders), augmented as a batch
  (:class:`~client_distill.train.augment.BatchAugment`), with the embedding of the very picture each input
  shows. Everything random in a step comes from one generator seeded by the step, so a resumed run
  draws what an uninterrupted one would have.

Bought views: view 0 of an image is the file; a view ``k ≥ 1`` is the seeded augmentation that
``vl2v embed`` sent (:func:`~client_distill.data.transforms.seeded_view`). An input paired with view ``k ≥ 1``
*is* that picture, resized only; an input paired with view 0 (or with no embedding) is a fresh random
augmentation of the file, whose target is then the teacher's embedding of the clean image: the
budget-aware approximation of the official recipe, which pays for every augmented view (the online mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import Sample, seed_hash
from client_distill.data.image_store import LazyImages, pictures_tensor
from client_distill.data.transforms import seeded_view
from client_distill.errors import UsageError
from client_distill.train.augment import BatchAugment, resize


def check_budget(budget: float) -> float:
    """``budget`` if it is a fraction in [0, 1] (of the source images whose bought embedding a run uses)."""
    if not 0.0 <= budget <= 1.0:
        raise UsageError(f"budget must be a fraction in [0, 1], got {budget}")
    return budget


def budget_keep(samples: Sequence[Sample], teacher: TeacherSet, budget: float, seed: int) -> set[str]:
    """A seeded random ``budget`` fraction of the source images that have a bought embedding."""
    check_budget(budget)
    have = sorted(s.path for s in samples if teacher.image_embedding(s.path) is not None)
    n = int(round(budget * len(samples)))
    rng = np.random.RandomState(seed_hash("budget", seed))
    return set(rng.permutation(have)[: min(n, len(have))].tolist())


class TeacherTable:
    """The bought image embeddings of one list of samples, as tensors indexed by sample position:
    ``vectors [N, K, D]``, ``views [N]`` (0 = not bought)."""

    def __init__(self, samples: Sequence[Sample], teacher: TeacherSet | None, dim: int, keep: set[str] | None = None):
        found = [
            teacher.image_embedding(s.path) if teacher is not None and (keep is None or s.path in keep) else None
            for s in samples
        ]
        k = max([f.shape[0] for f in found if f is not None], default=1)
        self.vectors = torch.zeros(len(samples), k, dim)
        self.views = torch.zeros(len(samples), dtype=torch.long)
        for i, f in enumerate(found):
            if f is not None:
                self.vectors[i, : f.shape[0]] = torch.from_numpy(np.asarray(f, dtype=np.float32))
                self.views[i] = f.shape[0]

    @property
    def paid(self) -> int:
        """Image queries these embeddings cost (one per stored view)."""
        return int(self.views.sum())

    @property
    def bought(self) -> int:
        """Images with at least one embedding."""
        return int((self.views > 0).sum())

    def lookup(self, index: torch.Tensor, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding of view ``view`` of each sample and whether the sample has one at all."""
        return self.vectors[index, view], self.views[index] > 0


def view_seed(teacher: TeacherSet | None, tables: Sequence[TeacherTable]) -> int | None:
    """The seed ``vl2v embed`` drew the set's augmented views with (its manifest's ``seed``), needed
    only when a table holds a view ≥ 1. A set without it cannot be paired with its pictures."""
    if teacher is None or all(t.vectors.shape[1] == 1 for t in tables):
        return None
    if not isinstance(teacher.meta.get("seed"), int):
        raise UsageError(
            "the teacher set holds augmented views (views ≥ 1) but its manifest has no integer 'seed' to redraw them "
            "with; rebuild it with the same `vl2v embed` command (what the cache holds is not paid again)"
        )
    return int(teacher.meta["seed"])


def view_pictures(
    root: Path, samples: Sequence[Sample], table: TeacherTable, seed: int | None, size: int
) -> torch.Tensor | None:
    """``[N, K − 1, 3, size, size]`` uint8: the pictures of views 1..K−1 of every sample that has them
    (zeros elsewhere), or None when no sample has a view ≥ 1."""
    k = table.vectors.shape[1]
    if k == 1:
        return None
    out = torch.zeros(len(samples), k - 1, 3, size, size, dtype=torch.uint8)
    for i in (table.views > 1).nonzero().squeeze(1).tolist():
        with Image.open(root / samples[i].path) as img:
            rgb = img.convert("RGB")
        views = [
            np.asarray(seeded_view(rgb, seed, samples[i].path, v).resize((size, size), Image.BILINEAR))
            for v in range(1, int(table.views[i]))
        ]
        out[i, : len(views)] = pictures_tensor(views)
    return out


@dataclass
class SourceDomain:
    """One source domain's training inputs: decoded pictures, labels, bought embeddings and, where
    views ≥ 1 were bought, their pictures."""

    images: torch.Tensor | LazyImages
    labels: torch.Tensor
    table: TeacherTable
    views: torch.Tensor | None = None


@dataclass
class Batch:
    """One step's inputs and targets: ``pixels`` in [0, 1] (not normalised: the online mode sends them
    as they are), ``labels``, the teacher ``image`` embedding of each input and whether it has one."""

    pixels: torch.Tensor
    labels: torch.Tensor
    image: torch.Tensor
    has_image: torch.Tensor


class SourceBatches:
    """Each step's minibatch over the source domains (see the module docstring). The pictures are
    augmented on ``device``: on a GPU the uint8 batch crosses once and every operation runs there
    (the random draws stay on the CPU generator, so a batch is the same picture wherever it is made)."""

    def __init__(
        self,
        domains: Sequence[SourceDomain],
        augment: BatchAugment,
        batch_per_domain: int,
        device: str | torch.device = "cpu",
    ):
        self.domains, self.augment, self.per_domain = list(domains), augment, batch_per_domain
        self.device = torch.device(device)

    def batch(self, seed: int) -> Batch:
        """The minibatch of the step whose seed is ``seed``: a function of the seed alone."""
        g = torch.Generator().manual_seed(seed)
        picks = []
        for d in self.domains:
            index = torch.randint(len(d.labels), (self.per_domain,), generator=g)
            bought = d.table.views[index]
            view = (torch.rand(self.per_domain, generator=g) * bought).long() * (bought > 1)  # one of the bought views
            picks.append((d, index, view))
        pictures = torch.cat([d.images[index] for d, index, _ in picks]).to(self.device, non_blocking=True)
        pixels = self.augment.pixels(pictures, g)
        row = 0
        for d, index, view in picks:
            for j in (view > 0).nonzero().squeeze(1).tolist():  # inputs paired with a bought view ≥ 1: that picture
                pixels[row + j] = resize(d.views[index[j], view[j] - 1][None].to(self.device), self.augment.size)[0]
            row += len(index)
        targets = [d.table.lookup(index, view) for d, index, view in picks]
        return Batch(
            pixels=pixels,
            labels=torch.cat([d.labels[index] for d, index, _ in picks]),
            image=torch.cat([t[0] for t in targets]),
            has_image=torch.cat([t[1] for t in targets]),
        )
