"""evaluation/plan_proxy_labels.py: which of a protocol's teacher sets it reads (issue 22)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "plan_proxy_labels", Path(__file__).resolve().parents[1] / "evaluation" / "plan_proxy_labels.py"
)
plan_proxy_labels = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(plan_proxy_labels)


def teacher_set(runs: Path, name: str, domains: list[str], seed: int, bought: int, **meta) -> Path:
    folder = runs / "teachers" / name
    folder.mkdir(parents=True)
    manifest = {"domains": domains, "seed": seed, "views": 1, "split": "in", "complete": True,
                "queries": {"image_queries_bought": bought}, **meta}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_it_reads_each_cells_complete_one_view_set_of_every_image(tmp_path):
    sources = ["art", "cartoon", "photo"]
    full = teacher_set(tmp_path, "full", sources, 0, 1680)
    teacher_set(tmp_path, "tenth", sources, 0, 168)  # a smaller budget of the same cell
    teacher_set(tmp_path, "views", sources, 0, 3360, views=2)  # more views: not the one-view purchase
    teacher_set(tmp_path, "cut", sources, 0, 5000, complete=False)  # interrupted
    other = teacher_set(tmp_path, "seed1", sources, 1, 1680)
    assert plan_proxy_labels.full_sets(tmp_path) == {(tuple(sources), 0): full, (tuple(sources), 1): other}
