"""The batched augmentation: each colour operation equals torchvision's on every image, crops are
valid boxes drawn as RandomResizedCrop draws them, a batch is a function of its generator, and the
fused path (compiled or not) equals the eager one bit for bit."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from client_distill.train import augment
from client_distill.train.augment import (
    BatchAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_resize,
    fused_pixels,
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


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"flip": False, "grayscale_p": 0.0},
        {"jitter": 0.0},
        {"scale": (1.0, 1.0), "jitter": 1.5, "grayscale_p": 0.5},
    ],
)
@pytest.mark.parametrize("n, source", [(16, 24), (1, 24), (5, 17)])
def test_the_fused_path_equals_the_eager_one_bit_for_bit(options, n, source):
    """fused_pixels re-expresses roi_align's sample, the flip and the colour operations in its own
    order of loops (run eagerly here; compiled in the test below): every pixel must equal the eager
    path's, also for one image, odd sizes, every part off or at its extreme (saturation 0, hue ±½)."""
    aug = BatchAugment(24, (0.5,) * 3, (0.25,) * 3, **options)
    x = torch.randint(0, 256, (n, 3, source, source - 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    x[0, :, :5] = 255  # saturated and flat regions: ties, clamps at 1, no hue
    for seed in range(4):
        draws = aug.draw(x.shape, torch.Generator().manual_seed(seed))
        assert draws.one_sample_per_pixel(aug.size)
        assert torch.equal(fused_pixels(x, draws, aug.size), aug.eager_pixels(x, draws))


def test_crops_larger_than_the_output_take_the_eager_path(monkeypatch):
    """roi_align averages several samples per output pixel when it shrinks (no aliasing): the fused
    path, which takes one, must not be used then."""
    aug = BatchAugment(16, (0.5,) * 3, (0.25,) * 3)
    x = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    assert not aug.draw(x.shape, torch.Generator().manual_seed(0)).one_sample_per_pixel(aug.size)
    monkeypatch.setitem(augment._compiled, "pixels", lambda *_: pytest.fail("fused path used"))
    assert aug.pixels(x, torch.Generator().manual_seed(0)).shape == (4, 3, 16, 16)


@pytest.mark.slow
def test_compiled_augmentation_is_bit_identical_and_forked_processes_inherit_it(monkeypatch):
    """warm_up compiles the augmentation; batches equal the eager ones bit for bit (so a run resumed
    without it continues exactly), for crops within the output (the fused kernel) and larger ones
    (eager but for the hue kernel), and a process forked afterwards (a sweep's run, forked from its
    server) uses the kernels without compiling again."""
    import os

    from torch._dynamo.utils import counters

    aug = BatchAugment(24, (0.5,) * 3, (0.25,) * 3)
    small, large = (torch.randint(0, 256, (16, 3, s, s), dtype=torch.uint8) for s in (24, 40))
    with augment.eager():
        expected = [aug(x, torch.Generator().manual_seed(5)) for x in (small, large)]
    monkeypatch.setattr(augment, "_compiled", {})
    monkeypatch.setenv(augment.COMPILE_ENV, "0")
    assert augment.warm_up() is False and not augment._compiled  # turned off
    monkeypatch.delenv(augment.COMPILE_ENV)
    assert augment.warm_up() is True and set(augment._compiled) == {"hue", "pixels"}
    for x, eager in zip((small, large), expected, strict=True):
        assert torch.equal(aug(x, torch.Generator().manual_seed(5)), eager)
    compiled_frames = counters["stats"]["unique_graphs"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another batch size, no new graph, the same pixels as eager
        fast = aug(small[:7], torch.Generator().manual_seed(6))
        no_new_graph = counters["stats"]["unique_graphs"] == compiled_frames
        with augment.eager():
            ok = no_new_graph and torch.equal(fast, aug(small[:7], torch.Generator().manual_seed(6)))
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"


@pytest.mark.slow
def test_kernels_compiled_for_another_thread_count_fall_back_to_eager_without_compiling(monkeypatch):
    """A compiled kernel is bound to the thread count it was compiled with. A sweep's server compiles
    for its runs' count (VL2V_RUN_THREADS); where the count differs anyway, the batch is augmented
    eagerly (the same pixels) instead of compiling again, which can hang in a forked run."""
    from torch._dynamo.utils import counters

    aug = BatchAugment(24, (0.5,) * 3, (0.25,) * 3)
    x = torch.randint(0, 256, (16, 3, 24, 24), dtype=torch.uint8)
    with augment.eager():
        expected = aug(x, torch.Generator().manual_seed(5))
    monkeypatch.setattr(augment, "_compiled", {})
    monkeypatch.delenv(augment.COMPILE_ENV, raising=False)
    torch._dynamo.reset()  # compiled code is kept per function: none from another test may serve 1 thread
    assert augment.warm_up(threads=2) is True and torch.get_num_threads() == 1  # the caller's count is kept
    graphs = counters["stats"]["unique_graphs"]
    with pytest.warns(UserWarning, match="made for other conditions"):
        assert torch.equal(aug(x, torch.Generator().manual_seed(5)), expected)  # 1 thread: eager
    assert counters["stats"]["unique_graphs"] == graphs and not augment._compiled  # nothing compiled again
