"""Model selection: one tie rule for the best file and the analysis, never the target, and the
output model a run hands over; importable without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from client_distill.errors import UsageError
from client_distill.train.model_selection import best_checkpoint, is_better, select


def checkpoint(step: int, stage_index: int, source_val: float, target: float) -> dict:
    return {
        "model": "checkpoint",
        "step": step,
        "stage_index": stage_index,
        "source_val_acc": source_val,
        "env2_in_acc": target,
    }


def test_best_checkpoint_uses_source_validation_only_and_the_later_one_wins_a_tie():
    records = [
        checkpoint(1, 0, 1.0, 1.0),
        checkpoint(2, 1, 0.9, 0.1),
        checkpoint(3, 1, 0.5, 1.0),
        checkpoint(4, 1, 0.9, 0.2),
    ]
    assert best_checkpoint(records, 1)["step"] == 4  # ties to the later step; the target is never looked at
    assert best_checkpoint(records, 0)["step"] == 1 and best_checkpoint(records, 2) is None
    assert is_better(records[3], records[1]) and not is_better(records[2], records[1]) and is_better(records[0], None)


def test_select_returns_the_output_model_swad_first():
    records = [checkpoint(1, 0, 0.9, 0.5), {"model": "best", "step": 1}, {"model": "swad", "step": 2}]
    assert select(records)["model"] == "swad"
    assert select(records[:2])["model"] == "best"
    assert select([{"model": "teacher", "step": 0}])["model"] == "teacher"
    with pytest.raises(UsageError, match="not finished"):
        select(records[:1])


def test_model_selection_and_the_report_import_without_torch():
    modules = ", ".join(
        ("client_distill.train.model_selection", "client_distill.report.report", "client_distill.sweep.search")
        + ("client_distill.sweep.config",)
    )
    code = f"import sys, {modules}; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
