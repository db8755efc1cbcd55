"""The distilled student as a product (`vl2v export`, `predict`, `evaluate`) on real runs of the tiny
distillation world (tests/distill_world.py): the exported classifier reproduces PyTorch (ONNX under
onnxruntime, TorchScript), SWAD's average is rebuilt exactly, prediction from an ONNX export never
imports torch, bad inputs are per-file one-line failures, and evaluate reproduces the accuracy each run
recorded on its own split."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from distill_world import make_finished_runs, make_images
from PIL import Image

from client_distill.cli import main
from client_distill.data.datasets import open_dataset
from client_distill.data.image_store import decode
from client_distill.deploy.export import CHECK_TOLERANCE, ExportError, export_run, verify
from client_distill.deploy.model_info import METADATA_FILE, ModelInfo, Preprocessing
from client_distill.deploy.predict import decode_image, open_model, preprocess
from client_distill.deploy.run_model import load_run
from client_distill.errors import UsageError
from client_distill.train.model_selection import select
from client_distill.train.run import RunSpec, run_distill
from client_distill.train.run_reader import load_records

torch.set_num_threads(1)
#: the runs the tests export: ADiP outputs SWAD's average (swad.pt), ERM its best
#: checkpoint, KD its linear head (its text head only teaches)
RUNS = {
    "adip": ("adip", {"swad": True, "checkpoint_freq": 2, "steps": 8, "lr": 3e-3}),
    "erm": ("erm", {"steps": 8, "lr": 3e-3}),
    "kd": ("kd", {"steps": 6, "lr": 3e-3}),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Three finished runs (a few seconds in all) on 10 images per class and domain, so that each
    domain's 20 % split has 4 images and the recorded accuracies are not all the same number."""
    return make_finished_runs(tmp_path_factory.mktemp("export-world"), RUNS, per_class=10)


@pytest.fixture(scope="module")
def adip_onnx(world) -> Path:
    out = world / "exports" / "adip-onnx"
    export_run(world / "runs" / "adip", out, "onnx")
    return out


def images(world: Path, preprocessing: Preprocessing, n: int = 32) -> np.ndarray:
    """``n`` preprocessed images of the world's data, spread over every domain and class."""
    data = open_dataset(world / "data")
    samples = [s for d in data.domains for s in data.samples(d)]
    picked = [samples[i] for i in np.linspace(0, len(samples) - 1, n).astype(int)]
    pictures = [decode_image(data.root / s.path, preprocessing.image_size) for s in picked]
    return preprocess(np.stack(pictures), preprocessing)


def test_onnx_export_of_swad_model_agrees_with_pytorch(world, adip_onnx):
    run = world / "runs" / "adip"
    record = select(load_records(run))
    assert record["model"] == "swad"  # SWAD's average, the folder's swad.pt
    info = ModelInfo.read(adip_onnx)
    assert sorted(p.name for p in adip_onnx.iterdir()) == ["MODEL_CARD.md", METADATA_FILE, "model.onnx"]
    assert info.model_format == "onnx" and info.classes == ["cat", "dog"] and info.method == "adip"
    assert info.head == "text" and info.logit_scale == record["logit_scale"]
    assert info.preprocessing.image_size == 32 and len(info.preprocessing.mean) == 3 == len(info.preprocessing.std)
    assert info.run["id"] == "adip" and info.run["selected_model"] == "swad" and info.run["test_domain"] == "sketch"
    check = info.check
    assert check["inputs"].startswith("32 images of") and check["argmax_identical"]
    assert check["max_abs_logit_diff"] <= CHECK_TOLERANCE

    x = images(world, info.preprocessing)
    with torch.inference_mode():
        expected = load_run(run).classifier(torch.from_numpy(x)).numpy()
    onnx = open_model(adip_onnx)
    assert onnx.source == "onnx"
    got = onnx.logits(x)
    print(f"ONNX vs PyTorch on 32 images: max |logit difference| {np.abs(got - expected).max():.3g}")
    assert np.abs(got - expected).max() <= CHECK_TOLERANCE and (got.argmax(1) == expected.argmax(1)).all()
    for batch in (1, 5):  # the batch axis is dynamic
        assert np.abs(onnx.logits(x[:batch]) - expected[:batch]).max() <= CHECK_TOLERANCE

    # a model that does not reproduce its reference is refused, loudly
    with pytest.raises(ExportError, match="does not reproduce PyTorch"):
        verify(adip_onnx, x, expected + 0.01, "the test's images")


def test_a_finished_run_keeps_swads_average_not_its_checkpoint_and_older_folders_still_load(world, tmp_path):
    """A finished run drops checkpoint.pt (only a resume reads it; SWAD's pending copies make it ~10× the
    model) and keeps the average as swad.pt; a folder finished before swad.pt existed holds the window
    search in checkpoint.pt instead, and loads to the same weights from there."""
    finished = world / "runs" / "adip"
    assert not (finished / "checkpoint.pt").exists() and (finished / "swad.pt").is_file()
    expected = load_run(finished).classifier.state_dict()

    # the same run stopped after its last step (not yet scored): its checkpoint holds the whole window search
    method, hparams = RUNS["adip"]
    spec = json.loads((finished / "args.json").read_text())
    assert spec["method"] == method and spec["hparams"] == hparams
    stopped = tmp_path / "stopped"
    stages = select(load_records(finished))["n_stages"]
    run_distill(RunSpec(**spec), stopped, stop_after=hparams["steps"] * stages)
    legacy = tmp_path / "legacy"
    shutil.copytree(finished, legacy)
    (legacy / "swad.pt").unlink()
    shutil.copy(stopped / "checkpoint.pt", legacy / "checkpoint.pt")
    got = load_run(legacy).classifier.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)

    (legacy / "checkpoint.pt").unlink()
    with pytest.raises(UsageError, match="needs swad.pt or checkpoint.pt; both are missing"):
        load_run(legacy)


@pytest.mark.slow
def test_onnx_export_of_a_linear_head(world, tmp_path):
    info = export_run(world / "runs" / "erm", tmp_path / "erm", "onnx")
    assert info.head == "linear" and info.logit_scale is None and info.run["selected_model"] == "best"
    assert info.check["max_abs_logit_diff"] <= CHECK_TOLERANCE and info.check["argmax_identical"]


def test_torchscript_export_loads_and_agrees(world, tmp_path):
    out = tmp_path / "kd"
    assert main(["export", str(world / "runs" / "kd"), "--out", str(out), "--format", "torchscript"]) == 0
    info = ModelInfo.read(out)
    assert info.model_file == "model.pt" and info.method == "kd" and info.head == "linear"
    x = images(world, info.preprocessing)
    with torch.inference_mode():
        expected = load_run(world / "runs" / "kd").classifier(torch.from_numpy(x)).numpy()
    scripted = open_model(out)
    assert scripted.source == "torchscript"
    assert np.abs(scripted.logits(x) - expected).max() <= 1e-5


def test_unfinished_and_zero_shot_runs_are_refused(world, tmp_path, capsys):
    base = dict(data=str(world / "data"), test_domain="sketch", teacher=str(world / "teacher"), profile="smoke")
    run_distill(RunSpec(method="erm", student=str(world / "student.pt"), **base), tmp_path / "part", stop_after=3)
    run_distill(RunSpec(method="zero_shot", **base), tmp_path / "zs")
    with pytest.raises(UsageError, match="has not finished"):
        export_run(tmp_path / "part", tmp_path / "e1")
    with pytest.raises(UsageError, match="outputs the teacher itself"):
        export_run(tmp_path / "zs", tmp_path / "e2")
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "e3")]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("e1", "e2", "e3"))


def test_decoding_is_the_trainers(tmp_path):
    rng = np.random.default_rng(0)
    for size in ((32, 32), (45, 29)):  # as stored, and resized
        file = tmp_path / f"{size[0]}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(file)
        assert np.array_equal(decode_image(file, 32), decode(file, 32))


def bad_files(folder: Path, good: Path) -> None:
    """``folder`` with two images and three files that are not: text, a truncated PNG, an empty file."""
    folder.mkdir()
    (folder / "a.png").write_bytes(good.read_bytes())
    (folder / "sub").mkdir()
    (folder / "sub" / "b.png").write_bytes(good.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "cut.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (folder / "empty.jpg").write_bytes(b"")


#: runs `vl2v ARGV...` in a fresh interpreter; prints its exit status and whether torch was imported
PROBE = """
import json, sys
from client_distill.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules}))
"""


def vl2v_subprocess(*argv: str) -> tuple[dict, str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    *out, last = done.stdout.splitlines()
    return json.loads(last), "\n".join(out), done.stderr


def test_predict_from_onnx_without_torch_classifies_good_files_and_lists_bad_ones(world, adip_onnx, tmp_path):
    good = world / "data" / "sketch" / "dog" / "0.png"
    bad_files(tmp_path / "mixed", good)
    status, out, err = vl2v_subprocess("predict", str(adip_onnx), str(good), str(tmp_path / "mixed"), "--json")
    assert status == {"rc": 0, "torch": False}
    result = json.loads(out)
    assert [Path(p["path"]).name for p in result["predictions"]] == ["0.png", "a.png", "b.png"]
    for p in result["predictions"]:
        assert [t["class"] for t in p["top"]] in (["cat", "dog"], ["dog", "cat"])
        assert sum(t["probability"] for t in p["top"]) == pytest.approx(1.0)
    failures = {Path(f["path"]).name: f["error"] for f in result["failures"]}
    assert set(failures) == {"notes.txt", "cut.png", "empty.jpg"}
    assert "truncated" in failures["cut.png"] and "not an image" in failures["notes.txt"]
    assert "3 input(s) failed" in err and "Traceback" not in err

    status, out, _ = vl2v_subprocess("evaluate", str(adip_onnx), "--data", str(world / "data"), "--json")
    assert status == {"rc": 0, "torch": False} and len(json.loads(out)["domains"]) == 3

    # the run folder itself predicts the same classes (PyTorch)
    status, out_run, _ = vl2v_subprocess("predict", str(world / "runs" / "adip"), str(tmp_path / "mixed"), "--json")
    assert status["rc"] == 0 and status["torch"]
    top = lambda r: [p["top"][0]["class"] for p in r["predictions"]]  # noqa: E731
    assert top(json.loads(out_run)) == top(result)[1:]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["notes.txt"], "notes.txt: not an image"),
        (["cut.png"], "cut.png: cannot decode (image file is truncated)"),
        (["missing.png"], "missing.png: no such file or folder"),
        (["notes.txt", "cut.png"], "nothing classified: all 2 inputs failed"),
    ],
)
def test_predict_with_nothing_to_classify_is_a_one_line_error(world, adip_onnx, tmp_path, capsys, inputs, message):
    bad_files(tmp_path / "f", world / "data" / "sketch" / "dog" / "0.png")
    assert main(["predict", str(adip_onnx), *[str(tmp_path / "f" / name) for name in inputs]]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("vl2v: error: ") and message in err


def test_predict_refuses_what_is_not_a_model(world, tmp_path, capsys):
    good = str(world / "data" / "sketch" / "dog" / "0.png")
    for model, message in [
        (tmp_path / "nope", "does not exist"),
        (world / "data", "neither a vl2v export"),
        (world / "teacher", "neither a vl2v export"),
    ]:
        assert main(["predict", str(model), good]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / METADATA_FILE).write_text("{}")
    assert main(["predict", str(tmp_path / "broken"), good]) == 2
    assert "unsupported model metadata format" in capsys.readouterr().err


def evaluate_json(capsys, *argv: str) -> dict:
    assert main(["evaluate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("run", ["adip", "erm"])
def test_evaluate_reproduces_the_runs_recorded_accuracy(world, adip_onnx, capsys, run):
    record = select(load_records(world / "runs" / run))
    data = str(world / "data")
    models = [world / "runs" / run] + ([adip_onnx] if run == "adip" else [])
    for model in models:
        out = evaluate_json(capsys, str(model), "--data", data, "--split", "out")
        assert [d["domain"] for d in out["domains"]] == record["domains"] and out["seed"] == 0
        for i, row in enumerate(out["domains"]):
            assert row["images"] == 4 and row["accuracy"] == pytest.approx(record[f"env{i}_out_acc"], abs=1e-6)
            assert row["recorded"] == pytest.approx(row["accuracy"], abs=1e-6)
        target = evaluate_json(capsys, str(model), "--data", data, "--split", "in", "--domains", "sketch")["domains"]
        assert target[0]["role"] == "target" and target[0]["images"] == 16
        assert target[0]["accuracy"] == pytest.approx(record["env2_in_acc"], abs=1e-6) == target[0]["recorded"]
    accuracies = {record[f"env{i}_out_acc"] for i in range(3)} | {record["env2_in_acc"]}
    assert len(accuracies) > 1  # not one constant number: the comparison can tell models apart


def test_evaluate_table_on_another_folder(world, adip_onnx, tmp_path, capsys):
    other = make_images(tmp_path / "other", per_class=3)  # the same classes and domains, other images
    assert main(["evaluate", str(adip_onnx), "--data", str(other), "--domains", "photo,art"]) == 0
    out = capsys.readouterr().out
    assert "photo" in out and "art" in out and "recorded" not in out and "mean over domains" in out
    (other / "photo" / "horse").mkdir()
    Image.new("RGB", (32, 32)).save(other / "photo" / "horse" / "0.png")
    assert main(["evaluate", str(adip_onnx), "--data", str(other)]) == 2
    assert "classes the model does not know: horse" in capsys.readouterr().err
    assert main(["evaluate", str(adip_onnx), "--data", str(other), "--domains", "clipart"]) == 2
    assert "no domain clipart" in capsys.readouterr().err


def test_help_of_the_three_commands_does_not_import_torch():
    script = (
        "import sys, contextlib, io\n"
        "from client_distill.cli import main\n"
        "for command in ('export', 'predict', 'evaluate'):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main([command, '--help'])\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
