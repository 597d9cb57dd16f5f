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

Layout: :mod:`~seglosses.bench.data.io` (files, NIfTI), :mod:`~seglosses.bench.data.transforms`
(tiling, crops, rotations, quadrants), :mod:`~seglosses.bench.data.datasets` (the data-set
classes), :mod:`~seglosses.bench.data.sampling`, :mod:`~seglosses.bench.data.splits` and
:mod:`~seglosses.bench.data.spec` (this specification); every public name is importable from
here.
"""
from __future__ import annotations

from seglosses.bench.data.datasets import (
    QuadrantDataset,
    RotatedCropDataset,
    SegmentationDataset,
    SubsetDataset,
    TiledDataset,
    foreground_flags,
    positives_only,
)
from seglosses.bench.data.io import IMAGE_EXTENSIONS, load_folder, load_nifti_slices, read_image, read_mask
from seglosses.bench.data.sampling import RatioBatchSampler, ShuffleBatchSampler
from seglosses.bench.data.spec import BenchData, build_dataset, positive_evaluation
from seglosses.bench.data.splits import parse_index_ranges, read_split_file, split_indices
from seglosses.bench.data.transforms import (
    Tiles,
    quadrants,
    random_crop_params,
    random_rotated_crop,
    rotated_crop,
    tile,
    tile_origins,
    tissue_filter,
)

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
    "ShuffleBatchSampler",
    "parse_index_ranges",
    "split_indices",
    "read_split_file",
    "BenchData",
    "build_dataset",
]
