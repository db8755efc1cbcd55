"""A new method is one new file (tests/toy_method.py): once its module is imported, the trainer runs it
with the hparams its class declares, the export folds it as its class says, and the method names (the
command line's choices, a sweep config's check) include it; its name is also readable from its source
without importing it, which is how the package's own methods reach `vl2v --help` without torch."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
from distill_world import make_finished_runs

from client_distill.deploy.export import export_run
from client_distill.deploy.predict import classify_files, open_model
from client_distill.methods import registry
from client_distill.methods.catalog import declared_names, method_names
from client_distill.train.model_selection import select
from client_distill.train.run_reader import load_records

TOY = "toy_text_ce"


def test_a_method_in_one_new_file_trains_and_exports(tmp_path, monkeypatch):
    assert TOY in declared_names(Path(__file__).parent)  # read from tests/toy_method.py's source
    monkeypatch.setattr(registry, "_METHODS", dict(registry.methods()))  # the toy leaves with this test
    monkeypatch.delitem(sys.modules, "toy_method", raising=False)
    assert TOY not in method_names()
    importlib.import_module("toy_method")
    assert TOY in method_names() and registry.method_class(TOY).export_head == "text"

    root = make_finished_runs(tmp_path, {"toy": (TOY, {})}, per_class=4, dim=16)
    run = root / "runs" / "toy"
    record = select(load_records(run))
    assert record["hparams"]["freeze_bn"] is False  # the class's own hparam_defaults, over the registry's
    assert record["hparams"]["steps"] == 6 and record["stage"] == "train"  # the smoke profile, its one stage

    info = export_run(run, tmp_path / "export")
    assert (info.method, info.head, info.classes) == (TOY, "text", ["cat", "dog"])
    predictor = open_model(tmp_path / "export")
    images = sorted((root / "data" / "sketch").rglob("*.png"))
    predictions, failures = classify_files(predictor, images, top_k=2)
    assert not failures and len(predictions) == len(images)
    assert all(np.isclose(sum(p for _, p in pred.top), 1.0) for pred in predictions)
