"""The data-set classes of ``seglosses bench``: items ``(image float32 [C, H, W], mask int64 [H, W])``
with ``names``, ``groups`` and ``foreground_flags()``; subsets, tiles, rotated crops, quadrants."""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from seglosses.bench.data.transforms import quadrants, random_rotated_crop, tile_origins, tissue_filter


class ItemDataset(Protocol):
    """What the bench needs of a data set: a length and items ``(image, mask)`` by index.

    Every data set of this module is one, as is any map-style torch data set of such items;
    ``names``, ``groups``, ``in_channels`` and ``foreground_flags()`` are optional extras, looked
    up when present.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...


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


def _window(dataset: ItemDataset, index: int, top: int, left: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
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

    #: whether the subset is the positive items of ``base`` (set by :func:`positives_only`)
    positives: bool = False

    def __init__(self, base: ItemDataset, indices: Sequence[int]) -> None:
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
        base: ItemDataset,
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
        tissue_kwargs: dict[str, float] | None
        if tissue in (None, False):
            tissue_kwargs = None
        elif isinstance(tissue, bool):  # True: the filter's defaults
            tissue_kwargs = {}
        else:
            tissue_kwargs = dict(tissue)
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
                if tissue_kwargs is not None and not tissue_filter(image[:, window[0], window[1]], **tissue_kwargs):
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

    def __init__(self, base: ItemDataset, size: int = 256, *, seed: int = 0, max_angle: float = 180.0) -> None:
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

    def __init__(self, base: ItemDataset) -> None:
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


def _names(dataset: ItemDataset) -> list[str]:
    names = getattr(dataset, "names", None)
    return list(names) if names is not None else [str(i) for i in range(len(dataset))]


def _groups(dataset: ItemDataset) -> list[str]:
    groups = getattr(dataset, "groups", None)
    return list(groups) if groups is not None else _names(dataset)


def _in_channels(dataset: ItemDataset) -> int:
    channels = getattr(dataset, "in_channels", None)
    if channels is not None:
        return int(channels)
    return int(dataset[0][0].shape[0]) if len(dataset) else 0



def foreground_flags(dataset: ItemDataset) -> list[bool]:
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


def positives_only(dataset: ItemDataset) -> SubsetDataset:
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
