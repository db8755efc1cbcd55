"""evaluation/acquisition_eval.py: active acquisition paired with random selection cell by cell, at equal
queries (issue 22 item 3)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from client_distill.report.report import Result

_SPEC = importlib.util.spec_from_file_location(
    "acquisition_eval", Path(__file__).resolve().parents[1] / "evaluation" / "acquisition_eval.py"
)
acquisition_eval = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(acquisition_eval)


def result(target: str, seed: int, ood: float, budget: float = 0.1, queries: int = 168, **kw) -> Result:
    fields = dict(method="adip", teacher_mode="cached", args={}, id=0.9)
    fields.update(kw)
    return Result(
        dataset="synth-pacs",
        budget=budget,
        test_domain=target,
        seed=seed,
        ood=ood,
        model="swad",
        queries_images=queries,
        queries_eval_images=0,
        hparams={},
        **fields,
    )


def test_differences_are_paired_by_target_and_seed_at_one_budget():
    random = [result(t, s, 0.80 + 0.01 * s) for t in ("photo", "sketch") for s in range(3)]
    # +2 points in every cell; a run at another budget, another method and more views are left out
    active = [result(t, s, 0.82 + 0.01 * s) for t in ("photo", "sketch") for s in range(3)]
    active += [result("photo", 0, 0.0, budget=0.25, queries=420), result("photo", 1, 0.0, method="kd")]
    active += [result("photo", 2, 0.0, args={"views": 2})]
    row = acquisition_eval.compare("uncertainty", active, random, 0.1)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["uncertainty", "10%", "168", "6", "+2.0 ± 0.0"]
    assert cells[5].startswith("[+2.0, +2.0] uncertainty > random")


def test_unequal_queries_are_refused():
    random = [result("photo", s, 0.8) for s in range(3)]
    active = [result("photo", s, 0.8, queries=170) for s in range(3)]
    with pytest.raises(SystemExit, match="paid different image queries"):
        acquisition_eval.compare("kcenter", active, random, 0.1)
