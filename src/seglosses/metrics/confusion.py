r"""The confusion-matrix family: every rate and score of the four counts TP, FP, FN, TN.

Each function makes the prediction hard and counts TP, FP, FN, TN per (item, class)
exactly as :mod:`seglosses.metrics.overlap` does (the package's one statistics kernel,
:mod:`seglosses._stats`), then applies its formula; the same formulas serve the
streaming :class:`~seglosses.metrics.SegmentationMetrics` (at the data-set level from the
summed counts). With :math:`TPR = TP/(TP+FN)`, :math:`TNR = TN/(TN+FP)`,
:math:`PPV = TP/(TP+FP)`, :math:`NPV = TN/(TN+FN)`:

* :func:`fbeta_score`: :math:`(1+β^2)TP / ((1+β^2)TP + β^2 FN + FP)`; 0/0: ``empty``;
* :func:`negative_predictive_value`: :math:`NPV`; 0/0: ``empty``;
* :func:`miss_rate`: :math:`FN/(TP+FN) = 1 - TPR`; 0/0: ``1 - empty``;
* :func:`fall_out`: :math:`FP/(TN+FP) = 1 - TNR`; 0/0: ``1 - empty``;
* :func:`false_discovery_rate`: :math:`FP/(TP+FP) = 1 - PPV`; 0/0: ``1 - empty``;
* :func:`false_omission_rate`: :math:`FN/(TN+FN) = 1 - NPV`; 0/0: ``1 - empty``;
* :func:`threat_score`: :math:`TP/(TP+FP+FN)` (critical success index); 0/0: ``empty``;
* :func:`informedness`: :math:`TPR + TNR - 1` (Youden's J); each rate as above;
* :func:`markedness`: :math:`PPV + NPV - 1`; each rate as above;
* :func:`fowlkes_mallows`: :math:`\sqrt{PPV \cdot TPR}`; each rate as above;
* :func:`prevalence_threshold`: :math:`(\sqrt{TPR\,FPR} - FPR)/(TPR - FPR)`; NaN where
  TPR = FPR;
* :func:`matthews_correlation`:
  :math:`(TP\,TN - FP\,FN)/\sqrt{(TP+FP)(TP+FN)(TN+FP)(TN+FN)}`; see there for a zero
  denominator.

Sources: Fawcett 2006, "An introduction to ROC analysis", Pattern Recognit. Lett. 27(8)
(the rates); Matthews 1975, Biochim. Biophys. Acta 405(2) (MCC); van Rijsbergen 1979,
*Information Retrieval* ch. 7 (F-beta); Powers 2011, J. Mach. Learn. Technol. 2(1)
(informedness, markedness); Fowlkes & Mallows 1983, JASA 78(383); Balayla 2020, PLoS ONE
15(10) (prevalence threshold); Schaefer 1990, Weather Forecast. 5(4) (threat score).

A rate's complement (miss rate, fall-out, FDR, FOR) takes ``1 - empty`` at 0/0, so it
always equals one minus its rate (a class absent from prediction and target has
sensitivity 1 and miss rate 0 by default). MONAI's ``ConfusionMatrixMetric`` returns NaN
at every 0/0 (``empty="nan"`` gives that here). :func:`confusion_metric` takes any of the
names (and MONAI's aliases) as a string.
"""
from __future__ import annotations

import math
from typing import Callable, Collection, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import OVERLAP, OverlapKeywords, shared_keywords
from .._options import check_nonnegative, did_you_mean
from .._stats import Confusion, safe_ratio
from .overlap import (
    _ratio_metric,
    balanced_accuracy_from,
    dice_from,
    jaccard_from,
    precision_from,
    sensitivity_from,
    specificity_from,
)

__all__ = [
    "matthews_correlation",
    "fbeta_score",
    "negative_predictive_value",
    "miss_rate",
    "fall_out",
    "false_discovery_rate",
    "false_omission_rate",
    "threat_score",
    "informedness",
    "markedness",
    "fowlkes_mallows",
    "prevalence_threshold",
    "confusion_metric",
    "CONFUSION_ALIASES",
]


# ----------------------------------------------------------------------------- formulas
# Each takes a Confusion (with TN) and returns [I, C] values; shared with the streaming metrics.

def _complement(empty: float) -> float:
    return 1.0 - empty


def npv_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.tn, c.tn + c.fn, empty)


def miss_rate_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.fn, c.tp + c.fn, _complement(empty))


def fall_out_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.fp, c.tn + c.fp, _complement(empty))


def fdr_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.fp, c.tp + c.fp, _complement(empty))


def for_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.fn, c.tn + c.fn, _complement(empty))


def fbeta_from(c: Confusion, empty: float, beta: float = 1.0) -> Tensor:
    b2 = beta * beta
    return safe_ratio((1 + b2) * c.tp, (1 + b2) * c.tp + b2 * c.fn + c.fp, empty)


def informedness_from(c: Confusion, empty: float) -> Tensor:
    return sensitivity_from(c, empty) + specificity_from(c, empty) - 1


def markedness_from(c: Confusion, empty: float) -> Tensor:
    return precision_from(c, empty) + npv_from(c, empty) - 1


def fowlkes_mallows_from(c: Confusion, empty: float) -> Tensor:
    return (precision_from(c, empty) * sensitivity_from(c, empty)).sqrt()


def prevalence_threshold_from(c: Confusion, empty: float) -> Tensor:
    tpr = sensitivity_from(c, empty)
    fpr = fall_out_from(c, empty)
    return safe_ratio((tpr * fpr).sqrt() - fpr, tpr - fpr, math.nan)


def mcc_from(c: Confusion, empty: float) -> Tensor:
    den = ((c.tp + c.fp) * (c.tp + c.fn) * (c.tn + c.fp) * (c.tn + c.fn)).sqrt()
    value = safe_ratio(c.tp * c.tn - c.fp * c.fn, den, 0.0)
    perfect = (den == 0) & (c.fp + c.fn == 0)
    return torch.where(perfect, torch.full_like(value, empty), value)


def accuracy_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.tp + c.tn, c.tp + c.fp + c.fn + c.tn, empty)


#: Formula of every name (ours), ``(confusion, empty, **options) -> [I, C]``.
FORMULAS: Dict[str, Callable[..., Tensor]] = {
    "sensitivity": sensitivity_from, "specificity": specificity_from, "precision": precision_from,
    "negative_predictive_value": npv_from, "miss_rate": miss_rate_from, "fall_out": fall_out_from,
    "false_discovery_rate": fdr_from, "false_omission_rate": for_from,
    "prevalence_threshold": prevalence_threshold_from, "threat_score": jaccard_from, "jaccard": jaccard_from,
    "accuracy": accuracy_from, "balanced_accuracy": balanced_accuracy_from, "fbeta_score": fbeta_from,
    "dice": dice_from, "matthews_correlation": mcc_from, "fowlkes_mallows": fowlkes_mallows_from,
    "informedness": informedness_from, "markedness": markedness_from,
}

#: Other names of the family (MONAI's ``ConfusionMatrixMetric`` names among them) -> ours.
CONFUSION_ALIASES: Dict[str, str] = {
    "recall": "sensitivity", "hit_rate": "sensitivity", "true_positive_rate": "sensitivity", "tpr": "sensitivity",
    "selectivity": "specificity", "true_negative_rate": "specificity", "tnr": "specificity",
    "positive_predictive_value": "precision", "ppv": "precision",
    "npv": "negative_predictive_value",
    "false_negative_rate": "miss_rate", "fnr": "miss_rate",
    "false_positive_rate": "fall_out", "fpr": "fall_out",
    "fdr": "false_discovery_rate", "for": "false_omission_rate",
    "pt": "prevalence_threshold",
    "iou": "jaccard", "critical_success_index": "threat_score", "ts": "threat_score", "csi": "threat_score",
    "acc": "accuracy", "ba": "balanced_accuracy",
    "f1_score": "dice", "f1": "dice", "fbeta": "fbeta_score", "f_beta": "fbeta_score",
    "matthews_correlation_coefficient": "matthews_correlation", "mcc": "matthews_correlation",
    "fowlkes_mallows_index": "fowlkes_mallows", "fm": "fowlkes_mallows",
    "bookmaker_informedness": "informedness", "bm": "informedness", "youden_index": "informedness",
    "youden": "informedness", "deltap": "markedness", "mk": "markedness",
}


def find_name(name: object, names: Collection[str], aliases: Mapping[str, str]) -> Tuple[Optional[str], str]:
    """``(our name, "")`` of a metric name or alias (spaces, hyphens and case as MONAI accepts them),
    or ``(None, hint)`` with the closest known name for the error message."""
    if not isinstance(name, str):
        return None, ""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    key = aliases.get(key, key)
    if key in names:
        return key, ""
    return None, did_you_mean(name, sorted(set(names) | set(aliases)))


def resolve_confusion_name(name: object) -> str:
    """Our name of a confusion-matrix metric (spaces, hyphens and case as MONAI accepts them)."""
    key, hint = find_name(name, FORMULAS, CONFUSION_ALIASES)
    if key is None:
        raise ValueError(f"`metric` must be a confusion-matrix metric ({', '.join(sorted(FORMULAS))} or an alias); "
                         f"got {name!r}{hint}")
    return key


# ----------------------------------------------------------------------------- public


@shared_keywords(OVERLAP)
def matthews_correlation(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Matthews correlation coefficient of a hard prediction (Matthews 1975).

    .. math::
        \mathrm{MCC}_c = \frac{TP_c\,TN_c - FP_c\,FN_c}
                              {\sqrt{(TP_c+FP_c)(TP_c+FN_c)(TN_c+FP_c)(TN_c+FN_c)}}

    Range [-1, 1]: 1 perfect, 0 no better than chance, -1 the opposite labels.

    Convention:
        A zero denominator (a row or column of the confusion matrix is empty) gives
        ``empty`` when the prediction is right everywhere (FP = FN = 0: the class is
        absent from both, or fills every valid pixel of both) and 0 otherwise
        (scikit-learn's ``matthews_corrcoef`` value there). MONAI's
        ``ConfusionMatrixMetric("mcc")`` gives NaN for every zero denominator; all three
        agree wherever the denominator is not 0.

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> # TP = FP = FN = TN = 1: (1 - 1) / 4
        >>> matthews_correlation(p, g)
        tensor(0.)
    """
    return _ratio_metric(mcc_from, input, target, kw)


@shared_keywords(OVERLAP)
def fbeta_score(input: Tensor, target: Tensor, *, beta: float = 1.0, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""F-beta score of a hard prediction (van Rijsbergen 1979): recall weighted β times as much as precision.

    .. math::
        F_{β,c} = \frac{(1+β^2)\,TP_c}{(1+β^2)\,TP_c + β^2\,FN_c + FP_c}
                = \frac{(1+β^2)\,PPV_c\,TPR_c}{β^2\,PPV_c + TPR_c}

    β = 1 is :func:`~seglosses.metrics.dice` (F1), β = 0 precision; β = 2 the F2 score.
    Equals scikit-learn's ``fbeta_score`` and MONAI's ``FBetaScore``; 0/0 takes ``empty``.

    Args:
        beta: the weight β >= 0 of recall.

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 1, 1]])
        >>> # TP = 1, FP = 1, FN = 2, β = 2: 5 / (5 + 8 + 1)
        >>> fbeta_score(p, g, beta=2.0)
        tensor(0.3571)
    """
    beta = check_nonnegative("beta", beta)
    return _ratio_metric(fbeta_from, input, target, kw, beta=beta)


@shared_keywords(OVERLAP)
def negative_predictive_value(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Negative predictive value of a hard prediction: the fraction of predicted negatives that are negative.

    .. math::
        \mathrm{NPV}_c = \frac{TN_c}{TN_c + FN_c}

    Example:
        >>> p = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> negative_predictive_value(p, g)   # TN = 2, FN = 1
        tensor(0.6667)
    """
    return _ratio_metric(npv_from, input, target, kw)


@shared_keywords(OVERLAP)
def miss_rate(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Miss rate (false negative rate) of a hard prediction, ``1 - sensitivity``.

    .. math::
        \mathrm{FNR}_c = \frac{FN_c}{TP_c + FN_c}

    0/0 (no positive pixel) takes ``1 - empty`` (0 by default).

    Example:
        >>> p = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> miss_rate(p, g)   # FN = 1, TP = 1
        tensor(0.5000)
    """
    return _ratio_metric(miss_rate_from, input, target, kw)


@shared_keywords(OVERLAP)
def fall_out(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Fall-out (false positive rate) of a hard prediction, ``1 - specificity``.

    .. math::
        \mathrm{FPR}_c = \frac{FP_c}{TN_c + FP_c}

    0/0 (no negative pixel) takes ``1 - empty`` (0 by default).

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> fall_out(p, g)   # FP = 1, TN = 2
        tensor(0.3333)
    """
    return _ratio_metric(fall_out_from, input, target, kw)


@shared_keywords(OVERLAP)
def false_discovery_rate(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""False discovery rate of a hard prediction, ``1 - precision``.

    .. math::
        \mathrm{FDR}_c = \frac{FP_c}{TP_c + FP_c}

    0/0 (nothing predicted) takes ``1 - empty`` (0 by default).

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> false_discovery_rate(p, g)   # FP = 2, TP = 1
        tensor(0.6667)
    """
    return _ratio_metric(fdr_from, input, target, kw)


@shared_keywords(OVERLAP)
def false_omission_rate(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""False omission rate of a hard prediction, ``1 - NPV``.

    .. math::
        \mathrm{FOR}_c = \frac{FN_c}{TN_c + FN_c}

    0/0 (everything predicted positive) takes ``1 - empty`` (0 by default).

    Example:
        >>> p = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 1, 0, 0]])
        >>> false_omission_rate(p, g)   # FN = 1, TN = 2
        tensor(0.3333)
    """
    return _ratio_metric(for_from, input, target, kw)


@shared_keywords(OVERLAP)
def threat_score(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Threat score (critical success index) of a hard prediction (Schaefer 1990); the Jaccard index.

    .. math::
        \mathrm{TS}_c = \frac{TP_c}{TP_c + FP_c + FN_c}

    The same value as :func:`~seglosses.metrics.jaccard`, under the name MONAI and the
    forecasting literature use.

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> threat_score(p, g)
        tensor(0.3333)
    """
    return _ratio_metric(jaccard_from, input, target, kw)


@shared_keywords(OVERLAP)
def informedness(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Informedness (Youden's J, bookmaker informedness; Powers 2011) of a hard prediction.

    .. math::
        \mathrm{BM}_c = TPR_c + TNR_c - 1

    Range [-1, 1]; ``2 * balanced_accuracy - 1``. Each rate takes ``empty`` at 0/0.

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> informedness(p, g)   # 1 + 2/3 - 1
        tensor(0.6667)
    """
    return _ratio_metric(informedness_from, input, target, kw)


@shared_keywords(OVERLAP)
def markedness(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Markedness (Δp; Powers 2011) of a hard prediction.

    .. math::
        \mathrm{MK}_c = PPV_c + NPV_c - 1

    Range [-1, 1]. Each predictive value takes ``empty`` at 0/0.

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> markedness(p, g)   # 1/2 + 2/2 - 1
        tensor(0.5000)
    """
    return _ratio_metric(markedness_from, input, target, kw)


@shared_keywords(OVERLAP)
def fowlkes_mallows(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Fowlkes-Mallows index (Fowlkes & Mallows 1983) of a hard prediction: the geometric mean of PPV and TPR.

    .. math::
        \mathrm{FM}_c = \sqrt{PPV_c \cdot TPR_c} = \frac{TP_c}{\sqrt{(TP_c + FP_c)(TP_c + FN_c)}}

    Each rate takes ``empty`` at 0/0. (scikit-learn's ``fowlkes_mallows_score`` is a
    clustering index over pairs of samples, a different quantity.)

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> fowlkes_mallows(p, g)   # sqrt(1/2 * 1)
        tensor(0.7071)
    """
    return _ratio_metric(fowlkes_mallows_from, input, target, kw)


@shared_keywords(OVERLAP)
def prevalence_threshold(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Prevalence threshold (Balayla 2020) of a hard prediction.

    .. math::
        \mathrm{PT}_c = \frac{\sqrt{TPR_c\,FPR_c} - FPR_c}{TPR_c - FPR_c}

    the prevalence below which the positive predictive value drops fast (lower is
    better; 0 for TPR = 1 or FPR = 0, e.g. a perfect prediction). The rates take
    ``empty`` / ``1 - empty`` at 0/0.

    Convention:
        ``TPR = FPR`` (a prediction no better than chance, J = 0) leaves PT undefined:
        NaN, left out of ``reduction="mean"`` (MONAI gives NaN there too).

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> # TPR = 1/2, FPR = 1/2: undefined
        >>> prevalence_threshold(p, g)
        tensor(nan)
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> prevalence_threshold(p, g)   # TPR = 1, FPR = 1/3: (sqrt(1/3) - 1/3) / (2/3)
        tensor(0.3660)
    """
    return _ratio_metric(prevalence_threshold_from, input, target, kw)


@shared_keywords(OVERLAP)
def confusion_metric(input: Tensor, target: Tensor, *, metric: str, beta: float = 1.0,
                     **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Any metric of the confusion-matrix family by name (MONAI's ``ConfusionMatrixMetric`` names accepted).

    .. math::
        M_c = f_{\text{metric}}(TP_c, FP_c, FN_c, TN_c)

    ``metric`` is one of the functions of this module or of
    :mod:`seglosses.metrics.overlap` (``"sensitivity"``, ``"specificity"``, ``"precision"``,
    ``"balanced_accuracy"``, ``"dice"``) or ``"accuracy"`` (per class, one against the
    rest: :math:`(TP_c + TN_c)/n`), or an alias: MONAI's names (``"recall"``,
    ``"hit_rate"``, ``"fnr"``, ``"critical success index"``, ``"f1 score"``, ``"mcc"``,
    ``"youden_index"``, ``"deltap"``, ...; spaces, hyphens and case as MONAI accepts them).

    Args:
        metric: the name.
        beta: the β of ``"fbeta_score"`` (ignored by the others).

    Raises:
        ValueError: an unknown ``metric`` (with the closest name); as :func:`dice`.

    Example:
        >>> p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> g = torch.tensor([[1, 0, 0, 0]])
        >>> confusion_metric(p, g, metric="false positive rate")   # FP = 1, TN = 2
        tensor(0.3333)
    """
    name = resolve_confusion_name(metric)
    if name == "fbeta_score":
        return fbeta_score(input, target, beta=beta, **kw)
    return _ratio_metric(FORMULAS[name], input, target, kw)


def formula_of(name: str, opts: Optional[Dict[str, object]] = None) -> Callable[[Confusion, float], Tensor]:
    """``(confusion, empty) -> [I, C]`` of a metric of :data:`FORMULAS` with its options bound."""
    f = FORMULAS[name]
    if name == "fbeta_score":
        beta = float((opts or {}).get("beta", 1.0))  # type: ignore[arg-type]
        return lambda c, empty: fbeta_from(c, empty, beta)
    return f
