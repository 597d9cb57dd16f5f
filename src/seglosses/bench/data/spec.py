"""A study's data-set entry (the keys of :mod:`seglosses.bench.data`) built into train/val/test
data sets: :func:`build_dataset` and :class:`BenchData`."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from seglosses._options import did_you_mean
from seglosses.bench.data.datasets import (
    ItemDataset,
    QuadrantDataset,
    RotatedCropDataset,
    SegmentationDataset,
    SubsetDataset,
    TiledDataset,
    foreground_flags,  # noqa: F401 - the doctests use it
    positives_only,
)
from seglosses.bench.data.io import _check_classes, load_folder, load_nifti_slices
from seglosses.bench.data.splits import _indices_by_name, parse_index_ranges, read_split_file, split_indices


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
        class_names: one name per class (background first), set from a study entry's
            ``class_names``; ``None`` when not given.
    """

    name: str
    train: ItemDataset | None
    val: ItemDataset | None
    test: ItemDataset | None
    num_classes: int
    in_channels: int
    spec: dict = field(default_factory=dict)
    class_names: list[str] | None = None


_COMMON_KEYS: dict[str, Any] = {
    "name": None, "type": None, "split": None, "tile": None, "stride": None, "tissue_filter": False,
    "positives_only": False, "crop": None, "max_angle": 180.0, "crop_seed": 0, "quadrants": False,
    "num_classes": None, "small": "pad", "pad_mode": "reflect",
}
_TYPE_KEYS: dict[str, dict[str, Any]] = {
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
    base, num_classes = _LOADERS[kind](full, root)
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
    result: dict[str, ItemDataset | None] = dict.fromkeys(_SPLITS)
    for split, indices in splits.items():
        result[split] = _prepare_split(SubsetDataset(base, indices), split, full)
    return BenchData(
        name=str(full["name"] or kind), train=result["train"], val=result["val"], test=result["test"],
        num_classes=int(num_classes), in_channels=base.in_channels, spec=full,
    )


def _prepare_split(ds: ItemDataset, split: str, full: Mapping[str, Any]) -> ItemDataset:
    """One split's pipeline: tiles (and tissue filter), positives only, then rotated training crops
    or evaluation quadrants."""
    if full["tile"] is not None:
        ds = TiledDataset(ds, int(full["tile"]), None if full["stride"] is None else int(full["stride"]),
                          tissue=full["tissue_filter"] or None, small=full["small"], pad_mode=full["pad_mode"])
    if full["positives_only"]:
        ds = positives_only(ds)
    if split == "train" and full["crop"] is not None:
        ds = RotatedCropDataset(ds, int(full["crop"]), seed=full["crop_seed"], max_angle=full["max_angle"])
    elif split != "train" and full["quadrants"]:
        ds = QuadrantDataset(ds)
    return ds


def _resolve(root: Path, value: Any) -> Path | None:
    return None if value is None else root / Path(value)


def _load_folder_entry(full: Mapping[str, Any], root: Path) -> tuple[SegmentationDataset, int | None]:
    if full["manifest"] is None and (full["images"] is None or full["masks"] is None):
        raise ValueError("`spec` must give 'images' and 'masks' (or 'manifest') for type 'folder'; got neither")
    base = load_folder(
        _resolve(root, full["images"]), _resolve(root, full["masks"]), classes=full["classes"],
        manifest=_resolve(root, full["manifest"]), image_glob=full["image_glob"], mask_glob=full["mask_glob"],
        mask_suffix=full["mask_suffix"], group_pattern=full["group_pattern"],
    )
    if full["group_by"] is not None:
        base.groups = _groups_from_file(full["group_by"], base.names, root)
    return base, full["num_classes"]


def _load_synthetic_entry(full: Mapping[str, Any], root: Path) -> tuple[SegmentationDataset, int | None]:
    from seglosses.bench.synthetic import make_synthetic

    num_classes = full["num_classes"]
    images, masks = make_synthetic(
        full["n_images"], full["size"], mode=full["mode"], num_classes=num_classes,
        positive_fraction=full["positive_fraction"], seed=full["seed"],
    )
    base = SegmentationDataset(images, masks, names=[f"synthetic-{i:05d}" for i in range(len(images))])
    if num_classes is None:
        num_classes = 2 if full["mode"] == "binary" else 3
    return base, num_classes


def _load_nifti_entry(full: Mapping[str, Any], root: Path) -> tuple[SegmentationDataset, int | None]:
    if full["images"] is None or full["masks"] is None:
        raise ValueError("`spec` must give 'images' and 'masks' for type 'nifti'; got neither")
    image_paths = full["images"] if isinstance(full["images"], (list, tuple)) else [full["images"]]
    mask_paths = full["masks"] if isinstance(full["masks"], (list, tuple)) else [full["masks"]]
    if len(image_paths) != len(mask_paths):
        raise ValueError(f"`masks` must list one volume per image volume; got {len(mask_paths)} for {len(image_paths)}")
    parts = [
        load_nifti_slices(_resolve(root, i), _resolve(root, m), full["axis"], classes=full["classes"],
                          intensity_range=full["intensity_range"])
        for i, m in zip(image_paths, mask_paths)
    ]
    base = SegmentationDataset(
        [x for p in parts for x in p.images], [y for p in parts for y in p.masks],
        names=[x for p in parts for x in p.names], groups=[x for p in parts for x in p.groups],
    )
    return base, full["num_classes"]


#: The loader of each data-set ``type``: ``(full spec, root) -> (items, num_classes or None)``.
_LOADERS = {"folder": _load_folder_entry, "synthetic": _load_synthetic_entry, "nifti": _load_nifti_entry}


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
        sizes: list[float | int]
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
        result = {}
        owner: dict[int, str] = {}
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
