"""Method math and freezing: loss values on known vectors, which parts each stage trains, Predict,
KD at τ, budget-aware masking, the hparams registry."""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from distill_world import make_student

from client_distill.errors import UsageError
from client_distill.methods.base import Targets, TextHead, cosine_distill_loss, kd_loss
from client_distill.methods.registry import create_method, methods
from client_distill.train.hparams import DEFAULTS, HPARAMS, resolve_hparams
from client_distill.train.students import IMAGENET_MEAN, IMAGENET_STD, Student, create_student

torch.set_num_threads(1)
D, C = 8, 3


def tiny_student() -> Student:
    torch.manual_seed(0)
    body = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    return Student(
        body,
        name="t",
        arch="resnet10t",
        feature_dim=body.num_features,
        input_size=32,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def text_vectors() -> torch.Tensor:
    return F.normalize(torch.randn(C, D, generator=torch.Generator().manual_seed(1)), dim=-1)


def batch(n: int = 6, has: float = 1.0) -> tuple[torch.Tensor, Targets]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.arange(n) % C
    image = F.normalize(torch.randn(n, D, generator=g), dim=-1)
    has_image = torch.arange(n) < int(has * n)
    return x, Targets(labels, image * has_image[:, None], has_image)


def make(name: str, **hp) -> object:
    return create_method(
        name,
        student=tiny_student(),
        text_embeddings=text_vectors(),
        num_classes=C,
        hparams=resolve_hparams(name, "smoke", overrides=hp),
    )


def test_cosine_loss_exact_values():
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    text = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    image = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    # image 0: λ·(−cos 1) + (1−λ)·(−cos 0) = −0.5; image 1 has no embedding: (1−λ)·(−1/√2)
    loss = cosine_distill_loss(z, text, image, torch.tensor([True, False]), 0.5)
    assert loss.item() == pytest.approx((-0.5 - 0.5 / math.sqrt(2)) / 2, abs=1e-6)
    # with every image embedded and λ = 0.5 it is the paper's −(1/2n) Σ [cos(z,T) + cos(z,I)]
    image = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    paper = -(1 / 4) * ((0 + 1) + (1 / math.sqrt(2) + 1 / math.sqrt(2)))
    assert cosine_distill_loss(z, text, image, torch.tensor([True, True]), 0.5).item() == pytest.approx(paper, abs=1e-6)
    assert cosine_distill_loss(z, text, image, torch.tensor([True, True]), 1.0).item() == pytest.approx(
        -(1 + 1 / math.sqrt(2)) / 2, abs=1e-6
    )


def test_masked_image_targets_do_not_matter():
    z = torch.randn(4, D, requires_grad=True)
    text, image = torch.randn(4, D), torch.randn(4, D)
    has = torch.tensor([True, False, True, False])
    other = image.clone()
    other[~has] = torch.randn(2, D)
    a = cosine_distill_loss(z, text, image, has, 0.5)
    assert a.item() == pytest.approx(cosine_distill_loss(z, text, other, has, 0.5).item(), abs=1e-7)
    # with nothing bought the loss is the text term alone, scaled by 1 − λ, and still has a gradient
    none = cosine_distill_loss(z, text, image, torch.zeros(4, dtype=torch.bool), 0.5)
    text_only = cosine_distill_loss(z, text, image, torch.zeros(4, dtype=torch.bool), 0.0)
    assert none.item() == pytest.approx(0.5 * text_only.item(), abs=1e-7)
    none.backward()
    assert z.grad.abs().sum() > 0


def test_kd_loss_at_tau_matches_hand_computation():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[30.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    tau, alpha = 4.0, 0.5
    has = torch.tensor([True, False])
    p_t = np.exp(t[0].numpy() / tau) / np.exp(t[0].numpy() / tau).sum()
    p_s = np.exp(s[0].numpy() / tau) / np.exp(s[0].numpy() / tau).sum()
    kl0 = float((p_t * np.log(p_t / p_s)).sum())
    ce = F.cross_entropy(s, y, reduction="none").numpy()
    expected = ((1 - alpha) * ce[0] + alpha * tau**2 * kl0 + (1 - alpha) * ce[1]) / 2
    assert kd_loss(s, t, y, has, tau, alpha).item() == pytest.approx(expected, rel=1e-5)
    # a true KL: zero when the student's tempered distribution equals the teacher's
    assert kd_loss(t / 1.0, t, y, torch.tensor([True, True]), tau, 1.0).item() == pytest.approx(0.0, abs=1e-5)


def test_predict_is_argmax_of_scaled_cosine():
    method = make("adip")
    method.eval()
    x, _ = batch()
    logits = method.logits(x)
    z = F.normalize(method.head(method.student(x)), dim=-1)
    expected = 100 * z @ text_vectors().T  # CLIP's scale when the vendor states none
    assert torch.allclose(logits, expected, atol=1e-4)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    head = TextHead(
        3 * text_vectors(), scale=26.0
    )  # text vectors are normalised; bias is zero; the teacher's own scale
    assert torch.allclose(head(text_vectors()).diagonal(), torch.full((C,), 26.0), atol=1e-4)
    kd = create_method(
        "kd",
        student=tiny_student(),
        text_embeddings=text_vectors(),
        num_classes=C,
        hparams=resolve_hparams("kd", "smoke"),
        logit_scale=26.0,
    )
    assert kd.text_head.scale == 26.0  # KD's teacher logits: the teacher's scale, τ on top


def _train_steps(method, x, targets, steps=3):
    method.train()
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    for _ in range(steps):
        loss = method(x, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_align_trains_only_the_head_and_distill_only_the_backbone():
    method = make("adip")
    align, distill = method.stages
    assert (align.name, distill.name, distill.init_from_best) == ("align", "distill", True)
    x, targets = batch()
    backbone, head = _state(method.student), _state(method.head)
    method.set_stage(align)
    _train_steps(method, x, targets)
    assert all(torch.equal(backbone[k], v) for k, v in method.student.state_dict().items()), (
        "Align changed the backbone"
    )
    assert not all(torch.equal(head[k], v) for k, v in method.head.state_dict().items())
    head = _state(method.head)
    method.set_stage(distill)
    distill_params = {id(p) for p in method.trainable_parameters()}
    assert distill_params == {id(p) for p in method.student.parameters()}  # a fresh optimizer over the backbone only
    assert not distill_params & {id(p) for p in method.head.parameters()}
    bn_before = {k: v.clone() for k, v in method.student.state_dict().items() if "running" in k}
    _train_steps(method, x, targets)
    assert all(torch.equal(head[k], v) for k, v in method.head.state_dict().items()), "Distill changed the head"
    after = method.student.state_dict()
    assert not all(torch.equal(backbone[k], after[k]) for k in backbone)
    assert all(torch.equal(v, after[k]) for k, v in bn_before.items()), (
        "BatchNorm statistics moved (BN must stay frozen)"
    )


def test_joint_and_baseline_stages():
    assert [s.trains for s in methods()["adip_joint"].stages] == [frozenset({"backbone", "head"})]
    assert [s.name for s in methods()["lp_ft"].stages] == ["probe", "finetune"] and methods()["lp_ft"].stages[
        1
    ].init_from_best
    assert methods()["lp"].stages[0].trains == frozenset({"head"})
    assert not methods()["erm"].uses_teacher_images and not methods()["adip_text_only"].uses_teacher_images
    assert resolve_hparams("adip_image_only")["lambda"] == 1.0 and resolve_hparams("adip_text_only")["lambda"] == 0.0


def test_kd_method_uses_teacher_zero_shot_logits_and_ce_without_embedding():
    method = make("kd")
    method.set_stage(method.stages[0])
    x, targets = batch(has=0.5)
    loss = method(x, targets)
    s = method.head(method.student(x))
    t = 100 * F.normalize(targets.image, dim=-1) @ text_vectors().T
    hp = method.hparams
    assert loss.item() == pytest.approx(
        kd_loss(s, t, targets.labels, targets.has_image, hp["kd_tau"], hp["kd_alpha"]).item(), rel=1e-4
    )
    _, nothing = batch(has=0.0)
    ce = F.cross_entropy(s, nothing.labels)
    assert method(x, nothing).item() == pytest.approx((1 - hp["kd_alpha"]) * ce.item(), rel=1e-4)


def test_zero_shot_predicts_from_teacher_embeddings():
    method = create_method(
        "zero_shot", student=None, text_embeddings=text_vectors(), num_classes=C, hparams=resolve_hparams("zero_shot")
    )
    assert method.stages == () and method.needs_teacher_at_eval
    logits = method.logits(None, 2 * text_vectors())
    assert torch.equal(logits.argmax(1), torch.arange(C))


def test_sd_fine_tunes_the_teacher_image_tower_without_a_head(tmp_path):
    config = "vendor_server/model_configs/vl2v-tiny.json"
    open_clip.add_model_config(config)
    torch.save(open_clip.create_model("vl2v-tiny").state_dict(), tmp_path / "tower.pt")
    student = create_student(f"openclip:{config}:{tmp_path / 'tower.pt'}")
    text = F.normalize(torch.randn(C, student.feature_dim), dim=-1)
    method = create_method(
        "sd", student=student, text_embeddings=text, num_classes=C, hparams=resolve_hparams("sd", "smoke")
    )
    assert isinstance(method.head, torch.nn.Identity) and [s.name for s in method.stages] == ["finetune"]
    method.set_stage(method.stages[0])
    x = torch.randn(2, 3, student.input_size, student.input_size)
    labels = torch.tensor([0, 1])
    own = F.normalize(method.student(x), dim=-1).detach()
    loss = method(x, Targets(labels, own, torch.tensor([True, True])))
    expected = -0.5 * (1.0 + (own * text[labels]).sum(-1)).mean()  # cos(I^s, I^t) = 1 at the start
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)


def test_registry_and_hparams_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown method"):
        create_method("nope", student=None, text_embeddings=None, num_classes=2, hparams={})
    with pytest.raises(UsageError, match="--teacher"):
        create_method(
            "adip", student=tiny_student(), text_embeddings=None, num_classes=2, hparams=resolve_hparams("adip")
        )
    paper = resolve_hparams("adip")
    assert (paper["lr"], paper["weight_decay"], paper["batch_per_domain"], paper["steps"], paper["lambda"]) == (
        5e-5,
        0.0,
        32,
        5001,
        0.5,
    )
    assert resolve_hparams("adip", "synth")["lr"] == 3e-4 and DEFAULTS["lr"] == 5e-5
    assert resolve_hparams("adip", dataset="domain_net")["steps"] == 15001
    assert paper["swad"] and (paper["swad_n_converge"], paper["swad_n_tolerance"], paper["swad_tolerance_ratio"]) == (
        3,
        6,
        0.3,
    )
    with pytest.raises(UsageError, match="unknown hparam"):
        resolve_hparams("adip", overrides={"learning_rate": 1})
    with pytest.raises(UsageError, match="unknown hparam 'lr_align'"):  # one lr for every stage, as in the paper
        resolve_hparams("adip", overrides={"lr_align": 1e-4})
    with pytest.raises(UsageError, match="profile"):
        resolve_hparams("adip", "fast")
    assert make_student(tmp_path / "s.pt").is_file()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lr": -1}, "'lr' must be a number > 0"),
        ({"lr": "1e-4"}, "write 1.0e-4"),
        ({"steps": 0}, "'steps' must be an integer ≥ 1"),
        ({"steps": 2.5}, "'steps' must be an integer ≥ 1"),
        ({"checkpoint_freq": True}, "'checkpoint_freq' must be an integer ≥ 1"),
        ({"batch_per_domain": "a"}, "'batch_per_domain' must be an integer ≥ 1"),
        ({"test_batch": 0}, "'test_batch'"),
        ({"lambda": 2}, "'lambda' must be a number in \\[0, 1\\]"),
        ({"kd_alpha": -0.1}, "'kd_alpha'"),
        ({"kd_tau": 0}, "'kd_tau' must be a number > 0"),
        ({"swad_n_converge": 0}, "'swad_n_converge' must be an integer ≥ 1"),
        ({"swad_tolerance_ratio": -0.1}, "'swad_tolerance_ratio' must be a number ≥ 0"),
        ({"weight_decay": -1e-4}, "'weight_decay' must be a number ≥ 0"),
        ({"swad": "yes"}, "'swad' must be true or false"),
        ({"amp": 1}, "'amp' must be true or false"),
    ],
)
def test_hparams_out_of_range_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve_hparams("adip", overrides=overrides)


def test_hparams_in_range_and_every_profile_pass():
    edges = {"lambda": 0, "kd_alpha": 1.0, "swad_tolerance_ratio": 0.0, "weight_decay": 0, "steps": 1, "swad": True}
    assert resolve_hparams("adip", overrides=edges)["steps"] == 1
    for profile in ("paper", "synth", "smoke"):
        for dataset in (None, "domain_net"):
            resolve_hparams("adip", profile, dataset)


def test_every_hparam_is_declared_once_with_a_valid_default():
    for name, h in HPARAMS.items():
        assert h.valid(h.default), name
        assert h.doc and h.range
    for profile in ("synth", "smoke"):  # a profile is the same for every method: no per-method learning rate
        assert resolve_hparams("erm", profile)["lr"] == resolve_hparams("adip", profile)["lr"]
