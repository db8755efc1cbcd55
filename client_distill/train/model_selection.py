"""Model selection on a run's records, without torch (DomainBed keeps the same in ``model_selection.py``).

A run's ``results.jsonl`` (read by :class:`~client_distill.train.run_reader.RunReader`) holds two kinds
of records (field ``model``):

- ``"checkpoint"``: one per evaluation during training, scored on the source domains' 20 % "out"
  splits only (``source_val_acc``, ``source_val_loss``);
- ``"best"``, ``"swad"`` or ``"teacher"``: the models a finished run hands over, scored on every
  domain's "out" split and the target's 80 % "in" split (``env{i}_in_acc`` of the target).

Training-domain validation, DomainBed's ``IIDAccuracySelectionMethod``: the best checkpoint of a stage
is the one with the highest ``source_val_acc``; on a tie the later one wins. :func:`is_better` is that
one rule, used both by the trainer when it keeps ``best_<stage>.pt`` and by :func:`best_checkpoint`,
so the file and the analysis never disagree. The target domain is never looked at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from client_distill.errors import UsageError

#: the model a run outputs, in order of preference: SWAD's average where the run used SWAD, else the
#: best checkpoint by source validation; zero-shot outputs the teacher itself
OUTPUT_MODELS = ("swad", "best", "teacher")


def is_better(candidate: Mapping[str, Any], incumbent: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` replaces ``incumbent`` as a stage's best checkpoint: higher source
    validation accuracy, or equal and later (records arrive in step order, so "later" is "not earlier")."""
    if incumbent is None:
        return True
    return (candidate["source_val_acc"], candidate["step"]) >= (incumbent["source_val_acc"], incumbent["step"])


def best_checkpoint(records: Sequence[Mapping[str, Any]], stage_index: int) -> Mapping[str, Any] | None:
    """The checkpoint record of stage ``stage_index`` that :func:`is_better` keeps."""
    best = None
    for record in records:
        if record["model"] == "checkpoint" and record["stage_index"] == stage_index and is_better(record, best):
            best = record
    return best


def select(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The record of the model the run outputs (see :data:`OUTPUT_MODELS`)."""
    finals = {r["model"]: r for r in records if r["model"] != "checkpoint"}
    for model in OUTPUT_MODELS:
        if model in finals:
            return dict(finals[model])
    raise UsageError("the run has not finished: no record of the model it outputs yet")


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error over seeds of the models runs output (sample std / √n; NaN with fewer
    than two values), as the report and the model card give them."""
    a = np.asarray(values, dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
