"""The run loop end to end on a tiny image folder with a teacher set: results.jsonl fields, selection
on source validation only, SWAD's output, budgets, exact resume, the online mode's query count, DDP
init, the CLI."""

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

from client_distill.buy.embed import view_bytes
from client_distill.cli import main
from client_distill.data.datasets import open_dataset
from client_distill.data.image_store import pictures_tensor
from client_distill.errors import UsageError
from client_distill.train.augment import resize
from client_distill.train.model_selection import select
from client_distill.train.run import (
    Progress,
    Run,
    RunSpec,
    machine,
    native_bf16,
    png_bytes,
    precision,
    run_distill,
)
from client_distill.train.run_reader import load_records

torch.set_num_threads(1)
VOLATILE = {"images_per_s", "run_seconds"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    data = make_images(root / "data")
    make_teacher_set(data, root / "teacher")
    make_student(root / "student.pt")
    return root


def spec(world, method="adip", **kw) -> RunSpec:
    base = dict(
        method=method,
        data=str(world / "data"),
        test_domain="sketch",
        teacher=str(world / "teacher"),
        student=str(world / "student.pt"),
        profile="smoke",
    )
    return RunSpec(**{**base, **kw})


def test_run_writes_domainbed_records_and_selects_on_source_validation(world, tmp_path):
    best = run_distill(spec(world, budget=0.5), tmp_path)
    records = load_records(tmp_path)
    assert (
        (tmp_path / "done").is_file()
        and (tmp_path / "best_align.pt").is_file()
        and (tmp_path / "best_distill.pt").is_file()
    )
    checkpoints = [r for r in records if r["model"] == "checkpoint"]
    assert [(r["stage"], r["stage_step"], r["step"]) for r in checkpoints] == [
        ("align", 3, 3),
        ("align", 6, 6),
        ("distill", 3, 9),
        ("distill", 6, 12),
    ]
    ds = open_dataset(world / "data")
    test = ds.domain_index("sketch")
    sources = [i for i in range(3) if i != test]
    for r in checkpoints:  # during training only the source domains' "out" splits are scored: never the target
        assert {k for k in r if k.startswith("env")} == {f"env{i}_out_acc" for i in sources}
        assert r["source_val_acc"] == pytest.approx(np.mean([r[f"env{i}_out_acc"] for i in sources]))
        assert np.isfinite(r["source_val_loss"]) and np.isfinite(r["loss"])
        assert r["args"]["method"] == "adip" and r["hparams"]["lr"] == 1e-3 and r["queries_texts"] == 2
        assert r["precision"] == precision(torch.device("cpu"), True)  # what the run computed in, said
        assert r["machine"] == machine(torch.device("cpu")) and "torch" in r["machine"]  # and on what
    final = [r for r in records if r["model"] != "checkpoint"]
    assert [r["model"] for r in final] == ["best"]  # the smoke profile runs without SWAD
    for i in range(3):
        assert 0.0 <= final[0][f"env{i}_out_acc"] <= 1.0
    assert (
        0.0 <= final[0][f"env{test}_in_acc"] <= 1.0
        and final[0]["test_env"] == test
        and final[0]["target_split"] == "in"
    )
    # the output model is the distill stage's best checkpoint by source validation (later wins a tie)
    chosen = max((r for r in checkpoints if r["stage"] == "distill"), key=lambda r: (r["source_val_acc"], r["step"]))
    assert final[0]["step"] == chosen["step"] and final[0]["source_val_acc"] == pytest.approx(chosen["source_val_acc"])
    n_source = sum(len(ds.split(d, 0)[0]) for d in ds.domains if d != "sketch")
    assert records[0]["queries_images"] == records[0]["budget_images"] == round(0.5 * n_source)
    assert best == select(records) and best["stage"] == "distill" and best["model"] == "best"
    # a finished run is not trained again
    assert run_distill(spec(world, budget=0.5), tmp_path) == best and len(load_records(tmp_path)) == 5


def test_amp_is_bf16_only_where_the_hardware_has_it(world, tmp_path):
    """amp on: bf16 on a CPU with AMX or AVX-512 BF16 (else fp32: emulated bf16 is slower); amp off: fp32,
    and the record says which."""
    cpu = torch.device("cpu")
    assert precision(cpu, False) == "fp32" and precision(cpu, True) == ("bf16" if native_bf16(cpu) else "fp32")
    run_distill(spec(world, method="erm", hparams={"amp": False}), tmp_path)
    assert {r["precision"] for r in load_records(tmp_path)} == {"fp32"}


@pytest.mark.parametrize("views", [1, 2])
def test_resume_continues_exactly(world, tmp_path, views):
    teacher = world / "teacher"
    if views > 1:  # inputs made from bought views ≥ 1 too must be the same after a resume
        teacher = tmp_path / "views"
        make_teacher_set(world / "data", teacher, views=views, meta={"seed": 0})
    run = spec(world, teacher=str(teacher))
    assert run_distill(run, tmp_path / "stopped", stop_after=3) is None
    assert not (tmp_path / "stopped" / "done").exists() and len(load_records(tmp_path / "stopped")) == 1
    # the run's clock goes on from its checkpoint: say the first process had run 1000 s by then
    checkpoint = tmp_path / "stopped" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    assert (
        0 < state["position"]["seconds"] == pytest.approx(load_records(tmp_path / "stopped")[0]["run_seconds"], abs=1)
    )
    torch.save({**state, "position": {**state["position"], "seconds": 1000.0}}, checkpoint)
    run_distill(run, tmp_path / "stopped")
    run_distill(run, tmp_path / "straight")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rs]  # noqa: E731
    assert strip(load_records(tmp_path / "stopped")) == strip(load_records(tmp_path / "straight"))
    assert all(r["run_seconds"] > 1000 for r in load_records(tmp_path / "stopped")[1:])


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
    size = run.student.input_size

    def sent(sample, seed):  # the bytes `vl2v embed` sends for view 1, as the student's evaluation resize sees them
        picture = np.asarray(
            Image.open(io.BytesIO(view_bytes(run.data.root, sample, 1, seed))).resize((size, size), Image.BILINEAR)
        )
        return resize(pictures_tensor([picture]), size)[0]

    def vector_row(image_row):  # which (domain, sample, view) of the bought tables a target vector is
        return {
            (i, j, v)
            for i in run.sources
            for j in range(len(run.splits[i][0]))
            for v in range(2)
            if torch.equal(image_row, run.tables[i].vectors[j, v])
        }

    drawn = []
    for step in range(3):
        b = run.batches.batch(step)
        assert b.has_image.all()
        for row in range(len(b.labels)):
            ((i, j, v),) = vector_row(b.image[row])  # every input gets the embedding of exactly one bought view ...
            assert b.labels[row] == run.splits[i][0][j].label
            if v == 1:  # ... and an input paired with view 1 is the picture bought as view 1, with the set's seed
                assert torch.equal(b.pixels[row], sent(run.splits[i][0][j], 5)) and not torch.equal(
                    b.pixels[row], sent(run.splits[i][0][j], 1)
                )
            drawn.append(v)
    assert set(drawn) == {0, 1}
    make_teacher_set(world / "data", tmp_path / "no-seed", views=2)
    with pytest.raises(UsageError, match="no integer 'seed'"):
        Run(spec(world, teacher=str(tmp_path / "no-seed")), tmp_path / "run2")


def test_zero_budget_and_zero_shot(world, tmp_path):
    r = run_distill(spec(world, method="kd", budget=0.0), tmp_path / "kd0")
    assert (
        r["queries_images"] == 0
        and r["budget_images"] == 0
        and all(np.isfinite(x["loss"]) for x in load_records(tmp_path / "kd0") if "loss" in x)
    )
    with pytest.raises(UsageError, match="learns only from teacher image embeddings"):
        run_distill(spec(world, method="adip_image_only", budget=0.0), tmp_path / "img0")
    z = run_distill(spec(world, method="zero_shot"), tmp_path / "zs")
    ds = open_dataset(world / "data")
    n_scored = sum(len(ds.split(d, 0)[1]) for d in ds.domains) + len(
        ds.split("sketch", 0)[0]
    )  # every "out" split, the target's "in"
    assert (
        z["queries_images"] == 0
        and z["queries_eval_images"] == n_scored
        and (z["stage"], z["model"]) == ("predict", "teacher")
    )
    assert z["env2_in_acc"] >= 0.8  # the teacher set's image vectors sit next to their class text vector


def test_swad_is_the_output_model_and_averages_its_window(world, tmp_path):
    r = run_distill(spec(world, method="erm", hparams={"swad": True, "steps": 12, "checkpoint_freq": 2}), tmp_path)
    records = load_records(tmp_path)
    assert [x["model"] for x in records] == ["checkpoint"] * 6 + ["best", "swad"]
    assert r == select(records) and r["model"] == "swad"
    window = r["swad"]
    assert window["segments"] >= 1 and 1 <= window["start_step"] <= window["end_step"] <= 12
    if window[
        "converged"
    ]:  # the window starts where the loss stopped falling: the first of 3 with no lower loss after it
        losses = [x["source_val_loss"] for x in records if x["model"] == "checkpoint"]
        start = (window["start_step"] + 1) // 2 - 1  # index of the segment that starts there
        assert losses[start] <= min(losses[start : start + 3])
    run_distill(
        spec(world, method="erm", hparams={"swad": True, "steps": 12, "checkpoint_freq": 2}), tmp_path / "again"
    )
    assert select(load_records(tmp_path / "again"))["env2_in_acc"] == r["env2_in_acc"]  # deterministic


def test_online_mode_buys_every_augmented_view(world, tmp_path):
    vendor = LoopbackVendor(16)
    r = run_distill(spec(world, teacher_mode="online"), tmp_path, vendor)
    per_step = 2 * 4  # two source domains × 4 images per domain per step (smoke profile)
    assert vendor.paid == 12 * per_step and load_records(tmp_path)[-1]["queries_images"] == 12 * per_step
    assert r["queries_images"] == 12 * per_step  # the output model's record counts what the whole run paid
    assert vendor.sizes == {(32, 32)}


def test_online_views_are_sent_as_the_pixels_trained_on():
    """The online mode's fast PNG level changes the bytes, never the picture the vendor embeds."""
    pixels = torch.rand(5, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    trained_on = pixels.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for sent, picture in zip(png_bytes(pixels), trained_on, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(sent))), picture)


def test_ddp_world_size_one_with_gloo(world, tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
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
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
    ]
    done = subprocess.run(
        [*launch, *argv], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_torchrun_two_processes(world, tmp_path):
    """`torchrun --nproc_per_node 2 -m client_distill.cli distill`: DDP over gloo, rank 0 records."""
    argv = [
        "-m",
        "client_distill.cli",
        "distill",
        "--method",
        "adip",
        "--data",
        str(world / "data"),
        "--test-domain",
        "sketch",
    ]
    torchrun_two(
        *argv,
        "--teacher",
        str(world / "teacher"),
        "--student",
        str(world / "student.pt"),
        "--profile",
        "smoke",
        "--out",
        str(tmp_path),
    )
    records = [r for r in load_records(tmp_path) if r["model"] == "checkpoint"]
    assert [r["step"] for r in records] == [3, 6, 9, 12] and {r["world_size"] for r in records} == {2}


#: one online run under torchrun, stopped after step 6 and resumed in the same processes; each rank
#: has its own stand-in vendor, so each counts only the views of its own batches
ONLINE_DDP = """
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, {tests!r})
from distill_world import LoopbackVendor

from client_distill.train.run import RunSpec, run_distill

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
    records = [r for r in load_records(tmp_path / "run") if r["model"] == "checkpoint"]
    per_step = 2 * 2 * 4  # two ranks × two source domains × 4 images per domain (smoke profile)
    assert [(r["step"], r["queries_images"]) for r in records] == [(s, s * per_step) for s in (3, 6, 9, 12)]


def test_progress_is_told_every_step_checkpoint_and_the_scoring(world, tmp_path):
    told: list[Progress] = []
    hparams = {"steps": 4, "checkpoint_freq": 2}
    run_distill(spec(world, budget=0.5, hparams=hparams), tmp_path, on_progress=told.append)
    assert {p.total for p in told} == {8}  # ADiP: two stages of 4 steps
    assert [p.step for p in told] == sorted(p.step for p in told) and told[-1].step == 8
    assert [p.stage for p in told][0] == "align" and told[-1].stage == "scoring"
    assert {p.stage for p in told} == {"align", "distill", "scoring"}
    assert told[0].source_val_acc is None and told[-1].source_val_acc is not None


def test_cli_distill_and_user_errors(world, tmp_path, capsys):
    argv = [
        "distill",
        "--method",
        "lp",
        "--data",
        str(world / "data"),
        "--test-domain",
        "art",
        "--student",
        str(world / "student.pt"),
    ]
    assert main(argv + ["--profile", "smoke", "--steps", "3", "--out", str(tmp_path / "lp")]) == 0
    out, err = capsys.readouterr()
    assert "lp → art: target (in split)" in out
    assert "distill probe" in err and "3/3" in err and "source val " in err  # the progress bar (LP: one stage)
    assert json.loads((tmp_path / "lp" / "args.json").read_text())["hparams"] == {"steps": 3}
    assert main(argv[:6] + ["nowhere", "--profile", "smoke", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown domain 'nowhere'" in err and "Traceback" not in err
    assert (
        main(
            [
                "distill",
                "--method",
                "adip",
                "--data",
                str(world / "data"),
                "--test-domain",
                "art",
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "--teacher" in capsys.readouterr().err


@pytest.mark.slow
def test_cached_and_online_modes_against_the_real_vendor(vendor_server, world, tmp_path, capsys):
    """`vl2v embed` buys a teacher set from a real `vl2v-vendor serve`; a cached-mode run then costs
    the vendor nothing, and an online-mode run costs exactly the views it reports."""
    key = vendor_server.create_key(budget=10_000)
    vendor = ["--vendor", "vl2v", "--vendor-url", vendor_server.url, "--api-key", key]
    data = str(world / "data")
    n_images = sum(len(open_dataset(data).samples(d)) for d in ("art", "photo", "sketch"))
    assert (
        main(
            [
                "embed",
                *vendor,
                "--data",
                data,
                "--split",
                "all",
                "--max-queries",
                str(n_images + 2),
                "--cache",
                str(tmp_path / "cache"),
                "--out",
                str(tmp_path / "set"),
            ]
        )
        == 0
    )
    with vendor_server.client(key) as client:
        used = lambda: client.get("/v1/usage").json()["used"]  # noqa: E731
        bought = used()
        assert bought == n_images + 2  # two class prompts and every image
        run = [
            "distill",
            "--method",
            "adip",
            "--data",
            data,
            "--test-domain",
            "sketch",
            "--teacher",
            str(tmp_path / "set"),
            "--student",
            str(world / "student.pt"),
            "--profile",
            "smoke",
            "--steps",
            "2",
        ]
        assert main(run + ["--out", str(tmp_path / "cached")]) == 0
        assert used() == bought  # training from the teacher set buys nothing
        assert (
            main(
                run
                + [
                    "--out",
                    str(tmp_path / "online"),
                    "--teacher-mode",
                    "online",
                    *vendor,
                    "--cache",
                    str(tmp_path / "cache2"),
                ]
            )
            == 0
        )
        online = select(load_records(tmp_path / "online"))
        assert online["queries_images"] == 2 * 2 * 8 == used() - bought  # 2 stages × 2 steps × 8 augmented views
    cached = select(load_records(tmp_path / "cached"))
    assert cached["queries_images"] == 20  # every source "in" image, bought once
    capsys.readouterr()
