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

The hue rotation, the costliest operation by far (some 35 elementwise passes over the batch), can run
as one loop compiled by ``torch.compile`` (:func:`warm_up`): bit-identical to the eager function, about
ten times faster on a CPU core.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale every pixel of image ``i`` by ``factor[i]`` (torchvision's ``adjust_brightness``)."""
    return (x * _per_image(factor)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma (torchvision's ``adjust_contrast``)."""
    mean = grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
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


#: the compiled hue rotation once :func:`warm_up` has made one; the eager function until then
_compiled_hue: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
#: ``VL2V_COMPILE=0`` keeps every operation eager, ``1`` compiles even in a single run
COMPILE_ENV = "VL2V_COMPILE"


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return (_compiled_hue or adjust_hue)(x, shift)


def warm_up() -> bool:
    """Compile the hue rotation for any batch and image size (dynamic shapes) and keep it for this
    process and every process forked from it; returns whether it is in use.

    Why not always: compiling costs 15–60 s on two cores the first time on a machine (then Inductor's
    disk cache makes it a few seconds), against ≈ 5 ms saved per 48-image step: it pays in a sweep,
    whose fork server compiles once for all its runs (:mod:`client_distill.train.compiled`), and in
    long runs, not in a 200-step run or a test. The compiled kernel must reproduce the eager one bit for
    bit on a sample (so a run resumed without it continues exactly), else it is not used; any failure
    (no C compiler, say) leaves the eager function with a warning."""
    global _compiled_hue
    if _compiled_hue is not None:
        return True
    if os.environ.get(COMPILE_ENV) == "0":
        return False
    try:
        compiled = torch.compile(adjust_hue, dynamic=True)
        g = torch.Generator().manual_seed(0)
        for n in (1, 2, 5):  # one image, two, several: the sizes a colour slice takes
            x, shift = torch.rand(n, 3, 9, 7, generator=g), torch.rand(n, generator=g) - 0.5
            if not torch.equal(compiled(x, shift), adjust_hue(x, shift)):
                warnings.warn("compiled hue rotation differs from the eager one; augmenting eagerly", stacklevel=2)
                return False
    except Exception as exc:  # Inductor raises many kinds; eager always works
        warnings.warn(f"could not compile the hue rotation ({type(exc).__name__}); augmenting eagerly", stacklevel=2)
        return False
    _compiled_hue = compiled
    return True


_COLOUR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, _hue)


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
        """The augmented images in ``[0, 1]``, before normalisation (what the online mode sends)."""
        n = images.shape[0]
        rand = lambda *shape: torch.rand(*shape, generator=generator).to(images.device)  # noqa: E731
        x = crop_resize(
            images.float() / 255, self.crop_boxes(n, images.shape[-2], images.shape[-1], generator), self.size
        )
        if self.flip:
            flipped = _chosen(rand(n) < 0.5)
            x.index_copy_(0, flipped, x.index_select(0, flipped).flip(-1))
        if self.jitter > 0:
            x = self._colour_jitter(x, rand)
        if self.grayscale_p > 0:
            grey = _chosen(rand(n) < self.grayscale_p)
            x.index_copy_(0, grey, grayscale(x.index_select(0, grey)).expand(-1, 3, -1, -1))
        return x

    def _colour_jitter(self, x: torch.Tensor, rand) -> torch.Tensor:
        """Brightness, contrast, saturation and hue, each image in its own random order of the four.
        At each of the four positions the batch is sorted by the operation its images draw there, so
        every operation runs once on a contiguous slice; the original order is restored at the end."""
        n, j = x.shape[0], self.jitter
        low = max(0.0, 1 - j)  # brightness, contrast, saturation in [1 - j, 1 + j]; hue shift in [-j, j]
        factors = [low + (1 + j - low) * rand(n) for _ in range(3)] + [-j + 2 * j * rand(n)]
        order = rand(n, 4).argsort(dim=1)  # order[i, p]: the operation image i gets at position p
        index = torch.arange(n, device=x.device)  # x[k] is image index[k]
        for position in range(4):
            ops = order[index, position]
            by_op = ops.argsort(stable=True)
            x, index = x.index_select(0, by_op), index[by_op]
            start = 0
            for op, count in enumerate(torch.bincount(ops, minlength=4).tolist()):
                if count:
                    rows = slice(start, start + count)
                    x[rows] = _COLOUR_OPS[op](x[rows], factors[op][index[rows]])
                start += count
        return x.index_select(0, index.argsort())

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
