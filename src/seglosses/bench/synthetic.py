"""Synthetic two-way imbalanced segmentation data, the bundled default of ``seglosses bench``.

Seed 000 (sections 2.1 and 3.1) calls a data set *two-way imbalanced* when

* **image level**: in an image that has foreground, the foreground covers only a few per cent of
  the pixels, and
* **batch level**: only a small fraction of the images have any foreground at all (about 360 of
  2800 tiles in the seed's lung H&E data, a ratio near 1:7).

:func:`make_synthetic` generates such a data set in code, deterministically from a seed, so that the
benchmark runs without any download.

What an image looks like (one grey channel, values in ``[0, 1]``):

* **background**: smooth noise summed over a few spatial scales (fine grain, cell-sized blotches,
  slow shading), with a per-image brightness and contrast;
* **distractors**: in every image, zero to two smooth blobs that are brighter or darker than the
  background but carry no texture; they are labelled background;
* **foreground** (only in positive images): one to three small blobs with irregular, smooth
  boundaries (a radius perturbed by low-order harmonics, stretched to an ellipse). Each class has
  its own intensity offset, texture and elongation, so intensity alone does not separate the
  foreground from the distractors: the texture does;
* **pixel noise**: independent zero-mean uniform noise on every pixel (standard deviation 0.035).

Foreground classes (``k`` = 1..4; ``num_classes - 1`` of them are used):

====  =========  ==============================  ==================
k     offset     texture                         shape
====  =========  ==============================  ==================
1     brighter   fine grain (noise, sigma 0.8)   round (aspect 1-1.6)
2     darker     stripes, period 4 px            elongated (1.8-3)
3     brighter   stripes, period 7 px            round
4     darker     coarse grain (sigma 1.6)        elongated
====  =========  ==============================  ==================

Determinism: every random number is a uniform draw from one CPU ``torch.Generator`` seeded with
``seed`` (uniform draws are exact bit patterns on every platform; no platform-specific normal
sampler is used), and the arithmetic (FFT filtering, blob geometry) runs in float64 before the final
cast to float32. The same arguments therefore give identical tensors on a given torch build, and
on other machines labels that are identical and images that agree to float32 rounding (labels
are thresholds of smooth fields, far from rounding-level ties). The global torch RNG is neither
used nor advanced.

Speed: 256 images of 128x128 take about 0.5 s of single-core CPU time.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from seglosses._options import lookup_option

__all__ = ["make_synthetic"]

# Images are generated in chunks of this many, so memory stays bounded for large ``n_images``.
# The chunk size is part of the random stream's definition: do not change it lightly.
_CHUNK = 64
_MAX_FOREGROUND_BLOBS = 3
_MAX_DISTRACTORS = 2
# Amplitudes, in intensity units.
_FOREGROUND_OFFSET = 0.10
_TEXTURE_AMPLITUDE = 0.06
_DISTRACTOR_OFFSET = 0.08
_PIXEL_NOISE = 0.035
_BACKGROUND_WEIGHTS = (0.25, 0.45, 0.6, 0.5)  # of the scales 1, 3, 8 px and 0.2 * size
_RADIUS = (0.035, 0.08)  # range of a blob's mean radius, as a fraction of the image size
_WIGGLE_BOUND = 1.3  # max boundary radius / mean radius (1 + 0.12 + 0.06 + 0.04 < 1.3)


class _Style(NamedTuple):
    sign: float  # +1 brighter, -1 darker than the background
    texture: str  # "grain" or "stripes"
    scale: float  # grain: blur sigma in px; stripes: period in px
    aspect: tuple[float, float]  # range of the ellipse's aspect ratio


_STYLES = (
    _Style(+1.0, "grain", 0.8, (1.0, 1.6)),
    _Style(-1.0, "stripes", 4.0, (1.8, 3.0)),
    _Style(+1.0, "stripes", 7.0, (1.0, 1.6)),
    _Style(-1.0, "grain", 1.6, (1.8, 3.0)),
)


def make_synthetic(
    n_images: int,
    size: int = 128,
    *,
    mode: str = "binary",
    num_classes: int | None = None,
    positive_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate a deterministic, two-way imbalanced segmentation data set.

    Exactly ``round(n_images * positive_fraction)`` images (chosen at random) contain foreground;
    in those, the foreground blobs cover about 1-5 % of the pixels (seed 000, sections 2.1 and
    3.1: image-level and batch-level imbalance). The other images hold only background and
    distractors. See the module docstring for the appearance of each class.

    Args:
        n_images: number of images, ``>= 1``.
        size: height and width in pixels, ``>= 32``.
        mode: ``"binary"`` (labels 0/1) or ``"multiclass"`` (labels ``0..num_classes-1``, 0 is the
            background).
        num_classes: number of classes including the background. ``None`` means 2 for
            ``"binary"`` and 3 for ``"multiclass"``; ``"binary"`` accepts only 2, ``"multiclass"``
            accepts 2 to 5.
        positive_fraction: fraction of the images that contain foreground, in ``[0, 1]``.
        seed: seed of the CPU ``torch.Generator`` that draws every random number.

    Returns:
        ``(images, masks)``: images float32 ``[n_images, 1, size, size]`` in ``[0, 1]`` (one grey
        channel) and masks int64 ``[n_images, size, size]`` holding class indices.

    Raises:
        ValueError: if an argument is out of range or ``mode`` is unknown.
        TypeError: if ``n_images``, ``size`` or ``seed`` is not an integer.

    Example:
        >>> images, masks = make_synthetic(8, 64, seed=1)
        >>> images.shape, masks.shape, images.dtype, masks.dtype
        (torch.Size([8, 1, 64, 64]), torch.Size([8, 64, 64]), torch.float32, torch.int64)
        >>> int((masks.flatten(1).amax(1) > 0).sum())  # round(8 * 0.25) positive images
        2
    """
    mode = lookup_option("mode", mode, ("binary", "multiclass"))
    for name, value in (("n_images", n_images), ("size", size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be an int; got {type(value).__name__}")
    if n_images < 1:
        raise ValueError(f"`n_images` must be >= 1; got {n_images}")
    if size < 32:
        raise ValueError(f"`size` must be >= 32; got {size}")
    if not 0.0 <= float(positive_fraction) <= 1.0:
        raise ValueError(f"`positive_fraction` must be in [0, 1]; got {positive_fraction}")
    if num_classes is None:
        num_classes = 2 if mode == "binary" else 3
    if mode == "binary" and num_classes != 2:
        raise ValueError(f"`num_classes` must be 2 (or None) when `mode` is 'binary'; got {num_classes}")
    if not 2 <= num_classes <= len(_STYLES) + 1:
        raise ValueError(f"`num_classes` must be in [2, {len(_STYLES) + 1}]; got {num_classes}")

    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_pos = int(round(n_images * float(positive_fraction)))
    positive = torch.zeros(n_images, dtype=torch.bool)
    positive[torch.randperm(n_images, generator=gen)[:n_pos]] = True

    images = torch.empty(n_images, 1, size, size, dtype=torch.float32)
    masks = torch.empty(n_images, size, size, dtype=torch.int64)
    for start in range(0, n_images, _CHUNK):
        stop = min(start + _CHUNK, n_images)
        img, msk = _generate_chunk(positive[start:stop], size, num_classes, gen)
        images[start:stop, 0] = img.to(torch.float32)
        masks[start:stop] = msk
    return images, masks


def _generate_chunk(
    positive: torch.Tensor, size: int, num_classes: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (float64 ``[n, size, size]``) and label maps for one chunk."""
    n = positive.numel()
    f64 = torch.float64

    def uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=f64)

    # Background: brightness + contrast * multi-scale noise.
    sigmas = (1.0, 3.0, 8.0, 0.2 * size)
    background = _filtered_noise(n, size, sigmas, _BACKGROUND_WEIGHTS, gen)
    brightness = uniform((n, 1, 1), 0.35, 0.6)
    contrast = uniform((n, 1, 1), 0.07, 0.12)
    image = brightness + contrast * background

    # Per-class textures (zero mean, unit standard deviation).
    coords = torch.arange(size, dtype=f64) + 0.5  # pixel centres
    textures = []
    for style in _STYLES[: num_classes - 1]:
        if style.texture == "grain":
            textures.append(_filtered_noise(n, size, (style.scale,), (1.0,), gen))
        else:
            angle = uniform((n, 1, 1), 0.0, math.pi)
            phase = uniform((n, 1, 1), 0.0, 2 * math.pi)
            along = coords.view(1, 1, -1) * torch.cos(angle) + coords.view(1, -1, 1) * torch.sin(angle)
            textures.append(math.sqrt(2.0) * torch.sin(2 * math.pi * along / style.scale + phase))

    # Blob slots: distractors first (label 0), then foreground blobs drawn over them.
    n_distractors = torch.randint(0, _MAX_DISTRACTORS + 1, (n,), generator=gen)
    n_foreground = torch.randint(1, _MAX_FOREGROUND_BLOBS + 1, (n,), generator=gen)
    n_foreground = torch.where(positive, n_foreground, torch.zeros_like(n_foreground))
    fg_class = torch.randint(1, num_classes, (n, _MAX_FOREGROUND_BLOBS), generator=gen)
    distractor_sign = torch.where(torch.rand(n, _MAX_DISTRACTORS, generator=gen) < 0.5, -1.0, 1.0).to(f64)
    aspect_ranges = torch.tensor([_STYLES[k].aspect for k in range(num_classes - 1)], dtype=f64)

    overlay = torch.zeros(n, size, size, dtype=f64)
    labels = torch.zeros(n, size, size, dtype=torch.int64)
    batch = torch.arange(n).view(n, 1, 1)
    slots = [("distractor", j) for j in range(_MAX_DISTRACTORS)]
    slots += [("foreground", j) for j in range(_MAX_FOREGROUND_BLOBS)]
    for kind, j in slots:
        if kind == "distractor":
            active = j < n_distractors
            cls = torch.zeros(n, dtype=torch.int64)
            aspect = (torch.full((n,), 1.0, dtype=f64), torch.full((n,), 1.4, dtype=f64))
        else:
            active = j < n_foreground
            cls = fg_class[:, j]
            aspect = (aspect_ranges[cls - 1, 0], aspect_ranges[cls - 1, 1])
        rows, cols, alpha = _blob(n, size, aspect, uniform)
        alpha = alpha * active.to(f64).view(n, 1, 1)
        index = (batch, rows.unsqueeze(2), cols.unsqueeze(1))  # a window around each blob
        if kind == "distractor":
            value = (_DISTRACTOR_OFFSET * distractor_sign[:, j]).view(n, 1, 1)
        else:
            value = torch.zeros(alpha.shape, dtype=f64)
            for k in range(1, num_classes):
                style = _STYLES[k - 1]
                selected = (cls == k).to(f64).view(n, 1, 1)
                value = value + selected * (
                    style.sign * _FOREGROUND_OFFSET + _TEXTURE_AMPLITUDE * textures[k - 1][index]
                )
        overlay[index] = overlay[index] * (1.0 - alpha) + alpha * value  # "over" compositing
        labels[index] = torch.where(alpha > 0.5, cls.view(n, 1, 1), labels[index])

    noise = _PIXEL_NOISE * math.sqrt(12.0) * (torch.rand(n, size, size, generator=gen, dtype=f64) - 0.5)
    return (image + overlay + noise).clamp_(0.0, 1.0), labels


def _blob(
    n: int, size: int, aspect_range: tuple[torch.Tensor, torch.Tensor], uniform
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random smooth-boundary blob per image, evaluated in a square window around it.

    Returns:
        ``(rows, cols, alpha)``: the window's row and column indices (int64 ``[n, w]``) and the
        soft membership (float64 ``[n, w, w]``, 0.5 on the boundary).
    """
    f64 = torch.float64
    radius = uniform((n,), _RADIUS[0], _RADIUS[1]) * size
    low, high = aspect_range
    stretch = (low + (high - low) * uniform((n,), 0.0, 1.0)).sqrt()
    # Keep the whole blob (with its boundary wiggle) inside the image.
    margin = _WIGGLE_BOUND * radius * stretch + 1.0
    cy = margin + uniform((n,), 0.0, 1.0) * (size - 2 * margin)
    cx = margin + uniform((n,), 0.0, 1.0) * (size - 2 * margin)
    orientation = uniform((n,), 0.0, math.pi)
    amplitude = uniform((n, 3), -1.0, 1.0) * torch.tensor([0.12, 0.06, 0.04], dtype=f64)
    phase = uniform((n, 3), 0.0, 2 * math.pi)

    # The window holds the blob's bounding box: the largest margin over all draws, clamped inside.
    max_stretch = math.sqrt(max(style.aspect[1] for style in _STYLES))
    width = min(size, 2 * math.ceil(_WIGGLE_BOUND * _RADIUS[1] * size * max_stretch + 1.0) + 2)
    offset = torch.arange(width)
    top = (cy.floor().long() - width // 2).clamp(0, size - width)
    left = (cx.floor().long() - width // 2).clamp(0, size - width)
    rows, cols = top.view(n, 1) + offset, left.view(n, 1) + offset

    def col(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, 1, 1)

    dy = (rows.to(f64) + 0.5 - cy.view(n, 1)).unsqueeze(2)
    dx = (cols.to(f64) + 0.5 - cx.view(n, 1)).unsqueeze(1)
    cos_o, sin_o = col(torch.cos(orientation)), col(torch.sin(orientation))
    u = (dx * cos_o + dy * sin_o) / col(stretch)
    v = (dy * cos_o - dx * sin_o) * col(stretch)
    rho = torch.hypot(u, v)
    # Boundary radius r(theta) = radius * (1 + sum_k a_k cos(k theta + phi_k)), k = 2, 3, 4, with
    # cos(k theta) and sin(k theta) from powers of the unit complex number (u + iv) / rho.
    unit = torch.complex(u, v) / rho.clamp_min(1e-12)
    power = unit * unit
    boundary = torch.ones_like(rho)
    for i in range(3):
        rotation = torch.complex(torch.cos(phase[:, i]), torch.sin(phase[:, i])).view(n, 1, 1)
        boundary = boundary + col(amplitude[:, i]) * (power * rotation).real
        power = power * unit
    return rows, cols, torch.sigmoid((boundary * col(radius) - rho) / 0.5)


def _filtered_noise(
    n: int, size: int, sigmas: tuple[float, ...], weights: tuple[float, ...], gen: torch.Generator
) -> torch.Tensor:
    """White noise low-pass filtered by a weighted sum of Gaussians, standardised per image.

    The white noise is uniform (exact bits from the generator on every platform); after the
    low-pass filter it is close to Gaussian. The filtering is a product in the Fourier domain
    (periodic boundary), one FFT for all scales. Each Gaussian is scaled so that it alone would
    give unit variance, then weighted.
    """
    f64 = torch.float64
    white = torch.rand(n, size, size, generator=gen, dtype=f64) - 0.5
    fy = torch.fft.fftfreq(size, dtype=f64).view(-1, 1)
    fx_full = torch.fft.fftfreq(size, dtype=f64).view(1, -1)
    fx_half = torch.fft.rfftfreq(size, dtype=f64).view(1, -1)
    transfer = torch.zeros(size, size // 2 + 1, dtype=f64)
    for sigma, weight in zip(sigmas, weights):
        gain_full = torch.exp(-2.0 * math.pi**2 * sigma**2 * (fx_full**2 + fy**2))
        norm = gain_full.pow(2).mean().sqrt()
        transfer = transfer + weight * torch.exp(-2.0 * math.pi**2 * sigma**2 * (fx_half**2 + fy**2)) / norm
    field = torch.fft.irfft2(torch.fft.rfft2(white) * transfer, s=(size, size))
    field = field - field.mean(dim=(1, 2), keepdim=True)
    return field / field.std(dim=(1, 2), keepdim=True).clamp_min(1e-12)
