"""Client datasets in DomainBed's folder layout, ``ROOT/<domain>/<class>/<image>``.

One reader serves the real DG benchmarks (PACS, VLCS, OfficeHome, TerraIncognita, DomainNet, once
downloaded by the user) and the synthetic tasks that ``vl2v data synth`` writes, so every experiment
runs through exactly the same code. Orders and splits follow DomainBed so that our numbers are
comparable with published ones: domains sorted by folder name, images in ``torchvision.ImageFolder``
order, and the per-domain 80/20 split drawn by ``misc.split_dataset`` seeded with
``seed_hash(trial_seed, env_index)``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client_distill.errors import UsageError

#: the file endings ``torchvision.datasets.ImageFolder`` reads (its ``IMG_EXTENSIONS``), spelled out
#: so that this module, which the ``vl2v`` command line imports, does not import torch
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: the folder and DomainBed's domain order of every dataset known by name; ``synth-*`` are written by
#: ``vl2v data synth`` and keep whatever domains the task has
KNOWN_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pacs": ("PACS", ("art_painting", "cartoon", "photo", "sketch")),
    "vlcs": ("VLCS", ("Caltech101", "LabelMe", "SUN09", "VOC2007")),
    "office_home": ("office_home", ("Art", "Clipart", "Product", "Real World")),
    "terra_incognita": ("terra_incognita", ("location_100", "location_38", "location_43", "location_46")),
    "domain_net": ("domain_net", ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")),
    "synth-pacs": ("synth-pacs", ()),
    "synth-officehome": ("synth-officehome", ()),
}

#: DomainBed's default ``--holdout_fraction``
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``path`` relative to the dataset root with ``/`` separators, so that it
    also serves as a stable key (teacher embeddings are stored under it)."""

    path: str
    label: int
    domain: str


def class_name(folder: str) -> str:
    """The readable class name of a class folder (``tennis_racket`` → ``tennis racket``), as used in
    prompts such as "a photo of a tennis racket"."""
    return folder.replace("_", " ")


def seed_hash(*args: Any) -> int:
    """DomainBed's ``misc.seed_hash``: an integer seed from any arguments, stable across runs."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _list_dirs(path: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))


class DomainDataset:
    """A DomainBed-layout folder: its domains, the union of its classes, and per-domain samples.

    The class set is the union over domains (sorted folder names), so a class missing from one
    domain keeps the same label everywhere — DomainBed's per-environment ``ImageFolder`` would
    silently shift labels in that case.
    """

    def __init__(self, root: str | Path, domains: Sequence[str] | None = None, name: str | None = None) -> None:
        self.root = Path(root)
        self.name = name or self.root.name
        if not self.root.is_dir():
            raise UsageError(f"dataset folder {self.root} does not exist")
        found = _list_dirs(self.root)
        if not found:
            raise UsageError(f"{self.root} holds no domain folders; expected ROOT/<domain>/<class>/<image>")
        if domains:
            missing = [d for d in domains if d not in found]
            if missing:
                raise UsageError(
                    f"{self.root} lacks the domain folder(s) {', '.join(missing)} (found: {', '.join(found)})"
                )
            self.domains = list(domains)
        else:
            self.domains = found
        files = {d: self._scan_domain(d) for d in self.domains}
        self.class_folders = sorted({folder for domain in files.values() for folder in domain})
        self.classes = [class_name(f) for f in self.class_folders]
        label = {folder: i for i, folder in enumerate(self.class_folders)}
        self._samples = {
            d: [Sample(f"{d}/{folder}/{fname}", label[folder], d) for folder in sorted(per) for fname in per[folder]]
            for d, per in files.items()
        }

    def _scan_domain(self, domain: str) -> dict[str, list[str]]:
        """``{class folder: sorted image file names}``; refuses loose images and empty domains."""
        path = self.root / domain
        loose = sorted(e.name for e in os.scandir(path) if e.is_file() and _is_image(e.name))
        if loose:
            raise UsageError(
                f"{path} holds images outside class folders (e.g. {loose[0]}); expected {path}/<class>/<image>"
            )
        per = {}
        for folder in _list_dirs(path):
            names = sorted(e.name for e in os.scandir(path / folder) if e.is_file() and _is_image(e.name))
            if names:
                per[folder] = names
        if not per:
            raise UsageError(f"domain {domain!r} in {self.root} holds no images in class folders")
        return per

    def __repr__(self) -> str:
        sizes = ", ".join(f"{d}={len(s)}" for d, s in self._samples.items())
        return f"DomainDataset({self.name!r}, {len(self.classes)} classes, {sizes})"

    def domain_index(self, domain: str) -> int:
        """The environment index DomainBed uses for ``domain`` (its position in :attr:`domains`)."""
        if domain not in self._samples:
            raise UsageError(f"unknown domain {domain!r} in {self.name}; domains are: {', '.join(self.domains)}")
        return self.domains.index(domain)

    def samples(self, domain: str) -> list[Sample]:
        """All samples of ``domain`` in ``ImageFolder`` order (class folder, then file name)."""
        self.domain_index(domain)
        return list(self._samples[domain])

    def split(self, domain: str, seed: int, holdout: float = HOLDOUT_FRACTION) -> tuple[list[Sample], list[Sample]]:
        """DomainBed's split of one domain: ``(in, out)``, ``out`` holding ``int(n * holdout)`` samples.

        Same shuffle as ``misc.split_dataset(env, int(len(env) * holdout), seed_hash(seed, env_i))``
        with ``seed`` the trial seed, so "in" trains (or tests, on the target domain) and "out"
        validates, exactly as in DomainBed's tables.
        """
        if not 0.0 <= holdout < 1.0:
            raise UsageError(f"holdout fraction must be in [0, 1), got {holdout}")
        samples = self.samples(domain)
        keys = list(range(len(samples)))
        np.random.RandomState(seed_hash(seed, self.domain_index(domain))).shuffle(keys)
        n_out = int(len(samples) * holdout)
        return [samples[k] for k in keys[n_out:]], [samples[k] for k in keys[:n_out]]


def open_dataset(data: str | Path, name: str | None = None) -> DomainDataset:
    """Open a dataset: ``data`` is the DomainBed-layout folder itself, or, with ``name`` one of
    :data:`KNOWN_DATASETS`, the data directory that holds it (``DATA/PACS/...``) or the folder itself.

    Known real datasets must have DomainBed's domains and keep DomainBed's order; any other folder
    takes its domain folders in sorted order (which is also DomainBed's order for the known ones).
    """
    root = Path(data).expanduser()
    if name is None:
        return DomainDataset(root)
    key = name.lower()
    if key not in KNOWN_DATASETS:
        raise UsageError(
            f"unknown dataset name {name!r}; known: {', '.join(KNOWN_DATASETS)} (or omit the name to read any folder)"
        )
    folder, domains = KNOWN_DATASETS[key]
    if (root / folder).is_dir():
        root = root / folder
    return DomainDataset(root, domains or None, name=key)
