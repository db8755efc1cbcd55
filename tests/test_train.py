"""The run loop end to end on a tiny image folder with a teacher set: results.jsonl fields, selection
on source validation only, budgets, exact resume, the online mode's query count, DDP init, the CLI."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from distill_world import LoopbackVendor, make_images, make_student, make_teacher_set
from PIL import Image

from client_distill.cli import main
from client_distill.datasets import open_dataset
from client_distill.embed import view_bytes
from client_distill.errors import UsageError
from client_distill.train import Run, RunSpec, cached_batch, load_records, run_distill, select
from client_distill.transforms import eval_transform

torch.set_num_threads(1)
VOLATILE = {"images_per_s"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    data = make_images(root / "data")
    make_teacher_set(data, root / "teacher")
    make_student(root / "student.pt")
    return root


def spec(world, method="adip", **kw) -> RunSpec:
    base = dict(method=method, data=str(world / "data"), test_domain="sketch", teacher=str(world / "teacher"), student=str(world / "student.pt"), profile="smoke")
    return RunSpec(**{**base, **kw})


def test_run_writes_domainbed_records_and_selects_on_source_validation(world, tmp_path):
    best = run_distill(spec(world, budget=0.5), tmp_path)
    records = load_records(tmp_path)
    assert (tmp_path / "done").is_file() and (tmp_path / "best_align.pt").is_file() and (tmp_path / "best_distill.pt").is_file()
    assert [(r["stage"], r["stage_step"], r["step"]) for r in records] == [("align", 3, 3), ("align", 6, 6), ("distill", 3, 9), ("distill", 6, 12)]
    ds = open_dataset(world / "data")
    test = ds.domain_index("sketch")
    for r in records:
        for i in range(len(ds.domains)):
            assert 0.0 <= r[f"env{i}_in_acc"] <= 1.0 and 0.0 <= r[f"env{i}_out_acc"] <= 1.0
        assert r["source_val_acc"] == pytest.approx(np.mean([r[f"env{i}_out_acc"] for i in range(3) if i != test]))
        assert r["test_env"] == test and r["target_split"] == "in" and np.isfinite(r["loss"])
        assert r["args"]["method"] == "adip" and r["hparams"]["lr"] == 1e-3 and r["queries_texts"] == 2
    n_source = sum(len(ds.split(d, 0)[0]) for d in ds.domains if d != "sketch")
    assert records[0]["queries_images"] == records[0]["budget_images"] == round(0.5 * n_source)
    assert best == select(records) and best["stage"] == "distill"
    # a finished run is not trained again
    assert run_distill(spec(world, budget=0.5), tmp_path) == best and len(load_records(tmp_path)) == 4


def test_selection_never_looks_at_the_target():
    def rec(step, source_val, target):
        return {"step": step, "stage_index": 1, "n_stages": 2, "source_val_acc": source_val, "env2_in_acc": target}

    records = [{"step": 1, "stage_index": 0, "n_stages": 2, "source_val_acc": 1.0, "env2_in_acc": 1.0}, rec(2, 0.9, 0.1), rec(3, 0.5, 1.0)]
    assert select(records)["step"] == 2  # best source validation of the final stage, whatever the target says


@pytest.mark.parametrize("views", [1, 2])
def test_resume_continues_exactly(world, tmp_path, views):
    teacher = world / "teacher"
    if views > 1:  # inputs made from bought views ≥ 1 too must be the same after a resume
        teacher = tmp_path / "views"
        make_teacher_set(world / "data", teacher, views=views, meta={"seed": 0})
    run = spec(world, teacher=str(teacher))
    assert run_distill(run, tmp_path / "stopped", stop_after=3) is None
    assert not (tmp_path / "stopped" / "done").exists() and len(load_records(tmp_path / "stopped")) == 1
    run_distill(run, tmp_path / "stopped")
    run_distill(run, tmp_path / "straight")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rs]  # noqa: E731
    assert strip(load_records(tmp_path / "stopped")) == strip(load_records(tmp_path / "straight"))


def test_resume_keeps_only_the_best_files_its_checkpoint_vouches_for(world, tmp_path):
    run, out = spec(world), tmp_path / "crashed"
    assert run_distill(run, out, stop_after=3) is None
    # died after saving the checkpoint, before moving the new best it lists into place ...
    (out / "best_align.pt").replace(out / "best_align.pt.new")
    # ... and a best file from later steps, whose checkpoint never came: the resume recomputes them
    torch.save({"from": "a segment that died before its checkpoint"}, out / "best_distill.pt.new")
    run_distill(run, out)
    run_distill(run, tmp_path / "straight")
    assert not list(out.glob("*.new"))
    strip = lambda rs: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rs]  # noqa: E731
    assert strip(load_records(out)) == strip(load_records(tmp_path / "straight"))
    for name in ("best_align.pt", "best_distill.pt"):
        got, want = (torch.load(d / name, weights_only=True) for d in (out, tmp_path / "straight"))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_bought_views_are_the_inputs_they_are_paired_with(world, tmp_path):
    """With 2 views bought per image, an input paired with view 1 is exactly the picture `vl2v embed`
    sent for it (decoded, then only the student's eval resize and normalisation), redrawn with the seed
    in the set's manifest, not the run's; every input gets the embedding of the view it was made from."""
    make_teacher_set(world / "data", tmp_path / "views", views=2, meta={"seed": 5})
    run = Run(spec(world, teacher=str(tmp_path / "views"), seed=1), tmp_path / "run")
    resize = eval_transform(run.student.input_size, run.student.mean, run.student.std)

    def sent(sample, seed):  # the bytes `vl2v embed` sends for view 1, as the student's eval transform sees them
        return resize(Image.open(io.BytesIO(view_bytes(run.data.root, sample, 1, seed))))

    drawn = []
    for batches in run._segment(0, 0, 3):
        _, _, image, has_image = cached_batch(batches, [run.tables[i] for i in run.sources])
        assert has_image.all()
        pairs = [(x, i, j, v) for (xs, _, idx, views), i in zip(batches, run.sources) for x, j, v in zip(xs, idx.tolist(), views.tolist())]
        for row, (x, i, j, v) in enumerate(pairs):
            assert torch.equal(image[row], run.tables[i].vectors[j, v])
            if v == 1:
                assert torch.equal(x, sent(run.splits[i][0][j], 5)) and not torch.equal(x, sent(run.splits[i][0][j], 1))
            drawn.append(v)
    assert set(drawn) == {0, 1}
    make_teacher_set(world / "data", tmp_path / "no-seed", views=2)
    with pytest.raises(UsageError, match="no integer 'seed'"):
        Run(spec(world, teacher=str(tmp_path / "no-seed")), tmp_path / "run2")


def test_zero_budget_and_zero_shot(world, tmp_path):
    r = run_distill(spec(world, method="kd", budget=0.0), tmp_path / "kd0")
    assert r["queries_images"] == 0 and r["budget_images"] == 0 and np.isfinite(r["loss"])
    with pytest.raises(UsageError, match="learns only from teacher image embeddings"):
        run_distill(spec(world, method="adip_image_only", budget=0.0), tmp_path / "img0")
    z = run_distill(spec(world, method="zero_shot"), tmp_path / "zs")
    n_images = sum(len(open_dataset(world / "data").samples(d)) for d in ("art", "photo", "sketch"))
    assert z["queries_images"] == 0 and z["queries_eval_images"] == n_images and z["stage"] == "predict"
    assert z["env2_in_acc"] >= 0.8  # the teacher set's image vectors sit next to their class text vector


def test_swad_records_are_evaluated_and_selectable(world, tmp_path):
    run_distill(spec(world, method="erm", hparams={"swad": True, "steps": 4, "checkpoint_freq": 2}), tmp_path)
    records = load_records(tmp_path)
    assert [(r["stage_step"], r["swad"]) for r in records] == [(2, False), (2, True), (4, False), (4, True)]
    assert (tmp_path / "best_train_swad.pt").is_file()
    assert select(records) in records


def test_online_mode_buys_every_augmented_view(world, tmp_path):
    vendor = LoopbackVendor(16)
    r = run_distill(spec(world, teacher_mode="online"), tmp_path, vendor)
    per_step = 2 * 4  # two source domains × 4 images per domain per step (smoke profile)
    assert vendor.paid == 12 * per_step and load_records(tmp_path)[-1]["queries_images"] == 12 * per_step
    assert r["queries_images"] == r["step"] * per_step  # the selected checkpoint's count, whichever it is
    assert vendor.sizes == {(32, 32)}


def test_ddp_world_size_one_with_gloo(world, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    try:
        r = run_distill(spec(world, method="erm", hparams={"steps": 3}), tmp_path)
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert r["world_size"] == 1 and (tmp_path / "done").is_file()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def torchrun_two(*argv: str) -> None:
    """Run ``argv`` (a script or ``-m module`` and its arguments) as 2 gloo processes under torchrun."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    done = subprocess.run([*launch, *argv], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_torchrun_two_processes(world, tmp_path):
    """`torchrun --nproc_per_node 2 -m client_distill.cli distill`: DDP over gloo, rank 0 records."""
    argv = ["-m", "client_distill.cli", "distill", "--method", "adip", "--data", str(world / "data"), "--test-domain", "sketch"]
    torchrun_two(*argv, "--teacher", str(world / "teacher"), "--student", str(world / "student.pt"), "--profile", "smoke", "--out", str(tmp_path))
    records = load_records(tmp_path)
    assert [r["step"] for r in records] == [3, 6, 9, 12] and {r["world_size"] for r in records} == {2}


#: one online run under torchrun, stopped after step 6 and resumed in the same processes; each rank
#: has its own stand-in vendor, so each counts only the views of its own batches
ONLINE_DDP = """
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, {tests!r})
from distill_world import LoopbackVendor

from client_distill.train import RunSpec, run_distill

world = Path({world!r})
spec = RunSpec(method="adip", data=str(world / "data"), test_domain="sketch", teacher=str(world / "teacher"),
               student=str(world / "student.pt"), profile="smoke", teacher_mode="online")
vendor = LoopbackVendor(16)
assert run_distill(spec, {out!r}, vendor, stop_after=6) is None
run_distill(spec, {out!r}, vendor)
assert vendor.paid == 12 * 8, vendor.paid
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_online_records_every_ranks_queries(world, tmp_path):
    """Each rank buys its own batch's views; the records count both ranks', also across a resume."""
    script = tmp_path / "online_ddp.py"
    script.write_text(ONLINE_DDP.format(tests=str(Path(__file__).parent), world=str(world), out=str(tmp_path / "run")))
    torchrun_two(str(script))
    records = load_records(tmp_path / "run")
    per_step = 2 * 2 * 4  # two ranks × two source domains × 4 images per domain (smoke profile)
    assert [(r["step"], r["queries_images"]) for r in records] == [(s, s * per_step) for s in (3, 6, 9, 12)]


def test_cli_distill_and_user_errors(world, tmp_path, capsys):
    argv = ["distill", "--method", "lp", "--data", str(world / "data"), "--test-domain", "art", "--student", str(world / "student.pt")]
    assert main(argv + ["--profile", "smoke", "--steps", "3", "--out", str(tmp_path / "lp")]) == 0
    assert "lp → art: target (in split)" in capsys.readouterr().out
    assert json.loads((tmp_path / "lp" / "args.json").read_text())["hparams"] == {"steps": 3}
    assert main(argv[:6] + ["nowhere", "--profile", "smoke", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown domain 'nowhere'" in err and "Traceback" not in err
    assert main(["distill", "--method", "adip", "--data", str(world / "data"), "--test-domain", "art", "--out", str(tmp_path / "y")]) == 2
    assert "--teacher" in capsys.readouterr().err


@pytest.mark.slow
def test_cached_and_online_modes_against_the_real_vendor(vendor_server, world, tmp_path, capsys):
    """`vl2v embed` buys a teacher set from a real `vl2v-vendor serve`; a cached-mode run then costs
    the vendor nothing, and an online-mode run costs exactly the views it reports."""
    key = vendor_server.create_key(budget=10_000)
    vendor = ["--vendor", "vl2v", "--vendor-url", vendor_server.url, "--api-key", key]
    data = str(world / "data")
    n_images = sum(len(open_dataset(data).samples(d)) for d in ("art", "photo", "sketch"))
    assert main(["embed", *vendor, "--data", data, "--split", "all", "--budget", str(n_images + 2), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "set")]) == 0
    with vendor_server.client(key) as client:
        used = lambda: client.get("/v1/usage").json()["used"]  # noqa: E731
        bought = used()
        assert bought == n_images + 2  # two class prompts and every image
        run = ["distill", "--method", "adip", "--data", data, "--test-domain", "sketch", "--teacher", str(tmp_path / "set"), "--student", str(world / "student.pt"), "--profile", "smoke", "--steps", "2"]
        assert main(run + ["--out", str(tmp_path / "cached")]) == 0
        assert used() == bought  # training from the teacher set buys nothing
        assert main(run + ["--out", str(tmp_path / "online"), "--teacher-mode", "online", *vendor, "--cache-dir", str(tmp_path / "cache2")]) == 0
        online = load_records(tmp_path / "online")[-1]
        assert online["queries_images"] == 2 * 2 * 8 == used() - bought  # 2 stages × 2 steps × 8 augmented views
    cached = load_records(tmp_path / "cached")[-1]
    assert cached["queries_images"] == 20  # every source "in" image, bought once
    capsys.readouterr()
