"""Premise diagnostics: whether a setting has what VL2V-ADiP assumes, measured on its data.

The paper's argument rests on a strong teacher whose embeddings are organised by class more than by
style, and on a student whose pretrained features already carry over to other renditions (so "align
first, keep the features, then distil behind a fixed head" has something to keep). A protocol report
that does not show these cannot say why a method wins or loses. Measured here, once per task:

- the teacher's zero-shot accuracy per domain, from a teacher set holding every image;
- how the variance of the teacher's image embeddings splits into class, style (domain) and residual
  (a two-way decomposition: between-class and between-domain sums of squares over the total, the rest
  residual), and the same for the student's initial features;
- a linear probe on the student's *frozen* initial features, trained on the source domains' "in"
  splits and scored on the target's "in" split (fitted to convergence by L-BFGS: the frozen features'
  own worth, next to the protocol's fine-tuned ERM);
- the paper's Table A in the teacher's space, per target: accuracy on the target's "in" split of the
  nearest class prototype by cosine, the prototypes being (E1) the class prompts' text embeddings (the
  zero-shot classifier) and (E3) the mean image embedding of each class over the source domains' "in"
  splits. E1 ≫ E3 is what the paper's analysis rests on: text describes an unseen domain better than the
  source images do, which is why ADiP aligns to the text;
- parameter counts of the teacher's image tower (where the vendor states it) and of the student.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import DomainDataset, Sample, open_dataset
from client_distill.train.probe import extract_features, fit_linear_probe
from client_distill.train.students import create_student


def variance_shares(x: np.ndarray, classes: Sequence[int], styles: Sequence[int]) -> dict[str, float]:
    """Fractions of the total variance of rows ``x`` [N, D] between class means, between style means
    and left over. Class and style are close to orthogonal in a balanced task, so the three add up
    to about 1 (the residual is what is left, interaction included)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    total = float((centred**2).sum())

    def between(groups: Sequence[int]) -> float:
        groups = np.asarray(groups)
        return float(sum((groups == g).sum() * (centred[groups == g].mean(0) ** 2).sum() for g in np.unique(groups)))

    shares = {"class": between(classes) / total, "style": between(styles) / total}
    shares["residual"] = 1.0 - shares["class"] - shares["style"]
    return shares


def teacher_zero_shot(
    teacher: TeacherSet, dataset: DomainDataset, distractors: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy of ``argmax_c cos(I^t_x, T_c)`` on every image of each domain that the set holds.

    ``distractors`` (text embeddings of classes the dataset does not have, e.g. those a student was trained
    on) join the candidates for an open-set zero-shot: picking one of them is wrong."""
    text = np.asarray(teacher.text_embeddings, dtype=np.float32)
    shift = 0
    if distractors is not None:
        text, shift = np.concatenate([np.asarray(distractors, dtype=np.float32), text]), len(distractors)
    out = {}
    for domain in dataset.domains:
        pairs = [(teacher.image_embedding(s.path), s.label) for s in dataset.samples(domain)]
        pairs = [(e[0], y) for e, y in pairs if e is not None]
        if pairs:
            emb = np.stack([e for e, _ in pairs]).astype(np.float32)
            out[domain] = float(((emb @ text.T).argmax(1) == np.array([y for _, y in pairs]) + shift).mean())
    return out


def prototype_accuracy(
    teacher: TeacherSet, dataset: DomainDataset, targets: Sequence[str], seed: int
) -> dict[str, dict[str, float]]:
    """Table A per target: ``{"e1": ..., "e3": ...}``, the accuracy on the target's "in" split (split
    ``seed``) of the nearest text prototype (E1) and of the nearest source-image class mean (E3), by
    cosine in the teacher's space. Images the set does not hold are left out of both."""

    def embedded(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(teacher.image_embedding(s.path), s.label) for s in samples]
        pairs = [(e[0], y) for e, y in pairs if e is not None]
        if not pairs:
            return np.zeros((0, len(teacher.text_embeddings[0])), np.float32), np.zeros(0, int)
        return np.stack([e for e, _ in pairs]).astype(np.float32), np.array([y for _, y in pairs])

    def accuracy(x: np.ndarray, y: np.ndarray, prototypes: np.ndarray) -> float:
        unit = prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)
        return float(((x @ unit.T).argmax(1) == y).mean())

    text = np.asarray(teacher.text_embeddings, dtype=np.float32)
    out = {}
    for target in targets:
        x, y = embedded(dataset.split(target, seed)[0])
        src_x, src_y = embedded([s for d in dataset.domains if d != target for s in dataset.split(d, seed)[0]])
        if not len(x) or any((src_y == c).sum() == 0 for c in range(len(dataset.classes))):
            continue  # a partial teacher set: nothing honest to report
        means = np.stack([src_x[src_y == c].mean(0) for c in range(len(dataset.classes))])
        out[target] = {"e1": accuracy(x, y, text), "e3": accuracy(x, y, means)}
    return out


def diagnose(
    data: str, dataset: str | None, student_name: str, teacher_path: str | None, targets: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """Every diagnostic the inputs allow (see the module docstring), as JSON-ready data."""
    ds = open_dataset(data, dataset)
    student = create_student(student_name)
    samples = [s for d in ds.domains for s in ds.samples(d)]
    labels = [s.label for s in samples]
    styles = [ds.domains.index(s.domain) for s in samples]
    features = extract_features(student, ds.root, samples)[0].numpy()
    row = {s.path: i for i, s in enumerate(samples)}
    probe = {}
    for target in targets:
        train = [s for d in ds.domains if d != target for s in ds.split(d, seed)[0]]
        test = ds.split(target, seed)[0]
        pick = lambda ss: (torch.from_numpy(features[[row[s.path] for s in ss]]), torch.tensor([s.label for s in ss]))  # noqa: E731
        model = fit_linear_probe(*pick(train), len(ds.classes))
        x, y = pick(test)
        with torch.no_grad():
            probe[target] = float((model(x).argmax(1) == y).float().mean())
    result: dict[str, Any] = {
        "dataset": ds.name,
        "student": student_name,
        "student_params": sum(p.numel() for p in student.parameters()),
        "student_feature_variance": variance_shares(features, labels, styles),
        "frozen_probe_ood": probe,
        "split_seed": seed,
    }
    if teacher_path:
        teacher = TeacherSet.load(teacher_path)
        held = [i for i, s in enumerate(samples) if teacher.image_embedding(s.path) is not None]
        emb = np.stack([teacher.image_embedding(samples[i].path)[0] for i in held]).astype(np.float32)
        card = teacher.meta.get("model_card") or {}
        result.update(
            teacher_model=teacher.meta.get("model"),
            teacher_revision=teacher.meta.get("model_revision"),
            teacher_image_params=card.get("image_params"),
            teacher_logit_scale=teacher.meta.get("logit_scale"),
            teacher_zero_shot=teacher_zero_shot(teacher, ds),
            teacher_prototypes=prototype_accuracy(teacher, ds, targets, seed),
            teacher_embedding_variance=variance_shares(emb, [labels[i] for i in held], [styles[i] for i in held]),
            teacher_images=len(held),
        )
    return result
