"""Open-vocabulary export, model card and cost (issue 14, items 4-6) on real runs of the tiny distillation
world (tests/distill_world.py) and a loopback vl2v-flavoured vendor (tests/fake_vendors.py, its 8-dim
vectors; the run's teacher set is made with the same dimension, model id and revision): an export for new
classes pays exactly its prompts once, and a second one nothing; a linear-head run is refused before
anything is sent; another model or revision at the vendor is refused; every export carries its card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from distill_world import make_finished_runs
from fake_vendors import DIM, Script, serve

from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.query_ledger import ledger_totals
from client_distill.cli import main
from client_distill.deploy.cost import break_even
from client_distill.deploy.model_card import CARD_FILE
from client_distill.deploy.model_info import ModelInfo
from client_distill.deploy.predict import open_model
from client_distill.report.report import write_report
from client_distill.train.run_reader import load_records

torch.set_num_threads(1)
PRICE = 0.001
TEACHER_META = {
    "vendor": "vl2v",
    "vendor_url": "http://vendor.internal.example:8000/",
    "model": "vl2v-tiny",
    "model_revision": "rev-1",  # what the fake vendor reports (Script.revision)
    "views": 1,
    "model_card": {"id": "vl2v-tiny", "price_per_query": PRICE, "revision": "rev-1"},
    "queries": {"planned": 62, "texts": 2, "paid_this_run": 62, "cache_hits_this_run": 0},
}
NEW_CLASSES = ["boat", "car", "light bulb"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """An ADiP run and an ERM run (a few seconds) whose teacher set names the fake vendor's model."""
    runs = {method: (method, {"steps": 4, "lr": 3e-3}) for method in ("adip", "erm")}
    return make_finished_runs(
        tmp_path_factory.mktemp("open-vocab-world"), runs, per_class=5, dim=DIM, meta=TEACHER_META
    )


def vendor_args(url: str, cache: Path) -> list[str]:
    return ["--vendor", "vl2v", "--vendor-url", url, "--api-key", "k", "--cache", str(cache)]


def texts_sent(script: Script) -> list[str]:
    return [item.get("text") or "<image>" for _, body in script.requests for item in body["input"]]


def test_open_vocabulary_export_pays_its_prompts_once(world, tmp_path, capsys):
    script, cache = Script(), tmp_path / "cache"
    templates = tmp_path / "templates.txt"
    templates.write_text("# CLIP-style\na photo of a {}\na drawing of a {}\n")
    run = str(world / "runs" / "adip")
    with serve("vl2v", script) as url:
        first = ["export", run, "--out", str(tmp_path / "a"), "--classes", ", ".join(NEW_CLASSES)]
        assert main([*first, "--templates", str(templates), *vendor_args(url, cache)]) == 0
        assert "paid 6, from the cache 0" in capsys.readouterr().out
        # exactly the prompts, every template of every class, and not one image
        expected = [t.format(c) for c in NEW_CLASSES for t in ("a photo of a {}", "a drawing of a {}")]
        assert sorted(texts_sent(script)) == sorted(expected)
        second = ["export", run, "--out", str(tmp_path / "b"), "--classes", ", ".join(NEW_CLASSES)]
        assert main([*second, "--templates", str(templates), *vendor_args(url, cache)]) == 0
        assert "paid 0, from the cache 6" in capsys.readouterr().out
        assert len(texts_sent(script)) == 6  # the second export sent nothing
    opened = EmbeddingCache(cache)
    assert ledger_totals(opened)["paid"] == 6  # the client's ledger agrees
    opened.close()

    info = ModelInfo.read(tmp_path / "a")
    assert info.classes == NEW_CLASSES and info.head == "text"
    ov = info.extra["open_vocabulary"]
    assert ov["trained_classes"] == ["cat", "dog"] and ov["model"] == "vl2v-tiny" and ov["revision"] == "rev-1"
    assert ov["queries"] == {"texts": 6, "paid": 6, "cache_hits": 0}
    # the exported logits are the student's image vector against the bought class vectors
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    logits = open_model(tmp_path / "a").logits(x)
    assert logits.shape == (4, 3)
    # the same classes, paid or from the cache: the same model (both built from the cache's vectors)
    np.testing.assert_array_equal(logits, open_model(tmp_path / "b").logits(x))
    card = (tmp_path / "a" / CARD_FILE).read_text()
    assert "exported for other classes" in card and "paid 6, from the cache 0" in card


def test_open_vocabulary_refusals_send_nothing(world, tmp_path, capsys):
    script = Script(revision="rev-2")  # other weights under the same model name
    with serve("vl2v", script) as url:
        argv = ["--out", str(tmp_path / "x"), "--classes", "boat,car", *vendor_args(url, tmp_path / "cache")]
        assert main(["export", str(world / "runs" / "erm"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "--classes needs a method that predicts with the teacher's text embeddings" in err
        assert len(err.splitlines()) == 1
        assert main(["export", str(world / "runs" / "adip"), *argv]) == 2
        assert "revision rev-2" in capsys.readouterr().err
        assert main(["export", str(world / "runs" / "adip"), *argv[:3], "boat", *argv[4:]]) == 2
        assert "at least two" in capsys.readouterr().err
    assert script.requests == [] and not (tmp_path / "x").exists()


def test_every_export_carries_its_model_card(world, tmp_path):
    out = tmp_path / "plain"
    assert main(["export", str(world / "runs" / "adip"), "--out", str(out), "--cpu-price", "0.05"]) == 0
    card = ModelInfo.read(out).extra["model_card"]
    assert card["synthetic"] and "SYNTHETIC" in card["label"]
    teacher = card["teacher"]
    assert teacher == {**teacher, "model": "vl2v-tiny", "revision": "rev-1", "price_per_query": PRICE, "url_path": "/"}
    assert "vendor.internal.example" not in json.dumps(card) + (out / CARD_FILE).read_text()  # host omitted
    q = card["queries"]
    assert q["teacher_mode"] == "cached" and q["class_texts"] == 2 and q["views_per_image"] == 1
    assert card["method"]["name"] == "adip" and card["method"]["hparams"]["steps"] == 4
    assert card["data"]["target_domain"] == "sketch" and card["data"]["source_domains"] == ["art", "photo"]
    acc = card["accuracy"]
    assert acc["over_seeds"]["seeds"] == [0] and acc["this_run"]["ood"] == acc["over_seeds"]["ood"]["mean"]
    cost = card["cost"]
    assert cost["image_size"] == 32 and cost["student_params"] > 0
    assert {s["runtime"] for s in cost["speeds"]} == {"pytorch", "onnxruntime"}
    assert all(s["latency_ms_batch1"] > 0 and s["throughput_batch64"] > 0 for s in cost["speeds"])
    assert (
        cost["break_even"]["cpu_price_per_core_hour"] == 0.05
        and "0.05 per core-hour" in cost["break_even"]["assumption"]
    )
    text = (out / CARD_FILE).read_text()
    for fact in ("vl2v-tiny", "rev-1", "SYNTHETIC", "sketch", "onnxruntime", "break-even"):
        assert fact in text


def test_break_even_arithmetic():
    # compute free: the extra queries over the vendor's own prompts, one saved query per prediction
    assert break_even(1687, 7, 0.001, 1000.0)["predictions"] == 1680
    assert break_even(7, 7, 0.001, 1000.0)["predictions"] == 0  # no image queries: cheaper at once
    # a CPU at 3.6 per core-hour and 1000 images/s costs 0.000001 per prediction: 1680 · 0.001 / 0.000999
    assert break_even(1687, 7, 0.001, 1000.0, cpu_price_per_core_hour=3.6)["predictions"] == 1682
    assert break_even(1687, 7, 0.001, 1.0, cpu_price_per_core_hour=3.6)["predictions"] is None  # CPU dearer
    assert break_even(1687, 7, None, 1000.0)["predictions"] is None


def test_report_states_the_cost_against_the_teacher(world, tmp_path):
    report = write_report(world / "runs", tmp_path / "report", diagnostics=False).read_text()
    section = report[report.index("cost against the teacher") :]
    assert "onnxruntime | 1 |" in section and "pytorch | 1 |" in section and f"at {PRICE} per query" in section
    # with the compute free, each image query that trained the student is one prediction to win back
    paid = max(r.get("queries_images", 0) for r in load_records(world / "runs" / "adip"))
    assert paid > 0 and f"| adip | {paid} | {paid} |" in section
    assert "| erm | 0 | 0 |" in section  # no query at all: cheaper from the first prediction
    assert "student compute taken as free" in section
