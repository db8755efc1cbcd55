"""The training augmentation as batched tensor operations, every image with its own random draw.

DomainBed's (and the VL2V-ADiP code's) source augmentation is RandomResizedCrop(scale 0.7–1), a
horizontal flip, ColorJitter(0.3, 0.3, 0.3, 0.3) and RandomGrayscale(0.1), applied by torchvision to
one PIL image at a time. On small images that per-image work costs more than the student's training
step (measured: 55–70 ms per batch of 48 at 64 px with ``torchvision.transforms.v2`` per image, against
≈ 170 ms for the step itself on one core). Here the same distributions are drawn for the whole batch
at once (``[B, 3, H, W]`` uint8 in, normalised float out): the crop and resize is one
``torchvision.ops.roi_align`` call, the flip one ``torch.where``, and each colour operation runs on the
images that draw it, in each image's own random order, as torchvision's ColorJitter does. Each
colour operation equals torchvision's functional one on every image (``tests/test_augment.py``), and
all randomness comes from the ``torch.Generator`` passed in, so a step's batch is a function of its
seed alone: that is what makes a resumed run bit-identical to an uninterrupted one.

The whole augmentation can also run compiled by ``torch.compile`` (:func:`warm_up`), bit-identical to
the eager path, about twice as fast (5.8 against 12-14 ms for a 48-image batch of 64 px on one core;
``bench/distill_throughput.py``): when no crop is larger than the output (one bilinear
sample per output pixel, as for the synthetic worlds), the crop, flip, the four colour operations,
greyscale and the uint8 → float conversion become a few fused loops (:func:`fused_pixels`); otherwise
only the hue rotation, the costliest colour operation (some 35 elementwise passes eagerly), is compiled.
Bit-identical is what lets a run resumed without the compiled kernels continue exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torchvision.ops import roi_align

#: ITU-R 601-2 luma, the weights torchvision's ``rgb_to_grayscale`` uses
_LUMA = (0.2989, 0.587, 0.114)
#: torchvision's RandomResizedCrop tries this many random boxes before falling back to a centre crop
_CROP_ATTEMPTS = 10


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` float RGB → ``[..., 1, H, W]`` luma."""
    r, g, b = x.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


@torch.library.custom_op("vl2v::image_mean", mutates_args=())
def image_mean(grey: torch.Tensor) -> torch.Tensor:
    """Each image's mean, ``[B, 1, H, W]`` → ``[B, 1, 1, 1]``, for the contrast of both paths: an opaque
    operator, so that the compiled :func:`fused_pixels` sums in ATen's order, as eager code does, not in
    Inductor's."""
    return grey.contiguous().mean(dim=(-3, -2, -1), keepdim=True)


@image_mean.register_fake
def _(grey: torch.Tensor) -> torch.Tensor:
    return grey.new_empty(grey.shape[0], 1, 1, 1)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in ``[0, 1]`` by one ``true_divide`` (a ``float()`` then a division costs
    three times as much); every path of the augmentation starts from these values."""
    return torch.true_divide(images, 255)


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale every pixel of image ``i`` by ``factor[i]`` (torchvision's ``adjust_brightness``)."""
    return (x * _per_image(factor)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma (torchvision's ``adjust_contrast``)."""
    mean = image_mean(grayscale(x))
    f = _per_image(factor)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its own greyscale version (torchvision's ``adjust_saturation``)."""
    f = _per_image(factor)
    return (f * x + (1 - f) * grayscale(x)).clamp_(0, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``shift[i]`` turns in HSV, keeping saturation and value
    (torchvision's ``adjust_hue``), without building the HSV image: value ``v`` and chroma ``c``
    survive the rotation, so only the hue plane is computed and each channel is read back from it."""
    r, g, b = x.unbind(-3)
    value, low = x.amax(dim=-3), x.amin(dim=-3)
    chroma = value - low
    is_r = value == r  # the channel holding the maximum decides the hue's sextant; red wins ties, then green
    is_g = (value == g) & ~is_r
    difference = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    sextant = 2 * is_g.to(x.dtype) + 4 * (~is_r & ~is_g).to(x.dtype)
    hue = difference / chroma.clamp_min(1e-12) + sextant + 6 * shift.view(-1, 1, 1)  # in sixths of a turn
    hue = torch.remainder(hue, 6.0)
    channels = []
    for offset in (5.0, 3.0, 1.0):  # red, green, blue: v − c·clamp(min(k, 4 − k), 0, 1), k = (offset + hue) mod 6
        k = hue + offset
        k -= 6 * (k >= 6).to(x.dtype)
        channels.append(value - chroma * torch.minimum(k, 4 - k).clamp_(0, 1))
    return torch.stack(channels, dim=-3).clamp_(0, 1)


#: the compiled kernels once :func:`warm_up` has made them: ``"hue"`` (the hue rotation) and
#: ``"pixels"`` (:func:`fused_pixels`); the eager functions until then
_compiled: dict[str, Callable] = {}
#: ``VL2V_COMPILE=0`` keeps every operation eager, ``1`` compiles even in a single run
COMPILE_ENV = "VL2V_COMPILE"
#: the torch threads each run of a sweep will have, set by the sweep for its server's :func:`warm_up`
RUN_THREADS_ENV = "VL2V_RUN_THREADS"


def _compiled_call(name: str, *args: object) -> torch.Tensor | None:
    """Kernel ``name`` on ``args``, or None (and the kernel dropped for this process, with a warning)
    where it would have to compile again: a guard fails, e.g. another thread count than it was compiled
    for. Compiling inside a run forked from a sweep's server can hang (Inductor's compile workers are not
    forked with it) and costs seconds anyway, while the eager path gives the same pixels."""
    kernel = _compiled.get(name)
    if kernel is None:
        return None
    try:
        with torch.compiler.set_stance("fail_on_recompile"):
            return kernel(*args)
    except RuntimeError as exc:
        if "Detected recompile" not in str(exc):
            raise
    del _compiled[name]
    warnings.warn(
        f"the compiled augmentation ({name}) was made for other conditions ({torch.get_num_threads()} threads "
        "here); augmenting eagerly, with the same pixels",
        stacklevel=3,
    )
    return None


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    out = _compiled_call("hue", x, shift)
    return adjust_hue(x, shift) if out is None else out


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Augment eagerly inside the block (a benchmark's or a test's baseline); the compiled kernels
    are back after it."""
    kept = dict(_compiled)
    _compiled.clear()
    try:
        yield
    finally:
        _compiled.update(kept)


def warm_up(threads: int | None = None) -> bool:
    """Compile the augmentation (:func:`fused_pixels` and the hue rotation) for any batch and image
    size (dynamic shapes) and keep it for this process and every process forked from it; returns
    whether it is in use. ``threads``: the torch threads the kernels will run with (a compiled kernel
    is bound to a thread count; default: this process's), e.g. a sweep's runs, forked from a server
    that has another.

    Why not always: compiling costs 30–90 s on two cores the first time on a machine (then Inductor's
    disk cache makes it a few seconds), against ≈ 10 ms saved per 48-image step: it pays in a sweep,
    whose fork server compiles once for all its runs (:mod:`client_distill.train.compiled`), and in
    long runs, not in a 200-step run or a test. Each compiled kernel must reproduce the eager path bit
    for bit on samples (so a run resumed without it continues exactly), else it is not used; any failure
    (no C compiler, say) leaves the eager functions with a warning."""
    if _compiled:
        return True
    if os.environ.get(COMPILE_ENV) == "0":
        return False
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        hue = torch.compile(adjust_hue, dynamic=True)
        pixels = torch.compile(_fused, dynamic=True)
        g = torch.Generator().manual_seed(0)
        same = True
        for n in (1, 2, 5):  # one image, two, several: the sizes a colour slice takes
            x, shift = torch.rand(n, 3, 9, 7, generator=g), torch.rand(n, generator=g) - 0.5
            same &= torch.equal(hue(x, shift), adjust_hue(x, shift))
        aug = BatchAugment(12, (0.5,) * 3, (0.25,) * 3)  # a training batch: every part on, crops within 12 px
        for n in (2, 5):  # one graph for every batch size ≥ 2 (tracing costs seconds per graph)
            images = torch.randint(0, 256, (n, 3, 11, 9), dtype=torch.uint8, generator=g)
            draws = aug.draw(images.shape, torch.Generator().manual_seed(n))
            points = sample_points(draws.boxes, draws.flip, aug.size, *images.shape[-2:])
            same &= torch.equal(pixels(images, points, draws), aug.eager_pixels(images, draws))
        if not same:
            warnings.warn("the compiled augmentation differs from the eager one; augmenting eagerly", stacklevel=2)
            return False
    except Exception as exc:  # Inductor raises many kinds; eager always works
        warnings.warn(f"could not compile the augmentation ({type(exc).__name__}); augmenting eagerly", stacklevel=2)
        return False
    finally:
        torch.set_num_threads(before)
    _compiled.update(hue=hue, pixels=pixels)
    return True


_COLOUR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, _hue)


@dataclass(frozen=True)
class Draws:
    """One batch's random choices, per image: the crop box ``(x0, y0, x1, y1)``, whether it is flipped,
    the colour factors (brightness, contrast, saturation, hue shift) and the order of the four colour
    operations (``order[i, p]``: the operation at position ``p``), and whether it turns grey; a part
    that is off is None."""

    boxes: torch.Tensor
    flip: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    order: torch.Tensor | None = None
    grey: torch.Tensor | None = None

    def one_sample_per_pixel(self, size: int) -> bool:
        """Whether no box is larger than ``size``: ``roi_align`` then takes one bilinear sample per
        output pixel, the case :func:`fused_pixels` reproduces."""
        return bool(((self.boxes[:, 2:] - self.boxes[:, :2]) <= size).all())


def _colour_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, each image in its own random order of the four.
    At each of the four positions the batch is sorted by the operation its images draw there, so
    every operation runs once on a contiguous slice; the original order is restored at the end."""
    n = x.shape[0]
    index = torch.arange(n, device=x.device)  # x[k] is image index[k]
    for position in range(4):
        ops = order[index, position]
        by_op = ops.argsort(stable=True)
        x, index = x.index_select(0, by_op), index[by_op]
        start = 0
        for op, count in enumerate(torch.bincount(ops, minlength=4).tolist()):
            if count:
                rows = slice(start, start + count)
                x[rows] = _COLOUR_OPS[op](x[rows], factors[index[rows], op])
            start += count
    return x.index_select(0, index.argsort())


def fused_pixels(images: torch.Tensor, draws: Draws, size: int) -> torch.Tensor:
    """:meth:`BatchAugment.eager_pixels` for crops no larger than ``size``, written to compile into a
    few fused loops with the same arithmetic in the same order, hence bit-identical results: the crop
    is ``roi_align``'s bilinear sample (its coordinate and weight formulas), with the flip folded into
    the sampled columns; the colour operations run as three linear slots before each image's hue
    rotation and three after it, each slot ``clamp(a·x + g·luma + m·mean)`` with the image's factors
    for the operation it draws there (``a, g, m`` = ``f, 0, 0`` brightness, ``f, 0, 1 − f`` contrast,
    ``f, 1 − f, 0`` saturation, ``1, 0, 0`` none): adding exact zeros changes no bit. Run here eagerly
    (slower than :meth:`~BatchAugment.eager_pixels`: every slot runs on every image); what
    :func:`warm_up` compiles and :meth:`BatchAugment.pixels` calls."""
    return _fused(images, sample_points(draws.boxes, draws.flip, size, images.shape[-2], images.shape[-1]), draws)


def _fused(images: torch.Tensor, points: SamplePoints, draws: Draws) -> torch.Tensor:
    """:func:`fused_pixels` from the uint8 images and their sample points, made apart: they depend on
    an image's row or column alone, and inside the loops they would be worked out again for every pixel
    and channel (7.7 against 5.8 ms for a 48-image batch of 64 px on one core). The uint8 → float
    conversion is fused into the crop's gathers: four divisions per output pixel cost less than a pass
    that writes (and, in a training loop, page-faults in) a float copy of the batch (4.6 against
    4.9 + 0.1-0.9 ms)."""
    x = _bilinear(to_unit(images), points)
    if draws.factors is not None and draws.order is not None:
        x = _colour_slots(x, draws.factors, draws.order)
    if draws.grey is not None:
        x = torch.where(draws.grey.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
    return x


class SamplePoints(NamedTuple):
    """Where each output row and column of a batch samples its image (``[B, size]`` each): the two
    neighbouring source rows (``y_low``, ``y_high``) and columns, and their bilinear weights."""

    x_low: torch.Tensor
    y_low: torch.Tensor
    x_high: torch.Tensor
    y_high: torch.Tensor
    x_frac: torch.Tensor
    y_frac: torch.Tensor
    x_rest: torch.Tensor
    y_rest: torch.Tensor


def sample_points(boxes: torch.Tensor, flip: torch.Tensor | None, size: int, height: int, width: int) -> SamplePoints:
    """The sample points of ``crop_resize`` (then the flip) where every box is at most ``size`` on a side:
    torchvision's ``roi_align`` (aligned) with one sample per bin, its float arithmetic step by step."""
    dtype = torch.float32
    start = boxes[:, :2] - 0.5  # (x, y) of the box's first corner, half a pixel back (aligned)
    bins = (boxes[:, 2:] - 0.5 - start) / size
    pos = start[:, :, None] + torch.arange(size, dtype=dtype) * bins[:, :, None] + 0.5 * bins[:, :, None]
    limit = torch.tensor([width, height], dtype=dtype).view(1, 2, 1)
    outside = (pos < -1.0) | (pos > limit)
    pos = pos.clamp(min=0)
    low, last = pos.int(), (limit - 1).int()
    at_end = low >= last
    high, low = torch.where(at_end, last, low + 1), torch.where(at_end, last, low)
    frac = torch.where(at_end, low.to(dtype), pos) - low
    frac, rest = torch.where(outside, 0.0, frac), torch.where(outside, 0.0, 1.0 - frac)
    (x_low, y_low), (x_high, y_high), (x_frac, y_frac), (x_rest, y_rest) = (
        t.unbind(1) for t in (low, high, frac, rest)
    )
    if flip is not None:  # a flipped image samples its columns right to left
        f = flip.view(-1, 1)
        x_low, x_high, x_frac, x_rest = (torch.where(f, t.flip(-1), t) for t in (x_low, x_high, x_frac, x_rest))
    return SamplePoints(*(t.contiguous() for t in (x_low, y_low, x_high, y_high, x_frac, y_frac, x_rest, y_rest)))


def _bilinear(x: torch.Tensor, p: SamplePoints) -> torch.Tensor:
    """Every output pixel's bilinear sample of its image at ``p``, in ``roi_align``'s order of sums."""
    image = torch.arange(len(x)).view(-1, 1, 1, 1)
    channel = torch.arange(x.shape[1]).view(1, -1, 1, 1)

    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return x[image, channel, rows[:, None, :, None], cols[:, None, None, :]]

    def weight(wy: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
        return wy[:, None, :, None] * wx[:, None, None, :]

    return (
        (weight(p.y_rest, p.x_rest) * at(p.y_low, p.x_low) + weight(p.y_rest, p.x_frac) * at(p.y_low, p.x_high))
        + weight(p.y_frac, p.x_rest) * at(p.y_high, p.x_low)
    ) + weight(p.y_frac, p.x_frac) * at(p.y_high, p.x_high)


def _colour_slots(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The four colour operations in each image's order, as :func:`fused_pixels` describes."""
    b, c, s = factors[:, 0], factors[:, 1], factors[:, 2]
    one, zero = torch.ones_like(b), torch.zeros_like(b)
    # by operation (brightness, contrast, saturation, none): the weights of x, its luma and its mean
    weights = (
        torch.stack([b, c, s, one], 1),
        torch.stack([zero, zero, 1 - s, zero], 1),
        torch.stack([zero, 1 - c, zero, zero], 1),
    )
    hue_at = (order == 3).int().argmax(dim=1)
    none = torch.full_like(hue_at, 3)

    def slot(x: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        a, g, m = (w.gather(1, ops.view(-1, 1)).view(-1, 1, 1, 1) for w in weights)
        grey = grayscale(x)
        return (a * x + g * grey + m * image_mean(grey)).clamp(0, 1)

    for position in range(3):
        x = slot(x, torch.where(position < hue_at, order[:, position], none))
    x = adjust_hue(x, factors[:, 3])
    for position in range(1, 4):
        x = slot(x, torch.where(position > hue_at, order[:, position], none))
    return x


@dataclass(frozen=True)
class BatchAugment:
    """Random resized crop to ``size``, flip, colour jitter, greyscale, then normalisation.

    ``jitter`` is ColorJitter's brightness = contrast = saturation = hue strength (0 turns colour
    jitter off, as for photo-only pretraining) and ``grayscale_p`` the greyscale probability."""

    size: int
    mean: Sequence[float]
    std: Sequence[float]
    scale: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = 0.3
    grayscale_p: float = 0.1

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented, normalised float images ``[B, 3, size, size]`` from uint8 ``[B, 3, H, W]``."""
        return normalise(self.pixels(images, generator), self.mean, self.std)

    def pixels(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The augmented images in ``[0, 1]``, before normalisation (what the online mode sends):
        compiled where :func:`warm_up` compiled it and no crop is larger than the output, else eager."""
        draws = self.draw(images.shape, generator)
        if "pixels" in _compiled and images.device.type == "cpu" and draws.one_sample_per_pixel(self.size):
            points = sample_points(draws.boxes, draws.flip, self.size, images.shape[-2], images.shape[-1])
            fused = _compiled_call("pixels", images, points, draws)
            if fused is not None:
                return fused
        return self.eager_pixels(images, draws)

    def draw(self, shape: Sequence[int], generator: torch.Generator) -> Draws:
        """Every random choice for a batch of ``shape`` ``[B, 3, H, W]``, on the CPU, in a fixed order."""
        n = shape[0]
        rand = lambda *size: torch.rand(*size, generator=generator)  # noqa: E731
        boxes = self.crop_boxes(n, shape[-2], shape[-1], generator)
        flip = rand(n) < 0.5 if self.flip else None
        factors = order = None
        if self.jitter > 0:
            j = self.jitter
            low = max(0.0, 1 - j)  # brightness, contrast, saturation in [1 - j, 1 + j]; hue shift in [-j, j]
            factors = torch.stack([low + (1 + j - low) * rand(n) for _ in range(3)] + [-j + 2 * j * rand(n)], dim=1)
            order = rand(n, 4).argsort(dim=1)  # order[i, p]: the operation image i gets at position p
        grey = rand(n) < self.grayscale_p if self.grayscale_p > 0 else None
        return Draws(boxes, flip, factors, order, grey)

    def eager_pixels(self, images: torch.Tensor, draws: Draws) -> torch.Tensor:
        """:meth:`pixels` by eager operations on whole slices of the batch (any device, any crop)."""
        x = crop_resize(to_unit(images), draws.boxes, self.size)
        on = lambda t: t.to(x.device)  # noqa: E731
        if draws.flip is not None:
            flipped = _chosen(on(draws.flip))
            x.index_copy_(0, flipped, x.index_select(0, flipped).flip(-1))
        if draws.factors is not None and draws.order is not None:
            x = _colour_jitter(x, on(draws.factors), on(draws.order))
        if draws.grey is not None:
            grey = _chosen(on(draws.grey))
            x.index_copy_(0, grey, grayscale(x.index_select(0, grey)).expand(-1, 3, -1, -1))
        return x

    def crop_boxes(self, n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, 4]`` boxes ``(x0, y0, x1, y1)`` in pixels, drawn as torchvision's RandomResizedCrop does:
        up to ten tries of area fraction ∈ ``scale`` and log-uniform aspect ∈ ``ratio``, the first that
        fits is kept, else the largest centred box with the aspect clamped to ``ratio``."""
        area = height * width
        target = area * (
            self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, _CROP_ATTEMPTS, generator=generator)
        )
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, _CROP_ATTEMPTS, generator=generator))
        w = torch.sqrt(target * aspect).round()
        h = torch.sqrt(target / aspect).round()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.int().argmax(dim=1)
        rows = torch.arange(n)
        w, h = w[rows, first], h[rows, first]
        y0 = torch.floor(torch.rand(n, generator=generator) * (height - h + 1))
        x0 = torch.floor(torch.rand(n, generator=generator) * (width - w + 1))
        # no try fitted: a centred crop of the whole image with its aspect clamped into `ratio`
        fallback = ~fits.any(dim=1)
        if fallback.any():
            in_ratio = width / height
            if in_ratio < self.ratio[0]:
                fw, fh = width, round(width / self.ratio[0])
            elif in_ratio > self.ratio[1]:
                fw, fh = round(height * self.ratio[1]), height
            else:
                fw, fh = width, height
            w[fallback], h[fallback] = float(fw), float(fh)
            y0[fallback], x0[fallback] = float((height - fh) // 2), float((width - fw) // 2)
        return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _chosen(mask: torch.Tensor) -> torch.Tensor:
    """The indices where ``mask`` holds."""
    return mask.nonzero().squeeze(1)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop box ``i`` out of image ``i`` and resize it to ``size``×``size`` bilinearly; when shrinking,
    each output pixel averages several samples (``roi_align``'s adaptive sampling), which keeps thin
    strokes from aliasing as an antialiased resize does."""
    rois = torch.cat([torch.arange(len(x), dtype=x.dtype, device=x.device).view(-1, 1), boxes.to(x)], dim=1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x − mean) / std`` per channel, for ``[B, 3, H, W]`` floats in ``[0, 1]``."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` → float ``[B, 3, size, size]`` in ``[0, 1]``: DomainBed's evaluation resize
    (the whole image, no crop); a no-op but for the dtype when the images already have that size."""
    x = images.float() / 255
    if x.shape[-2:] == (size, size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
