"""Seed-000 preprocessing of tensors: tiling (section 1.2), the tissue filter, random rotated crops
(section 3) and quadrants."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Tiles(NamedTuple):
    """Result of :func:`tile`."""

    images: torch.Tensor
    """``[T, C, tile, tile]`` image tiles."""
    masks: torch.Tensor | None
    """``[T, tile, tile]`` mask tiles (``None`` without a mask)."""
    origins: list[tuple[int, int]]
    """Top-left ``(row, col)`` of each tile."""


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)  # last tile aligned to the border
    return starts


def tile_origins(height: int, width: int, tile: int = 512, stride: int = 256) -> list[tuple[int, int]]:
    """Top-left corners of the tiles that cover a ``height x width`` image (row-major order).

    Tiles start every ``stride`` pixels; when the size is not ``tile`` plus a multiple of
    ``stride``, one more tile is aligned to the bottom/right border, so every pixel is covered
    and no tile leaves the image (seed 000 section 1.2: 512x512 tiles, stride 256).

    Args:
        height: image height.
        width: image width.
        tile: tile side, ``1 <= tile <= min(height, width)``.
        stride: step between tiles, ``1 <= stride <= tile``.

    Returns:
        ``[(row, col), ...]``.

    Raises:
        ValueError: if ``tile`` or ``stride`` is out of range.

    Example:
        >>> tile_origins(5, 7, tile=4, stride=2)
        [(0, 0), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or not 1 <= tile <= min(height, width):
        raise ValueError(f"`tile` must be an int in [1, min(height, width)]; got {tile!r} for a {height}x{width} image")
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= tile:
        raise ValueError(f"`stride` must be an int in [1, tile={tile}]; got {stride!r}")
    return [(y, x) for y in _tile_starts(height, tile, stride) for x in _tile_starts(width, tile, stride)]


def tile(
    image: torch.Tensor, mask: torch.Tensor | None = None, tile: int = 512, stride: int = 256
) -> Tiles:
    """Cut an image (and its mask) into overlapping square tiles (seed 000 section 1.2).

    Args:
        image: ``[C, H, W]``.
        mask: ``[H, W]`` or ``None``.
        tile: tile side (seed 000: 512).
        stride: step between tiles (seed 000: 256, so neighbouring tiles overlap by half).

    Returns:
        :class:`Tiles` with stacked copies of the tiles and their origins from
        :func:`tile_origins` (the last row/column of tiles is aligned to the border).

    Raises:
        ValueError: if the shapes disagree or ``tile``/``stride`` are out of range.

    Example:
        >>> tiles = tile(torch.zeros(1, 6, 6), torch.zeros(6, 6), tile=4, stride=2)
        >>> tiles.images.shape, tiles.origins
        (torch.Size([4, 1, 4, 4]), [(0, 0), (0, 2), (2, 0), (2, 2)])
    """
    _check_pair(image, mask)
    origins = tile_origins(image.shape[-2], image.shape[-1], tile, stride)
    images = torch.stack([image[:, y:y + tile, x:x + tile] for y, x in origins])
    masks = None if mask is None else torch.stack([mask[y:y + tile, x:x + tile] for y, x in origins])
    return Tiles(images, masks, origins)


def tissue_filter(
    image: torch.Tensor, white_threshold: float = 0.8, min_tissue_fraction: float = 0.05
) -> bool | torch.Tensor:
    """Whether a tile holds enough tissue to keep (seed 000 section 1.2: tiles without tissue
    were discarded).

    A pixel counts as tissue when its intensity (mean over channels, in ``[0, 1]``) is below
    ``white_threshold``; bright, nearly white pixels are the empty glass of an H&E slide. The
    tile is kept when the tissue fraction is at least ``min_tissue_fraction``.

    Args:
        image: one tile ``[C, H, W]`` or a batch ``[N, C, H, W]``, float in ``[0, 1]`` (uint8 is
            divided by 255).
        white_threshold: intensity at or above which a pixel is background glass.
        min_tissue_fraction: smallest tissue fraction to keep the tile, in ``[0, 1]``.

    Returns:
        ``bool`` for one tile, a bool tensor ``[N]`` for a batch.

    Raises:
        ValueError: if the image is not 3D/4D or a threshold is out of range.

    Example:
        >>> tissue_filter(torch.ones(3, 8, 8)), tissue_filter(torch.full((3, 8, 8), 0.5))
        (False, True)
    """
    if image.ndim not in (3, 4):
        raise ValueError(f"`image` must have shape [C, H, W] or [N, C, H, W]; got {list(image.shape)}")
    if not 0.0 <= min_tissue_fraction <= 1.0:
        raise ValueError(f"`min_tissue_fraction` must be in [0, 1]; got {min_tissue_fraction}")
    values = image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image.to(torch.float32)
    tissue = (values.mean(dim=-3) < white_threshold).to(torch.float32).mean(dim=(-2, -1))
    keep = tissue >= min_tissue_fraction
    return bool(keep) if image.ndim == 3 else keep


def _check_pair(image: torch.Tensor, mask: torch.Tensor | None) -> None:
    if image.ndim != 3:
        raise ValueError(f"`image` must have shape [C, H, W]; got {list(image.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"`mask` must have shape {list(image.shape[-2:])} (the image's [H, W]); got {list(mask.shape)}")


def rotated_crop(
    image: torch.Tensor,
    mask: torch.Tensor | None,
    center: tuple[float, float],
    angle: float,
    size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop a square of side ``size`` centred at ``center`` and rotated by ``angle`` degrees.

    Coordinates are continuous, with pixel ``(i, j)`` covering ``[i, i+1) x [j, j+1)``; so for
    ``angle = 0`` and ``center = (r + size/2, c + size/2)`` with integers ``r, c`` the result is
    exactly ``image[:, r:r+size, c:c+size]``. A positive angle turns the crop window clockwise
    as displayed (rows downward), so its content appears turned counter-clockwise. The image is
    sampled bilinearly, the mask by nearest neighbour (labels stay within the original set),
    both with ``torch.nn.functional.grid_sample``; points outside take the border value.

    Args:
        image: ``[C, H, W]`` floating point.
        mask: ``[H, W]`` integer labels, or ``None``.
        center: ``(row, col)`` of the crop's centre.
        angle: rotation in degrees.
        size: side of the output square.

    Returns:
        ``(image [C, size, size], mask [size, size] or None)``, the mask with its input dtype.

    Raises:
        ValueError: if the shapes disagree or the image is not floating point.
    """
    _check_pair(image, mask)
    if not image.dtype.is_floating_point:
        raise ValueError(f"`image` must be floating point; got dtype {image.dtype}")
    height, width = image.shape[-2:]
    cy, cx = float(center[0]), float(center[1])
    rad = math.radians(float(angle))
    cos, sin = math.cos(rad), math.sin(rad)
    # affine_grid's output coordinates (align_corners=False) are (j + 0.5 - size/2) * 2/size; the
    # sample point in pixels is centre + R @ offset, normalised by 2/W (x) and 2/H (y).
    theta = torch.tensor(
        [[size / width * cos, -size / width * sin, 2.0 * cx / width - 1.0],
         [size / height * sin, size / height * cos, 2.0 * cy / height - 1.0]],
        dtype=torch.float64,
    ).unsqueeze(0)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    out_image = F.grid_sample(
        image.unsqueeze(0), grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )[0]
    out_mask = None
    if mask is not None:
        sampled = F.grid_sample(
            mask.to(torch.float64)[None, None], grid, mode="nearest", padding_mode="border", align_corners=False
        )[0, 0]
        out_mask = sampled.round().to(mask.dtype)
    return out_image, out_mask


def random_crop_params(
    height: int,
    width: int,
    size: int,
    generator: torch.Generator | None = None,
    *,
    max_angle: float = 180.0,
) -> tuple[tuple[float, float], float]:
    """Draw a centre and an angle such that the rotated ``size`` square lies inside the image.

    The angle is uniform on the part of ``[-max_angle, max_angle]`` where a rotated square fits
    at all: a square turned by ``a`` has a bounding box of side ``size * (|cos a| + |sin a|)``,
    so for images smaller than ``size * sqrt(2)`` only angles near multiples of 90 degrees are
    possible. The top-left corner of the unrotated square is then drawn uniformly among the
    integer positions that keep the rotated square inside, so angle 0 gives pixel-exact crops.

    Args:
        height: image height.
        width: image width.
        size: crop side, at most ``min(height, width)``.
        generator: random source (default: torch's global one).
        max_angle: largest absolute angle in degrees, in ``[0, 180]``.

    Returns:
        ``((row, col) centre, angle in degrees)`` for :func:`rotated_crop`.

    Raises:
        ValueError: if ``size`` exceeds the image or ``max_angle`` is out of range.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= min(height, width):
        raise ValueError(f"`size` must be an int in [1, min(height, width)]; got {size!r} for a {height}x{width} image")
    if not 0.0 <= float(max_angle) <= 180.0:
        raise ValueError(f"`max_angle` must be in [0, 180]; got {max_angle!r}")
    limit = math.radians(float(max_angle))
    ratio = min(height, width) / size
    # Angles a with |cos a| + |sin a| <= ratio: within `half` of a multiple of pi/2.
    half = math.pi / 4 if ratio >= math.sqrt(2.0) else math.asin(ratio / math.sqrt(2.0)) - math.pi / 4
    if half >= math.pi / 4:
        intervals = [(-limit, limit)]
    else:
        intervals = []
        for k in range(-2, 3):
            low, high = max(k * math.pi / 2 - half, -limit), min(k * math.pi / 2 + half, limit)
            if high > low:
                intervals.append((low, high))
    total = sum(high - low for low, high in intervals)
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    angle = 0.0
    if total > 0:
        position = u * total
        for low, high in intervals:
            if position <= high - low:
                angle = low + position
                break
            position -= high - low
        else:
            angle = intervals[-1][1]
    extent = 0.5 * size * (abs(math.cos(angle)) + abs(math.sin(angle))) - 1e-9  # half the bounding box
    center = []
    for length in (height, width):
        lowest = math.ceil(extent - size / 2)
        highest = math.floor(length - extent - size / 2)
        if highest < lowest:  # only at the edge of feasibility: the middle fits
            center.append(length / 2)
        else:
            offset = int(torch.randint(lowest, highest + 1, (), generator=generator))
            center.append(offset + size / 2)
    return (center[0], center[1]), math.degrees(angle)


def random_rotated_crop(
    image: torch.Tensor,
    mask: torch.Tensor | None,
    size: int = 256,
    generator: torch.Generator | None = None,
    *,
    max_angle: float = 180.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A random rotated square sub-image (seed 000 section 3: "randomly sampling a rotated 256x256
    subimage").

    Draws the position and angle with :func:`random_crop_params` (the rotated square lies
    inside the image) and samples with :func:`rotated_crop` (image bilinear, mask nearest).

    Args:
        image: ``[C, H, W]`` floating point.
        mask: ``[H, W]`` integer labels, or ``None``.
        size: crop side (seed 000: 256).
        generator: random source; the same seeded generator state gives the same crop.
        max_angle: largest absolute angle in degrees (0 gives plain, unrotated random crops).

    Returns:
        ``(image [C, size, size], mask [size, size] or None)``.

    Raises:
        ValueError: if ``size`` exceeds the image or the shapes disagree.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> img, msk = random_rotated_crop(torch.rand(1, 40, 50), torch.zeros(40, 50, dtype=torch.long), 16, g)
        >>> img.shape, msk.shape
        (torch.Size([1, 16, 16]), torch.Size([16, 16]))
    """
    _check_pair(image, mask)
    center, angle = random_crop_params(image.shape[-2], image.shape[-1], size, generator, max_angle=max_angle)
    return rotated_crop(image, mask, center, angle, size)


def quadrants(
    image: torch.Tensor, mask: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The four quadrants of an image and its mask (seed 000 section 3: "for validation, the
    large images were partitioned into four parts").

    Rows are split at ``H // 2`` and columns at ``W // 2`` (for odd sizes the bottom/right
    quadrants are one pixel larger). The crops are views, not copies.

    Args:
        image: ``[C, H, W]`` with ``H, W >= 2``.
        mask: ``[H, W]`` or ``None``.

    Returns:
        ``[(image, mask)] * 4`` in the order top-left, top-right, bottom-left, bottom-right.

    Raises:
        ValueError: if the shapes disagree or the image is smaller than 2x2.

    Example:
        >>> [q[0].shape[-2:] for q in quadrants(torch.zeros(1, 4, 5))]
        [torch.Size([2, 2]), torch.Size([2, 3]), torch.Size([2, 2]), torch.Size([2, 3])]
    """
    _check_pair(image, mask)
    height, width = image.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"`image` must be at least 2x2; got {height}x{width}")
    rows = (slice(0, height // 2), slice(height // 2, height))
    cols = (slice(0, width // 2), slice(width // 2, width))
    return [
        (image[:, r, c], None if mask is None else mask[r, c])
        for r in rows
        for c in cols
    ]
