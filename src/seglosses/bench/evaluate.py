r"""Evaluation of a trained model for ``seglosses bench``: the metrics of seed 000 and seed 003.

:func:`evaluate` runs a model over a data set and returns, from :mod:`seglosses.metrics`:

* **data-set level** values (key suffix ``_dataset``): confusion counts TP, FP, FN, TN summed
  over every pixel of every image, the formula applied once (seed 003's IoU "computed globally
  over an image dataset"); average precision from score histograms summed over the data set
  (:class:`~seglosses.metrics.SegmentationMetrics`, 1000 bins);
* **per-image means** (key suffix ``_image_mean``): each image's value, then the mean over the
  images where it is defined (the surface metrics exist only in this form);
* the **per-image values** themselves (for the paired tests of the report), keyed by item name.

Metrics (:data:`METRICS` lists them with their direction):

=========================  ==============================================================
``dice``                   Dice index, seed 000 Definition 1 with α = β = ½
``jaccard``                Jaccard index / IoU; at the data-set level over the foreground
                           classes this is seed 003's IoU (binary) and mIoU (multiclass)
``balanced_accuracy``      mean of the true positive and true negative rates (seed 000 §3)
``average_precision``      area under the precision-recall curve, on the raw
                           probabilities (seed 000 §3: "calculated on the raw output")
``pixel_accuracy``         fraction of pixels classified correctly (seed 003)
``modified_hausdorff``     seed 000 eq. 7 over the foreground pixel sets, divided by the
                           image diagonal (Table 1 reports values below 1)
``hd95``                   95th percentile Hausdorff distance between the surfaces, pixels
``iou_per_class``          IoU of every class, background included (seed 003 Table 4)
=========================  ==============================================================

On request only (:data:`OPTIONAL_METRICS`, named in a study's ``eval.metrics``):

================================  =======================================================
``expected_calibration_error``    ECE of the probabilities per (foreground) class, 15 bins
                                  (:func:`seglosses.metrics.expected_calibration_error`)
``maximum_calibration_error``     the largest gap of a bin (MCE)
================================  =======================================================

Either also records the data set's reliability diagram (result key ``"reliability"``: per
class and bin the pixels, mean probability and fraction in the class), which the report draws.

Every metric except AP is computed on the prediction thresholded at 0.5 (binary) or its
arg-max (multiclass), as seed 000 does. Overlap metrics in multiclass mode average the
foreground classes (background left out, as seed 003's mIoU, which is the mean of its Table 4).

Conventions (stated in the report as well):

* a 0/0 overlap ratio (an image without the class in prediction and truth) is 1 (seed 003);
* surface metrics: an image where prediction and truth both lack the class has no defined
  distance and is left out of the mean (NaN); one of them empty gives the image diagonal
  (``hd95``) or 1 (``modified_hausdorff``, normalised by the diagonal);
* the per-image value of a multiclass image is the mean over its defined classes.
"""
from __future__ import annotations

import contextlib
import math
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from seglosses import metrics as M
from seglosses._options import did_you_mean
from seglosses.metrics import SegmentationMetrics

__all__ = ["METRICS", "OPTIONAL_METRICS", "RELIABILITY_BINS", "QUICK_METRICS", "evaluate", "predict", "check_metric_names", "pooled_accumulators",
           "describe_items", "save_image_sums", "load_image_sums", "IMAGE_SUMS"]

#: Every metric of a full evaluation: (name, higher is better).
METRICS: Dict[str, bool] = {
    "dice": True,
    "jaccard": True,
    "balanced_accuracy": True,
    "average_precision": True,
    "pixel_accuracy": True,
    "modified_hausdorff": False,
    "hd95": False,
    "iou_per_class": True,
}

#: Metrics evaluated only when a study asks for them (``eval.metrics``): the calibration of the
#: probabilities (per class, foreground classes in multiclass mode, :data:`RELIABILITY_BINS`
#: bins); asking for either also records the data set's reliability diagram (``"reliability"``).
OPTIONAL_METRICS: Dict[str, bool] = {
    "expected_calibration_error": False,
    "maximum_calibration_error": False,
}
_CALIBRATION = tuple(OPTIONAL_METRICS)
#: Bins of the calibration metrics and of the reliability diagram.
RELIABILITY_BINS = 15

#: The metrics of the per-epoch validation (cheap: overlap only).
QUICK_METRICS = ("dice", "jaccard")

_SURFACE = ("modified_hausdorff", "hd95")


def check_metric_names(names: Sequence[str], where: str = "metrics") -> List[str]:
    """Validate metric names against :data:`METRICS`; returns them as a list.

    Args:
        names: metric names.
        where: the argument's name for the error message.

    Raises:
        ValueError: an unknown name (with the closest known one).

    Example:
        >>> check_metric_names(["dice", "hd95"])
        ['dice', 'hd95']
    """
    out = []
    known = list(METRICS) + list(OPTIONAL_METRICS)
    for name in names:
        if name not in known:
            raise ValueError(
                f"`{where}` must name metrics among {', '.join(known)}; got {name!r}{did_you_mean(name, known)}"
            )
        out.append(name)
    return out


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Strided(Dataset):
    """Items ``rank, rank + world, ...`` of a data set (this process's share of an evaluation)."""

    def __init__(self, base: Dataset, rank: int, world: int) -> None:
        self.base, self.indices = base, list(range(rank, len(base), world))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]


def predict(model: nn.Module, images: Tensor, mode: str, *, autocast: Any = None) -> Tensor:
    """Probabilities of a model's logits: sigmoid ``[B, 1, H, W]`` (binary) or softmax ``[B, C, H, W]``.

    .. math::
        p = \\sigma(z)\\ \\text{(binary)},\\qquad p_c = \\frac{e^{z_c}}{\\sum_k e^{z_k}}\\ \\text{(multiclass)}

    Args:
        model: maps ``[B, C_in, H, W]`` to logits.
        images: the input batch.
        mode: ``"binary"`` or ``"multiclass"``.
        autocast: an optional context-manager factory (mixed precision).

    Returns:
        float32 probabilities.

    Example:
        >>> predict(nn.Identity(), torch.zeros(1, 1, 1, 2), "binary")
        tensor([[[[0.5000, 0.5000]]]])
    """
    logits = _logits(model, images, autocast)
    return torch.sigmoid(logits) if mode == "binary" else torch.softmax(logits, dim=1)


def _logits(model: nn.Module, images: Tensor, autocast: Any = None) -> Tensor:
    """float32 logits of ``model`` without gradients, under ``autocast()`` when one is given."""
    with torch.no_grad(), (autocast or contextlib.nullcontext)():
        logits = model(images)
    return logits.float()


def _hard_labels(probs: Tensor, mode: str, threshold: float = 0.5) -> Tensor:
    if mode == "binary":
        return (probs[:, 0] >= threshold).long()
    return probs.argmax(1)


def _class_mean(values: Tensor) -> Tensor:
    """``[B, C]`` -> ``[B]``: mean over the defined (non-NaN) classes, NaN when none is."""
    values = values.double()
    if values.dim() == 1:
        return values
    defined = ~torch.isnan(values)
    total = torch.where(defined, values, torch.zeros_like(values)).sum(1)
    count = defined.sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    mode: str,
    num_classes: int,
    metrics: Sequence[str] = tuple(METRICS),
    loss_fn: Optional[nn.Module] = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    per_image: bool = True,
    names: Optional[Sequence[str]] = None,
    autocast: Any = None,
    num_workers: int = 0,
) -> Dict[str, Any]:
    r"""Evaluate a segmentation model on a data set (seed 000 section 3 "Metrics"; seed 003 Tables 2-4).

    .. math::
        M^{\text{dataset}} = f\Big(\sum_i TP_i, \sum_i FP_i, \sum_i FN_i, \sum_i TN_i\Big),\qquad
        M^{\text{image mean}} = \frac{1}{|I_{\text{def}}|} \sum_{i \in I_{\text{def}}} f(TP_i, FP_i, FN_i, TN_i)

    for each overlap formula ``f`` of :mod:`seglosses.metrics`; surface metrics and the exact
    average precision only per image. Under ``torch.distributed`` every process evaluates a
    strided share of the items; the sums are all-reduced and the per-image values gathered,
    so every process returns the result over the whole data set.

    Convention:
        0/0 overlap ratios are 1; surface metrics are NaN (left out of the mean) where both
        prediction and truth lack the class, the image diagonal (``hd95``) or 1
        (``modified_hausdorff``, normalised) where one lacks it. Multiclass overlap metrics
        average the foreground classes; ``iou_per_class`` lists every class, background first.

    Args:
        model: maps images ``[B, C_in, H, W]`` to logits ``[B, 1 or C, H, W]``; put in eval mode.
        dataset: items ``(image [C_in, H, W], mask [H, W])`` (sizes may differ between items).
        mode: ``"binary"`` (one logit channel) or ``"multiclass"``.
        num_classes: classes including the background (2 for binary).
        metrics: names among :data:`METRICS`.
        loss_fn: if given, its mean over the batches (weighted by batch size) is ``"loss"``.
        batch_size: evaluation batch size (items of different sizes are evaluated one by one).
        device: where the model runs.
        per_image: also return the per-image values (``"per_image"``) and per-image means.
        names: item names for ``"per_image"``; default ``dataset.names`` or indices.
        autocast: an optional context-manager factory for the forward pass.
        num_workers: data-loader workers.

    Returns:
        dict with ``"loss"`` (or ``None``), ``"n_images"``, ``"dataset"`` (name ->
        value; ``iou_per_class`` a list), ``"image_mean"`` (name -> value), ``"per_image"``
        (item name -> {metric -> value}) and ``"defined"`` (metric -> number of images with
        a defined value), and ``"reliability"`` (the data set's reliability bins when a calibration
        metric is asked for, else ``None``).

    Raises:
        ValueError: an unknown metric, an empty data set, or a mask/prediction mismatch
            (the messages of :mod:`seglosses.metrics`).

    Example:
        >>> from seglosses.bench.data import SegmentationDataset
        >>> images = torch.tensor([[[[4.0, -4.0]]]])       # logits: predicts [1, 0]
        >>> ds = SegmentationDataset(images, torch.tensor([[[1, 1]]]))
        >>> out = evaluate(nn.Identity(), ds, mode="binary", num_classes=2, metrics=["dice"])
        >>> round(out["dataset"]["dice"], 4)               # TP 1, FN 1: 2/(2+1)
        0.6667
    """
    metrics = check_metric_names(list(metrics))
    if len(dataset) == 0:
        raise ValueError("`dataset` must have at least one item; got an empty data set")
    device = torch.device(device)
    rank, world = _world()
    names = list(names if names is not None else getattr(dataset, "names", range(len(dataset))))
    names = [str(n) for n in names]
    share = _Strided(dataset, rank, world) if world > 1 else dataset
    share_names = names[rank::world] if world > 1 else names
    acc = _Accumulators(mode, num_classes, metrics, device)
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    was_training = model.training
    model.eval()
    try:
        for batches in loader:
            for images, masks in batches:
                acc.update(model, images.to(device), masks.to(device), loss_fn=loss_fn, autocast=autocast,
                           per_image=per_image)
    finally:
        model.train(was_training)

    out: Dict[str, Any] = {"loss": None, "n_images": len(dataset), "dataset": {}, "image_mean": {},
                           "per_image": {}, "defined": {}, "groups": {}, "image_sums": None,
                           "items": describe_items(dataset), "reliability": None}
    if world > 1:
        dist.all_reduce(acc.loss_sum)
        dist.all_reduce(acc.seen)
    if loss_fn is not None:
        out["loss"] = float(acc.loss_sum / acc.seen.clamp_min(1))
    acc.pooled_values(out)
    if per_image:
        _per_image_values(out, acc, dataset, names, share_names, world)
    return out


class _Accumulators:
    """What :func:`evaluate` accumulates over the batches: the pooled metrics (foreground-averaged,
    all-class, calibration), the loss sum, and the per-item rows and statistics."""

    def __init__(self, mode: str, num_classes: int, metrics: List[str], device: torch.device) -> None:
        self.mode, self.num_classes, self.metrics = mode, num_classes, metrics
        self.fg, self.all = pooled_accumulators(mode, num_classes, metrics, device=device)
        calibration = [m for m in metrics if m in _CALIBRATION]
        self.cal = SegmentationMetrics(
            [(m, {"bins": RELIABILITY_BINS}) for m in calibration], 1 if mode == "binary" else num_classes,
            mode=mode, include_background=mode != "multiclass", aggregation="dataset", device=device,
        ) if calibration else None
        self.surface = {m: _surface_options(m) for m in metrics if m in _SURFACE}
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.seen = torch.zeros((), dtype=torch.float64, device=device)
        self.rows: List[Dict[str, float]] = []
        self.sums: List[Dict[str, Tensor]] = []

    def update(self, model: nn.Module, images: Tensor, masks: Tensor, *, loss_fn: Optional[nn.Module],
               autocast: Any, per_image: bool) -> None:
        """Run the model on one batch and add it to every accumulator."""
        mode = self.mode
        logits = _logits(model, images, autocast)
        with torch.no_grad():
            if loss_fn is not None:
                self.loss_sum += loss_fn(logits, masks).double() * images.shape[0]
        probs = torch.sigmoid(logits) if mode == "binary" else torch.softmax(logits, dim=1)
        self.seen += images.shape[0]
        if self.fg is not None:
            self.fg.update(probs, masks)
        if self.cal is not None:
            self.cal.update(probs, masks)
        labels = None
        if self.all is not None:
            labels = _hard_labels(probs, mode)
            self.all.update(labels, masks)
        if per_image:
            self.sums.extend(_image_sums(self.fg, self.all, probs, masks, labels))
            self.rows.extend(_per_image(probs, masks, labels, mode, self.num_classes, self.metrics, self.surface,
                                        mode == "multiclass"))

    def pooled_values(self, out: Dict[str, Any]) -> None:
        """The data-set (pooled) values into ``out["dataset"]``, and the reliability bins."""
        if self.cal is not None:
            for key, value in self.cal.compute().items():
                out["dataset"][key[: -len("_dataset")]] = float(value)
            out["reliability"] = {"bins": RELIABILITY_BINS,
                                  **{k: v.tolist() for k, v in self.cal.reliability().items()}}
        for acc in (self.fg, self.all):
            if acc is None:
                continue
            for key, value in acc.compute().items():
                name = key[: -len("_dataset")]
                out["dataset"][name] = [float(v) for v in value] if name == "iou_per_class" else float(value)


def _gather_in_order(items: List[Any], names: Sequence[str], world: int) -> List[Any]:
    """``(name, value)`` pairs of every process, in the data set's order."""
    gathered: List[Any] = [None] * world
    dist.all_gather_object(gathered, items)
    position = {name: i for i, name in enumerate(names)}
    return sorted((p for part in gathered for p in part), key=lambda p: position[p[0]])


def _per_image_values(out: Dict[str, Any], acc: _Accumulators, dataset: Dataset, names: List[str],
                      share_names: List[str], world: int) -> None:
    """The per-item values, groups and statistics, and the per-image means, into ``out``."""
    if world > 1:
        pairs = _gather_in_order(list(zip(share_names, acc.rows)), names, world)
    else:
        pairs = list(zip(share_names, acc.rows))
    out["per_image"] = dict(pairs)
    groups = [str(g) for g in getattr(dataset, "groups", names)]
    out["groups"] = {n: g for n, g in zip(names, groups)}
    sums = acc.sums
    if world > 1:
        cpu = [{k: v.cpu() for k, v in r.items()} for r in sums]
        sums = [r for _, r in _gather_in_order(list(zip(share_names, cpu)), names, world)]
    out["image_sums"] = _stack_sums(names, groups, sums, acc.mode, acc.num_classes, acc.fg, acc.all)
    for m in acc.metrics:
        if m == "iou_per_class":
            continue
        values = [row[m] for _, row in pairs if not math.isnan(row[m])]
        out["defined"][m] = len(values)
        out["image_mean"][m] = sum(values) / len(values) if values else math.nan


#: The file of a run folder holding the per-image statistics of the pooled metrics.
IMAGE_SUMS = "image_sums.npz"

_FG_METRICS = ("dice", "jaccard", "balanced_accuracy", "average_precision")
_ALL_METRICS = ("pixel_accuracy", "iou_per_class")


def pooled_accumulators(mode: str, num_classes: int, metrics: Sequence[str], *, device: torch.device | str = "cpu",
                        per_class: bool = False) -> Tuple[Optional[SegmentationMetrics], Optional[SegmentationMetrics]]:
    """The two accumulators of the data-set-level metrics: foreground overlap and AP, and the
    all-class ones (pixel accuracy, per-class IoU); ``None`` for a group without metrics.

    ``per_class=True`` keeps the per-class values (the report's bootstrap recomputes the pooled
    metrics of many resamples at once and averages the classes itself).

    Example:
        >>> fg, every = pooled_accumulators("binary", 2, ["dice", "pixel_accuracy"])
        >>> list(fg.metrics), list(every.metrics)
        (['dice'], ['pixel_accuracy'])
    """
    channels = 1 if mode == "binary" else num_classes
    fg_names = [m for m in _FG_METRICS if m in metrics]
    acc_fg = SegmentationMetrics(fg_names, channels, mode=mode, include_background=mode != "multiclass",
                                 aggregation="dataset", device=device, per_class=per_class) if fg_names else None
    all_names = [m for m in _ALL_METRICS if m in metrics]
    acc_all = SegmentationMetrics(all_names, num_classes, mode="multiclass", aggregation="dataset",
                                  device=device, per_class=per_class) if all_names else None
    return acc_fg, acc_all


def _image_sums(acc_fg, acc_all, probs: Tensor, masks: Tensor, labels: Optional[Tensor]) -> List[Dict[str, Tensor]]:
    """Per image of the batch, the sums it adds to the pooled accumulators (keys ``fg:``/``all:``)."""
    rows = []
    for j in range(probs.shape[0]):
        row: Dict[str, Tensor] = {}
        if acc_fg is not None:
            row.update({f"fg:{k}": v for k, v in acc_fg.batch_sums(probs[j:j + 1], masks[j:j + 1]).items()})
        if acc_all is not None:
            row.update({f"all:{k}": v for k, v in acc_all.batch_sums(labels[j:j + 1], masks[j:j + 1]).items()})
        rows.append(row)
    return rows


def _stack_sums(names, groups, sums, mode, num_classes, acc_fg, acc_all) -> Optional[Dict[str, Any]]:
    if not sums or not sums[0]:
        return None
    arrays = {k: np.stack([r[k].detach().cpu().double().numpy() for r in sums]) for k in sums[0]}
    meta = {"mode": mode, "num_classes": num_classes,
            "metrics": sorted([*(acc_fg.metrics if acc_fg else []), *(acc_all.metrics if acc_all else [])])}
    return {"names": list(names), "groups": list(groups), "meta": meta, "arrays": arrays}


def save_image_sums(path: str | Path, sums: Optional[Mapping[str, Any]]) -> None:
    """Write :func:`evaluate`'s ``image_sums`` (names, groups, per-image sums) as a compressed NPZ."""
    if sums is None:
        return
    from seglosses.bench.runfiles import atomic_write_bytes

    buf = io.BytesIO()
    arrays = {k.replace("/", "|"): (v.astype(np.int64) if np.all(v == np.round(v)) else v)
              for k, v in sums["arrays"].items()}
    np.savez_compressed(buf, names=np.array(sums["names"]), groups=np.array(sums["groups"]),
                        meta=np.array(json.dumps(sums["meta"])), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_image_sums(path: str | Path) -> Optional[Dict[str, Any]]:
    """Read a file of :func:`save_image_sums`; ``None`` when it is missing or unreadable.

    Example:
        >>> load_image_sums("/nonexistent/image_sums.npz") is None
        True
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            arrays = {k.replace("|", "/"): z[k].astype(np.float64) for k in z.files if k not in ("names", "groups", "meta")}
            return {"names": [str(n) for n in z["names"]], "groups": [str(g) for g in z["groups"]],
                    "meta": json.loads(str(z["meta"])), "arrays": arrays}
    except (OSError, ValueError, KeyError):
        return None


def describe_items(dataset: Dataset) -> str:
    """What the items of an evaluation set are, from its wrappers (e.g. ``"quadrants of 512-px tiles
    (stride 256) of the source images, with foreground only"``).

    Example:
        >>> from seglosses.bench.data import SegmentationDataset
        >>> describe_items(SegmentationDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)))
        'whole images'
    """
    from seglosses.bench import data as D

    parts: List[str] = []
    positives = False
    ds = dataset
    for _ in range(20):
        kind = type(ds).__name__
        if kind == "SubsetDataset" and getattr(ds, "positives", False):
            positives = True
        elif isinstance(ds, D.QuadrantDataset):
            parts.append("quadrants")
        elif isinstance(ds, D.TiledDataset):
            extra = []
            if getattr(ds, "padded", 0):
                extra.append(f"{ds.padded} small image(s) padded ({ds.pad_mode})")
            if getattr(ds, "skipped", 0):
                extra.append(f"{ds.skipped} small image(s) skipped")
            parts.append(f"{ds.tile}-px tiles (stride {ds.stride}{'; ' + '; '.join(extra) if extra else ''})")
        elif type(ds).__name__ == "_Capped" and getattr(ds, "crop", None):
            parts.append(f"central {ds.crop}-px crops")
        base = getattr(ds, "base", None)
        if base is None:
            break
        ds = base
    text = " of ".join(parts + ["the source images"]) if parts else "whole images"
    return text + (", with foreground only" if positives else "")


def _collate(items):
    """Batches of equal-sized items; items of another size start a new batch."""
    groups: List[List] = []
    for image, mask in items:
        if groups and groups[-1][0][0].shape == image.shape:
            groups[-1].append((image, mask))
        else:
            groups.append([(image, mask)])
    return [(torch.stack([i for i, _ in g]), torch.stack([m for _, m in g])) for g in groups]


def _surface_options(name: str) -> Dict[str, Any]:
    if name == "hd95":
        return {"empty": "nan", "missing": "diagonal"}
    return {"normalize": True, "empty": "nan", "missing": 1.0}


def _per_image(probs: Tensor, masks: Tensor, labels: Optional[Tensor], mode: str, num_classes: int,
               metrics: Sequence[str], surface: Mapping[str, Dict[str, Any]], fg_only: bool) -> List[Dict[str, float]]:
    """One dict of metric values per image of the batch (class means over the defined classes)."""
    common = dict(mode=mode, include_background=not fg_only, reduction="none")
    values: Dict[str, Tensor] = {}
    for m, fn in (("dice", M.dice), ("jaccard", M.jaccard), ("balanced_accuracy", M.balanced_accuracy)):
        if m in metrics:
            values[m] = _class_mean(fn(probs, masks, **common))
    if "average_precision" in metrics:
        values["average_precision"] = _class_mean(M.average_precision(probs, masks, **common))
    for m, fn in (("expected_calibration_error", M.expected_calibration_error),
                  ("maximum_calibration_error", M.maximum_calibration_error)):
        if m in metrics:
            values[m] = _class_mean(fn(probs, masks, bins=RELIABILITY_BINS, **common))
    if "pixel_accuracy" in metrics:
        labels = _hard_labels(probs, mode) if labels is None else labels
        values["pixel_accuracy"] = _class_mean(
            M.pixel_accuracy(labels, masks, mode="multiclass", num_classes=num_classes, reduction="none"))
    if surface:
        found = M.surface_metrics(probs, masks, metrics=dict(surface), **common)
        for m, v in found.items():
            values[m] = _class_mean(v)
    keys = list(values)
    if not keys:
        return [{} for _ in range(probs.shape[0])]
    table = torch.stack([values[k].cpu() for k in keys], 1).tolist()  # one transfer per batch
    return [dict(zip(keys, row)) for row in table]
