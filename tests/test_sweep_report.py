"""The sweep (md5-named run folders, finished runs skipped, runs as `vl2v distill` processes) and the
report (mean ± standard error computed from known results.jsonl, selection, the plot)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from distill_world import make_images, make_student, make_teacher_set
from processes import default_sigint

from client_distill.cli import main
from client_distill.data.datasets import open_dataset
from client_distill.data.synth import write_synth
from client_distill.errors import UsageError
from client_distill.report.report import collect, write_report
from client_distill.sweep.config import EmbedConfig, load_config
from client_distill.sweep.plan import Planner, plan_sweep, run_name
from client_distill.sweep.run import SEARCH_FILE, run_sweep
from client_distill.sweep.search import choose, grid_points
from client_distill.train.hparams import resolve_hparams
from client_distill.train.model_selection import select
from client_distill.train.run import run_distill
from client_distill.train.run_reader import load_records
from client_distill.train.students import WEIGHTS_DIR


def expand(cfg, **changes):
    """The protocol runs of ``cfg`` with some keys changed."""
    return plan_sweep(cfg.model_copy(update=changes))[0]


torch.set_num_threads(1)


def write_config(tmp_path: Path, **extra) -> Path:
    data = make_images(tmp_path / "data", per_class=4)
    make_teacher_set(data, tmp_path / "teacher")
    make_student(tmp_path / "student.pt")
    cfg = {
        "data": str(data),
        "student": str(tmp_path / "student.pt"),
        "teacher": str(tmp_path / "teacher"),
        "methods": ["erm"],
        "test_domains": ["sketch"],
        "seeds": [0, 1],
        "profile": "smoke",
        "hparams": {"steps": 2, "checkpoint_freq": 2},
        "out": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_expand_budgets_only_for_methods_that_buy_images(tmp_path):
    cfg = load_config(
        write_config(tmp_path, methods=["erm", "zero_shot", "adip"], budgets=[0, 0.5, 1.0], test_domains="all")
    )
    specs = expand(cfg)
    count = lambda m: sum(s.method == m for s in specs)  # noqa: E731
    assert (count("erm"), count("zero_shot"), count("adip")) == (3 * 2, 3 * 2, 3 * 3 * 2)
    assert {s.budget for s in specs if s.method == "adip"} == {0.0, 0.5, 1.0}
    image_only = expand(cfg, methods=["adip_image_only"])  # nothing to learn at budget 0
    assert {s.budget for s in image_only} == {0.5, 1.0}
    online = expand(cfg, methods=["erm", "kd", "adip"], teacher_modes=["cached", "online"], online_methods=["adip"])
    assert {(s.method, s.teacher_mode) for s in online} == {
        ("erm", "cached"),
        ("kd", "cached"),
        ("adip", "cached"),
        ("adip", "online"),
    }
    assert len({run_name(s) for s in specs}) == len(specs)  # the md5 of the args names each run
    per_budget = expand(cfg, teachers={0.5: "sets/half"})
    assert {s.teacher for s in per_budget if s.budget == 0.5} == {"sets/half"}
    assert {s.teacher for s in per_budget if s.budget == 1.0} == {cfg.teacher}
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x\nmethods: [erm]\nout: y\nsteps: 3\n")
    with pytest.raises(UsageError, match="steps: Extra inputs are not permitted"):
        load_config(bad)
    bad.write_text("data: x\nmethods: [erm, nope]\nout: y\n")
    with pytest.raises(UsageError, match="unknown method"):
        load_config(bad)
    bad.write_text("data: x\nmethods: [erm]\nout: y\nsearch: {grid: {lr: [0.1]}}\nsearched: s.json\n")
    with pytest.raises(UsageError, match="either `search`"):
        load_config(bad)


def test_teacher_set_names_never_depend_on_credentials(tmp_path):
    """Rotating an API key renames no teacher set (finished runs keep theirs); another vendor URL does."""
    config = write_config(tmp_path, teacher=None, budgets=[1.0], methods=["adip"], seeds=[0])

    def with_key(*args: str):
        return plan_sweep(load_config(config).model_copy(update={"embed": EmbedConfig(vendor_args=list(args))}))[0]

    first = with_key("--vendor-url", "http://127.0.0.1:9", "--api-key", "old-secret")
    assert [s.teacher for s in first] == [
        s.teacher for s in with_key("--vendor-url", "http://127.0.0.1:9", "--api-key=new-secret")
    ]
    assert [s.teacher for s in first] != [
        s.teacher for s in with_key("--vendor-url", "http://127.0.0.1:10", "--api-key", "old-secret")
    ]
    # uncertainty's rounds name its sets (another number of rounds buys other images); no other strategy's
    uncertain = {"vendor_args": ["--vendor-url", "http://127.0.0.1:9"], "strategy": "uncertainty", "rounds": 3}
    cfg = load_config(config)
    specs, orders = plan_sweep(cfg.model_copy(update={"embed": EmbedConfig(**uncertain)}))
    assert {(o.strategy, o.rounds) for o in orders.values()} == {("uncertainty", 3)}
    fewer = plan_sweep(cfg.model_copy(update={"embed": EmbedConfig(**{**uncertain, "rounds": 2})}))[0]
    assert [s.teacher for s in specs] != [s.teacher for s in fewer]
    assert "rounds" not in EmbedConfig(vendor_args=["--vendor-url", "http://127.0.0.1:9"]).identity()
    # the key is a secret by construction: in no dump, no repr, no public flag of the config
    embed = EmbedConfig(vendor_args=["--api-key", "s3cret", "--model", "m", "--api-key=s3cret2"])
    assert embed.vendor.flags() == ["--model", "m"] and embed.vendor.secret == "s3cret2"
    shown = (embed.model_dump(), embed.identity(), embed.model_dump_json(), repr(embed), str(embed.vendor))
    assert all("s3cret" not in str(text) for text in shown)


def test_more_views_are_points_past_the_budgets_with_sets_of_their_own(tmp_path):
    """`more_views: [2]`: a cached point at budget 1 whose set buys 2 views of every source image (its own
    folder and order), for methods that train on teacher images only; older runs keep their names."""
    embed = {"vendor_args": ["--vendor-url", "http://127.0.0.1:9"]}
    cfg = load_config(write_config(tmp_path, embed=embed, teacher=None, seeds=[0], budgets=[1.0], more_views=[2]))
    specs, orders = plan_sweep(cfg.model_copy(update={"methods": ["erm", "adip"]}))
    points = sorted((s.method, s.budget or 0, s.views or 1) for s in specs)
    assert points == [("adip", 1.0, 1), ("adip", 1.0, 2), ("erm", 0, 1)]
    one, two = (next(s for s in specs if s.method == "adip" and s.views == v) for v in (None, 2))
    assert one.teacher != two.teacher and orders[two.teacher].views == 2
    assert orders[two.teacher].max_queries - 2 == 2 * (orders[one.teacher].max_queries - 2)  # 2 class prompts
    assert "views" not in one.to_dict() and two.to_dict()["views"] == 2
    with pytest.raises(UsageError, match="more_views"):
        load_config(write_config(tmp_path / "bad", more_views=[1]))
    with pytest.raises(UsageError, match="embed"):
        load_config(write_config(tmp_path / "no-embed", more_views=[2]))


def test_sweep_buys_only_what_its_methods_use(tmp_path):
    """Planned purchases (nothing is bought here): no set that no run uses; the prompts alone for
    budget-free methods and online runs, nothing for erm-like ones, every image only for zero-shot."""
    embed = {"vendor_args": ["--vendor-url", "http://127.0.0.1:9"]}
    cfg = load_config(
        write_config(
            tmp_path, embed=embed, teacher=None, seeds=[0], budgets=[0, 0.5], teacher_modes=["cached", "online"]
        )
    )

    def image_queries(**changes):  # {(method, mode, budget): image queries its teacher set buys, None without a set}
        specs, purchases = plan_sweep(cfg.model_copy(update={k: v for k, v in changes.items()}))
        images = {out: order.max_queries - 2 for out, order in purchases.items()}  # 2 class prompts
        assert set(images) == {s.teacher for s in specs} - {None}
        return {(s.method, s.teacher_mode, s.budget): images.get(s.teacher) for s in specs}

    budget_free = image_queries(methods=["erm", "lp", "lp_ft", "adip_text_only"])
    assert budget_free == {(m, "cached", None): None for m in ("erm", "lp", "lp_ft")} | {
        ("adip_text_only", "cached", None): 0
    }
    assert image_queries(methods=["adip"]) == {
        ("adip", "cached", 0.0): 0,
        ("adip", "cached", 0.5): 7,
        ("adip", "online", None): 0,
    }
    assert image_queries(methods=["kd"], budgets=None, teacher_modes=["cached"]) == {
        ("kd", "cached", None): 14
    }  # every source "in" image
    assert image_queries(methods=["zero_shot", "erm"]) == {
        ("zero_shot", "cached", None): 24,
        ("erm", "cached", None): None,
    }


@pytest.mark.slow
def test_sweep_runs_unfinished_runs_and_skips_finished_ones(tmp_path):
    config = write_config(tmp_path)
    cfg = load_config(config)
    first, second = expand(cfg)
    run_distill(first, Path(cfg.out) / run_name(first))  # finished before the sweep starts
    outcome = run_sweep(cfg, workers=2)
    assert outcome["skipped"] == [str(Path(cfg.out) / run_name(first))]
    assert outcome["done"] == [str(Path(cfg.out) / run_name(second))] and not outcome["failed"]
    mtime = (Path(outcome["done"][0]) / "results.jsonl").stat().st_mtime
    assert main(["sweep", "--config", str(config)]) == 0  # nothing left to do
    assert (Path(outcome["done"][0]) / "results.jsonl").stat().st_mtime == mtime


@pytest.mark.slow
def test_ctrl_c_stops_the_runs_in_flight_and_starts_no_queued_run(tmp_path):
    config = write_config(tmp_path, seeds=[0, 1, 2, 3], hparams={"steps": 4000, "checkpoint_freq": 2000})
    argv = [sys.executable, "-m", "client_distill.cli", "sweep", "--config", str(config), "--workers", "1"]
    proc = subprocess.Popen(
        argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=default_sigint
    )
    runs = tmp_path / "runs"
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/args.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the sweep and its runs get it
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:  # a sweep that ignored Ctrl-C must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(3)
    assert len(list(runs.glob("*/args.json"))) == 1 and not list(runs.glob("*/done"))


@pytest.mark.slow
def test_sweep_buys_its_teacher_sets_once_per_distinct_image(vendor_server, tmp_path):
    key = vendor_server.create_key(budget=1000)
    vendor = ["--vendor", "vl2v", "--vendor-url", vendor_server.url, "--api-key", key]
    embed = {"vendor_args": vendor, "cache": str(tmp_path / "cache")}
    config = write_config(tmp_path, methods=["adip", "zero_shot"], budgets=[0.5], seeds=[0], embed=embed, teacher=None)
    outcome = run_sweep(load_config(config), workers=2)
    assert len(outcome["done"]) == 2 and not outcome["failed"]
    sets = sorted((tmp_path / "runs" / "teachers").iterdir())
    sizes = sorted(json.loads((s / "manifest.json").read_text())["n_images"] for s in sets)
    assert sizes == [7, 24]  # half of the 14 source "in" images; every image for zero-shot
    with vendor_server.client(key) as client:
        assert client.get("/v1/usage").json()["used"] == 2 + 24  # overlapping purchases were cache hits
    results = {r.method: r for r in collect(tmp_path / "runs")}
    assert results["adip"].queries_images == 7 and results["adip"].budget == 0.5
    ds = open_dataset(tmp_path / "data")
    scored = sum(len(ds.split(d, 0)[1]) for d in ds.domains) + len(
        ds.split("sketch", 0)[0]
    )  # every "out" split, the target's "in"
    assert results["zero_shot"].queries_eval_images == scored

    # the same sweep resumed against other weights: its finished runs are not mixed with a new teacher
    manifest = next(s for s in sets if json.loads((s / "manifest.json").read_text())["n_images"] == 7) / "manifest.json"
    meta = json.loads(manifest.read_text())
    assert meta["model_revision"]  # the vendor states its revision, and the set kept it
    manifest.write_text(json.dumps({**meta, "model_revision": "0" * 12}))
    for done in (tmp_path / "runs").glob("*/done"):
        done.unlink()
    with pytest.raises(UsageError, match=f"bought from model revision {'0' * 12}, but the vendor now serves"):
        run_sweep(load_config(config), workers=1)


def fake_run(
    root: Path,
    method: str,
    domain: str,
    seed: int,
    val: float,
    target: float,
    queries: int = 0,
    budget=None,
    mode="cached",
    model="swad",
    views=None,
):
    """A finished run whose output model has source validation ``val`` and target accuracy ``target``;
    a checkpoint before it, with a better target, must not count."""
    test = ["art", "photo", "sketch"].index(domain)
    out = root / f"{method}-{budget}-{views}-{mode}-{domain}-{seed}"
    out.mkdir(parents=True)
    args = {
        "method": method,
        "seed": seed,
        "budget": budget,
        **({"views": views} if views else {}),
        "teacher_mode": mode,
        "student": "s",
        "profile": "smoke",
        "hparams": {},
        "data": "d",
        "dataset": "toy",
    }
    base = {
        "stage_index": 0,
        "n_stages": 1,
        "test_env": test,
        "test_domain": domain,
        "dataset": "toy",
        "queries_eval_images": 0,
        "args": args,
        "hparams": resolve_hparams(method, "smoke"),
    }
    scores = {f"env{test}_in_acc": target, **{f"env{i}_out_acc": val for i in range(3) if i != test}}
    records = [
        {**base, "model": "checkpoint", "step": 1, "source_val_acc": val, "queries_images": queries // 2},
        {**base, "model": model, "step": 2, "source_val_acc": val, "queries_images": queries, **scores},
    ]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "done").write_text("done\n")


def test_report_tables_mean_and_standard_error(tmp_path):
    runs = tmp_path / "runs"
    for domain, targets in {"art": (0.6, 0.8), "sketch": (0.5, 0.7)}.items():
        for seed, target in enumerate(targets):
            fake_run(runs, "erm", domain, seed, 0.9, target)
    for budget, queries, acc in ((0.0, 0, 0.55), (1.0, 100, 0.75)):
        for domain in ("art", "sketch"):
            for seed in (0, 1):
                fake_run(runs, "adip", domain, seed, 0.9, acc + 0.1 * seed, queries, budget=budget)
    for domain in ("art", "sketch"):
        for seed in (0, 1):
            fake_run(runs, "adip", domain, seed, 0.95, 0.8, 1000, mode="online")  # an online run pays for every step
            fake_run(runs, "adip", domain, seed, 0.9, 0.78, 200, budget=1.0, views=2)  # every image, 2 views each
    assert len(collect(runs)) == 20
    report = write_report(runs, tmp_path / "report", diagnostics=False).read_text()
    # art: 0.6, 0.8 → 70.0 ± std([.6,.8])/√2 = 10.0; Avg per seed (0.55, 0.75) → 65.0 ± 10.0
    assert "| erm | 70.0 ± 10.0 | 60.0 ± 10.0 | 65.0 ± 10.0 |" in report
    assert "| adip @ 0% | 60.0 ± 5.0 | 60.0 ± 5.0 | 60.0 ± 5.0 |" in report  # seeds 0.55, 0.65
    assert "The 0 % rows buy no image and are not distillation" in report
    assert "| adip @ 100% | 80.0 ± 5.0 | 80.0 ± 5.0 | 80.0 ± 5.0 |" in report
    assert "| adip (online) | 80.0 ± 0.0 | 80.0 ± 0.0 | 80.0 ± 0.0 |" in report
    assert "| adip @ 100% × 2 views | 78.0 ± 0.0 | 78.0 ± 0.0 | 78.0 ± 0.0 |" in report
    # paired over (target, seed): adip @ 100% − erm = +15, +5, +25, +15 → 15.0 ± 4.1, t(3) interval, holds
    assert "| adip @ 100% − erm | 4 | +15.0 ± 4.1 | [+2.0, +28.0] | holds |" in report
    assert "| adip @ 100% − adip (online) | 4 | +0.0 ± 2.9 | [-9.2, +9.2] | unresolved |" in report
    # the online point against ERM too: +20, 0, +30, +10 → 15.0 ± 6.5
    assert "| adip (online) − erm | 4 | +15.0 ± 6.5 | [-5.5, +35.5] | unresolved |" in report
    # ID vs OOD: ID is the output model's source validation (0.9), OOD the average
    assert "| erm | 90.0 ± 0.0 | 65.0 ± 10.0 | 25.0 | 0 | 0 | 2 |" in report
    assert "| adip | 100 | 80.0 ± 5.0 | 1000 | 80.0 ± 0.0 | 10.0× |" in report
    assert 'target domain\'s 80 % "in" split' in report and "Premise diagnostics" in report
    png = tmp_path / "report" / "accuracy_vs_budget.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_the_figure_puts_paired_differences_from_erm_under_the_curves(tmp_path):
    """The bottom panel draws each ADiP point's paired difference from ERM over the (target, seed) cells
    (its 95 % interval as the band); the top panel's axis fits the curves and names a probe far below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from client_distill.report.report import _accuracy_panel, _paired_panel

    runs = tmp_path / "runs"
    for domain, targets in {"art": (0.6, 0.8), "sketch": (0.5, 0.7)}.items():
        for seed, target in enumerate(targets):
            fake_run(runs, "erm", domain, seed, 0.9, target)
            fake_run(runs, "lp", domain, seed, 0.9, 0.2)
            fake_run(runs, "adip", domain, seed, 0.95, 0.8, 1000, mode="online")
            for budget, queries, acc in ((0.0, 0, 0.55), (1.0, 100, 0.75)):
                fake_run(runs, "adip", domain, seed, 0.9, acc + 0.1 * seed, queries, budget=budget)
    results = collect(runs)
    colours = {m: "C0" for m in ("adip", "erm", "lp")}
    _, (top, bottom) = plt.subplots(2)
    assert _accuracy_panel(top, results, colours) == [100.0, 1000.0]
    labels = top.get_legend_handles_labels()[1]
    assert "lp (no image queries): 20.0 %, off the axis" in labels and top.get_ylim()[0] > 20
    _paired_panel(bottom, results, colours)
    curve = next(line for line in bottom.get_lines() if line.get_label() == "adip − erm")
    # cells (art 0, art 1, sketch 0, sketch 1): @0 −5, −15, +5, −5 → −5; @100 +15, +5, +25, +15 → +15
    assert list(curve.get_xdata()) == [0.0, 100.0] and list(curve.get_ydata()) == pytest.approx([-5.0, 15.0])
    star = next(c for c in bottom.containers if c.get_label() == "adip (online) − erm")
    assert star.lines[0].get_ydata()[0] == pytest.approx(15.0)  # online: +20, 0, +30, +10
    plt.close("all")


def test_a_protocol_with_only_its_online_runs_done_has_no_cached_vs_online_table(tmp_path):
    """A seed-major protocol finishes its online runs first: nothing to compare them with yet."""
    runs = tmp_path / "runs"
    fake_run(runs, "adip", "art", 0, 0.95, 0.8, 1000, mode="online")
    fake_run(runs, "erm", "art", 0, 0.9, 0.6)
    report = write_report(runs, tmp_path / "report", diagnostics=False, cost=False).read_text()
    assert "| adip (online) |" in report and "Cached teacher set vs online teacher" not in report


def test_the_report_says_which_machines_computed_the_runs(tmp_path):
    """Runs are bit-reproducible on one kind of machine only: a protocol resumed on another kind says
    how many runs each made and their run time (records from before the fields count as not recorded)."""
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        fake_run(runs, "erm", "art", seed, 0.9, 0.7)
    paths = sorted(runs.rglob("results.jsonl"))
    for path, name, seconds in zip(paths, ("CPU A, torch 2", "CPU B, torch 2", None), (3600, 1800, None), strict=True):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        if name:
            records = [
                {**r, "machine": name, "run_seconds": seconds * (i + 1) / len(records)} for i, r in enumerate(records)
            ]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = write_report(runs, tmp_path / "report", diagnostics=False).read_text()
    assert (
        "Computed on: CPU A, torch 2: 1 run, 1.00 h of run time; CPU B, torch 2: 1 run, 0.50 h of run time; "
        "not recorded (runs made before records named their machine): 1 run." in report
    )


def test_report_refuses_two_runs_of_the_same_cell(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "erm", "art", 0, 0.9, 0.6)
    fake_run(runs, "erm", "art", 1, 0.9, 0.6)
    assert len(collect(runs)) == 2
    fake_run(runs / "with-other-hparams", "erm", "art", 0, 0.9, 0.7)  # would count as a third seed
    with pytest.raises(UsageError, match="both erm on art, seed 0"):
        collect(runs)


def test_report_without_runs_is_a_user_error(tmp_path):
    with pytest.raises(UsageError, match=r"no finished protocol runs .* \(folders with a `done` marker\)"):
        write_report(tmp_path, tmp_path / "out")
    # a sweep still in its search has finished runs, but only candidates: the error says so
    fake_run(tmp_path / "runs", "erm", "art", 0, 0.9, 0.6)
    results = next((tmp_path / "runs").glob("*/results.jsonl"))
    records = [json.loads(line) for line in results.read_text().splitlines()]
    for r in records:
        r["args"]["search"] = {"candidate": {"lr": 0.1}}
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UsageError, match="only 1 finished hparam-search candidates, which a report leaves out"):
        write_report(tmp_path / "runs", tmp_path / "out")


def test_search_grid_and_choice_use_source_validation_only():
    assert grid_points({"lr": [1e-3, 1e-4], "kd_tau": [1, 4]}) == [
        {"kd_tau": 1, "lr": 1e-3}, {"kd_tau": 1, "lr": 1e-4}, {"kd_tau": 4, "lr": 1e-3}, {"kd_tau": 4, "lr": 1e-4},
    ]  # fmt: skip
    points = grid_points({"lr": [1e-4, 3e-4, 1e-3]})
    best, means = choose(points, [[0.75, 0.95], [0.875, 0.875], [0.75, 1.0]])
    assert best == 1 and means == pytest.approx([0.85, 0.875, 0.875])  # a tie: the earlier point
    with pytest.raises(UsageError):
        choose(points, [[0.8], [], [0.9]])


@pytest.mark.slow
def test_sweep_searches_each_method_then_runs_the_protocol_with_its_choice(tmp_path):
    config = write_config(
        tmp_path,
        methods=["erm", "adip", "zero_shot"],
        seeds=[0, 1],
        search={"grid": {"lr": [1e-3, 1e-2]}, "seeds": [0]},
    )
    cfg = load_config(config)
    outcome = run_sweep(cfg, workers=2)
    assert not outcome["failed"]
    search = json.loads((tmp_path / "runs" / SEARCH_FILE).read_text())
    assert set(search) == {"erm", "adip"}  # zero-shot trains nothing: nothing to search
    for method, per_target in search.items():
        # one choice per target domain (DomainBed's training-domain validation), from the runs holding it out
        assert set(per_target) == {"art", "photo", "sketch"}  # the search's default: every domain
        for target, s in per_target.items():
            assert s["target"] == target and [c["hparams"] for c in s["candidates"]] == [{"lr": 1e-3}, {"lr": 1e-2}]
            assert all(c["runs"] == 1 for c in s["candidates"])  # the search's one seed, on this target only
            best = max(s["candidates"], key=lambda c: c["score"])
            assert s["chosen"] == best["hparams"]
            runs = [
                select(load_records(d.parent))
                for d in (tmp_path / "runs").glob("*/done")
                if (select(load_records(d.parent))["args"].get("search") or {}).get("candidate")
            ]
            mine = [r for r in runs if r["args"]["method"] == method and r["args"]["test_domain"] == target]
            assert sorted(100 * r["source_val_acc"] for r in mine) == pytest.approx(
                sorted(100 * c["score"] for c in s["candidates"])
            )  # the scores are those runs' source validation, and only theirs
        # the protocol's runs of the method carry their target's choice and the summary that made it
        protocol = [r for r in collect(tmp_path / "runs") if r.method == method]
        assert len(protocol) == 2 and all(
            r.args["hparams"] == {**cfg.hparams, **per_target[r.test_domain]["chosen"]}
            and r.args["search"] == per_target[r.test_domain]
            for r in protocol
        )
    # the candidates are runs like any other, but not protocol results
    candidates = [select(load_records(d.parent)) for d in (tmp_path / "runs").glob("*/done")]
    assert sum(1 for r in candidates if (r["args"].get("search") or {}).get("candidate")) == 2 * 2 * 3
    assert len(collect(tmp_path / "runs")) == 2 + 2 + 2
    report = write_report(tmp_path / "runs", tmp_path / "report").read_text()
    assert "Hparam search" in report and "lr=0.001" in report and "| teacher" in report
    # an earlier search serves a later sweep (`searched:`), which refuses a method it did not search
    reuse = cfg.model_copy(
        update={"search": None, "searched": str(tmp_path / "runs" / SEARCH_FILE), "out": str(tmp_path / "again")}
    )
    assert {s.hparams["lr"] for s in plan_sweep(reuse)[0] if s.method == "erm"} == {
        search["erm"]["sketch"]["chosen"]["lr"]
    }
    with pytest.raises(UsageError, match="no search result for kd on sketch"):
        plan_sweep(reuse.model_copy(update={"methods": ["erm", "kd"]}))


def test_every_protocol_target_needs_its_own_search_choice(tmp_path):
    cfg = load_config(write_config(tmp_path, methods=["erm"], test_domains=["sketch", "art"]))
    pick = {"chosen": {"lr": 0.01}, "candidates": [], "grid": {"lr": [0.01]}, "criterion": "c", "method": "erm"}
    specs, _ = plan_sweep(
        cfg, {"erm": {"sketch": {**pick, "target": "sketch"}, "art": {**pick, "chosen": {"lr": 0.1}}}}
    )
    assert {(s.test_domain, s.hparams["lr"]) for s in specs} == {("sketch", 0.01), ("art", 0.1)}
    with pytest.raises(UsageError, match="no search result for erm on art"):
        plan_sweep(cfg, {"erm": {"sketch": pick}})


def test_a_failed_run_is_reported_by_the_last_line_of_its_log(tmp_path):
    from client_distill.sweep.run import last_line

    log = tmp_path / "log.txt"
    assert last_line(log) == "no log written"
    log.write_text("step 1\nTraceback (most recent call last):\nRuntimeError: loss is not finite\n\n")
    assert last_line(log) == "RuntimeError: loss is not finite"
    from client_distill.sweep.local import _status

    assert _status(-11) == "signal SIGSEGV" and _status(2) == "exit status 2"


SHIPPED = Path(__file__).resolve().parents[1] / "client_distill" / "sweep" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.glob("*.yaml")))
def test_every_shipped_sweep_config_loads_and_plans(name, tmp_path):
    """The demo's and the protocols' configs as shipped: they load, their student exists by name, and they
    plan (a `searched` file covers every method they train on every target; a `search` has its candidates)."""
    data = tmp_path / "data"
    cfg = load_config(SHIPPED / name, {"data": str(data), "out": str(tmp_path / "runs")})
    write_synth(cfg.demo.task, data, per_class=2, seed=cfg.demo.seed, workers=1)
    cfg = load_config(SHIPPED / name, {"data": str(data), "out": str(tmp_path / "runs")})
    assert (WEIGHTS_DIR / f"{cfg.student}.pt").is_file()
    if cfg.search is not None:
        assert Planner(cfg).candidates()
        chosen = {m: {d: {"chosen": {}} for d in Planner(cfg).domains(cfg.test_domains)} for m in cfg.methods}
        specs, _ = plan_sweep(cfg, chosen)
    else:
        specs, _ = plan_sweep(cfg)
    assert {s.method for s in specs} == set(cfg.methods)
    # seed by seed, each seed with every method: a protocol stopped part way has whole seeds to report
    seeds = [s.seed for s in specs]
    assert seeds == sorted(seeds, key=cfg.seeds.index)
    assert all({s.method for s in specs if s.seed == seed} == set(cfg.methods) for seed in cfg.seeds)
