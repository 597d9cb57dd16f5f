"""Data for ``seglosses bench``: data sets, file loading, seed-000 preprocessing, sampling, splits.

Every data set here is a ``torch.utils.data.Dataset`` whose items are
``(image float32 [C, H, W] in [0, 1], mask int64 [H, W] of class indices)``; class 0 is the
background and "foreground" means any non-zero class. Each also has ``names`` and ``groups``
(one string per item, used for reports and group-aware splits) and a ``foreground_flags()``
method (whether each item has any foreground, used by :class:`RatioBatchSampler`).

The preprocessing follows seed 000:

* section 1.2: large images cut into 512x512 tiles with stride 256 (:func:`tile`,
  :class:`TiledDataset`), tiles without tissue discarded (:func:`tissue_filter`);
* section 3: training on random rotated 256x256 sub-images (:func:`random_rotated_crop`,
  :class:`RotatedCropDataset`), validation on the four quadrants of each tile
  (:func:`quadrants`, :class:`QuadrantDataset`);
* section 3.1: every batch with the data set's positive:negative image ratio
  (:class:`RatioBatchSampler`);
* section 3.2: the task restricted to images with foreground (:func:`positives_only`).

Data-set specification (:func:`build_dataset`)
----------------------------------------------
A study lists data sets as dictionaries (from YAML or JSON). Keys:

Common keys
    ``type`` (required): ``"folder"``, ``"synthetic"`` or ``"nifti"``.
    ``name``: label used in reports; default: the type.
    ``split``: how to split into ``train``/``val``/``test``; default
    ``{"fractions": [0.7, 0.15, 0.15], "seed": 0}``. One of

    * explicit members per split: ``{"train": "0-19", "val": "20-24", "test": "25-29"}``; a
      value is a range string (comma-separated indices and inclusive ``a-b`` ranges into the data
      set's order, which is the sorted file order for folders), a list of indices, or a list of
      item names (file stems);
    * ``{"fractions": [0.7, 0.15, 0.15], "seed": 0}`` or ``{"counts": [20, 5, 5], "seed": 0}``:
      a seeded random split (:func:`split_indices`), group-aware when the items have groups;
    * ``{"file": "splits.json"}``: names per split from a JSON or CSV file
      (:func:`read_split_file`), relative to ``root``; for a CSV, ``column`` names the split
      column and ``key`` the item-name column (e.g. a manifest's ``source_split`` and ``id``).

    ``tile``: tile size in pixels, or ``null`` for no tiling (seed 000 section 1.2 uses 512).
    ``stride``: tile stride; default ``tile // 2``.
    ``small``: an item smaller than ``tile`` is padded (``"pad"``, default), skipped (``"skip"``,
    counted) or an error (``"error"``); ``pad_mode``: ``"reflect"`` (default, image and mask
    mirrored) or ``"constant"`` (black pixels of the background class).
    ``tissue_filter``: ``false`` (default), ``true`` (defaults of :func:`tissue_filter`) or a
    dict of its keyword arguments; drops tiles without tissue (needs ``tile``).
    ``positives_only``: keep only items with foreground, in every split (seed 000 section 3.2).
    ``crop``: size of the random rotated training crops, or ``null`` for whole items (seed 000
    section 3 uses 256). ``max_angle`` (degrees, default 180) and ``crop_seed`` (default 0)
    tune them.
    ``quadrants``: evaluate val/test on the four quadrants of each item (seed 000 section 3).
    ``num_classes``: number of classes including the background; default: from ``classes``, the
    generator, or the largest label found plus one (at least 2).

``type: folder`` (:func:`load_folder`)
    ``images``, ``masks``: folders, relative to ``root``; ``manifest``: CSV with columns
    ``image``, ``mask`` and optional ``group``; ``classes``: mask value -> class index (keys may
    be strings, as JSON requires); ``image_glob``, ``mask_glob``, ``mask_suffix``,
    ``group_pattern``: as in :func:`load_folder`; ``group_by``: ``{file, column, key}`` reads each
    item's group (patient, source slide: the cluster of the report's tests) from a CSV column,
    matching the item's name in column ``key`` (default ``name``, ``image`` or ``id``).

``type: synthetic`` (:func:`seglosses.bench.synthetic.make_synthetic`)
    ``n_images`` (default 256), ``size`` (128), ``mode`` (``"binary"``), ``num_classes``,
    ``positive_fraction`` (0.25), ``seed`` (0).

``type: nifti`` (:func:`load_nifti_slices`, needs the ``seglosses[nifti]`` extra)
    ``images``, ``masks``: a volume path or a list of them (paired in order); ``axis`` (2);
    ``classes``; ``intensity_range``.

Example (the ISBI 2012 EM membranes, membrane = mask value 0 as the foreground)::

    {"name": "isbi", "type": "folder",
     "images": "../shared/datasets/isbi2012-em/images",
     "masks": "../shared/datasets/isbi2012-em/masks",
     "classes": {0: 1, 255: 0},
     "split": {"train": "0-19", "val": "20-24", "test": "25-29"},
     "tile": None, "crop": 256, "quadrants": True}
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from seglosses._options import did_you_mean

__all__ = [
    "IMAGE_EXTENSIONS",
    "SegmentationDataset",
    "SubsetDataset",
    "TiledDataset",
    "RotatedCropDataset",
    "QuadrantDataset",
    "read_image",
    "read_mask",
    "load_folder",
    "load_nifti_slices",
    "Tiles",
    "tile_origins",
    "tile",
    "tissue_filter",
    "rotated_crop",
    "random_crop_params",
    "random_rotated_crop",
    "quadrants",
    "foreground_flags",
    "positives_only",
    "positive_evaluation",
    "RatioBatchSampler",
    "parse_index_ranges",
    "split_indices",
    "read_split_file",
    "BenchData",
    "build_dataset",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_TIFF_EXTENSIONS = (".tif", ".tiff")


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


class SegmentationDataset(Dataset):
    """In-memory images and label maps.

    Images are kept as given (``uint8`` ones are stored as such, a quarter of the float32 memory)
    and converted on access.

    Args:
        images: a tensor ``[N, C, H, W]`` or a sequence of tensors ``[C, H, W]`` (sizes may
            differ between items); ``uint8`` is scaled by 1/255, floating point is taken as is.
        masks: a tensor ``[N, H, W]`` or a sequence of integer tensors ``[H, W]`` of class indices.
        names: one name per item; default ``"0", "1", ...``.
        groups: one group (patient, source slide, volume) per item; default: each item is its own
            group (its name).

    Raises:
        ValueError: if the lengths differ, a shape is wrong, an image and its mask differ in size,
            the channel counts differ, or a mask is not integer or has negative values.

    Example:
        >>> ds = SegmentationDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
        >>> image, mask = ds[0]
        >>> image.shape, mask.dtype, ds.names
        (torch.Size([1, 4, 4]), torch.int64, ['0', '1'])
    """

    def __init__(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        masks: torch.Tensor | Sequence[torch.Tensor],
        *,
        names: Sequence[str] | None = None,
        groups: Sequence[str | None] | None = None,
    ) -> None:
        images = list(images)
        masks = list(masks)
        if len(images) != len(masks):
            raise ValueError(f"`masks` must have one entry per image; got {len(masks)} masks for {len(images)} images")
        names = [str(i) for i in range(len(images))] if names is None else [str(n) for n in names]
        if len(names) != len(images):
            raise ValueError(f"`names` must have one entry per image; got {len(names)} for {len(images)} images")
        groups = list(names) if groups is None else [n if g is None else str(g) for g, n in zip(groups, names)]
        if len(groups) != len(images):
            raise ValueError(f"`groups` must have one entry per image; got {len(groups)} for {len(images)} images")
        for i, (image, mask) in enumerate(zip(images, masks)):
            where = f" (item {i}, {names[i]!r})"
            if image.ndim != 3:
                raise ValueError(f"`images` must hold [C, H, W] tensors; got shape {list(image.shape)}{where}")
            if mask.ndim != 2:
                raise ValueError(f"`masks` must hold [H, W] tensors; got shape {list(mask.shape)}{where}")
            if mask.dtype.is_floating_point or mask.dtype == torch.bool or mask.dtype.is_complex:
                raise ValueError(f"`masks` must hold integer class indices; got dtype {mask.dtype}{where}")
            if image.shape[-2:] != mask.shape:
                raise ValueError(
                    f"`masks` must match the image size; got mask {list(mask.shape)} for image "
                    f"{list(image.shape[-2:])}{where}"
                )
            if image.shape[0] != images[0].shape[0]:
                raise ValueError(
                    f"`images` must all have the same channel count; got {image.shape[0]} and "
                    f"{images[0].shape[0]}{where}"
                )
            if mask.is_signed() and mask.numel() and int(mask.min()) < 0:
                raise ValueError(f"`masks` must hold class indices >= 0; got {int(mask.min())}{where}")
        self.images = images
        self.masks = masks
        self.names = names
        self.groups = groups
        self._flags: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _as_item(self.images[index], self.masks[index])

    def window(self, index: int, top: int, left: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``size x size`` window at ``(top, left)`` of item ``index``, converted like an item.

        Only the window is converted to float32, which keeps tiling of large images cheap.
        """
        rows, cols = slice(top, top + size), slice(left, left + size)
        return _as_item(self.images[index][:, rows, cols], self.masks[index][rows, cols])

    @property
    def in_channels(self) -> int:
        """Channel count of the images (0 for an empty data set)."""
        return int(self.images[0].shape[0]) if self.images else 0

    def foreground_flags(self) -> list[bool]:
        """Whether each item's mask has any non-zero (foreground) pixel."""
        if self._flags is None:
            self._flags = [bool(mask.any()) for mask in self.masks]
        return list(self._flags)

    def max_label(self) -> int:
        """The largest class index in any mask (0 for an empty data set)."""
        return max((int(mask.max()) for mask in self.masks if mask.numel()), default=0)


def _as_item(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if image.dtype == torch.uint8:
        image = image.to(torch.float32).div_(255.0)
    else:
        image = image.to(torch.float32)
    return image, mask.to(torch.int64)


def _window(dataset: Dataset, index: int, top: int, left: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    method = getattr(dataset, "window", None)
    if callable(method):
        return method(index, top, left, size)
    image, mask = dataset[index]
    return image[:, top:top + size, left:left + size], mask[top:top + size, left:left + size]


class SubsetDataset(Dataset):
    """The items ``indices`` of ``base``, keeping names, groups and foreground flags.

    Args:
        base: any data set of this module (or one with ``names``/``groups`` attributes).
        indices: item indices into ``base``; repeats are allowed.

    Raises:
        IndexError: if an index is out of range.
    """

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        n = len(base)
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"`indices` must be in [0, {n}); got {bad[:5]}")
        self.base = base
        self.indices = indices
        self.names = [_names(base)[i] for i in indices]
        self.groups = [_groups(base)[i] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base[self.indices[index]]

    def window(self, index: int, top: int, left: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``size x size`` window at ``(top, left)`` of item ``index``."""
        return _window(self.base, self.indices[index], top, left, size)

    @property
    def in_channels(self) -> int:
        """Channel count of the images."""
        return _in_channels(self.base)

    def foreground_flags(self) -> list[bool]:
        """Whether each item's mask has any foreground pixel."""
        flags = foreground_flags(self.base)
        return [flags[i] for i in self.indices]


class TiledDataset(Dataset):
    """Every tile of every item of ``base`` (seed 000 section 1.2), optionally without empty tiles.

    Tiles are views into the base items, cut on access, so the tiled data set holds no copies.
    The tile positions are those of :func:`tile_origins`. Each tile is named
    ``"<item name>@<row>,<col>"`` and keeps its item's group, so a group-aware split never puts
    tiles of one image on both sides.

    An item smaller than ``tile`` (in height or width) is, by ``small``, padded up to
    ``tile`` at its bottom and right (``pad_mode``: ``"reflect"`` mirrors the image and its
    mask, ``"constant"`` adds black pixels of the background class), skipped (``skipped``
    counts them), or an error.

    Args:
        base: the data set to tile.
        tile: tile side in pixels (seed 000: 512).
        stride: step between tiles; default ``tile // 2`` (seed 000: 256).
        tissue: ``None`` keeps every tile; ``True`` or a dict of keyword arguments of
            :func:`tissue_filter` keeps only tiles with tissue (seed 000: "the images that did not
            contain any tissue were discarded").
        small: ``"pad"`` (default), ``"skip"`` or ``"error"`` for items smaller than ``tile``.
        pad_mode: ``"reflect"`` (default) or ``"constant"``.

    Raises:
        ValueError: if ``tile``/``stride``/``small``/``pad_mode`` are invalid, an item is smaller
            than ``tile`` with ``small="error"``, or every item is skipped.

    Example:
        >>> ds = SegmentationDataset([torch.zeros(1, 6, 6), torch.zeros(1, 3, 6)],
        ...                          [torch.zeros(6, 6, dtype=torch.long), torch.zeros(3, 6, dtype=torch.long)])
        >>> tiled = TiledDataset(ds, 4, 2)
        >>> len(tiled), tiled.padded, tiled[-1][0].shape
        (6, 1, torch.Size([1, 4, 4]))
        >>> TiledDataset(ds, 4, 2, small="skip").skipped
        1
    """

    def __init__(
        self,
        base: Dataset,
        tile: int = 512,
        stride: int | None = None,
        *,
        tissue: bool | Mapping[str, float] | None = None,
        small: str = "pad",
        pad_mode: str = "reflect",
    ) -> None:
        stride = max(1, tile // 2) if stride is None else stride
        if small not in ("pad", "skip", "error"):
            raise ValueError(f"`small` must be 'pad', 'skip' or 'error'; got {small!r}")
        if pad_mode not in ("reflect", "constant"):
            raise ValueError(f"`pad_mode` must be 'reflect' or 'constant'; got {pad_mode!r}")
        tissue_kwargs = None if tissue in (None, False) else ({} if tissue is True else dict(tissue))
        self.base, self.tile, self.stride = base, tile, stride
        self.pad_mode = pad_mode
        self.padded = 0
        self.skipped = 0
        self._pad: dict[int, tuple[int, int]] = {}
        self.entries: list[tuple[int, int, int]] = []
        self.names: list[str] = []
        self.groups: list[str] = []
        self._flags: list[bool] = []
        base_names, base_groups = _names(base), _groups(base)
        for i in range(len(base)):
            image, mask = base[i]
            h, w = image.shape[-2:]
            if isinstance(tile, int) and not isinstance(tile, bool) and tile >= 1 and (h < tile or w < tile) \
                    and small != "error":
                if small == "skip":
                    self.skipped += 1
                    continue
                self._pad[i] = (max(0, tile - h), max(0, tile - w))
                self.padded += 1
                image, mask = self._padded_item(i)
            try:
                origins = tile_origins(image.shape[-2], image.shape[-1], tile, stride)
            except ValueError as err:
                raise ValueError(f"{err} (item {i}, {base_names[i]!r}; set `small` to 'pad' or 'skip')") from None
            for y, x in origins:
                window = (slice(y, y + tile), slice(x, x + tile))
                if tissue_kwargs is not None and not tissue_filter(image[(slice(None), *window)], **tissue_kwargs):
                    continue
                self.entries.append((i, y, x))
                self.names.append(f"{base_names[i]}@{y},{x}")
                self.groups.append(base_groups[i])
                self._flags.append(bool(mask[window].any()))
        if not self.entries and self.skipped:
            raise ValueError(f"`tile` must fit at least one item; got {tile} and all {self.skipped} items smaller "
                             f"(set `small` to 'pad')")

    def _padded_item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[i]
        dh, dw = self._pad[i]
        if self.pad_mode == "constant":
            return F.pad(image, (0, dw, 0, dh)), F.pad(mask, (0, dw, 0, dh))
        # numpy's reflect repeats the reflection when the padding exceeds the size
        img = np.pad(image.numpy(), ((0, 0), (0, dh), (0, dw)), mode="reflect")
        msk = np.pad(mask.numpy(), ((0, dh), (0, dw)), mode="reflect")
        return torch.from_numpy(img), torch.from_numpy(msk)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, y, x = self.entries[index]
        if i in self._pad:
            image, mask = self._padded_item(i)
            return image[:, y:y + self.tile, x:x + self.tile], mask[y:y + self.tile, x:x + self.tile]
        return _window(self.base, i, y, x, self.tile)

    @property
    def in_channels(self) -> int:
        """Channel count of the images."""
        return _in_channels(self.base)

    def foreground_flags(self) -> list[bool]:
        """Whether each tile has any foreground pixel."""
        return list(self._flags)


class RotatedCropDataset(Dataset):
    """One random rotated square crop per item and access (seed 000 section 3, training).

    The crop of item ``i`` depends only on ``(seed, epoch, i)``, not on the order of access or
    the number of data-loader workers; call :meth:`set_epoch` at the start of every epoch for
    fresh crops.

    ``foreground_flags()`` reports the flags of the *source* items: a crop of a positive item
    may miss its foreground.

    Args:
        base: the data set to crop; items must be at least ``size`` pixels high and wide.
        size: crop side in pixels (seed 000: 256).
        seed: base seed of the crops.
        max_angle: angles are drawn uniformly from ``[-max_angle, max_angle]`` degrees, restricted
            to those for which the rotated square fits (see :func:`random_crop_params`).
    """

    def __init__(self, base: Dataset, size: int = 256, *, seed: int = 0, max_angle: float = 180.0) -> None:
        self.base, self.size, self.seed, self.max_angle = base, size, int(seed), float(max_angle)
        self.epoch = 0
        self.names = list(_names(base))
        self.groups = list(_groups(base))

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[index]
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(2, np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return random_rotated_crop(image, mask, self.size, gen, max_angle=self.max_angle)

    @property
    def in_channels(self) -> int:
        """Channel count of the images."""
        return _in_channels(self.base)

    def foreground_flags(self) -> list[bool]:
        """Whether each *source* item has any foreground pixel (a crop may miss it)."""
        return foreground_flags(self.base)


class QuadrantDataset(Dataset):
    """The four quadrants of every item (seed 000 section 3, validation).

    Item ``4 * i + k`` is quadrant ``k`` of base item ``i`` in the order of :func:`quadrants`
    (top-left, top-right, bottom-left, bottom-right); it is named ``"<item name>#q<k>"`` and keeps
    the item's group.

    Args:
        base: the data set to partition.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self.names = [f"{name}#q{k}" for name in _names(base) for k in range(4)]
        self.groups = [group for group in _groups(base) for _ in range(4)]
        self._flags: list[bool] | None = None

    def __len__(self) -> int:
        return 4 * len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"`index` must be in [0, {len(self)}); got {index}")
        image, mask = self.base[index // 4]
        return quadrants(image, mask)[index % 4]

    @property
    def in_channels(self) -> int:
        """Channel count of the images."""
        return _in_channels(self.base)

    def foreground_flags(self) -> list[bool]:
        """Whether each quadrant has any foreground pixel."""
        if self._flags is None:
            self._flags = [bool(m.any()) for i in range(len(self.base)) for _, m in quadrants(*self.base[i])]
        return list(self._flags)


def _names(dataset: Dataset) -> list[str]:
    names = getattr(dataset, "names", None)
    return list(names) if names is not None else [str(i) for i in range(len(dataset))]


def _groups(dataset: Dataset) -> list[str]:
    groups = getattr(dataset, "groups", None)
    return list(groups) if groups is not None else _names(dataset)


def _in_channels(dataset: Dataset) -> int:
    channels = getattr(dataset, "in_channels", None)
    if channels is not None:
        return int(channels)
    return int(dataset[0][0].shape[0]) if len(dataset) else 0


# ---------------------------------------------------------------------------------------------
# File loading
# ---------------------------------------------------------------------------------------------


def read_image(path: str | Path) -> torch.Tensor:
    """Read an image file as a ``[C, H, W]`` tensor.

    PNG, JPEG and BMP are read with Pillow; TIFF with ``tifffile`` when installed (multi-page
    stacks become channels, 16-bit and float samples are kept), else with Pillow (first page).
    Palette images become RGB and alpha channels are dropped.

    Args:
        path: the image file.

    Returns:
        ``uint8 [C, H, W]`` for 8-bit files; otherwise ``float32 [C, H, W]``: 16-bit samples
        divided by 65535, other integers by their type's maximum, floating point unchanged.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file cannot be read as an image or has an unsupported layout.
    """
    path = Path(path)
    array = _read_array(path, role="image")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3:
        if array.shape[-1] <= 4 and array.shape[0] > 4:  # channels last (H, W, C)
            array = np.moveaxis(array, -1, 0)
    else:
        raise ValueError(f"`image` must be a 2D image with optional channels; got shape {array.shape} in '{path}'")
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint8:
        return torch.from_numpy(array)
    if array.dtype == np.bool_:
        return torch.from_numpy(array.astype(np.uint8) * 255)
    if np.issubdtype(array.dtype, np.floating):
        return torch.from_numpy(array.astype(np.float32))
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype == np.uint16 or (array.dtype.itemsize > 2 and array.min() >= 0 and array.max() <= 65535):
            scale = 65535.0  # 16-bit data (Pillow reads 16-bit PNGs as int32)
        else:
            scale = float(np.iinfo(array.dtype).max)
        return torch.from_numpy((array.astype(np.float64) / scale).astype(np.float32))
    raise ValueError(f"`image` must hold integer or floating-point samples; got dtype {array.dtype} in '{path}'")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label-map file as an integer ``[H, W]`` array of raw values.

    Palette PNGs give their palette indices; grey images their grey values; RGB(A) masks are
    accepted only when all colour channels are equal. Float samples must be whole numbers.

    Args:
        path: the mask file.

    Returns:
        ``int64 [H, W]`` numpy array of the stored values (map them with ``classes``).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the mask has several differing channels or non-integer values.
    """
    path = Path(path)
    array = _read_array(path, role="mask", keep_palette=True)
    if array.ndim == 3:
        if array.shape[-1] <= 4 and array.shape[0] > 4:
            array = np.moveaxis(array, -1, 0)
        if array.shape[0] in (2, 4):  # drop alpha
            array = array[:-1]
        if not (array == array[:1]).all():
            raise ValueError(
                f"`mask` must be a single-channel label map; got {array.shape[0]} differing channels in '{path}'"
            )
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"`mask` must be a 2D label map; got shape {array.shape} in '{path}'")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise ValueError(f"`mask` must hold whole-number labels; got fractional values in '{path}'")
    return array.astype(np.int64)


def _read_array(path: Path, *, role: str, keep_palette: bool = False) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"`{role}` must be an existing file; got '{path}'")
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        try:
            import tifffile
        except ImportError:
            pass
        else:
            try:
                return np.asarray(tifffile.imread(path))
            except Exception as err:  # noqa: BLE001 - re-raised with the file name
                raise ValueError(f"`{role}` must be a readable TIFF file; got '{path}' ({err})") from err
    from PIL import Image

    try:
        with Image.open(path) as pil:
            mode = pil.mode
            if mode == "P" and not keep_palette:
                pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                pil = pil.convert("RGB")
            elif mode == "1":
                pil = pil.convert("L")
            elif mode == "PA":
                pil = pil.convert("RGBA") if not keep_palette else pil.getchannel(0)
            array = np.array(pil)  # a writable copy
    except OSError as err:
        raise ValueError(f"`{role}` must be a readable image file; got '{path}' ({err})") from err
    if array.ndim == 3 and array.shape[-1] in (2, 4) and not keep_palette:
        array = array[..., :-1]  # drop alpha
    return array


def _check_classes(classes: Mapping[Any, int] | None) -> dict[int, int] | None:
    if classes is None:
        return None
    if not isinstance(classes, Mapping) or not classes:
        raise ValueError(f"`classes` must be a non-empty mapping of mask value -> class index; got {classes!r}")
    out = {}
    for key, value in classes.items():
        try:
            raw, cls = int(key), int(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"`classes` must map integer mask values to integer class indices; got {key!r}: {value!r}"
            ) from None
        if cls < 0:
            raise ValueError(f"`classes` must map to class indices >= 0; got {key!r}: {value!r}")
        out[raw] = cls
    return out


def _unique_values(raw: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (a histogram when they are small)."""
    if raw.size and raw.min() >= 0 and raw.max() < 1 << 16:
        return np.flatnonzero(np.bincount(raw.ravel()))
    return np.unique(raw)


def _map_mask(raw: np.ndarray, classes: dict[int, int], path: str) -> np.ndarray:
    values = _unique_values(raw)
    missing = [int(v) for v in values if int(v) not in classes]
    if missing:
        raise ValueError(
            f"`classes` must map every mask value; got values {missing} in '{path}' "
            f"outside its keys {sorted(classes)}"
        )
    if values.size and values[0] >= 0 and values[-1] < 1 << 16:
        lut = np.zeros(int(values[-1]) + 1, dtype=np.int64)
        lut[values] = [classes[int(v)] for v in values]
        return lut[raw]
    values, inverse = np.unique(raw, return_inverse=True)
    lut = np.array([classes[int(v)] for v in values], dtype=np.int64)
    return lut[inverse].reshape(raw.shape)


def _default_mapping(values: set[int], source: str) -> dict[int, int] | None:
    """The value -> class map used without ``classes`` (``None``: identity)."""
    if len(values) <= 2 and 0 in values:
        return {v: int(v != 0) for v in values}
    if values <= set(range(len(values))):
        return None
    shown = sorted(values)[:10]
    raise ValueError(
        f"`classes` must be given when the masks do not hold class indices 0..C-1 or two values with 0; "
        f"got values {shown}{' ...' if len(values) > 10 else ''} in {source}"
    )


def _mask_tensor(labels: np.ndarray) -> torch.Tensor:
    dtype = np.uint8 if labels.size == 0 or labels.max() < 256 else np.int64
    return torch.from_numpy(np.ascontiguousarray(labels.astype(dtype)))


def load_folder(
    images_dir: str | Path | None,
    masks_dir: str | Path | None,
    *,
    classes: Mapping[Any, int] | None = None,
    manifest: str | Path | None = None,
    image_glob: str = "*",
    mask_glob: str = "*",
    mask_suffix: str = "",
    group_pattern: str | None = None,
) -> SegmentationDataset:
    """Load an image folder and a mask folder into a :class:`SegmentationDataset`.

    Pairs are matched by file stem (the mask's stem is the image's stem plus ``mask_suffix``),
    or listed in a manifest CSV. Items are in sorted file-name order (manifest: row order) and
    named by the image's stem.

    Mask values become class indices through ``classes`` (e.g. ``{0: 1, 255: 0}`` for the ISBI
    2012 membranes, whose value 0 is the foreground). Without ``classes``, if all masks together
    hold at most two values including 0, then 0 -> 0 and the other value -> 1 (binary masks
    saved as 0/255); otherwise the values must already be class indices ``0..C-1``.

    Args:
        images_dir: folder of images (PNG, TIFF, JPEG, BMP). With a manifest, relative image
            paths are resolved against it (or the manifest's folder when ``None``).
        masks_dir: folder of masks (label maps), the same way.
        classes: mask value -> class index; every value found must be a key.
        manifest: CSV file with columns ``image``, ``mask`` and optionally ``group``.
        image_glob: file-name pattern of the images in ``images_dir``.
        mask_glob: file-name pattern of the masks in ``masks_dir``.
        mask_suffix: what the mask's stem adds to the image's (e.g. ``"_mask"``).
        group_pattern: regular expression searched in each image stem; its first group (or the
            whole match) is the item's group, e.g. ``r"^(patient\\d+)_"``. A manifest's ``group``
            column takes precedence.

    Returns:
        The data set: uint8 or float32 images in memory, masks as class indices.

    Raises:
        FileNotFoundError: if a folder or a listed file is missing, an image has no mask, or a
            mask has no image.
        ValueError: if no image is found, names collide, an image and its mask differ in size,
            the channel counts differ, a mask value is outside ``classes``, the masks need a
            ``classes`` mapping, or the manifest lacks a column.

    Example:
        >>> ds = load_folder("isbi/images", "isbi/masks", classes={0: 1, 255: 0})  # doctest: +SKIP
        >>> image, mask = ds[0]  # doctest: +SKIP
    """
    classes = _check_classes(classes)
    if manifest is not None:
        pairs, manifest_groups = _pairs_from_manifest(Path(manifest), images_dir, masks_dir)
    else:
        pairs = _pairs_from_folders(images_dir, masks_dir, image_glob, mask_glob, mask_suffix)
        manifest_groups = [None] * len(pairs)
    names = [image_path.stem for image_path, _ in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"`images` must have unique file stems; got {duplicates[:5]} more than once")
    pattern = re.compile(group_pattern) if group_pattern else None
    groups: list[str | None] = []
    for name, group in zip(names, manifest_groups):
        if group is None and pattern is not None:
            found = pattern.search(name)
            if found is None:
                raise ValueError(f"`group_pattern` must match every image stem; got no match in {name!r}")
            group = found.group(1) if found.groups() else found.group(0)
        groups.append(group)

    images, raw_masks = [], []
    for image_path, mask_path in pairs:
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if tuple(image.shape[-2:]) != raw.shape:
            raise ValueError(
                f"`masks` must match their images in size; got mask {list(raw.shape)} in '{mask_path}' "
                f"for image {list(image.shape[-2:])} in '{image_path}'"
            )
        if images and image.shape[0] != images[0].shape[0]:
            raise ValueError(
                f"`images` must all have the same channel count; got {image.shape[0]} in '{image_path}' "
                f"and {images[0].shape[0]} in '{pairs[0][0]}'"
            )
        images.append(image)
        raw_masks.append(raw if classes is None else _map_mask(raw, classes, str(mask_path)))
    if images and any(image.dtype != images[0].dtype for image in images):
        images = [image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image for image in images]
    if classes is None:
        values: set[int] = set()
        for raw in raw_masks:
            values.update(int(v) for v in _unique_values(raw))
        mapping = _default_mapping(values, f"the masks of '{masks_dir or manifest}'")
        if mapping is not None:
            raw_masks = [_map_mask(raw, mapping, "") for raw in raw_masks]
    masks = [_mask_tensor(labels) for labels in raw_masks]
    return SegmentationDataset(images, masks, names=names, groups=groups)


def _pairs_from_folders(images_dir, masks_dir, image_glob, mask_glob, mask_suffix) -> list[tuple[Path, Path]]:
    folders = {}
    for arg, folder in (("images_dir", images_dir), ("masks_dir", masks_dir)):
        if folder is None or not Path(folder).is_dir():
            raise FileNotFoundError(f"`{arg}` must be an existing directory; got {str(folder)!r}")
        folders[arg] = Path(folder)

    def listing(folder: Path, pattern: str) -> list[Path]:
        return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    image_files = listing(folders["images_dir"], image_glob)
    mask_files = listing(folders["masks_dir"], mask_glob)
    if not image_files:
        raise ValueError(
            f"`images_dir` must contain image files matching {image_glob!r} with an extension in "
            f"{list(IMAGE_EXTENSIONS)}; got none in '{folders['images_dir']}'"
        )
    masks_by_stem: dict[str, Path] = {}
    for path in mask_files:
        if path.stem in masks_by_stem:
            raise ValueError(
                f"`masks_dir` must hold one mask per stem; got '{masks_by_stem[path.stem].name}' and '{path.name}'"
            )
        masks_by_stem[path.stem] = path
    pairs = []
    used = set()
    for image_path in image_files:
        stem = image_path.stem + mask_suffix
        if stem not in masks_by_stem:
            raise FileNotFoundError(
                f"`masks_dir` must hold a mask for every image; got no mask with stem {stem!r} for image "
                f"'{image_path}' in '{folders['masks_dir']}'"
            )
        pairs.append((image_path, masks_by_stem[stem]))
        used.add(stem)
    orphans = [path for stem, path in masks_by_stem.items() if stem not in used]
    if orphans:
        wanted = orphans[0].stem[: len(orphans[0].stem) - len(mask_suffix)] if mask_suffix else orphans[0].stem
        raise FileNotFoundError(
            f"`images_dir` must hold an image for every mask; got no image with stem {wanted!r} for mask "
            f"'{orphans[0]}' in '{folders['images_dir']}'"
            + (f" ({len(orphans) - 1} more unmatched masks)" if len(orphans) > 1 else "")
        )
    return pairs


def _pairs_from_manifest(manifest: Path, images_dir, masks_dir) -> tuple[list[tuple[Path, Path]], list[str | None]]:
    if not manifest.is_file():
        raise FileNotFoundError(f"`manifest` must be an existing file; got '{manifest}'")
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("image", "mask") if c not in columns]
        if missing:
            raise ValueError(f"`manifest` must have columns 'image' and 'mask'; got columns {columns} in '{manifest}'")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise ValueError(f"`manifest` must list at least one pair; got no rows in '{manifest}'")
    image_root = Path(images_dir) if images_dir is not None else manifest.parent
    mask_root = Path(masks_dir) if masks_dir is not None else manifest.parent
    pairs, groups = [], []
    for line, row in enumerate(rows, start=2):
        image_path, mask_path = image_root / row["image"], mask_root / row["mask"]
        for role, path in (("image", image_path), ("mask", mask_path)):
            if not path.is_file():
                raise FileNotFoundError(
                    f"`manifest` must list existing files; got missing {role} '{path}' on line {line} of '{manifest}'"
                )
        pairs.append((image_path, mask_path))
        groups.append(row.get("group") or None)
    return pairs, groups


def load_nifti_slices(
    image_path: str | Path,
    mask_path: str | Path,
    axis: int = 2,
    *,
    classes: Mapping[Any, int] | None = None,
    intensity_range: tuple[float, float] | None = None,
) -> SegmentationDataset:
    """Load a NIfTI volume and its label volume as a data set of 2D slices.

    Needs ``nibabel`` (the ``seglosses[nifti]`` extra). Intensities are scaled to ``[0, 1]``:
    clipped to ``intensity_range`` when given (e.g. a CT window), else between the volume's
    0.5th and 99.5th percentiles. A 4D image (``[X, Y, Z, C]``) gives ``C`` channels. Slices are
    named ``"<stem>[<k>]"`` and grouped by volume, so a group-aware split keeps a volume together.

    Args:
        image_path: the image volume (``.nii`` or ``.nii.gz``).
        mask_path: the label volume, same spatial shape.
        axis: the spatial axis (0, 1 or 2) to slice along.
        classes: mask value -> class index; default: values rounded to integers, which must be
            ``>= 0``.
        intensity_range: ``(low, high)`` intensity window.

    Returns:
        One item per slice.

    Raises:
        ImportError: if ``nibabel`` is not installed.
        FileNotFoundError: if a file is missing.
        ValueError: if the shapes differ, ``axis`` is invalid or a mask value is outside
            ``classes``.
    """
    try:
        import nibabel
    except ImportError as err:
        raise ImportError(
            "load_nifti_slices needs nibabel; install the `seglosses[nifti]` extra "
            "(pip install 'seglosses[nifti]')"
        ) from err
    if axis not in (0, 1, 2):
        raise ValueError(f"`axis` must be 0, 1 or 2; got {axis!r}")
    classes = _check_classes(classes)
    image_path, mask_path = Path(image_path), Path(mask_path)
    for arg, path in (("image_path", image_path), ("mask_path", mask_path)):
        if not path.is_file():
            raise FileNotFoundError(f"`{arg}` must be an existing file; got '{path}'")
    volume = np.asarray(nibabel.load(str(image_path)).get_fdata(dtype=np.float32))
    labels = np.asarray(nibabel.load(str(mask_path)).get_fdata(dtype=np.float32))
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4 or labels.ndim != 3 or volume.shape[:3] != labels.shape:
        raise ValueError(
            f"`mask_path` must hold a 3D volume of the image's spatial shape; got {list(labels.shape)} in "
            f"'{mask_path}' for image {list(volume.shape)} in '{image_path}'"
        )
    if intensity_range is not None:
        low, high = float(intensity_range[0]), float(intensity_range[1])
    else:
        low, high = (float(q) for q in np.percentile(volume, [0.5, 99.5]))
    volume = np.clip((volume - low) / max(high - low, 1e-12), 0.0, 1.0)
    raw = np.rint(labels).astype(np.int64)
    if classes is not None:
        raw = _map_mask(raw, classes, str(mask_path))
    elif raw.size and raw.min() < 0:
        raise ValueError(f"`mask_path` must hold labels >= 0; got {int(raw.min())} in '{mask_path}'")
    stem = image_path.name.removesuffix(".gz").removesuffix(".nii")
    images, masks, names = [], [], []
    for k in range(volume.shape[axis]):
        image = np.take(volume, k, axis=axis)  # [.., .., C]
        images.append(torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32)))
        masks.append(_mask_tensor(np.take(raw, k, axis=axis)))
        names.append(f"{stem}[{k}]")
    return SegmentationDataset(images, masks, names=names, groups=[stem] * len(names))


# ---------------------------------------------------------------------------------------------
# Seed-000 preprocessing
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def foreground_flags(dataset: Dataset) -> list[bool]:
    """Whether each item of ``dataset`` has any foreground (non-zero) mask pixel.

    Uses the data set's ``foreground_flags()`` method when it has one (every data set of this
    module does), else loads every item.

    Args:
        dataset: items ``(image, mask)``.

    Returns:
        One bool per item.
    """
    method = getattr(dataset, "foreground_flags", None)
    if callable(method):
        return [bool(f) for f in method()]
    return [bool(torch.as_tensor(dataset[i][1]).ne(0).any()) for i in range(len(dataset))]


def positives_only(dataset: Dataset) -> SubsetDataset:
    """The items of ``dataset`` that have foreground (seed 000 section 3.2: "segmentation of only
    those images that contained a positive region").

    Args:
        dataset: items ``(image, mask)``.

    Returns:
        A :class:`SubsetDataset` of the positive items, in their order.

    Raises:
        ValueError: if no item has foreground.
    """
    flags = foreground_flags(dataset)
    indices = [i for i, flag in enumerate(flags) if flag]
    if not indices:
        raise ValueError(f"`dataset` must have at least one item with foreground; got none among {len(flags)}")
    subset = SubsetDataset(dataset, indices)
    subset.positives = True  # read by the evaluation's description of its items
    return subset


def positive_evaluation(data: "BenchData") -> "BenchData":
    """Restrict the validation and test sets to items with foreground, *after* they are cut into
    quadrants or tiles (seed 000 section 3.2 evaluates "only those images that contained a
    positive region"; a quadrant without foreground would otherwise enter per-image means as 0/0).

    Args:
        data: the data sets of a study entry (changed in place and returned).

    Raises:
        ValueError: a validation or test set without any item with foreground.

    Example:
        >>> data = build_dataset({"type": "synthetic", "n_images": 40, "size": 32, "quadrants": True})
        >>> before = len(data.test)
        >>> after = len(positive_evaluation(data).test)
        >>> after < before, all(foreground_flags(data.test))
        (True, True)
    """
    for split in ("val", "test"):
        ds = getattr(data, split)
        if ds is not None and len(ds) > 0:
            try:
                setattr(data, split, positives_only(ds))
            except ValueError:
                raise ValueError(f"`eval.positives_only` must leave items to evaluate; the {split} split of "
                                 f"{data.name!r} has none with foreground") from None
    return data


class RatioBatchSampler(Sampler[list[int]]):
    """Batches with a fixed number of positive images (seed 000 section 3.1: "forcing each batch to
    have the same positive-negative image ratio (around 1:7) as the whole dataset").

    Every batch holds exactly ``k`` positive and ``batch_size - k`` negative indices, in shuffled
    order, where ``k = round(batch_size * ratio)`` (half rounds up), raised to 1 when
    ``ratio > 0`` and lowered to ``batch_size - 1`` when ``ratio < 1`` and ``batch_size > 1``, so
    that neither kind disappears from training. Positives and negatives are each drawn from
    their own stream, a random permutation that is reshuffled whenever it runs out; the minority
    kind is therefore cycled, and may repeat within a batch when it has fewer than ``k``
    members. All batches are full.

    The batches of an epoch depend only on ``(seed, epoch)``; call :meth:`set_epoch` before each
    epoch. Under ``torch.distributed``, give every process the same arguments plus its
    ``rank`` and ``num_replicas``: the processes draw the same streams and each takes its own
    share of every global step, so every per-process batch still has exactly ``k`` positives.

    Args:
        has_positive: one flag per data-set item (see :func:`foreground_flags`).
        batch_size: images per batch.
        ratio: fraction of positive images per batch; ``None`` uses the data set's own fraction.
        seed: seed of the shuffling.
        drop_last: ``False`` gives ``ceil(N / (batch_size * num_replicas))`` batches per epoch
            (the last one filled by cycling), ``True`` gives ``N // (batch_size * num_replicas)``.
        num_batches: batches per epoch and process, overriding the count above.
        num_replicas: number of processes sharing the data set (distributed training).
        rank: this process's index in ``[0, num_replicas)``.

    Raises:
        ValueError: if ``has_positive`` is empty, ``batch_size < 1``, ``ratio`` is outside
            ``[0, 1]``, or the batches need a kind of image that the data set lacks.

    Example:
        >>> sampler = RatioBatchSampler([True, False, False, False, False, False, False, False], 4, seed=0)
        >>> [sum(i == 0 for i in batch) for batch in sampler]  # one positive in every batch
        [1, 1]
    """

    def __init__(
        self,
        has_positive: Sequence[bool],
        batch_size: int,
        ratio: float | None = None,
        *,
        seed: int = 0,
        drop_last: bool = False,
        num_batches: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        flags = [bool(f) for f in has_positive]
        if not flags:
            raise ValueError("`has_positive` must have at least one entry; got an empty sequence")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}")
        self.positives = [i for i, f in enumerate(flags) if f]
        self.negatives = [i for i, f in enumerate(flags) if not f]
        if ratio is None:
            ratio = len(self.positives) / len(flags)
        ratio = float(ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"`ratio` must be in [0, 1]; got {ratio}")
        k = math.floor(batch_size * ratio + 0.5)
        if ratio > 0:
            k = max(k, 1)
        if ratio < 1 and batch_size > 1:
            k = min(k, batch_size - 1)
        if k > 0 and not self.positives:
            raise ValueError(f"`ratio` must be 0 when no item is positive; got {ratio}")
        if k < batch_size and not self.negatives:
            raise ValueError(f"`ratio` must be 1 (or None) when every item is positive; got {ratio}")
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"`num_replicas` must be an int >= 1; got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"`rank` must be an int in [0, num_replicas={num_replicas}); got {rank!r}")
        if num_batches is None:
            step = batch_size * num_replicas
            num_batches = len(flags) // step if drop_last else math.ceil(len(flags) / step)
        elif isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
            raise ValueError(f"`num_batches` must be an int >= 0; got {num_batches!r}")
        self.batch_size, self.ratio, self.num_positive = batch_size, ratio, k
        self.seed, self.drop_last, self.num_batches = int(seed), bool(drop_last), num_batches
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        positive = _cycle(self.positives, gen)
        negative = _cycle(self.negatives, gen)
        k = self.num_positive
        for _ in range(self.num_batches):
            for replica in range(self.num_replicas):  # every process draws all shares, keeps its own
                batch = [next(positive) for _ in range(k)] + [next(negative) for _ in range(self.batch_size - k)]
                order = torch.randperm(self.batch_size, generator=gen).tolist()
                if replica == self.rank:
                    mine = [batch[j] for j in order]
            yield mine


def _cycle(indices: list[int], gen: torch.Generator) -> Iterator[int]:
    """Endless stream of ``indices``, reshuffled on every pass."""
    if not indices:
        return
    while True:
        for j in torch.randperm(len(indices), generator=gen).tolist():
            yield indices[j]


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def parse_index_ranges(spec: str, n: int) -> list[int]:
    """Parse ``"0-19"``, ``"3,5,8-9"``: indices and inclusive ranges into ``range(n)``.

    Args:
        spec: comma-separated items, each an index or ``a-b`` with ``a <= b``.
        n: the number of items, for range checking.

    Returns:
        The indices in the written order.

    Raises:
        ValueError: if an item is malformed or out of range.

    Example:
        >>> parse_index_ranges("0-2, 7", 10)
        [0, 1, 2, 7]
    """
    indices: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
        if match is None:
            raise ValueError(f"`split` ranges must look like '0-19' or '3,5,8-9'; got {part!r} in {spec!r}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > high or high >= n:
            raise ValueError(f"`split` ranges must be increasing and within [0, {n - 1}]; got {part!r} for {n} items")
        indices.extend(range(low, high + 1))
    return indices


def _split_sizes(n: int, fractions: Sequence[float | int]) -> list[int]:
    values = list(fractions)
    if not values:
        raise ValueError("`fractions` must have at least one entry; got none")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if any(v < 0 for v in values) or sum(values) > n:
            raise ValueError(f"`fractions` as counts must be >= 0 and sum to at most n={n}; got {values}")
        return values
    floats = [float(v) for v in values]
    if any(v < 0 for v in floats) or abs(sum(floats) - 1.0) > 1e-6:
        raise ValueError(f"`fractions` must be >= 0 and sum to 1 (or be integer counts); got {values}")
    exact = [v * n for v in floats]
    sizes = [math.floor(e) for e in exact]
    # Largest remainders get the leftover items (ties: earlier split first).
    for j in sorted(range(len(exact)), key=lambda j: (-(exact[j] - sizes[j]), j))[: n - sum(sizes)]:
        sizes[j] += 1
    return sizes


_SPLIT_SALT = 0x5EED_5B17


def split_indices(
    n: int,
    fractions: Sequence[float | int] = (0.7, 0.15, 0.15),
    *,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> list[list[int]]:
    """Split ``range(n)`` at random, reproducibly from ``seed``, optionally keeping groups whole.

    Without groups, the split sizes are exact: counts as given, or fractions of ``n`` rounded by
    largest remainder so that they sum to ``n``. With groups (patient, source image, volume),
    whole groups are assigned, largest first (ties in seeded random order), each to the split
    furthest below its target size, so no group crosses splits and the sizes are approximate.

    Args:
        n: number of items.
        fractions: fractions summing to 1, or integer counts summing to at most ``n`` (items
            beyond the total are left out).
        seed: seed of the shuffling.
        groups: one hashable group label per item, or ``None``.

    Returns:
        One sorted list of indices per entry of ``fractions``; disjoint.

    Raises:
        ValueError: if ``fractions`` is invalid or ``groups`` has the wrong length.

    Example:
        >>> [len(s) for s in split_indices(10, (0.6, 0.2, 0.2), seed=0)]
        [6, 2, 2]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be an int >= 0; got {n!r}")
    sizes = _split_sizes(n, fractions)
    # the split stream is salted so that it differs from any other stream seeded with the same
    # number (e.g. make_synthetic's choice of positive images: with one shared seed every positive
    # image would land in the training split)
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + _SPLIT_SALT) % (2**63))
    if groups is None:
        order = torch.randperm(n, generator=gen).tolist()
        splits, start = [], 0
        for size in sizes:
            splits.append(sorted(order[start:start + size]))
            start += size
        return splits
    groups = list(groups)
    if len(groups) != n:
        raise ValueError(f"`groups` must have one entry per item; got {len(groups)} for n={n}")
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    shuffled = [keys[j] for j in torch.randperm(len(keys), generator=gen).tolist()]
    shuffled.sort(key=lambda g: -len(members[g]))  # stable: ties keep the random order
    total = sum(sizes)
    filled = [0] * len(sizes)
    splits = [[] for _ in sizes]
    assigned = 0
    for g in shuffled:
        if assigned >= total:
            break  # counts summing to less than n: the rest is left out
        j = max(range(len(sizes)), key=lambda j: (sizes[j] - filled[j], -j))
        splits[j].extend(members[g])
        filled[j] += len(members[g])
        assigned += len(members[g])
    return [sorted(s) for s in splits]


def read_split_file(path: str | Path, names: Sequence[str], *, column: str = "split",
                    key: str | None = None) -> dict[str, list[int]]:
    """Read a split file listing item names per split.

    JSON: ``{"train": ["00", "01", ...], "val": [...], "test": [...]}``. CSV: a header with the
    columns ``column`` (default ``split``) and ``key`` (default ``name``, ``image`` or ``id``),
    one item per row; a data set's manifest with a suggested-split column serves as is. Entries match an item's
    name, or the stem of a file name or path (``"images/03.png"`` matches ``"03"``).

    Args:
        path: the JSON or CSV file.
        names: the data set's item names.

    Returns:
        ``{split: sorted indices}``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if the format is wrong, an entry matches no item, or an item is in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`split` file must exist; got '{path}'")
    entries: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        content = json.loads(path.read_text())
        if not isinstance(content, dict) or not all(isinstance(v, list) for v in content.values()):
            raise ValueError(f"`split` file must hold a JSON object of name lists; got {type(content).__name__} in '{path}'")
        entries = {str(k): [str(x) for x in v] for k, v in content.items()}
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            name_column = key or next((c for c in ("name", "image", "id") if c in columns), None)
            if column not in columns or name_column not in columns:
                raise ValueError(f"`split` file must have columns {column!r} and {name_column or 'name'!r}; "
                                 f"got {columns} in '{path}'")
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                entries.setdefault(row[column], []).append(row[name_column])
    else:
        raise ValueError(f"`split` file must be .json or .csv; got '{path}'")
    return _indices_by_name(entries, names, f"'{path}'")


def _indices_by_name(entries: Mapping[str, Sequence[str]], names: Sequence[str], source: str) -> dict[str, list[int]]:
    lookup = {name: i for i, name in enumerate(names)}
    result: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for split, items in entries.items():
        indices = []
        for item in items:
            index = lookup.get(item)
            if index is None:
                index = lookup.get(Path(item).stem)
            if index is None:
                raise ValueError(
                    f"`split` entries must name items of the data set; got {item!r} in split {split!r} of {source}"
                    f"{did_you_mean(item, names)}"
                )
            if index in owner and owner[index] != split:
                raise ValueError(f"`split` must not list an item twice; got {item!r} in {owner[index]!r} and {split!r}")
            owner[index] = split
            indices.append(index)
        result[split] = sorted(set(indices))
    return result


# ---------------------------------------------------------------------------------------------
# Study specification
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchData:
    """The data sets of one study entry, built by :func:`build_dataset`.

    Attributes:
        name: the entry's name.
        train: training data set (``None`` when the split has no ``train``).
        val: validation data set, or ``None``.
        test: test data set, or ``None``.
        num_classes: classes including the background (2 for binary data).
        in_channels: image channels.
        spec: the specification with defaults filled in.
    """

    name: str
    train: Dataset | None
    val: Dataset | None
    test: Dataset | None
    num_classes: int
    in_channels: int
    spec: dict = field(default_factory=dict)


_COMMON_KEYS = {
    "name": None, "type": None, "split": None, "tile": None, "stride": None, "tissue_filter": False,
    "positives_only": False, "crop": None, "max_angle": 180.0, "crop_seed": 0, "quadrants": False,
    "num_classes": None, "small": "pad", "pad_mode": "reflect",
}
_TYPE_KEYS = {
    "folder": {"images": None, "masks": None, "manifest": None, "classes": None, "image_glob": "*",
               "mask_glob": "*", "mask_suffix": "", "group_pattern": None, "group_by": None},
    "synthetic": {"n_images": 256, "size": 128, "mode": "binary", "positive_fraction": 0.25, "seed": 0},
    "nifti": {"images": None, "masks": None, "axis": 2, "classes": None, "intensity_range": None},
}
_SPLITS = ("train", "val", "test")


def build_dataset(spec: Mapping[str, Any], *, root: str | Path | None = None) -> BenchData:
    """Build the train/val/test data sets of one study entry (keys: see the module docstring).

    Order of operations: load; split items (before tiling, so tiles of one image never cross
    splits); tile and filter tissue; keep positives only; then random rotated crops for
    training and quadrants for validation/testing.

    Args:
        spec: the entry, e.g. ``{"type": "synthetic", "n_images": 256, "seed": 0}``.
        root: folder that relative paths are resolved against; default: the working directory.

    Returns:
        A :class:`BenchData`.

    Raises:
        ValueError: for unknown keys or types, invalid values, or any loading error of
            :func:`load_folder`/:func:`load_nifti_slices`.
        FileNotFoundError: for missing folders or files.

    Example:
        >>> data = build_dataset({"type": "synthetic", "n_images": 20, "size": 64})
        >>> len(data.train), len(data.val), len(data.test), data.num_classes, data.in_channels
        (14, 3, 3, 2, 1)
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"`spec` must be a mapping; got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _TYPE_KEYS:
        hint = did_you_mean(kind, _TYPE_KEYS) if isinstance(kind, str) else ""
        raise ValueError(f"`type` must be one of {', '.join(map(repr, _TYPE_KEYS))}; got {kind!r}{hint}")
    allowed = {**_COMMON_KEYS, **_TYPE_KEYS[kind]}
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise ValueError(
            f"`spec` keys must be among {sorted(allowed)} for type {kind!r}; got {unknown[0]!r}"
            f"{did_you_mean(unknown[0], allowed)}"
        )
    full = {**allowed, **spec}
    root = Path.cwd() if root is None else Path(root)

    def resolve(value):
        return None if value is None else root / Path(value)

    num_classes = full["num_classes"]
    if kind == "folder":
        if full["manifest"] is None and (full["images"] is None or full["masks"] is None):
            raise ValueError("`spec` must give 'images' and 'masks' (or 'manifest') for type 'folder'; got neither")
        base = load_folder(
            resolve(full["images"]), resolve(full["masks"]), classes=full["classes"],
            manifest=resolve(full["manifest"]), image_glob=full["image_glob"], mask_glob=full["mask_glob"],
            mask_suffix=full["mask_suffix"], group_pattern=full["group_pattern"],
        )
        if full["group_by"] is not None:
            base.groups = _groups_from_file(full["group_by"], base.names, root)
    elif kind == "synthetic":
        from seglosses.bench.synthetic import make_synthetic

        images, masks = make_synthetic(
            full["n_images"], full["size"], mode=full["mode"], num_classes=num_classes,
            positive_fraction=full["positive_fraction"], seed=full["seed"],
        )
        base = SegmentationDataset(images, masks, names=[f"synthetic-{i:05d}" for i in range(len(images))])
        if num_classes is None:
            num_classes = 2 if full["mode"] == "binary" else 3
    else:
        if full["images"] is None or full["masks"] is None:
            raise ValueError("`spec` must give 'images' and 'masks' for type 'nifti'; got neither")
        image_paths = full["images"] if isinstance(full["images"], (list, tuple)) else [full["images"]]
        mask_paths = full["masks"] if isinstance(full["masks"], (list, tuple)) else [full["masks"]]
        if len(image_paths) != len(mask_paths):
            raise ValueError(f"`masks` must list one volume per image volume; got {len(mask_paths)} for {len(image_paths)}")
        parts = [
            load_nifti_slices(resolve(i), resolve(m), full["axis"], classes=full["classes"],
                              intensity_range=full["intensity_range"])
            for i, m in zip(image_paths, mask_paths)
        ]
        base = SegmentationDataset(
            [x for p in parts for x in p.images], [y for p in parts for y in p.masks],
            names=[x for p in parts for x in p.names], groups=[x for p in parts for x in p.groups],
        )
    if len(base) == 0:
        raise ValueError("`spec` must describe at least one item; got an empty data set")

    if num_classes is None:
        if kind != "synthetic" and full["classes"] is not None:
            num_classes = max(int(v) for v in _check_classes(full["classes"]).values()) + 1
        else:
            num_classes = base.max_label() + 1
        num_classes = max(num_classes, 2)
    elif base.max_label() >= int(num_classes):
        raise ValueError(f"`num_classes` must exceed every label; got {num_classes} with label {base.max_label()}")

    splits = _resolve_split(full["split"], base, root)
    if full["tissue_filter"] and full["tile"] is None:
        raise ValueError("`tissue_filter` must be used with `tile`; got tile None")
    result: dict[str, Dataset | None] = dict.fromkeys(_SPLITS)
    for split, indices in splits.items():
        ds: Dataset = SubsetDataset(base, indices)
        if full["tile"] is not None:
            ds = TiledDataset(ds, int(full["tile"]), None if full["stride"] is None else int(full["stride"]),
                              tissue=full["tissue_filter"] or None, small=full["small"], pad_mode=full["pad_mode"])
        if full["positives_only"]:
            ds = positives_only(ds)
        if split == "train" and full["crop"] is not None:
            ds = RotatedCropDataset(ds, int(full["crop"]), seed=full["crop_seed"], max_angle=full["max_angle"])
        elif split != "train" and full["quadrants"]:
            ds = QuadrantDataset(ds)
        result[split] = ds
    return BenchData(
        name=str(full["name"] or kind), train=result["train"], val=result["val"], test=result["test"],
        num_classes=int(num_classes), in_channels=base.in_channels, spec=full,
    )


def _groups_from_file(spec: Any, names: Sequence[str], root: Path) -> list[str]:
    """Item groups (patient, source slide) from a CSV column: ``{"file", "column", "key"}``."""
    if not isinstance(spec, Mapping) or "file" not in spec or "column" not in spec or set(spec) - {"file", "column", "key"}:
        raise ValueError(f"`group_by` must be {{file: <csv>, column: <group column>, key: <name column>}}; got {spec!r}")
    path = root / Path(spec["file"])
    if not path.is_file():
        raise FileNotFoundError(f"`group_by` file must exist; got '{path}'")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        key = spec.get("key") or next((c for c in ("name", "image", "id") if c in columns), None)
        if spec["column"] not in columns or key not in columns:
            raise ValueError(f"`group_by` file must have columns {spec['column']!r} and {key or 'name'!r}; "
                             f"got {columns} in '{path}'")
        found = {}
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            found[row[key]] = row[spec["column"]]
            found.setdefault(Path(row[key]).stem, row[spec["column"]])
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"`group_by` file must list every item; got no row for {missing[:3]} in '{path}'")
    return [found[n] for n in names]


def _resolve_split(split: Any, base: SegmentationDataset, root: Path) -> dict[str, list[int]]:
    n = len(base)
    if split is None:
        split = {"fractions": [0.7, 0.15, 0.15], "seed": 0}
    if not isinstance(split, Mapping):
        raise ValueError(f"`split` must be a mapping; got {type(split).__name__}")
    if "file" in split:
        extra = set(split) - {"file", "column", "key"}
        if extra:
            raise ValueError(f"`split` with 'file' takes only 'column' and 'key' besides; got {sorted(extra)}")
        result = read_split_file(root / Path(split["file"]), base.names, column=str(split.get("column", "split")),
                                 key=split.get("key"))
    elif "fractions" in split or "counts" in split:
        extra = set(split) - {"fractions", "counts", "seed"}
        if extra or ("fractions" in split and "counts" in split):
            raise ValueError(f"`split` must hold 'fractions' or 'counts' and optionally 'seed'; got keys {sorted(split)}")
        # "fractions": [1, 0, 0] means everything in train, not one item: force the kind.
        if "counts" in split:
            sizes = [int(c) for c in split["counts"]]
        else:
            sizes = [float(f) for f in split["fractions"]]
        has_groups = any(g != name for g, name in zip(base.groups, base.names))
        parts = split_indices(n, sizes, seed=int(split.get("seed", 0)), groups=base.groups if has_groups else None)
        if len(parts) > len(_SPLITS):
            raise ValueError(f"`split` must have at most 3 parts (train, val, test); got {len(parts)}")
        result = dict(zip(_SPLITS, parts))
    else:
        unknown = [k for k in split if k not in _SPLITS]
        if unknown:
            raise ValueError(
                f"`split` keys must be 'train', 'val', 'test', 'fractions', 'counts', 'seed' or 'file'; "
                f"got {unknown[0]!r}{did_you_mean(unknown[0], (*_SPLITS, 'fractions', 'counts', 'file'))}"
            )
        result, owner = {}, {}
        for name, members in split.items():
            if isinstance(members, str):
                indices = parse_index_ranges(members, n)
            elif isinstance(members, Sequence) and all(isinstance(m, int) and not isinstance(m, bool) for m in members):
                indices = list(members)
                if any(not 0 <= i < n for i in indices):
                    raise ValueError(f"`split` indices must be in [0, {n}); got {indices} for {name!r}")
            elif isinstance(members, Sequence):
                indices = _indices_by_name({name: [str(m) for m in members]}, base.names, "the spec")[name]
            else:
                raise ValueError(f"`split` members must be a range string or a list; got {members!r} for {name!r}")
            for i in indices:
                if i in owner and owner[i] != name:
                    raise ValueError(f"`split` must not list an item twice; got item {i} in {owner[i]!r} and {name!r}")
                owner[i] = name
            result[name] = sorted(set(indices))
    for name in list(result):
        if name not in _SPLITS:
            raise ValueError(f"`split` names must be 'train', 'val' or 'test'; got {name!r}")
    return result
