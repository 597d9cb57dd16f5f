r"""Calibration of the probabilities: expected and maximum calibration error per class, reliability bins.

A probability is calibrated when, among the pixels given probability ``q`` for a
class, a fraction ``q`` belongs to it. The scores of a class (one against the rest) are
put into ``bins`` equal bins of [0, 1]; bin ``b`` holds :math:`n_b` pixels with mean
probability :math:`\bar q_b` (the *confidence*) and fraction :math:`\bar g_b` of them in
the class (the *accuracy*). Then (Naeini et al. 2015, AAAI; Guo et al. 2017, ICML,
section 2)

.. math::
    \mathrm{ECE}_c = \sum_b \frac{n_b}{n}\,\big|\bar g_b - \bar q_b\big|,\qquad
    \mathrm{MCE}_c = \max_{b:\,n_b > 0} \big|\bar g_b - \bar q_b\big|.

Everything comes from three sums per bin (pixels, probabilities, targets), so the
values of a data set follow from sums over its batches and processes (the streaming
:class:`~seglosses.metrics.SegmentationMetrics` keeps them), and the same sums draw a
reliability diagram (:func:`calibration_bins`).

Binning: a score ``s`` falls into bin :math:`\min(\lfloor s \cdot \text{bins}\rfloor,
\text{bins} - 1)`: bins are closed on the left and the top bin includes 1 (the bins
of :func:`~seglosses.metrics.average_precision`). MONAI's ``calibration_binning``
closes its bins on the right instead, torchmetrics gives a score of exactly 1 a bin of
its own; the three agree for every score that is not a bin edge. Per class: MONAI's
``CalibrationErrorMetric`` (``calibration_reduction="expected"`` / ``"maximum"``),
and torchmetrics' ``binary_calibration_error`` (``norm="l1"`` / ``"max"``) on each
class; torchmetrics' multiclass form scores only the top-1 class of each pixel, a
different quantity.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._arguments import SCORES, ScoreKeywords, shared_keywords
from .ranking import RowValues, check_bins, score_metric, score_rows, scores_and_targets

__all__ = ["expected_calibration_error", "maximum_calibration_error", "calibration_bins"]

NORMS = ("expected", "maximum")


def calibration_histograms(scores: Tensor, g: Tensor, w: Tensor, bins: int) -> Tensor:
    """Per-row sums ``[R, 3, bins]``: valid pixels, their probabilities and their targets per bin."""
    idx = (scores * bins).floor().clamp_(0, bins - 1).long()
    w = w.expand_as(g)
    out = torch.zeros(scores.shape[0], 3, bins, dtype=g.dtype, device=scores.device)
    out[:, 0].scatter_add_(1, idx, w.contiguous())
    out[:, 1].scatter_add_(1, idx, scores.to(g.dtype) * w)
    out[:, 2].scatter_add_(1, idx, g * w)
    return out


def calibration_from_histograms(sums: Tensor, norm: str, empty: float) -> Tensor:
    """ECE (``norm="expected"``) or MCE (``"maximum"``) of each row of ``[..., 3, bins]`` sums."""
    count, conf, acc = sums.unbind(-2)
    total = count.sum(-1)
    if norm == "expected":
        value = (conf - acc).abs().sum(-1) / torch.where(total > 0, total, torch.ones_like(total))
    else:
        gap = (conf - acc).abs() / torch.where(count > 0, count, torch.ones_like(count))
        value = torch.where(count > 0, gap, torch.zeros_like(gap)).amax(-1)
    return torch.where(total > 0, value, torch.full_like(value, empty))


def _norm_rows(norm: str) -> RowValues:
    """The calibration error ``norm`` of each row of scores, targets and weights."""

    def rows(rs: Tensor, rg: Tensor, rw: Tensor, bins: Optional[int], empty: float) -> Tensor:
        return calibration_from_histograms(calibration_histograms(rs, rg, rw, bins), norm, empty)

    return rows


@shared_keywords(SCORES, defaults={"bins": 15})
def expected_calibration_error(input: Tensor, target: Tensor, **kw: Unpack[ScoreKeywords]) -> Tensor:
    r"""Expected calibration error of the probabilities of each class (Naeini et al. 2015; Guo et al. 2017 eq. 3).

    .. math::
        \mathrm{ECE}_c = \sum_{b=1}^{\text{bins}} \frac{n_{bc}}{n}\,
            \big|\bar g_{bc} - \bar q_{bc}\big|
        = \frac1n \sum_b \Big|\sum_{i \in b} (g_{ic} - q_{ic})\Big|

    over the valid pixels of one image (``domain="image"``) or of the batch
    (``domain="batch"``), with the bins of the module docstring (15 by default, as Guo et
    al. and torchmetrics; MONAI's default is 20). Range [0, 1], 0 for calibrated
    probabilities. Per class, one against the rest: the probability of class ``c``
    against the indicator of ``c`` (binary mode: the foreground).

    Convention:
        An item without valid pixels has no calibration: ``empty`` (NaN by default, left
        out of ``reduction="mean"``). Ignored pixels count nowhere; a soft target counts
        fractionally.

    Example:
        >>> q = torch.tensor([[[0.9, 0.9, 0.2, 0.2]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> # bin [0.8, 1): confidence 0.9, accuracy 1/2; bin [0.2, 0.4): 0.2 and 0
        >>> expected_calibration_error(q, g, bins=5)   # (2 * 0.4 + 2 * 0.2) / 4
        tensor(0.3000)
    """
    return score_metric(input, target, kw, _norm_rows("expected"), bins_optional=False)


@shared_keywords(SCORES, defaults={"bins": 15})
def maximum_calibration_error(input: Tensor, target: Tensor, **kw: Unpack[ScoreKeywords]) -> Tensor:
    r"""Maximum calibration error of the probabilities of each class (Naeini et al. 2015; Guo et al. 2017 eq. 5).

    .. math::
        \mathrm{MCE}_c = \max_{b:\,n_{bc} > 0} \big|\bar g_{bc} - \bar q_{bc}\big|

    the largest gap between accuracy and confidence over the non-empty bins; arguments,
    bins and conventions as :func:`expected_calibration_error`. Range [0, 1].

    Example:
        >>> q = torch.tensor([[[0.9, 0.9, 0.2, 0.2]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> maximum_calibration_error(q, g, bins=5)   # max(|1/2 - 0.9|, |0 - 0.2|)
        tensor(0.4000)
    """
    return score_metric(input, target, kw, _norm_rows("maximum"), bins_optional=False)


def reliability_from_histograms(sums: Tensor) -> Dict[str, Tensor]:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` (NaN in empty bins) of ``[..., 3, bins]`` sums."""
    count, conf, acc = sums.unbind(-2)
    safe = torch.where(count > 0, count, torch.ones_like(count))
    nan = torch.full_like(count, math.nan)
    return {"count": count, "confidence": torch.where(count > 0, conf / safe, nan),
            "accuracy": torch.where(count > 0, acc / safe, nan)}


@shared_keywords(SCORES, defaults={"bins": 15}, without=("domain", "reduction", "empty"))
def calibration_bins(input: Tensor, target: Tensor, **kw: Unpack[ScoreKeywords]) -> Dict[str, Tensor]:
    r"""The reliability diagram of the batch: per class and bin, the pixels, mean probability and accuracy.

    .. math::
        n_{bc} = \sum_{i \in b} w_i,\quad \bar q_{bc} = \frac{1}{n_{bc}}\sum_{i \in b} w_i q_{ic},\quad
        \bar g_{bc} = \frac{1}{n_{bc}}\sum_{i \in b} w_i g_{ic}

    over every valid pixel of the batch (the bins of :func:`expected_calibration_error`).
    A calibrated class has :math:`\bar g_{bc} = \bar q_{bc}` in every bin.

    Returns:
        ``{"count", "confidence", "accuracy"}``, each ``[C, bins]`` (the kept classes);
        the means are NaN in empty bins.

    Example:
        >>> q = torch.tensor([[[0.9, 0.9, 0.2, 0.2]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> calibration_bins(q, g, bins=2)["accuracy"]
        tensor([[0.0000, 0.5000]], dtype=torch.float64)
    """
    bins = check_bins(kw["bins"])
    scores, g, w = scores_and_targets(input, target, kw)
    return reliability_from_histograms(calibration_histograms(*score_rows(scores, g, w, "batch"), bins))


def calibration_state(scores: Tensor, g: Tensor, w: Optional[Tensor], bins: int) -> Tuple[Tensor, Tensor]:
    """Sums ``[C, 3, bins]`` over the batch and per image ``[B, C, 3, bins]`` (for the streaming metrics)."""
    b, c = scores.shape[:2]
    per_image = calibration_histograms(*score_rows(scores, g, w, "image"), bins).view(b, c, 3, bins)
    return per_image.sum(0), per_image
