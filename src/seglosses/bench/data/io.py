"""Reading images, masks and NIfTI volumes from disk into :class:`~seglosses.bench.data.datasets.SegmentationDataset`
(folders, manifests, class mappings)."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from seglosses.bench.data.datasets import SegmentationDataset

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_TIFF_EXTENSIONS = (".tif", ".tiff")


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

    images: list[torch.Tensor] = []
    raw_masks: list[np.ndarray] = []
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
