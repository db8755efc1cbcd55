"""Per-domain accuracy of a distilled classifier on any DomainBed-layout folder (``vl2v evaluate``).

A folder's classes are matched to the model's by name (a class the model does not know is an error:
it could not be scored). ``split`` picks the images of each domain: ``all`` of them, or DomainBed's
80/20 ``in``/``out`` split of trial seed ``seed`` (:meth:`~client_distill.data.datasets.DomainDataset.split`,
drawn with the domain's index among *all* the folder's domains, whatever ``--domains`` selects, so
the split is the one a run on that folder used). On a run's own data, seed and split, the accuracy is
the one the run recorded for the model it outputs (``env{i}_out_acc`` for every domain's ``out``
split, ``env{test}_in_acc`` for the target's ``in`` split), and each row carries that number beside.

Torch-free, like :mod:`client_distill.deploy.predict`: an ONNX export is evaluated with onnxruntime alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client_distill.data.datasets import KNOWN_DATASETS, DomainDataset, Sample
from client_distill.deploy.predict import ImageError, Predictor, decode_image, preprocess
from client_distill.errors import UsageError

SPLITS = ("all", "in", "out")


@dataclass(frozen=True)
class DomainScore:
    """The accuracy on one domain's split; ``recorded`` is the run's own number for the same images
    (None where the run did not score them), ``role`` the domain's part in the run (``target`` or
    ``source``; empty for a folder that is not the run's)."""

    domain: str
    split: str
    images: int
    correct: int
    accuracy: float
    recorded: float | None = None
    role: str = ""


def _samples(data: DomainDataset, domain: str, split: str, seed: int) -> list[Sample]:
    if split == "all":
        return data.samples(domain)
    split_in, split_out = data.split(domain, seed)
    return split_in if split == "in" else split_out


def _labels(data: DomainDataset, classes: Sequence[str]) -> list[int]:
    """The model's class index of each of the folder's labels."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = [c for c in data.classes if c not in index]
    if unknown:
        raise UsageError(
            f"{data.root} has classes the model does not know: {', '.join(unknown[:10])}"
            + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
            + f"; the model's classes: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}"
        )
    return [index[c] for c in data.classes]


def same_run_data(predictor: Predictor, data: DomainDataset, seed: int) -> bool:
    """Whether ``data`` and ``seed`` are the run's own (so its recorded accuracies apply)."""
    run = predictor.info.run
    recorded_data = run.get("data")
    if not recorded_data or run.get("seed") != seed:
        return False
    folder = Path(recorded_data)
    known = KNOWN_DATASETS.get(str(run.get("dataset") or "").lower())
    if known and (folder / known[0]).is_dir():  # the run was given the data dir holding the dataset
        folder = folder / known[0]
    try:
        return folder.resolve() == data.root.resolve()
    except OSError:
        return False


def evaluate(
    predictor: Predictor, data: DomainDataset, domains: Sequence[str], split: str = "all", seed: int = 0
) -> list[DomainScore]:
    """The accuracy of ``predictor`` on each of ``domains`` (see the module docstring). An image that
    does not decode is a user error naming it: a benchmark folder must be whole."""
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    info = predictor.info
    to_model = _labels(data, info.classes)
    own = same_run_data(predictor, data, seed)
    rows = []
    for domain in domains:
        samples = _samples(data, domain, split, seed)
        correct = 0
        for start in range(0, len(samples), predictor.batch_size):
            chunk = samples[start : start + predictor.batch_size]
            pictures = []
            for s in chunk:
                try:
                    pictures.append(decode_image(data.root / s.path, info.preprocessing.image_size))
                except ImageError as exc:
                    raise UsageError(f"{data.root / s.path}: {exc}") from None
            predicted = predictor.logits(preprocess(np.stack(pictures), info.preprocessing)).argmax(1)
            correct += int((predicted == np.array([to_model[s.label] for s in chunk])).sum())
        recorded = info.run.get("recorded", {}).get(domain, {}).get(split) if own else None
        role = ("target" if domain == info.run.get("test_domain") else "source") if own else ""
        accuracy = correct / len(samples) if samples else float("nan")
        rows.append(DomainScore(domain, split, len(samples), correct, accuracy, recorded, role))
    return rows


def format_table(rows: Sequence[DomainScore]) -> str:
    """A plain-text table, one row per domain, and the mean accuracy over domains."""
    show_recorded = any(r.recorded is not None for r in rows)
    header = f"{'domain':<20} {'split':<5} {'role':<7} {'images':>7} {'accuracy':>9}" + (
        f" {'recorded':>9}" if show_recorded else ""
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        line = f"{r.domain:<20} {r.split:<5} {r.role:<7} {r.images:>7} {100 * r.accuracy:>8.2f}%"
        if show_recorded:
            line += f" {100 * r.recorded:>8.2f}%" if r.recorded is not None else f" {'':>9}"
        lines.append(line)
    scored = [r.accuracy for r in rows if r.images]
    if len(scored) > 1:
        lines.append(f"{'mean over domains':<42} {100 * float(np.mean(scored)):>8.2f}%")
    return "\n".join(lines)
