"""Linear probes on a student's frozen features, per domain: how much of each style the pretrained
features already separate. The gap between the pretraining style (photo) and the others is the
domain gap a distillation method must close.

Three numbers per domain, all scored on the domain's DomainBed "out" (20 %) split:
- ``probe``: a linear classifier trained on that domain's own "in" split (features' linear separability);
- ``photo_probe``: one linear classifier trained on the ``photo`` "in" split, applied to every domain
  (how far a photo classifier transfers through these features);
- ``head``: the student's own pretraining classifier, when it has one covering the dataset's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from client_distill.buy.selection import FeatureFn, Ranker
from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import DomainDataset, Sample, class_name
from client_distill.data.image_store import load_images
from client_distill.train.augment import normalise, resize
from client_distill.train.runspec import RunSpec
from client_distill.train.students import Student, create_student

PHOTO = "photo"


@dataclass(frozen=True)
class ProbeRow:
    domain: str
    n_in: int
    n_out: int
    probe: float
    photo_probe: float | None
    head: float | None


@torch.no_grad()
def extract_features(
    student: Student, root: str | Path, samples: Sequence[Sample], batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features ``[N, F]`` and labels ``[N]`` of ``samples`` under the student's evaluation
    preprocessing (the whole image resized to its input size, normalised)."""
    student.eval()
    images = load_images(root, samples, student.input_size)
    feats = []
    for start in range(0, len(samples), batch_size):
        index = torch.arange(start, min(start + batch_size, len(samples)))
        feats.append(student(normalise(resize(images[index], student.input_size), student.mean, student.std)))
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    return (torch.cat(feats) if feats else torch.zeros(0, student.feature_dim)), labels


def student_features(root: str | Path, student_name: str | None, batch_size: int = 64) -> FeatureFn:
    """A :data:`~client_distill.buy.selection.FeatureFn` computing the pooled features of the pretrained
    student ``student_name`` (None: the default student) on the un-augmented images (eval transform), on
    the CPU: what ``vl2v embed --strategy kcenter`` orders the images it buys by."""
    name = student_name or RunSpec.student

    def compute(samples: Sequence[Sample]) -> np.ndarray:
        return extract_features(create_student(name, pretrained=True), root, samples, batch_size)[0].numpy()

    return compute


def fit_linear_probe(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float = 1e-3, iters: int = 200
) -> nn.Module:
    """Multinomial logistic regression on standardised features, fitted to convergence by L-BFGS
    (full batch: probe sets are small), with L2 penalty ``weight_decay``."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    linear = nn.Linear(x.shape[1], n_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    z = (x - mean) / std
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(z), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return nn.Sequential(_Standardise(mean, std), linear).eval()


def fit_teacher_map(x: torch.Tensor, targets: torch.Tensor, steps: int) -> nn.Module:
    """A linear map from frozen student features (standardised) to teacher embeddings, ``steps`` full-batch
    Adam steps on the cosine loss, seeded: the cheapest student that classifies the teacher's way (the
    nearest class prompt), for ``vl2v plan``'s short runs and the ``uncertainty`` purchase order."""
    mean, std = x.mean(0), x.std(0, unbiased=False) + 1e-6
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        linear = nn.Linear(x.shape[1], targets.shape[1])
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
    z = (x - mean) / std
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 1 - nn.functional.cosine_similarity(linear(z), targets).mean()
        loss.backward()
        optimizer.step()
    return nn.Sequential(_Standardise(mean, std), linear).eval()


def uncertainty_ranker(root: str | Path, student_name: str | None, steps: int = 100) -> Ranker:
    """A :data:`~client_distill.buy.selection.Ranker`: fits :func:`fit_teacher_map` on the images bought so
    far and orders the rest by the entropy of its class prediction (softmax of the teacher's logit scale ×
    cosine to the class prompts), most uncertain first: the images the current student knows least."""
    compute = student_features(root, student_name)
    known: dict[str, np.ndarray] = {}

    def rank(teacher_set: TeacherSet, bought: Sequence[Sample], rest: Sequence[Sample]) -> list[Sample]:
        missing = [s for s in [*bought, *rest] if s.path not in known]
        if missing:
            known.update(zip([s.path for s in missing], compute(missing), strict=True))
        x = torch.from_numpy(np.stack([known[s.path] for s in [*bought, *rest]]).astype(np.float32))
        targets = torch.from_numpy(
            np.stack([teacher_set.image_embeddings[s.path][0] for s in bought]).astype(np.float32)
        )
        text = nn.functional.normalize(torch.from_numpy(np.asarray(teacher_set.text_embeddings, np.float32)), dim=1)
        model = fit_teacher_map(x[: len(bought)], targets, steps)
        with torch.no_grad():
            predicted = nn.functional.normalize(model(x[len(bought) :]), dim=1)
            p = torch.softmax(float(teacher_set.meta.get("logit_scale") or 100.0) * predicted @ text.T, dim=1)
            entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(1).numpy()
        return [rest[i] for i in np.argsort(-entropy, kind="stable")]

    return rank


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean()) if len(y) else float("nan")


def _head_to_dataset(student: Student, dataset: DomainDataset) -> torch.Tensor | None:
    """Indices into the student's head classes for each dataset class, or None if any is missing."""
    if student.head is None:
        return None
    index = {class_name(c): i for i, c in enumerate(student.head["classes"])}
    if not all(c in index for c in dataset.classes):
        return None
    return torch.tensor([index[c] for c in dataset.classes])


def probe_domains(student: Student, dataset: DomainDataset, seed: int = 0, holdout: float = 0.2) -> list[ProbeRow]:
    """One :class:`ProbeRow` per domain of ``dataset`` (see the module docstring)."""
    n_classes = len(dataset.classes)
    feats = {}
    for domain in dataset.domains:
        split_in, split_out = dataset.split(domain, seed, holdout)
        feats[domain] = (
            extract_features(student, dataset.root, split_in),
            extract_features(student, dataset.root, split_out),
        )
    photo_probe = fit_linear_probe(*feats[PHOTO][0], n_classes) if PHOTO in feats else None
    head_index = _head_to_dataset(student, dataset)
    rows = []
    for domain, ((x_in, y_in), (x_out, y_out)) in feats.items():
        own_probe = fit_linear_probe(x_in, y_in, n_classes)
        with torch.no_grad():
            own = _accuracy(own_probe(x_out), y_out)
            photo = None if photo_probe is None else _accuracy(photo_probe(x_out), y_out)
            head = None if head_index is None else _accuracy(student.head_logits(x_out)[:, head_index], y_out)
        rows.append(ProbeRow(domain, len(y_in), len(y_out), own, photo, head))
    return rows


def format_table(rows: Sequence[ProbeRow]) -> str:
    """A plain-text table of probe rows; ``-`` where a column does not apply."""
    fmt = lambda v: "   -" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'domain':<16}{'n_in':>6}{'n_out':>6}{'probe':>8}{'photo_probe':>13}{'head':>8}"]
    for r in rows:
        lines.append(f"{r.domain:<16}{r.n_in:>6}{r.n_out:>6}{fmt(r.probe):>8}{fmt(r.photo_probe):>13}{fmt(r.head):>8}")
    return "\n".join(lines)
