"""The synthetic world's tasks as datasets on disk: ``vl2v data synth`` and the demo render one with
:func:`write_synth` into DomainBed's layout, so the same code path reads it as reads PACS or Office-Home."""

from __future__ import annotations

from pathlib import Path

from client_distill.errors import UsageError
from shared.world import TASKS
from shared.world.writer import write_task

#: per class and domain: enough for an 80/20 split and a CPU demo; PACS itself has ~100-800
DEFAULT_PER_CLASS = 150


def write_synth(
    task: str,
    out: str | Path,
    *,
    size: int = 64,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    overwrite: bool = False,
    workers: int = 2,
) -> int:
    """Render ``task`` to ``out/<domain>/<class>/<n>.png`` (the same seed gives identical files; an
    ``out`` that is not empty is refused unless ``overwrite``) and print what was written; the number of
    images."""
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; choose from {', '.join(sorted(TASKS))}")
    if size < 8 or per_class < 1 or workers < 1:
        raise UsageError("--size must be ≥ 8, --per-class and --workers ≥ 1")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    try:
        n = write_task(TASKS[task], out, size, per_class, seed, overwrite, workers)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {n} images of {task} to {out}")
    return n
