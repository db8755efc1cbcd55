"""Student pretraining (the ImageNet stand-in): a few real steps, the checkpoint the factory loads,
exact resume, and the probe command on a folder of rendered images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client_distill.cli import main
from client_distill.errors import UsageError
from client_distill.train.pretrain_student import PretrainConfig, pretrain_student
from client_distill.train.students import create_student
from shared.world import CLASS_NAMES, CLIENT_STYLES, render

torch.set_num_threads(1)
TINY = PretrainConfig(
    styles=("photo", "neon"), steps=4, batch_size=8, size=32, pool_per_class=2, eval_per_class=1, save_every=2
)


def test_few_steps_give_a_loadable_student(tmp_path: Path) -> None:
    meta = pretrain_student(tmp_path / "s.pt", TINY)
    # scored on the corpus styles and on every client style the corpus lacks
    assert set(meta["style_accuracy"]) == {"photo", "neon", *CLIENT_STYLES} and meta["config"]["styles"] == [
        "photo",
        "neon",
    ]
    assert not (tmp_path / "s.pt.partial").exists()
    student = create_student(str(tmp_path / "s.pt")).eval()
    assert (student.arch, student.input_size, student.feature_dim) == ("resnet10t_half", 32, 256)
    assert student.head["classes"] == list(CLASS_NAMES)
    with torch.no_grad():
        assert student.head_logits(student(torch.randn(2, 3, 32, 32))).shape == (2, len(CLASS_NAMES))


def test_resume_gives_the_same_weights(tmp_path: Path) -> None:
    pretrain_student(tmp_path / "straight.pt", TINY)
    assert pretrain_student(tmp_path / "resumed.pt", TINY, stop_after=2) is None
    assert (tmp_path / "resumed.pt.partial" / "state.pt").is_file() and not (tmp_path / "resumed.pt").exists()
    with pytest.raises(UsageError, match="other settings"):
        pretrain_student(
            tmp_path / "resumed.pt",
            PretrainConfig(styles=("photo", "neon"), steps=5, batch_size=8, size=32, pool_per_class=2),
        )
    with pytest.raises(UsageError, match="styles must be among"):
        pretrain_student(tmp_path / "bad.pt", PretrainConfig(styles=("photo", "oil")))
    pretrain_student(tmp_path / "resumed.pt", TINY)
    straight = create_student(str(tmp_path / "straight.pt")).state_dict()
    resumed = create_student(str(tmp_path / "resumed.pt")).state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)  # every step is seeded by (seed, step)
    untrained = create_student(str(tmp_path / "straight.pt"), pretrained=False).state_dict()
    assert not all(torch.allclose(straight[k].float(), untrained[k].float(), atol=1e-3) for k in straight)


def test_cli_pretrain_and_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``vl2v pretrain-student`` then ``vl2v probe`` on a small DomainBed folder of world images."""
    ckpt = tmp_path / "s.pt"
    args = [
        "pretrain-student",
        "--out",
        str(ckpt),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--size",
        "32",
        "--pool-per-class",
        "1",
        "--eval-per-class",
        "1",
        "--styles",
        "photo",
    ]
    assert main(args) == 0
    data = tmp_path / "data"
    classes = list(CLASS_NAMES[:3])
    for d, domain in enumerate(["photo", "sketch"]):
        for c, cls in enumerate(classes):
            (data / domain / cls).mkdir(parents=True)
            for k in range(5):
                img, _ = render(cls, domain, np.random.default_rng([d, c, k]), size=32)
                img.save(data / domain / cls / f"{k}.png")
    capsys.readouterr()
    assert main(["probe", "--student", str(ckpt), "--data", str(data)]) == 0
    table = capsys.readouterr().out
    assert "photo" in table and "sketch" in table and "head" in table
    assert main(["probe", "--student", "no_such_student", "--data", str(data)]) == 2
