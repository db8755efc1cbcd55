"""The batched augmentation: each colour operation equals torchvision's on every image, crops are
valid boxes drawn as RandomResizedCrop draws them, and a batch is a function of its generator."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from client_distill.train.augment import (
    BatchAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_resize,
    resize,
)

torch.set_num_threads(1)


def images(n: int = 8, size: int = 16) -> torch.Tensor:
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    x[0] = 0.5  # grey: hue undefined, saturation 0
    x[1, :, :4] = 1.0  # saturated white rows
    x[2] = 0.0  # black
    x[3, 0], x[3, 1] = x[3, 1], x[3, 0].clone()  # ties between channels are broken as torchvision breaks them
    x[3, 2] = x[3, 1]
    return x


@pytest.mark.parametrize(
    "ours, theirs, factors",
    [
        (adjust_brightness, TF.adjust_brightness, torch.linspace(0.7, 1.3, 8)),
        (adjust_contrast, TF.adjust_contrast, torch.linspace(0.7, 1.3, 8)),
        (adjust_saturation, TF.adjust_saturation, torch.linspace(0.0, 1.3, 8)),
        (adjust_hue, TF.adjust_hue, torch.linspace(-0.5, 0.5, 8)),
    ],
)
def test_colour_operations_equal_torchvision_per_image(ours, theirs, factors):
    x = images()
    expected = torch.stack([theirs(x[i], float(factors[i])) for i in range(len(x))])
    assert torch.allclose(ours(x.clone(), factors), expected, atol=1e-5)


def test_crops_are_valid_boxes_of_the_requested_area_and_aspect():
    aug = BatchAugment(32, (0.5,) * 3, (0.5,) * 3)
    boxes = aug.crop_boxes(2000, 64, 48, torch.Generator().manual_seed(1))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 48).all() and (boxes[:, 3] <= 64).all()
    area = w * h / (64 * 48)
    assert area.min() >= 0.7 - 0.05 and area.max() <= 1.0  # scale (0.7, 1), up to rounding
    assert (w / h).min() >= 3 / 4 - 0.05 and (w / h).max() <= 4 / 3 + 0.05
    # a box that never fits (scale far above 1) falls back to the centred crop with the aspect clamped
    wide = BatchAugment(32, (0.5,) * 3, (0.5,) * 3, scale=(5.0, 6.0)).crop_boxes(
        3, 10, 40, torch.Generator().manual_seed(0)
    )
    assert torch.equal(
        wide, torch.tensor([[13.0, 0.0, 26.0, 10.0]] * 3)
    )  # 40/10 > 4/3: height 10, width round(10·4/3) = 13, centred


def test_full_box_crop_is_the_identity_and_resize_keeps_the_size():
    x = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    full = torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 4)
    assert torch.equal(crop_resize(x.float() / 255, full, 20), x.float() / 255)
    assert torch.equal(resize(x, 20), x.float() / 255) and resize(x, 10).shape == (4, 3, 10, 10)


def test_a_batch_is_a_function_of_its_generator_and_each_image_is_drawn_apart():
    aug = BatchAugment(24, (0.5,) * 3, (0.25,) * 3)
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(16, -1, -1, -1).contiguous()
    a = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(4)))
    assert (
        a.shape == (16, 3, 24, 24) and len({tuple(img.flatten()[:50].tolist()) for img in a}) == 16
    )  # one image, 16 draws
    plain = BatchAugment(
        32, (0.0,) * 3, (1.0,) * 3, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, jitter=0.0, grayscale_p=0.0
    )
    assert torch.equal(plain(x, torch.Generator()), x.float() / 255)  # every random part off: the image itself


@pytest.mark.slow
def test_compiled_hue_is_bit_identical_and_forked_processes_inherit_it(monkeypatch):
    """warm_up compiles the hue rotation; batches equal the eager ones bit for bit (so a run resumed
    without it continues exactly), and a process forked afterwards (a sweep's run, forked from its
    server) uses the kernel without compiling again."""
    import os

    from torch._dynamo.utils import counters

    from client_distill.train import augment

    aug = BatchAugment(24, (0.5,) * 3, (0.25,) * 3)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    eager = aug(x, torch.Generator().manual_seed(5))
    monkeypatch.setattr(augment, "_compiled_hue", None)
    monkeypatch.setenv(augment.COMPILE_ENV, "0")
    assert augment.warm_up() is False and augment._compiled_hue is None  # turned off
    monkeypatch.delenv(augment.COMPILE_ENV)
    assert augment.warm_up() is True and augment._compiled_hue is not None
    assert torch.equal(aug(x, torch.Generator().manual_seed(5)), eager)
    compiled_frames = counters["stats"]["unique_graphs"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another batch size, no new graph, the same pixels as eager
        fast = aug(x[:7], torch.Generator().manual_seed(6))
        no_new_graph = counters["stats"]["unique_graphs"] == compiled_frames
        augment._compiled_hue = None
        ok = no_new_graph and torch.equal(fast, aug(x[:7], torch.Generator().manual_seed(6)))
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
