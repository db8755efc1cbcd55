"""evaluation/open_vocab_eval.py: which protocol runs it exports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "open_vocab_eval", Path(__file__).resolve().parents[1] / "evaluation" / "open_vocab_eval.py"
)
open_vocab_eval = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(open_vocab_eval)


def run(root: Path, name: str, done: bool = True, weights: bool = True, **args) -> Path:
    folder = root / name
    folder.mkdir()
    base = {"method": "adip", "test_domain": "sketch", "seed": 0, "teacher_mode": "cached", "budget": 1.0}
    (folder / "args.json").write_text(json.dumps({**base, **args}))
    if done:
        (folder / "done").write_text("")
    if weights:
        (folder / "swad.pt").write_bytes(b"")
    return folder


def test_the_three_budget_points_of_the_held_out_target_and_nothing_else(tmp_path, capsys):
    zero = run(tmp_path, "zero", budget=0.0)
    full = run(tmp_path, "full")
    online = run(tmp_path, "online", teacher_mode="online", budget=None, seed=1)
    run(tmp_path, "views", views=2)  # 100 % with two views: another point
    run(tmp_path, "kd", method="kd")
    run(tmp_path, "photo", test_domain="photo")
    run(tmp_path, "seed9", seed=9)
    run(tmp_path, "unfinished", done=False, seed=2)
    run(tmp_path, "no-weights", weights=False, seed=3)
    found = open_vocab_eval.students(tmp_path, "sketch", [0, 1, 2, 3])
    assert found == {("adip @ 0%", 0): zero, ("adip @ 100%", 0): full, ("adip online", 1): online}
    assert "no-weights (adip @ 100%, seed 3): finished, but its weights are not here" in capsys.readouterr().out
