"""``vl2v distill`` as a function: one run of a :class:`~client_distill.train.runspec.RunSpec` into a folder,
with the vendor an online run buys from, and the one result line a user reads. The command line and
the sweep's workers (:mod:`client_distill.sweep.jobs`) call it alike."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from tqdm import tqdm

from client_distill.buy.vendor import VendorConfig, open_teacher
from client_distill.train import augment
from client_distill.train.heap import keep_freed_memory
from client_distill.train.run import Progress, run_distill
from client_distill.train.runspec import RunSpec


def distill(
    spec: RunSpec,
    out: str | Path,
    vendor: VendorConfig | None = None,
    stop_after: int | None = None,
    progress: bool = False,
) -> int:
    """Run (or resume, or skip if finished) ``spec`` into ``out`` and print its result line; an online
    run buys every view from ``vendor`` (over the environment's settings), without the cache (the
    official recipe). ``stop_after``: stop resumably at the first checkpoint at or after that step.
    ``progress``: a progress bar on stderr (steps, stage, source-validation accuracy), for a person
    at a terminal; a sweep's workers write logs instead."""
    keep_freed_memory()  # every step frees and allocates the same large tensors: keep them mapped
    if os.environ.get(augment.COMPILE_ENV) == "1":  # a long single run: compile (a sweep's server already did)
        augment.warm_up()
    with contextlib.ExitStack() as stack:
        teacher = None
        if spec.teacher_mode == "online" and vendor is not None:
            teacher = stack.enter_context(open_teacher(vendor, use_cache=False))
        bar = stack.enter_context(tqdm(unit="step", desc="distill", dynamic_ncols=True)) if progress else None
        r = run_distill(spec, out, teacher, stop_after, None if bar is None else functools.partial(show, bar))
    if r is None:
        print(f"stopped after step {stop_after}; rerun the same command to continue")
        return 0
    i = r["test_env"]
    print(
        f"{spec.method} → {r['test_domain']}: target (in split) {100 * r[f'env{i}_in_acc']:.1f} %, "
        f"source val {100 * r['source_val_acc']:.1f} % ({r['model']} model, {r['stage']} stage, step {r['step']}); "
        f"image queries {r['queries_images']}, evaluation queries {r['queries_eval_images']}"
    )
    return 0


def show(bar: tqdm, progress: Progress) -> None:
    """Draw ``progress`` on ``bar``: steps of every stage, the stage, the last source-validation accuracy."""
    bar.total, bar.n = progress.total, progress.step
    bar.set_description_str(f"distill {progress.stage}", refresh=False)
    if progress.source_val_acc is not None:
        bar.set_postfix_str(f"source val {100 * progress.source_val_acc:.1f} %", refresh=False)
    bar.refresh()
