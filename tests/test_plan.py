"""`vl2v plan` against a REAL `vl2v-vendor serve` on loopback: the pilot stays within the budget and goes
through the cache (a rerun, and a later `vl2v embed`, pay nothing for it), a plan stopped after some short
runs resumes without paying twice; and the curve fit and stop rule on synthetic numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shape_drawings import make_dataset
from test_embed_e2e import client_ledger, run_embed, vendor_used

from client_distill.buy.vendor import VendorConfig
from client_distill.cli import main as vl2v
from client_distill.sweep.budget_curve import fit_curve, recommend, saturating
from client_distill.sweep.budget_plan import PlanOrder, plan_budget

FAST = ("--steps", "20", "--bootstrap", "20", "--pilot", "0.5", "--split", "all")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=4)  # 3 classes x 2 domains: 24 images


def plan_args(server, key: str, data: Path, cache: Path, out: Path, budget: int) -> list[str]:
    return [
        "plan", "--vendor", "vl2v", "--vendor-url", server.url, "--api-key", key, "--data", str(data),
        "--max-queries", str(budget), "--cache", str(cache), "--out", str(out), *FAST,
    ]  # fmt: skip


@pytest.mark.slow
def test_plan_stays_in_budget_and_reruns_and_embed_pay_nothing_twice(vendor_server, data, tmp_path, capsys):
    key = vendor_server.create_key(budget=1000)
    cache, out = tmp_path / "cache", tmp_path / "plan"
    assert vl2v(plan_args(vendor_server, key, data, cache, out, 10)) == 0  # 3 prompts + 7 of the 12 pilot images
    assert vendor_used(vendor_server, key) == 10 == client_ledger(cache)["paid"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["pilot"]["image_queries"] == 7 and (out / "plan.png").stat().st_size > 0
    assert len(plan["points"]) == 2 * 4 and plan["table"][-1]["queries"] == 10
    assert "|" in capsys.readouterr().out

    assert vl2v(plan_args(vendor_server, key, data, cache, out, 100)) == 0  # the whole pilot: 5 more images
    assert vendor_used(vendor_server, key) == 3 + 12
    assert vl2v(plan_args(vendor_server, key, data, cache, out, 100)) == 0
    assert vendor_used(vendor_server, key) == 3 + 12  # the rerun paid nothing
    # the stop rule per unit of price, on the same (finished) short runs: a price no gain is worth
    assert vl2v([*plan_args(vendor_server, key, data, cache, out, 100), "--min-gain-per-price", "1e9"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["min_gain"] == pytest.approx(1e9 * 1000 * plan["price_per_query"])
    assert plan["recommendation"]["why"].startswith("buy nothing more")
    assert vendor_used(vendor_server, key) == 3 + 12
    # the full purchase, same seed and split, pays only for the images the pilot did not buy
    done = run_embed(vendor_server.url, key, data, cache, tmp_path / "set", 27)
    assert done.returncode == 0, done.stderr
    assert vendor_used(vendor_server, key) == 27 == client_ledger(cache)["paid"]


@pytest.mark.slow
def test_a_plan_stopped_after_two_runs_resumes_without_paying_twice(vendor_server, data, tmp_path):
    key = vendor_server.create_key(budget=1000)
    vendor = VendorConfig(vendor="vl2v", vendor_url=vendor_server.url, api_key=key, cache=str(tmp_path / "cache"))
    order = PlanOrder(data=str(data), out=str(tmp_path / "plan"), max_queries=100, split="all", pilot=0.5, steps=20)
    finished: list[str] = []

    def crash_after_two(run: str) -> None:
        finished.append(run)
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        plan_budget(order, vendor, crash_after_two)
    paid = vendor_used(vendor_server, key)
    assert paid == 3 + 12 and len(list((tmp_path / "plan" / "runs").glob("*.json"))) == 2
    trained: list[str] = []
    plan_budget(order, vendor, trained.append)
    assert vendor_used(vendor_server, key) == paid
    assert len(json.loads((tmp_path / "plan" / "plan.json").read_text())["points"]) == 8


def test_the_fit_recovers_a_known_saturating_curve():
    n = np.array([10, 20, 40, 80, 160, 320] * 2, float)
    truth = (0.9, 0.8, 0.6)
    accuracy = saturating(n, *truth) + np.random.default_rng(0).normal(0, 0.002, len(n))
    a, b, c = fit_curve(n, accuracy)
    assert abs(a - 0.9) < 0.02 and abs(b - 0.8) < 0.15 and abs(c - 0.6) < 0.1
    target, why = recommend((a, b, c), pilot=20, most=100_000, min_gain=0.5)
    assert 20 < target < 100_000 and why.startswith("buy up to")


def test_a_flat_curve_recommends_buying_nothing_more():
    n = np.array([10, 20, 40, 80] * 2, float)
    params = fit_curve(n, np.full(len(n), 0.7))
    assert abs(params[0] - 0.7) < 1e-3
    target, why = recommend(params, pilot=80, most=10_000, min_gain=0.5)
    assert target == 80 and why.startswith("buy nothing more")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--max-queries", "0"), "--max-queries"),
        (("--max-queries", "50", "--fractions", "half"), "--fractions"),
        (("--max-queries", "50", "--pilot", "1.5"), "--pilot"),
        (("--max-queries", "50", "--fractions", "0.5,2"), "--fractions"),
        (("--max-queries", "50", "--domains", "photo"), "two or more --domains"),
    ],
)
def test_bad_flags_are_one_line_errors_and_buy_nothing(data, tmp_path, capsys, flags, words):
    argv = ["plan", "--data", str(data), "--out", str(tmp_path / "plan"), "--cache", str(tmp_path / "cache")]
    assert vl2v([*argv, "--vendor-url", "http://127.0.0.1:9", "--api-key", "k", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()
