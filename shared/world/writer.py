"""Writing a task's images to disk in DomainBed's layout, ``DIR/<domain>/<class>/<n>.png``.

Each image's generator is seeded from its stream and ``(seed, domain, class, n)`` alone, so the files do
not depend on how the work is split between processes: the same seed gives byte-identical files. Client
tasks are drawn from :attr:`Stream.CLIENT`, disjoint from the corpora the vendor and the student were
pretrained on (:mod:`shared.world.streams`).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared.world import CLASS_NAMES, STYLE_NAMES, render
from shared.world.streams import Stream, stream_rng
from shared.world.tasks import Task


def folder_name(class_name: str) -> str:
    return class_name.replace(" ", "_")


def image_rng(stream: Stream, seed: int, style: str, class_name: str, n: int) -> np.random.Generator:
    """The generator of one image, keyed by its stream and world indices so any subset can be rendered
    alone."""
    return stream_rng(stream, seed, STYLE_NAMES.index(style), CLASS_NAMES.index(class_name), n)


def render_cell(
    stream: Stream, seed: int, style: str, class_name: str, count: int, size: int = 64
) -> tuple[np.ndarray, list[dict]]:
    """Images ``0..count-1`` of one (style, class) cell of ``stream`` as uint8 ``[count, size, size, 3]``
    plus their attrs: the one place that maps world indices to images, so the files on disk, the vendor's
    pretraining corpus and its zero-shot check each see the same pictures for the same stream and seed."""
    images, attrs = [], []
    for n in range(count):
        img, a = render(class_name, style, image_rng(stream, seed, style, class_name, n), size)
        images.append(np.asarray(img))
        attrs.append(a)
    return np.stack(images), attrs


def _write_cell(job: tuple[str, str, str, int, int, int]) -> int:
    out, style, class_name, size, per_class, seed = job
    folder = Path(out) / style / folder_name(class_name)
    folder.mkdir(parents=True, exist_ok=True)
    images, _ = render_cell(Stream.CLIENT, seed, style, class_name, per_class, size)
    for n, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{n}.png", optimize=False)
    return per_class


def write_task(
    task: Task,
    out: Path,
    size: int = 64,
    per_class: int = 150,
    seed: int = 0,
    overwrite: bool = False,
    workers: int = 2,
) -> int:
    """Render ``per_class`` images per class and domain of ``task`` under ``out``; returns the count.

    Raises :class:`FileExistsError` when ``out`` is non-empty and ``overwrite`` is false; with
    ``overwrite`` the task's domain folders are replaced (nothing else under ``out`` is touched)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (pass --overwrite to replace its {task.name} domains)")
        for domain in task.domains:
            shutil.rmtree(out / domain, ignore_errors=True)
    jobs = [(str(out), d, c, size, per_class, seed) for d in task.domains for c in task.classes]
    total = 0
    with tqdm(total=len(jobs) * per_class, desc=f"rendering {task.name}", unit="img") as bar:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(_write_cell, jobs):
                    total += done
                    bar.update(done)
        else:
            for job in jobs:
                total += _write_cell(job)
                bar.update(job[4])
    return total
