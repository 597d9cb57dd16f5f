r"""Streaming evaluation over a data set: sums of statistics, all-reduced across processes.

:class:`SegmentationMetrics` keeps only *sums* (fixed-size tensors, O(classes) or
O(classes × bins) memory), so the result does not depend on how the data set is split
into batches or across processes:

* **dataset-level** values (result keys ``<name>_dataset``): the per-class confusion
  counts TP, FP, FN, TN are summed over every pixel of every image, and the formula is
  applied once at the end (seed 003's IoU "computed globally over an image dataset");
  average precision and ROC AUC from summed score histograms (the binned forms of
  :func:`~seglosses.metrics.average_precision` and :func:`~seglosses.metrics.roc_auc`,
  with error bounds), calibration errors from summed per-bin sums (also
  :meth:`SegmentationMetrics.reliability`, the reliability diagram);
* **per-image means** (result keys ``<name>_image_mean``): each image's value is
  computed, and the sum of these values and their count are accumulated per class; the
  mean is sum / count at the end. Surface metrics and the exact per-image AP exist only
  in this form.

Neither is an average of per-batch averages. Under an initialised
``torch.distributed`` process group, :meth:`SegmentationMetrics.compute` sums the
state over the processes with one ``all_reduce``, so the result on N processes equals
the result of one process over the same images.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor

from .._inputs import canonicalize
from .._options import check_fraction, check_nonnegative, lookup_option
from .._stats import Confusion, safe_ratio
from ..distance import _check_spacing
from ._hard import hard_pair, options_with_defaults, stat_dtype
from .calibration import calibration_from_histograms, calibration_state, reliability_from_histograms
from .confusion import CONFUSION_ALIASES, FORMULAS as CONFUSION_FORMULAS, find_name, formula_of
from .overlap import (
    GDS_WEIGHTS,
    average_classes,
    check_average,
    confusion_of_hard,
    generalized_dice_from,
    jaccard_from,
    pixel_accuracy_from,
    tversky_from,
    volume_difference_from,
)
from .ranking import (
    auc_from_histograms,
    auc_histograms,
    check_bins,
    exact_auc_rows,
    roc_auc_error_bound,
    score_rows,
    scores_and_targets,
    ap_from_histograms,
    ap_histograms,
    average_precision_error_bound,
    exact_ap_rows,
)
from .surface import SURFACE_METRICS, Surfaces, metric_options, surface_values

__all__ = ["SegmentationMetrics", "METRIC_NAMES"]

#: the per-class formulas of the confusion counts that take ``average``
RATIOS = ("dice", "jaccard", "tversky_index", "sensitivity", "specificity", "precision", "balanced_accuracy",
          "matthews_correlation", "fbeta_score", "negative_predictive_value", "miss_rate", "fall_out",
          "false_discovery_rate", "false_omission_rate", "threat_score", "informedness", "markedness",
          "fowlkes_mallows", "prevalence_threshold")
OVERLAP = RATIOS + ("pixel_accuracy", "mean_iou", "iou_per_class", "generalized_dice_score", "volume_difference")
#: the metrics of the scores (no threshold): ranking and calibration
SCORES = ("average_precision", "roc_auc", "expected_calibration_error", "maximum_calibration_error")
CALIBRATION = ("expected_calibration_error", "maximum_calibration_error")
METRIC_NAMES = OVERLAP + SCORES + SURFACE_METRICS
ALIASES = {
    **{k: v for k, v in CONFUSION_ALIASES.items() if v in OVERLAP},
    "iou": "jaccard", "tversky": "tversky_index", "ap": "average_precision", "hd": "hausdorff",
    "nsd": "surface_dice", "mhd": "modified_hausdorff", "auc": "roc_auc", "auroc": "roc_auc",
    "ece": "expected_calibration_error", "mce": "maximum_calibration_error", "gds": "generalized_dice_score",
    "generalized_dice": "generalized_dice_score", "absolute_volume_difference": "volume_difference",
    "avd": "volume_difference",
}
AGGREGATIONS = ("dataset", "image")

_FORMULAS = {**CONFUSION_FORMULAS, "jaccard": jaccard_from}
_NORM = {"expected_calibration_error": "expected", "maximum_calibration_error": "maximum"}
#: the ranking metrics' dataset-level histograms (two sums per class and bin) and exact per-row values
_RANKING = {"average_precision": (ap_histograms, ("positives", "pixels"), exact_ap_rows),
            "roc_auc": (auc_histograms, ("positives", "negatives"), exact_auc_rows)}


def _resolve_name(name: object) -> str:
    key, hint = find_name(name, METRIC_NAMES, ALIASES)
    if key is None:
        listed = ", ".join(repr(m) for m in METRIC_NAMES)
        raise ValueError(f"`metrics` must name metrics among {listed} (or an alias); got {name!r}{hint}")
    return key


def _options(name: str, opts: Mapping[str, Any]) -> Dict[str, Any]:
    if name in SURFACE_METRICS:
        return metric_options(name, opts)
    allowed: Dict[str, Any] = {"empty": 1.0}
    if name in RATIOS:
        allowed.update(average=None)
    if name == "tversky_index":
        allowed.update(alpha=0.3, beta=0.7)
    if name == "fbeta_score":
        allowed.update(beta=1.0)
    if name == "generalized_dice_score":
        allowed.update(weight_type="square")
    if name == "volume_difference":
        allowed.update(relative=False, signed=False, empty="nan")
    if name in ("average_precision", "roc_auc"):
        allowed.update(bins=1000)
    if name == "roc_auc":
        allowed.update(empty="nan")
    if name in CALIBRATION:
        allowed.update(bins=15, empty="nan")
    out = options_with_defaults(name, allowed, opts)
    if name == "tversky_index":
        out["alpha"] = check_nonnegative("alpha", out["alpha"])
        out["beta"] = check_nonnegative("beta", out["beta"])
    if name == "fbeta_score":
        out["beta"] = check_nonnegative("beta", out["beta"])
    if "average" in out:
        out["average"] = check_average(out["average"])
    if name == "generalized_dice_score":
        out["weight_type"] = lookup_option("weight_type", out["weight_type"], GDS_WEIGHTS)
    for flag in ("relative", "signed"):
        if flag in out and not isinstance(out[flag], bool):
            raise TypeError(f"`{flag}` must be a bool; got {type(out[flag]).__name__}")
    if "bins" in out:
        check_bins(out["bins"])
    return out


def _sum_and_count(values: Tensor) -> Tuple[Tensor, Tensor]:
    """Sum over images (axis 0) of the defined values, and how many were defined (NaN left out)."""
    defined = ~torch.isnan(values)
    return torch.where(defined, values, torch.zeros_like(values)).sum(0), defined.sum(0).to(values.dtype)


class SegmentationMetrics:
    r"""Streaming, DDP-aware evaluation: ``update(pred, target)`` per batch, ``compute()`` at the end.

    .. math::
        M_{c}^{\text{dataset}} = f\Big(\sum_{b} TP_{bc}, \sum_b FP_{bc}, \sum_b FN_{bc}, \sum_b TN_{bc}\Big),
        \qquad
        M_{c}^{\text{image mean}} = \frac{\sum_b f(TP_{bc}, FP_{bc}, FN_{bc}, TN_{bc})}
                                         {\#\{b : f(\dots) \text{ defined}\}}

    over every image ``b`` seen since the last :meth:`reset` (on every process), for a
    metric formula ``f`` of :mod:`seglosses.metrics` (seed 003 defines IoU at the
    dataset level). Surface metrics and the exact AP are per-image values, accumulated
    the same way (sum and count). Average precision at the dataset level is the binned
    AP (``bins`` per class, default 1000) of :func:`~seglosses.metrics.average_precision`,
    from summed histograms; its error against the exact value is bounded by
    :func:`~seglosses.metrics.average_precision_error_bound` (see :meth:`ap_error_bound`).

    Result keys are ``"<name>_dataset"`` and ``"<name>_image_mean"`` (as ``aggregation``
    asks); a value is the mean over the kept classes (classes whose value is NaN left
    out), or the ``[C]`` per-class values with ``per_class=True``. ``iou_per_class`` is
    always per class and ``mean_iou`` always the class mean.

    Convention:
        As the functional metrics: a 0/0 ratio is ``empty`` (1.0, or ``"nan"`` per
        metric); surface metrics take ``empty`` / ``missing`` (0.0 / ``inf`` by default:
        one ``inf`` image makes that class's image mean ``inf``). NaN values are not
        counted. A class without any defined per-image value has image mean NaN.
        Ignored pixels count nowhere.

    Args:
        metrics: metric names (see :data:`METRIC_NAMES`; aliases such as ``"iou"``,
            ``"ap"``, ``"nsd"`` accepted), or ``(name, options)`` pairs, or a mapping
            name -> options, e.g. ``[("tversky", {"alpha": 0.3, "beta": 0.7}), ("hd95",
            {"percentile": 90, "missing": "diagonal"}), ("ap", {"bins": 10000})]``.
            Options: ``empty`` (all), ``average`` (the per-class ratios: ``"macro"``,
            ``"micro"``, ``"weighted"``, as :func:`seglosses.metrics.dice`),
            ``alpha``/``beta`` (Tversky), ``beta`` (F-beta), ``weight_type`` (generalised
            Dice), ``relative``/``signed`` (volume difference, in the unit of ``spacing``),
            ``bins`` (AP, ROC AUC: 1000; calibration errors: 15), and those of the surface
            functions (``percentile``, ``convention``, ``missing``, ``tolerance``,
            ``points``, ``normalize``, ``distance``, ``directed``). MONAI's
            ``ConfusionMatrixMetric`` names are aliases (``"mcc"``, ``"fnr"``,
            ``"critical success index"``, ...), as are ``"auc"``, ``"ece"``, ``"mce"``,
            ``"gds"``, ``"avd"``. At the data-set level a class average (``average``)
            and the generalised Dice score apply to the summed counts (weights from the
            summed volumes), the volume difference compares the summed volumes
            (:math:`|\sum_b V(\hat Y_b) - \sum_b V(Y_b)|`), the calibration errors come
            from the summed bins.
        num_classes: channels of the prediction (1 in binary mode, the default there).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits, threshold, include_background, ignore_index: as for
            :func:`seglosses.metrics.dice`.
        aggregation: ``"dataset"``, ``"image"`` or both (the default).
        per_class: report ``[C]`` per-class values instead of the class mean.
        spacing, backend: for the surface metrics (see :func:`seglosses.metrics.hausdorff`).
        check_values: value checks of every batch (one pass, one sync).
        process_group: the ``torch.distributed`` group to reduce over (default group if
            ``None``).
        device: where the state lives before the first update (it moves to the data's
            device then).

    Raises:
        ValueError: unknown metric or option, duplicate metric, bad ``num_classes``, a
            surface metric with only ``aggregation="dataset"``; in ``update``: as the
            functional metrics, or a class count that differs from ``num_classes``.

    Example:
        >>> m = SegmentationMetrics(["dice", "iou"], mode="binary")
        >>> m.update(torch.tensor([[[1.0, 1.0, 0.0]]]), torch.tensor([[1, 0, 0]]))  # TP 1, FP 1
        >>> m.update(torch.tensor([[[0.0, 0.0, 0.0]]]), torch.tensor([[0, 0, 0]]))  # empty: Dice 1
        >>> {k: round(float(v), 4) for k, v in m.compute().items()}
        {'dice_dataset': 0.6667, 'dice_image_mean': 0.8333, 'jaccard_dataset': 0.5, 'jaccard_image_mean': 0.75}
    """

    def __init__(
        self,
        metrics: Union[Sequence[Union[str, Tuple[str, Mapping[str, Any]]]], Mapping[str, Mapping[str, Any]]],
        num_classes: Optional[int] = None,
        *,
        mode: str = "binary",
        from_logits: bool = False,
        threshold: float = 0.5,
        include_background: bool = True,
        ignore_index: Optional[int] = None,
        aggregation: Union[str, Sequence[str]] = ("dataset", "image"),
        per_class: bool = False,
        spacing: Optional[Union[float, Sequence[float]]] = None,
        backend: str = "auto",
        check_values: bool = True,
        process_group: Any = None,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        self.mode = lookup_option("mode", mode, ("binary", "multiclass", "multilabel"))
        if num_classes is None and self.mode == "binary":
            num_classes = 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"`num_classes` must be an int; got {type(num_classes).__name__}")
        low = {"binary": 1, "multiclass": 2, "multilabel": 1}[self.mode]
        if num_classes < low or (self.mode == "binary" and num_classes != 1):
            expect = "1 in binary mode" if self.mode == "binary" else f">= {low} in {self.mode} mode"
            raise ValueError(f"`num_classes` must be {expect}; got {num_classes}")
        self.num_classes = num_classes
        self.kept = num_classes - (0 if include_background or self.mode == "binary" else 1)
        if self.kept < 1:
            raise ValueError("`include_background` must be True when the only class is the background; got False")
        # the per-batch checks that do not depend on the data, made here (by the one validator,
        # on a one-pixel stand-in of the batches to come): a bad setting fails at
        # construction, not at the first update of an evaluation run
        stand_in = torch.zeros((1, num_classes, 1) if self.mode == "multilabel" else (1, 1), dtype=torch.long)
        canonicalize(torch.zeros(1, num_classes, 1), stand_in, mode=self.mode,
                     from_logits=from_logits, include_background=include_background, ignore_index=ignore_index,
                     check_values=False)
        self.from_logits = from_logits
        self.threshold = check_fraction("threshold", threshold)
        self.include_background = include_background
        self.ignore_index = ignore_index
        if isinstance(aggregation, str):
            aggregation = (aggregation,)
        self.aggregation = tuple(lookup_option("aggregation", a, AGGREGATIONS) for a in aggregation)
        if not self.aggregation:
            raise ValueError("`aggregation` must name 'dataset', 'image' or both; got none")
        if not isinstance(per_class, bool):
            raise TypeError(f"`per_class` must be a bool; got {type(per_class).__name__}")
        self.per_class = per_class
        self.spacing = spacing
        self.backend = backend
        self.check_values = check_values
        self.process_group = process_group
        #: the keywords of every batch's (prediction, target) pair
        self._pair = dict(mode=self.mode, from_logits=from_logits, threshold=self.threshold, num_classes=num_classes,
                          include_background=include_background, ignore_index=ignore_index, check_values=check_values)

        items = metrics.items() if isinstance(metrics, Mapping) else [
            (m, {}) if isinstance(m, str) else tuple(m) for m in ([metrics] if isinstance(metrics, str) else metrics)
        ]
        self.metrics: Dict[str, Dict[str, Any]] = {}
        for name, opts in items:
            key = _resolve_name(name)
            if key in self.metrics:
                raise ValueError(f"`metrics` must name each metric once; got {key!r} twice")
            if not isinstance(opts, Mapping):
                raise TypeError(f"`metrics` options of {key!r} must be a mapping; got {type(opts).__name__}")
            self.metrics[key] = _options(key, opts)
        if not self.metrics:
            raise ValueError("`metrics` must name at least one metric; got none")
        if self.aggregation == ("dataset",):
            per_image_only = [m for m in self.metrics if m in SURFACE_METRICS]
            if per_image_only:
                raise ValueError(
                    f"`aggregation` must include 'image' for the surface metrics {per_image_only} "
                    f"(they have no dataset-level form); got ('dataset',)"
                )
        self._voxel: Optional[float] = None  # of `spacing`, known at the first update (volume_difference)
        self._shapes = self._state_shapes()
        dtype = stat_dtype(torch.device(device) if device is not None else torch.device("cpu"))
        self._state: Dict[str, Tensor] = {
            k: torch.zeros(s, dtype=dtype, device=device) for k, s in self._shapes.items()
        }

    # ------------------------------------------------------------------ state layout

    def _pa_size(self) -> int:
        return self.kept if self.mode == "multilabel" else 1

    def _size(self, m: str, opts: Mapping[str, Any]) -> int:
        """Values per image of a metric: one per kept class, or one (class averages, pixel accuracy)."""
        if m == "pixel_accuracy":
            return self._pa_size()
        if m == "generalized_dice_score" or opts.get("average") is not None:
            return 1
        return self.kept

    def _state_shapes(self) -> Dict[str, Tuple[int, ...]]:
        c = self.kept
        shapes: Dict[str, Tuple[int, ...]] = {"images": (1,)}  # images seen (compute() needs one)
        overlap = [m for m in self.metrics if m in OVERLAP]
        if overlap and "dataset" in self.aggregation:
            for k in ("tp", "fp", "fn", "tn"):
                shapes[f"confusion/{k}"] = (c,)
            if "pixel_accuracy" in self.metrics:
                shapes["pixel_accuracy/correct"] = (self._pa_size(),)
                shapes["pixel_accuracy/total"] = (self._pa_size(),)
        for m, opts in self.metrics.items():
            size = self._size(m, opts)
            if "dataset" in self.aggregation:
                if m == "average_precision":
                    shapes["average_precision/positives"] = (c, opts["bins"])
                    shapes["average_precision/pixels"] = (c, opts["bins"])
                if m == "roc_auc":
                    shapes["roc_auc/positives"] = (c, opts["bins"])
                    shapes["roc_auc/negatives"] = (c, opts["bins"])
                if m in CALIBRATION:
                    shapes[f"{m}/bins"] = (c, 3, opts["bins"])
            if "image" in self.aggregation or m in SURFACE_METRICS:
                shapes[f"{m}/image_sum"] = (size,)
                shapes[f"{m}/image_count"] = (size,)
        return shapes

    def state(self) -> Dict[str, Tensor]:
        """A copy of the local (not yet reduced) sums, keyed ``"<group>/<sum>"``."""
        return {k: v.clone() for k, v in self._state.items()}

    def reset(self) -> None:
        """Zero every sum."""
        for v in self._state.values():
            v.zero_()

    # ------------------------------------------------------------------ update

    def batch_sums(self, pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The sums one batch adds to the state (same keys and shapes), without touching it."""
        out: Dict[str, Tensor] = {}
        names = self.metrics
        surface = [m for m in names if m in SURFACE_METRICS]
        pair = None
        if any(m in OVERLAP for m in names) or surface:
            # the surface metrics keep or drop pixels: no per-pixel weights then
            pair = hard_pair(pred, target, {**self._pair, "mask": mask}, mask_weights=not surface)
        if any(m in OVERLAP for m in names):
            if "volume_difference" in names:
                self._voxel = math.prod(_check_spacing(self.spacing, len(pair.canon.spatial_shape)))
            self._overlap_sums(pair, out)
        if any(m in SCORES for m in names):
            self._score_sums(pred, target, mask, out, checked=pair is not None)
        if surface:
            p_mask, t_mask, valid = pair.masks()
            dtype = stat_dtype(p_mask.device)
            s = Surfaces(p_mask, t_mask, valid, self.spacing, self.backend, dtype)
            for m in surface:
                out[f"{m}/image_sum"], out[f"{m}/image_count"] = _sum_and_count(
                    surface_values(s, m, names[m]).to(dtype))
        out["images"] = torch.full((1,), float(pred.shape[0]), dtype=stat_dtype(pred.device), device=pred.device)
        return out

    def _overlap_sums(self, pair, out: Dict[str, Tensor]) -> None:
        if pair.num_classes != self.num_classes:
            raise ValueError(f"`pred` must have {self.num_classes} classes (num_classes); got {pair.num_classes}")
        conf, allm = confusion_of_hard(pair, "image")  # [B, C_kept]
        if "dataset" in self.aggregation:
            for k, v in zip(("tp", "fp", "fn", "tn"), conf.as_tuple()):
                out[f"confusion/{k}"] = v.sum(0)
            if "pixel_accuracy" in self.metrics:
                correct, total = self._pa_counts(conf, allm)
                out["pixel_accuracy/correct"], out["pixel_accuracy/total"] = correct.sum(0), total.sum(0)
        if "image" in self.aggregation:
            for m, opts in self.metrics.items():
                if m in OVERLAP:
                    values = self._overlap_values(m, opts, conf, allm)
                    out[f"{m}/image_sum"], out[f"{m}/image_count"] = _sum_and_count(values)

    def _pa_counts(self, conf: Confusion, allm: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
        if self.mode == "multiclass":
            return allm["pg"].sum(1, keepdim=True), allm["n"][:, :1]
        correct, total = conf.tp + conf.tn, conf.tp + conf.fp + conf.fn + conf.tn
        return (correct[:, :1], total[:, :1]) if self.mode == "binary" else (correct, total)

    def _overlap_values(self, m: str, opts, conf: Confusion, allm) -> Tensor:
        if m == "pixel_accuracy":
            acc = pixel_accuracy_from(conf, allm, self.mode, opts["empty"])
            return acc.unsqueeze(1) if acc.dim() == 1 else acc
        if m == "generalized_dice_score":
            return generalized_dice_from(conf, opts["empty"], opts["weight_type"])
        if m == "volume_difference":
            if self._voxel is None:
                raise ValueError("`update` must be called before `compute`: the voxel volume of `spacing` is read "
                                 "from the data; got no update on this process")
            return volume_difference_from(conf, opts["empty"], self._voxel, opts["relative"], opts["signed"])
        if m == "tversky_index":
            return average_classes(tversky_from, conf, opts["average"], opts["empty"], alpha=opts["alpha"],
                                   beta=opts["beta"])
        if m in ("mean_iou", "iou_per_class"):
            return jaccard_from(conf, opts["empty"])
        return average_classes(formula_of(m, opts), conf, opts.get("average"), opts["empty"])

    def _score_sums(self, pred: Tensor, target: Tensor, mask: Optional[Tensor], out: Dict[str, Tensor],
                    checked: bool) -> None:
        scores, g, w = scores_and_targets(
            pred, target, {**self._pair, "mask": mask, "check_values": self.check_values and not checked})
        if scores.shape[1] != self.kept:
            raise ValueError(f"`pred` must have {self.num_classes} classes (num_classes); got {scores.shape[1]}")
        b, c = scores.shape[:2]
        for m, (histograms, keys, exact) in _RANKING.items():
            if m not in self.metrics:
                continue
            opts = self.metrics[m]
            if "dataset" in self.aggregation:
                out[f"{m}/{keys[0]}"], out[f"{m}/{keys[1]}"] = histograms(*score_rows(scores, g, w, "batch"),
                                                                          opts["bins"])
            if "image" in self.aggregation:
                values = exact(*score_rows(scores, g, w, "image"), opts["empty"]).view(b, c)
                out[f"{m}/image_sum"], out[f"{m}/image_count"] = _sum_and_count(values)
        for m in CALIBRATION:
            if m not in self.metrics:
                continue
            opts = self.metrics[m]
            total, per_image = calibration_state(scores, g, w, opts["bins"])
            if "dataset" in self.aggregation:
                out[f"{m}/bins"] = total
            if "image" in self.aggregation:
                values = calibration_from_histograms(per_image, _NORM[m], opts["empty"])
                out[f"{m}/image_sum"], out[f"{m}/image_count"] = _sum_and_count(values)

    def update(self, pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> None:
        """Add one batch: its confusion counts, histograms and per-image values.

        Args:
            pred: probabilities, logits (``from_logits=True``) or a hard prediction, as for
                :func:`seglosses.metrics.dice`.
            target: label map or one-hot target.
            mask: the batch's spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1
                applies to every image), as the functional metrics take it: bool (False
                leaves the pixel out everywhere, exactly as ``ignore_index`` does; both
                combine), or float per-pixel weights (finite, >= 0) that weigh every
                confusion count, histogram and bin. With a surface metric among
                ``metrics`` the mask must be bool (or float 0/1): a surface point is kept
                or dropped (see :func:`seglosses.metrics.hausdorff`).

        Raises:
            ValueError, TypeError: as the functional metrics; a ``mask`` of the wrong
                shape, dtype or values (named ``mask``).
        """
        sums = self.batch_sums(pred, target, mask)
        for k, v in sums.items():
            st = self._state[k]
            if st.device != v.device:
                st = self._state[k] = st.to(v.device)
            st.add_(v.to(st.dtype))

    # ------------------------------------------------------------------ compute

    def _global_state(self) -> Dict[str, Tensor]:
        if not (dist.is_available() and dist.is_initialized()):
            return self.state()
        keys = list(self._shapes)
        flat = torch.cat([self._state[k].reshape(-1) for k in keys])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.process_group)
        out, start = {}, 0
        for k in keys:
            n = math.prod(self._shapes[k])
            out[k] = flat[start:start + n].view(self._shapes[k])
            start += n
        return out

    def compute(self) -> Dict[str, Tensor]:
        """The metrics over everything seen so far (on every process), as a dict of tensors.

        Under an initialised ``torch.distributed`` this is a collective: every process
        must call it; the state itself is not changed.

        Raises:
            ValueError: no image was added (on any process) since construction or the
                last :meth:`reset`: there is nothing to score, and the 0/0 convention
                would report a perfect score.
        """
        return self.finalize(self._global_state())

    def finalize(self, sums: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        """The results from (already reduced) sums; :meth:`compute` = all-reduce + this."""
        _require_images(sums, "compute")
        out: Dict[str, Tensor] = {}
        conf = None
        if "confusion/tp" in sums:
            conf = Confusion(*(sums[f"confusion/{k}"].unsqueeze(0) for k in ("tp", "fp", "fn", "tn")))
        for m, opts in self.metrics.items():
            if "dataset" in self.aggregation and m not in SURFACE_METRICS:
                if m == "average_precision":
                    v = ap_from_histograms(sums["average_precision/positives"], sums["average_precision/pixels"],
                                           opts["empty"])
                elif m == "roc_auc":
                    v = auc_from_histograms(sums["roc_auc/positives"], sums["roc_auc/negatives"], opts["empty"])
                elif m in CALIBRATION:
                    v = calibration_from_histograms(sums[f"{m}/bins"], _NORM[m], opts["empty"])
                elif m == "pixel_accuracy":
                    v = safe_ratio(sums["pixel_accuracy/correct"], sums["pixel_accuracy/total"], opts["empty"])
                else:
                    v = self._overlap_values(m, opts, conf, None)[0]
                out[f"{m}_dataset"] = self._class_reduce(m, v)
            if "image" in self.aggregation or m in SURFACE_METRICS:
                s, n = sums[f"{m}/image_sum"], sums[f"{m}/image_count"]
                v = torch.where(n > 0, s / n.clamp_min(1), torch.full_like(s, math.nan))
                out[f"{m}_image_mean"] = self._class_reduce(m, v)
        return out

    def _class_reduce(self, m: str, v: Tensor) -> Tensor:
        if m == "iou_per_class" or (self.per_class and m != "mean_iou"):
            return v
        return v.nanmean()

    def ap_error_bound(self) -> Tensor:
        """Per-class bound ``[C]`` on ``|exact dataset AP − binned dataset AP|`` (a collective under DDP)."""
        return self._bound("average_precision", average_precision_error_bound, "ap_error_bound")

    def roc_auc_error_bound(self) -> Tensor:
        """Per-class bound ``[C]`` on ``|exact dataset ROC AUC − binned|`` (a collective under DDP)."""
        return self._bound("roc_auc", roc_auc_error_bound, "roc_auc_error_bound")

    def _bound(self, m: str, bound: Callable[[Tensor, Tensor], Tensor], what: str) -> Tensor:
        """``bound`` of the two summed histograms of the ranking metric ``m``."""
        first, second = (f"{m}/{k}" for k in _RANKING[m][1])
        if first not in self._shapes:
            raise ValueError(f"`metrics` must include {m!r} with the 'dataset' aggregation; got none")
        sums = self._global_state()
        _require_images(sums, what)
        return bound(sums[first], sums[second])

    def reliability(self) -> Dict[str, Tensor]:
        """The data set's reliability diagram: per kept class and bin, ``count``, mean ``confidence`` and
        ``accuracy`` ``[C, bins]`` (NaN in empty bins), from the sums of a calibration metric (a
        collective under DDP); see :func:`~seglosses.metrics.calibration_bins`."""
        key = next((f"{m}/bins" for m in CALIBRATION if f"{m}/bins" in self._shapes), None)
        if key is None:
            raise ValueError("`metrics` must include 'expected_calibration_error' or 'maximum_calibration_error' "
                             "with the 'dataset' aggregation; got none")
        sums = self._global_state()
        _require_images(sums, "reliability")
        return reliability_from_histograms(sums[key])

    def __repr__(self) -> str:
        names = ", ".join(self.metrics)
        return (f"SegmentationMetrics([{names}], num_classes={self.num_classes}, mode={self.mode!r}, "
                f"aggregation={self.aggregation})")


def _require_images(sums: Mapping[str, Tensor], what: str) -> None:
    """Refuse to score no data (the 0/0 conventions would report a perfect score)."""
    if not float(sums["images"].sum()) > 0:
        raise ValueError(
            f"`update` must be called before `{what}`: no image was added since the metrics were made or "
            "last reset (on any process); got 0 images"
        )
