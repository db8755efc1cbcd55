"""Purchase order strategies and the purchase plan: deterministic, budget-exact, balanced/diverse."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from shape_drawings import make_dataset
from test_embed_e2e import ROOT, client_ledger, embed_cmd, run_embed, vendor_used, wait_for_usage

from client_distill.buy.embed import make_plan, source_samples
from client_distill.buy.selection import kcenter_order, order_samples
from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import Sample, open_dataset
from client_distill.errors import UsageError
from client_distill.train.probe import student_features
from client_distill.train.students import create_student, save_student


def samples(n_per_class: int, classes: int = 3) -> list[Sample]:
    return [Sample(f"d/c{c}/{i}.png", c, "d") for c in range(classes) for i in range(n_per_class)]


def test_random_is_a_seeded_permutation():
    pool = samples(5)
    a, b = order_samples(pool, "random", 1), order_samples(pool, "random", 1)
    assert a == b and sorted(a, key=lambda s: s.path) == sorted(pool, key=lambda s: s.path)
    assert order_samples(pool, "random", 2) != a


def test_class_balanced_prefixes_are_balanced():
    pool = (
        samples(2, classes=1)
        + [Sample(f"d/c1/{i}.png", 1, "d") for i in range(10)]
        + [Sample(f"d/c2/{i}.png", 2, "d") for i in range(10)]
    )
    order = order_samples(pool, "class_balanced", 0)
    assert len(order) == len(pool) and len(set(order)) == len(pool)
    assert Counter(s.label for s in order[:6]) == {0: 2, 1: 2, 2: 2}


def test_kcenter_covers_clusters_before_repeating_one():
    rng = np.random.default_rng(0)
    centers = np.eye(4, 16) * 10
    feats = np.concatenate([c + rng.normal(scale=0.1, size=(25, 16)) for c in centers])
    order = kcenter_order(feats, 4, np.random.default_rng(0))
    assert sorted(i // 25 for i in order[:4]) == [0, 1, 2, 3]  # one pick per cluster first
    assert sorted(order) == list(range(100))
    pool = [Sample(f"d/c{i // 25}/{i}.png", i // 25, "d") for i in range(100)]
    chosen = order_samples(pool, "kcenter", 0, features=lambda s: feats, k=4)[:4]
    assert sorted(s.label for s in chosen) == [0, 1, 2, 3]
    with pytest.raises(UsageError):
        order_samples(pool, "kcenter", 0)


def test_student_features_from_a_student_checkpoint(tmp_path):
    torch.set_num_threads(1)
    for i in range(3):
        (tmp_path / "d" / "c").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (80 * i, 20, 200 - 60 * i)).save(tmp_path / "d" / "c" / f"{i}.png")
    ckpt = tmp_path / "student.pt"
    save_student(create_student("resnet10t", pretrained=False), ckpt)
    feats = student_features(tmp_path, str(ckpt))([Sample(f"d/c/{i}.png", 0, "d") for i in range(3)])
    assert feats.shape[0] == 3 and feats.ndim == 2 and np.isfinite(feats).all()


def test_plan_is_budget_exact_prompts_first():
    pool = samples(4)
    plan = make_plan(["dog", "cat"], ["a photo of a {}", "a sketch of a {}"], pool, views=3, budget=11)
    assert plan.texts == ["a photo of a dog", "a sketch of a dog", "a photo of a cat", "a sketch of a cat"]
    assert plan.queries == 11 and plan.images[:4] == [(pool[0], 0), (pool[0], 1), (pool[0], 2), (pool[1], 0)]
    with pytest.raises(UsageError, match="class prompts"):
        make_plan(["dog", "cat"], ["a photo of a {}"], pool, views=1, budget=1)


def test_a_vendor_that_prices_by_size_is_planned_at_its_price(tmp_path):
    """A card with pixels_per_query: each view is planned at what the vendor will charge for the bytes
    sent (the adapter's reservation, computed from them), and the plan stops where the budget does."""
    from client_distill.adapters.registry import create_adapter
    from client_distill.buy.embed import view_bytes, view_price

    sizes = [(64, 48), (100, 100), (30, 90), (64, 64)]
    pool = [Sample(f"d/c/{i}.png", 0, "d") for i in range(len(sizes))]
    (tmp_path / "d" / "c").mkdir(parents=True)
    for sample, size in zip(pool, sizes, strict=True):
        Image.new("RGB", size, (120, 30, 200)).save(tmp_path / sample.path)
    adapter = create_adapter("vl2v", "http://127.0.0.1:1")
    adapter.card = {"pixels_per_query": 1000}
    price = view_price(tmp_path, adapter.pixels_per_query)
    for sample in pool:
        for view in (0, 1):
            assert price(sample, view) == adapter.price("image", [view_bytes(tmp_path, sample, view, seed=0)])
    # 1 prompt, then 4 + 3 queries (64x48, then its 48x48 view), then 10 + 10 (100x100, twice), ...
    plan = make_plan(["dog"], ["a photo of a {}"], pool, views=2, budget=17, price=price)
    assert plan.images == [(pool[0], 0), (pool[0], 1)] and plan.queries == 1 + 4 + 3
    plan = make_plan(["dog"], ["a photo of a {}"], pool, views=2, budget=28, price=price)
    assert plan.images == [(pool[0], 0), (pool[0], 1), (pool[1], 0), (pool[1], 1)] and plan.queries == 28
    assert view_price(tmp_path, 0) is None  # flat pricing: one query a view, no file opened


@pytest.mark.slow
def test_uncertainty_buys_in_rounds_within_budget_and_a_killed_run_resumes_paying_nothing_twice(
    vendor_server, tmp_path
):
    """Against a REAL vendor: `vl2v embed --strategy uncertainty --rounds 3` SIGKILLed in its second round,
    rerun: the key's usage is the budget exactly, the ledger agrees, and another rerun pays nothing."""
    data = make_dataset(tmp_path / "shapes", per_class=8)  # 3 classes x 2 domains: 48 images
    key = vendor_server.create_key(budget=1000, rate_limit=4.0)
    cache, out = tmp_path / "cache", tmp_path / "set"
    args = (vendor_server.url, key, data, cache, out, 27, "--strategy", "uncertainty", "--rounds", "3")
    args += ("--batch-size", "2", "--concurrency", "1")
    process = subprocess.Popen(embed_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_usage(vendor_server, key, 3 + 8 + 2, process)  # the prompts, round 1's 8 images, round 2 begun
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert vendor_used(vendor_server, key) < 27
    manifest = json.loads((out / "manifest.json").read_text())  # round 1's set, saved before the kill
    assert (manifest["round"], manifest["rounds"], manifest["complete"]) == (1, 3, False)  # not the whole order
    rerun = run_embed(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert vendor_used(vendor_server, key) == 27 == client_ledger(cache)["paid"]
    bought = set(TeacherSet.load(out).image_embeddings)
    assert len(bought) == 24
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    dataset = open_dataset(data)
    first_24 = order_samples(source_samples(dataset, dataset.domains, "all", 0), "random", 0)[:24]
    assert bought != {s.path for s in first_24}  # rounds 2 and 3 followed the student, not the shuffle
    again = run_embed(*args)
    assert again.returncode == 0, again.stderr
    assert vendor_used(vendor_server, key) == 27
    assert json.loads((out / "manifest.json").read_text())["queries"]["paid_this_run"] == 0
