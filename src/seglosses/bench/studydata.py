"""The data sets of a study: presets of the shared folder, resolving a study's data-set entry
into a :func:`~seglosses.bench.data.build_dataset` spec, and building it with the quick-run
overrides.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from torch.utils.data import Dataset

from seglosses._options import did_you_mean
from seglosses.bench.data import BenchData, build_dataset, foreground_flags
from seglosses.bench.studyfile import StudyError

__all__ = ["PRESETS", "shared_folder", "resolve_dataset", "build_data"]

#: Known data sets of the shared folder (``$SEGLOSSES_SHARED/datasets/<name>``), with the
#: settings their README gives. Paths are relative to the data set's folder.
PRESETS: Dict[str, Dict[str, Any]] = {
    "isbi2012-em": {
        "type": "folder", "images": "images", "masks": "masks",
        # membrane (value 0) is the foreground class; the cell interior (255) the background
        "classes": {0: 1, 255: 0},
        # contiguous slices: neighbouring slices are correlated
        "split": {"train": "0-19", "val": "20-24", "test": "25-29"},
        "crop": 256, "quadrants": True, "class_names": ["cell interior", "membrane"],
    },
    # 44 H&E tiles of 512x512, one TCGA patient each; split by patient as the README suggests
    # (train 24, val 6, test 14 = the challenge's test images); random rotated 256 crops for
    # training, the four 256x256 quadrants for evaluation (seed 000 section 3)
    "monuseg": {
        "type": "folder", "images": "images", "masks": "masks",
        "split": {"file": "manifest.csv", "column": "source_split", "key": "id"},
        "group_by": {"file": "manifest.csv", "column": "tcga_patient", "key": "id"},
        "crop": 256, "quadrants": True, "class_names": ["background", "nucleus"],
    },
    # 250 colonoscopy frames, long side 256 (height 177-256): training crops of 160, evaluation on
    # quadrants; the README's fixed-seed split 200 / 25 / 25 (no patient ids: each frame its own cluster)
    "kvasir-seg": {
        "type": "folder", "images": "images", "masks": "masks",
        "split": {"file": "manifest.csv", "column": "suggested_split", "key": "id"},
        "group_by": {"file": "manifest.csv", "column": "source_image", "key": "id"},
        "crop": 160, "quadrants": True, "class_names": ["background", "polyp"],
    },
    # 400 cine-MRI slices of 100 patients (4 per patient), sizes 154-512: split by patient as the
    # README suggests (70 / 10 / 20 patients); the patient is the cluster of the report's tests;
    # training crops of 128, evaluation on whole slices (seed 003)
    "acdc-slices": {
        "type": "folder", "images": "images", "masks": "masks",
        "split": {"file": "manifest.csv", "column": "source_split", "key": "id"},
        "group_by": {"file": "manifest.csv", "column": "patient", "key": "id"},
        "crop": 128, "class_names": ["background", "RV cavity", "myocardium", "LV cavity"],
    },
}


def shared_folder() -> Optional[Path]:
    """The shared folder holding ``datasets/``: ``$SEGLOSSES_SHARED``, else ``../shared`` next to
    the working directory or to the repository; ``None`` when none exists.

    Example:
        >>> isinstance(shared_folder(), (type(None), Path))
        True
    """
    env = os.environ.get("SEGLOSSES_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd().parent / "shared", Path.cwd() / "shared",
                   Path(__file__).resolve().parents[3].parent / "shared"]
    for c in candidates:
        if (c / "datasets").is_dir():
            return c.resolve()
    return None


# keys of a data-set entry that are not build_dataset's: quick-run overrides and report labels
_EXTRA_KEYS = ("max_images", "size_override", "class_names")


def resolve_dataset(entry: Any, base_dir: str | Path | None = None) -> Dict[str, Any]:
    """The :func:`~seglosses.bench.data.build_dataset` spec of a study's data-set entry.

    An entry is a preset name (:data:`PRESETS`, looked up in the shared folder's ``datasets``),
    a folder path with ``images/`` and ``masks/`` (a preset when its name is one), a mapping
    with ``preset`` and changes, or a full ``build_dataset`` spec. The keys ``max_images`` and
    ``size_override`` (quick-run overrides) and ``class_names`` (one name per class, background
    first, for the report) are kept for :func:`build_data`. Relative paths
    become absolute: against the working directory when they exist there, else ``base_dir``.

    Raises:
        StudyError: an unknown preset, a missing folder (the message says where it looked).

    Example:
        >>> resolve_dataset({"type": "synthetic", "n_images": 8})["name"]
        'synthetic'
    """
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    if isinstance(entry, str):
        entry = {"preset": entry}
    if not isinstance(entry, Mapping):
        raise StudyError(f"`datasets` entries must be a name, a folder or a mapping; got {entry!r}")
    entry = dict(entry)
    extras = {k: entry.pop(k) for k in _EXTRA_KEYS if k in entry}
    if "preset" in entry:
        spec = _preset(str(entry.pop("preset")), base_dir)
        spec.update(entry)
    else:
        spec = entry
        for key in ("images", "masks", "manifest"):
            value = spec.get(key)
            if isinstance(value, str):
                spec[key] = str(_existing(value, base_dir))
            elif isinstance(value, list):
                spec[key] = [str(_existing(v, base_dir)) for v in value]
    spec.setdefault("name", spec.get("type", "data"))
    spec.update(extras)
    return spec


def _existing(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for root in (Path.cwd(), base_dir):
        if (root / p).exists():
            return (root / p).resolve()
    return (Path.cwd() / p).resolve()  # build_dataset reports it missing, with this path


def _preset(name: str, base_dir: Path) -> Dict[str, Any]:
    candidate = Path(name).expanduser()
    folder: Optional[Path] = None
    key = name
    looked: List[str] = []
    if "/" in name or os.sep in name or candidate.is_dir():
        folder = _existing(name, base_dir)
        key = folder.name
        looked.append(str(folder))
    else:
        shared = shared_folder()
        if shared is not None:
            folder = shared / "datasets" / name
            looked.append(str(folder))
        else:
            looked.append("$SEGLOSSES_SHARED/datasets, ../shared/datasets")
    if name == "synthetic":
        return {"type": "synthetic", "name": "synthetic"}
    if folder is None or not folder.is_dir():
        known = ", ".join(PRESETS)
        raise StudyError(f"`datasets` entry {name!r} must be a known data set ({known}) found in the shared "
                         f"folder, or a folder with images/ and masks/; looked in {', '.join(looked)}"
                         f"{did_you_mean(name, PRESETS)}")
    if key in PRESETS:
        spec = copy.deepcopy(PRESETS[key])
    else:
        if not ((folder / "images").is_dir() and (folder / "masks").is_dir()):
            raise StudyError(f"`datasets` folder must hold images/ and masks/ sub-folders; got '{folder}'")
        spec = {"type": "folder", "images": "images", "masks": "masks"}
    spec["images"] = str(folder / spec["images"])
    spec["masks"] = str(folder / spec["masks"])
    for option in ("split", "group_by"):  # files named by the preset live in the data set's folder
        if isinstance(spec.get(option), Mapping) and "file" in spec[option]:
            spec[option] = {**spec[option], "file": str(folder / spec[option]["file"])}
    spec["name"] = key
    return spec


class _Capped(Dataset):
    """The first ``n`` items of a data set, and optionally a central crop (quick-run overrides)."""

    def __init__(self, base: Dataset, n: Optional[int], crop: Optional[int]) -> None:
        self.base = base
        self.n = len(base) if n is None else min(n, len(base))
        self.crop = crop
        self.names = list(getattr(base, "names", range(len(base))))[: self.n]
        self.groups = list(getattr(base, "groups", self.names))[: self.n]
        self._flags: Optional[List[bool]] = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(f"`index` must be in [0, {self.n}); got {index}")
        image, mask = self.base[index]
        if self.crop is not None:
            h, w = mask.shape[-2:]
            c = min(self.crop, h, w)
            top, left = (h - c) // 2, (w - c) // 2
            image, mask = image[:, top:top + c, left:left + c], mask[top:top + c, left:left + c]
        return image, mask

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    @property
    def in_channels(self) -> int:
        return int(self[0][0].shape[0])

    def foreground_flags(self) -> List[bool]:
        if self._flags is None:
            if self.crop is None:
                self._flags = foreground_flags(self.base)[: self.n]
            else:
                self._flags = [bool(self[i][1].any()) for i in range(self.n)]
        return list(self._flags)


def build_data(spec: Mapping[str, Any]) -> BenchData:
    """Build the data sets of a resolved entry (:func:`resolve_dataset`), with its overrides.

    ``max_images`` sets a synthetic set's ``n_images`` and caps every split of other data;
    ``size_override`` sets a synthetic set's ``size``, and for other data the training crop and
    a central crop of the validation and test items. ``class_names`` becomes ``data.class_names``.

    Raises:
        ValueError, FileNotFoundError: the messages of :func:`~seglosses.bench.data.build_dataset`.

    Example:
        >>> d = build_data({"type": "synthetic", "n_images": 100, "max_images": 10, "size_override": 32})
        >>> len(d.train) + len(d.val) + len(d.test), d.train[0][0].shape[-1]
        (10, 32)
    """
    spec = dict(spec)
    max_images = spec.pop("max_images", None)
    size = spec.pop("size_override", None)
    names = spec.pop("class_names", None)
    data = _build_data(spec, max_images, size)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != data.num_classes:
            raise ValueError(f"`class_names` must name the {data.num_classes} classes of {data.name!r} "
                             f"(background first); got {len(names)}: {names}")
    data.class_names = names
    return data


def _build_data(spec: Dict[str, Any], max_images: Optional[int], size: Optional[int]) -> BenchData:
    if spec.get("type") == "synthetic":
        if max_images is not None:
            spec["n_images"] = min(int(spec.get("n_images", 256)), max_images)
            split = spec.get("split")
            if isinstance(split, Mapping) and "counts" in split:  # counts no longer fit: keep their proportions
                counts = [int(c) for c in split["counts"]]
                spec["split"] = {"fractions": [c / sum(counts) for c in counts], "seed": split.get("seed", 0)}
        if size is not None:
            spec["size"] = size
        return build_dataset(spec)
    if size is not None and spec.get("crop") is not None:
        spec["crop"] = size
    data = build_dataset(spec)
    if max_images is None and size is None:
        return data
    for split in ("train", "val", "test"):
        ds = getattr(data, split)
        if ds is not None:
            crop = size if split != "train" or spec.get("crop") is None else None
            setattr(data, split, _Capped(ds, max_images, crop))
    return data
