"""Region losses: formulas over the soft confusion statistics of :mod:`seglosses._stats`.

Every function here takes ``(input, target)``, its own parameters and the shared
keyword arguments of :data:`seglosses._arguments.REGION` (``**kw``), computes the moments it needs with the one
statistics kernel, and applies its formula per (item, class), where an item is an
image (``domain="image"``) or the whole batch (``domain="batch"``, seed 000
section 2.1: "substituting a whole batch of images" into the index).

Sources: seed 000 = Hidy, "The Tversky loss function and its modifications for
medical image segmentation" (2022); seed 001 = Ma, "Segmentation Loss Odyssey" (2020).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from contextvars import ContextVar
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import REGION, RegionKeywords, shared_keywords
from .._inputs import Canonical, canonicalize, check_class_weights
from .._options import check_fraction, check_nonnegative, check_positive, lookup_option
from .._reduce import reduce_items, reduce_per_item
from .._stats import (
    _compiling,
    compute_dtype,
    confusion_from_moments,
    confusion_names,
    moments,
    over_domain,
    safe_ratio,
)
from ..distributed import resolve_sync

__all__ = [
    "dice_loss",
    "iou_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "asymmetric_similarity_loss",
    "generalized_dice_loss",
    "penalty_generalized_dice_loss",
    "sensitivity_specificity_loss",
    "log_cosh_dice_loss",
]

_SHARED: ContextVar[Optional[Dict[tuple, Any]]] = ContextVar("seglosses_shared_statistics", default=None)


@contextlib.contextmanager
def shared_statistics() -> Iterator[None]:
    """Within the block, region losses called on the same ``(input, target)`` objects
    share their canonicalisation and value checks (one pass and one host sync for all)
    and, when they ask for the same moments with the same domain and ``sync``, one
    statistics pass. :class:`~seglosses.WeightedSum` calls its terms inside it.

    Example:
        >>> x, g = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
        >>> with shared_statistics():
        ...     a = dice_loss(x, g, mode="multiclass")
        ...     b = tversky_loss(x, g, mode="multiclass", alpha=0.5, beta=0.5, smooth=5e-6)
        >>> bool(torch.allclose(a, b))
        True
    """
    if _compiling():  # a traced graph shares its work by itself; dynamo cannot trace ContextVar
        yield
        return
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def region_moments(input: Tensor, target: Tensor, names: Sequence[str],
                   kw: RegionKeywords) -> Tuple[Dict[str, Tensor], Canonical]:
    """Canonicalise the pair and compute the named moments over the domain.

    ``kw["sync"]`` (see :func:`seglosses.distributed.resolve_sync`) is applied to the
    domain moments before they are returned: the one synchronisation point of the
    region losses. Inside :func:`shared_statistics` the canonical pair and the moments
    are reused across calls.
    """
    # under torch.compile the cache is not consulted (dynamo cannot trace ContextVar.get)
    cache = None if _compiling() else _SHARED.get()
    if cache is None:
        return _region_moments(_canonical(input, target, kw), names, kw)
    ckey = (id(input), id(target), kw["mode"], kw["from_logits"], kw["include_background"], kw["ignore_index"],
            kw["check_values"], id(kw["mask"]), kw["label_smoothing"])
    sync = kw["sync"]
    mkey = ckey + (tuple(names), kw["domain"], sync if sync is None or isinstance(sync, str) else id(sync))
    if mkey not in cache:
        held = cache.get(ckey)
        canon = held[2] if held is not None else _canonical(input, target, kw)
        cache[mkey] = _region_moments(canon, names, kw)
        # the deferred value checks ran with that pass: later passes skip them
        cache[ckey] = (input, target, dataclasses.replace(canon, pending_check=None))
    return cache[mkey]


def _canonical(input: Tensor, target: Tensor, kw: RegionKeywords) -> Canonical:
    eps = check_fraction("label_smoothing", kw["label_smoothing"], open_high=True)
    canon = canonicalize(
        input, target, mode=kw["mode"], from_logits=kw["from_logits"],
        include_background=kw["include_background"], ignore_index=kw["ignore_index"],
        check_values=kw["check_values"], defer_checks=True, mask=kw["mask"],
    )
    return smoothed(canon, eps) if eps > 0 else canon


def smoothed(canon: Canonical, eps: float) -> Canonical:
    r"""The canonical pair with the target smoothed: :math:`(1 - ε) g + ε / K`.

    K is the number of classes in multiclass mode and 2 for a binary or multilabel
    channel (a Bernoulli pair), as :func:`seglosses.functional.label_smoothing` does. A
    label map becomes a dense target; ignored pixels stay out through ``valid``.
    """
    g = canon.dense if canon.dense is not None else canon.dense_target(compute_dtype(canon.x.dtype))
    k = canon.num_channels if canon.mode == "multiclass" else 2
    return dataclasses.replace(canon, labels=None, dense=(1 - eps) * g + eps / k)


def _region_moments(canon: Canonical, names: Sequence[str], kw: RegionKeywords
                    ) -> Tuple[Dict[str, Tensor], Canonical]:
    domain = kw["domain"]
    hook = resolve_sync(kw["sync"], domain)
    m = over_domain(moments(canon, names), domain)
    return (m if hook is None else hook(m, domain)), canon


def finish(values: Tensor, kw: RegionKeywords) -> Tensor:
    """Apply class weights and the reduction to ``[I, C]`` loss values."""
    w = check_class_weights(kw.get("class_weights"), values.shape[1], values)
    return reduce_items(values, kw["reduction"], w, domain=kw["domain"])


def tversky_index(tp: Tensor, fp: Tensor, fn: Tensor, alpha: float, beta: float, smooth: float) -> Tensor:
    r""":math:`(TP + δ) / (TP + αFP + βFN + δ)`, seed 000 eq. 3 (0/0 taken as 1)."""
    return safe_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)


#: floor of the index under ``log_loss=True`` (segmentation_models_pytorch's ``eps``)
LOG_FLOOR = 1e-7


def index_loss(index: Tensor, log_loss: bool) -> Tensor:
    r"""The loss of an index in [0, 1]: :math:`1 - I`, or :math:`-\log \max(I, 10^{-7})` with ``log_loss``."""
    return -torch.log(index.clamp_min(LOG_FLOOR)) if log_loss else 1 - index


def _lin(terms: Sequence[Tuple[float, Tensor]], smooth: float) -> Tensor:
    """``Σ w t + smooth`` with as few operations as the weights allow (a weight 0 drops
    its term, a weight 1 its product): the ``[I, C]`` formulas run on tiny tensors, where
    each operation (and its autograd node) costs more than the arithmetic."""
    out: Optional[Tensor] = None
    for w, t in terms:
        if w == 0:
            continue
        t = t if w == 1 else t * w
        out = t if out is None else out + t
    if out is None:  # every weight 0 (e.g. alpha = beta = 0 with only FP/FN terms)
        out = torch.zeros_like(terms[0][1])
    return out + smooth if smooth else out


def _ratio(num: Tensor, den: Tensor, smooth: float) -> Tensor:
    """``num / den`` for an index whose sums are >= 0: a plain division when ``smooth > 0``
    (the denominator is then > 0), else :func:`safe_ratio` (0/0 taken as 1)."""
    return num / den if smooth > 0 else safe_ratio(num, den)


def _index_from_moments(m: Dict[str, Tensor], alpha: float, beta: float, smooth: float) -> Tensor:
    r"""The Tversky index from the moments ``p, g, pg`` (standard form), with
    :math:`TP + αFP + βFN = α Σp + β Σg + (1 - α - β) Σpg`: the fewest ``[I, C]`` operations."""
    num = _lin([(1.0, m["pg"])], smooth)
    den = _lin([(alpha, m["p"]), (beta, m["g"]), (1.0 - alpha - beta, m["pg"])], smooth)
    return _ratio(num, den, smooth)


def _check_ab(alpha, beta):
    return check_nonnegative("alpha", alpha), check_nonnegative("beta", beta)


def _tversky_values(input: Tensor, target: Tensor, alpha: float, beta: float, soft_form: bool,
                    kw: RegionKeywords) -> Tensor:
    smooth = check_nonnegative("smooth", kw["smooth"])
    m, _ = region_moments(input, target, confusion_names(soft_form, False), kw)
    if not soft_form:
        return _index_from_moments(m, alpha, beta, smooth)
    c = confusion_from_moments(m, soft_form=soft_form)
    return tversky_index(c.tp, c.fp, c.fn, alpha, beta, smooth)


@shared_keywords(REGION)
def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    soft_form: bool = False,
    log_loss: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Tversky loss (Salehi et al. 2017; seed 000 eqs. 2-4, seed 001 eq. 10).

    .. math::
        \mathcal{T}_{α,β} = \frac{TP + δ}{TP + α\,FP + β\,FN + δ},\qquad
        L = 1 - \mathcal{T}_{α,β}

    with the soft statistics TP = Σ p g, FP = Σ p (1 − g), FN = Σ (1 − p) g per
    (item, class). α weighs false positives and β false negatives; α = β = ½ is the
    Dice index (``dice_loss`` with ``smooth`` = 2δ) and α = β = 1 the Jaccard index
    (``iou_loss``, same δ). Range [0, 1], minimum 0 at ``p = g`` for hard targets.

    Args:
        alpha: weight of FP (>= 0). Default 0.3, beta: weight of FN (>= 0). Default 0.7
            (the setting Salehi et al. found best for lesions).
        soft_form: build TP from Σp, Σg, Σ|p−g| (TP = (Σp + Σg − Σ|p−g|)/2), equal to the
            standard form for hard targets and minimised at ``p = g`` for soft targets
            (label smoothing); the standard form keeps its optimum at {0, 1} (seed 000
            Claim 1).
        log_loss: return :math:`-\log I` per (item, class) instead of :math:`1 - I`, with
            the index I floored at 1e-7 (segmentation_models_pytorch's ``log_loss=True``).
            Range [0, 16.2]; same minimiser, a steeper gradient far from it.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # TP = 1, FP = 1, FN = 1: T = 1 / (1 + 0.3 + 0.7) = 0.5
        >>> float(tversky_loss(p, g, from_logits=False, smooth=0.0))
        0.5
    """
    alpha, beta = _check_ab(alpha, beta)
    return finish(index_loss(_tversky_values(input, target, alpha, beta, soft_form, kw), log_loss), kw)


@shared_keywords(REGION)
def dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    squared_denominator: bool = False,
    soft_form: bool = False,
    log_loss: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Soft Dice loss (Milletari et al. 2016; seed 001 eq. 8; seed 004).

    .. math::
        D = \frac{2\,TP + δ}{2\,TP + FP + FN + δ} = \frac{2 \sum p g + δ}{\sum p + \sum g + δ},
        \qquad L = 1 - D

    per (item, class). With ``squared_denominator=True`` the denominator is
    :math:`\sum p^2 + \sum g^2 + δ` as in seed 001 eq. 8 (V-Net); seed 000 uses the plain
    sums. ``smooth`` enters as in MONAI's ``DiceLoss(smooth_nr=δ, smooth_dr=δ)``;
    ``tversky_loss(alpha=0.5, beta=0.5, smooth=δ)`` equals ``dice_loss(smooth=2δ)``.
    Range [0, 1], minimum 0 at ``p = g`` (hard targets; soft targets too with
    ``soft_form=True`` or ``squared_denominator=True``).

    Args:
        squared_denominator: use Σp² + Σg² in the denominator (seed 001 eq. 8).
        soft_form: TP = (Σp + Σg − Σ|p−g|)/2, see :func:`tversky_loss`.
        log_loss: return :math:`-\log I` per (item, class) instead of :math:`1 - I`, with
            the index I floored at 1e-7 (segmentation_models_pytorch's ``log_loss=True``).
            Range [0, 16.2]; same minimiser, a steeper gradient far from it.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # 2TP = 2, Σp + Σg = 4: D = 0.5
        >>> float(dice_loss(p, g, from_logits=False, smooth=0.0))
        0.5
    """
    smooth = check_nonnegative("smooth", kw["smooth"])
    if squared_denominator and soft_form:
        raise ValueError("`soft_form` must be False when `squared_denominator` is True (the squared form "
                         "already has its optimum at p = g for soft targets); got both True")
    if squared_denominator:
        m, _ = region_moments(input, target, ("pg", "pp", "gg"), kw)
        d = safe_ratio(2 * m["pg"] + smooth, m["pp"] + m["gg"] + smooth)
    else:
        m, _ = region_moments(input, target, confusion_names(soft_form, False), kw)
        if soft_form:  # 2TP + FP + FN = Σp + Σg in either form
            c = confusion_from_moments(m, soft_form=soft_form)
            d = _ratio(_lin([(2.0, c.tp)], smooth), _lin([(1.0, m["p"]), (1.0, m["g"])], smooth), smooth)
        elif smooth > 0 and not log_loss:
            return finish(_dice_loss_values(m, smooth), kw)
        else:
            d = _ratio(_lin([(2.0, m["pg"])], smooth), _lin([(1.0, m["p"]), (1.0, m["g"])], smooth), smooth)
    return finish(index_loss(d, log_loss), kw)


def _dice_loss_values(m: Dict[str, Tensor], smooth: float) -> Tensor:
    r""":math:`1 - D = (Σp + Σg - 2Σpg) / (Σp + Σg + δ)` for ``δ > 0``: the same value as
    ``1 - (2Σpg + δ) / (Σp + Σg + δ)`` in four ``[I, C]`` operations instead of six (on
    small inputs each operation and its autograd node costs more than the arithmetic)."""
    total = m["p"] + m["g"]
    return torch.sub(total, m["pg"], alpha=2) / (total + smooth)


@shared_keywords(REGION)
def iou_loss(
    input: Tensor,
    target: Tensor,
    *,
    soft_form: bool = False,
    log_loss: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Soft IoU (Jaccard) loss (Rahman & Wang 2016; seed 001 eq. 9; seed 004).

    .. math::
        J = \frac{TP + δ}{TP + FP + FN + δ} = \frac{\sum pg + δ}{\sum (p + g - pg) + δ},
        \qquad L = 1 - J

    equal to ``tversky_loss(alpha=1, beta=1)`` with the same δ. Range [0, 1], minimum 0
    at ``p = g``.

    Args:
        soft_form: TP = (Σp + Σg − Σ|p−g|)/2, see :func:`tversky_loss`.
        log_loss: return :math:`-\log I` per (item, class) instead of :math:`1 - I`, with
            the index I floored at 1e-7 (segmentation_models_pytorch's ``log_loss=True``).
            Range [0, 16.2]; same minimiser, a steeper gradient far from it.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # TP = 1, FP = 1, FN = 1: J = 1/3
        >>> round(float(iou_loss(p, g, from_logits=False, smooth=0.0)), 4)
        0.6667
    """
    return finish(index_loss(_tversky_values(input, target, 1.0, 1.0, soft_form, kw), log_loss), kw)


jaccard_loss = iou_loss


@shared_keywords(REGION)
def focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 4.0 / 3.0,
    soft_form: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Focal Tversky loss (Abraham & Khan 2018; seed 001 eq. 12).

    .. math::
        L_c = (1 - \mathcal{T}_{α,β,c})^{1/γ}

    per (item, class), then the (weighted) mean: the exponent is 1/γ and it is applied
    per class before the mean, as the paper writes it (segmentation_models_pytorch
    applies γ after the class mean instead). γ in [1, 3] in the paper; γ = 1 is the
    Tversky loss. Range [0, 1], minimum 0 at ``p = g``. For γ > 1 the derivative grows
    without bound as the index approaches 1; the base is clamped at 1e-12 to keep the
    gradient finite.

    Args:
        alpha, beta: as in :func:`tversky_loss`.
        gamma: focal exponent γ > 0 (the loss uses 1/γ). Default 4/3 as in the paper.
    """
    alpha, beta = _check_ab(alpha, beta)
    gamma = check_positive("gamma", gamma)
    t = _tversky_values(input, target, alpha, beta, soft_form, kw)
    return finish((1 - t).clamp_min(1e-12) ** (1.0 / gamma), kw)


@shared_keywords(REGION)
def asymmetric_similarity_loss(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = 1.5,
    soft_form: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Asymmetric similarity loss (Hashemi et al. 2019; seed 001 eq. 13).

    .. math::
        F_β = \frac{TP + δ}{TP + \frac{β^2}{1+β^2} FN + \frac{1}{1+β^2} FP + δ},\qquad L = 1 - F_β

    the F_β score, i.e. the Tversky loss with α = 1/(1+β²) (FP) and β' = β²/(1+β²)
    (FN), α + β' = 1. β > 1 weighs false negatives more. Range [0, 1].

    Args:
        beta: the F_β parameter (>= 0), default 1.5 as in the paper.
    """
    b = check_nonnegative("beta", beta)
    a_fp, b_fn = 1.0 / (1.0 + b * b), b * b / (1.0 + b * b)
    return finish(1 - _tversky_values(input, target, a_fp, b_fn, soft_form, kw), kw)


GDL_WEIGHTS = ("square", "simple", "uniform")


def _gdl_values(input: Tensor, target: Tensor, weight_type: str, soft_form: bool, kw: RegionKeywords) -> Tensor:
    smooth = check_nonnegative("smooth", kw["smooth"])
    weight_type = lookup_option("weight_type", weight_type, GDL_WEIGHTS)
    m, _ = region_moments(input, target, confusion_names(soft_form, False), kw)
    c = confusion_from_moments(m, soft_form=soft_form)
    vol = m["g"]  # (differentiable: a soft target that requires grad gets the weights' share too)
    if weight_type == "uniform":
        w = torch.ones_like(vol)
    else:
        power = 2 if weight_type == "square" else 1
        # guard for classes absent from the target (infinite weight): they take the
        # largest finite weight of their item; an item with no class present uses 1.
        # (double where: the infinite weights are never formed, so no NaN gradient)
        inf = torch.isinf(1.0 / vol.detach() ** power)
        w = 1.0 / torch.where(inf, torch.ones_like(vol), vol) ** power
        finite = torch.where(inf, torch.zeros_like(w), w)
        wmax = finite.amax(dim=1, keepdim=True)
        wmax = torch.where(wmax > 0, wmax, torch.ones_like(wmax))
        w = torch.where(inf, wmax.expand_as(w), w)
    num = 2 * (w * c.tp).sum(1) + smooth
    den = (w * (2 * c.tp + c.fp + c.fn)).sum(1) + smooth
    return 1 - safe_ratio(num, den)


@shared_keywords(REGION, defaults={"mode": "multiclass"}, without=("class_weights",))
def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight_type: str = "square",
    soft_form: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Generalised Dice loss (Sudre et al. 2017; seed 001 eq. 11).

    .. math::
        L = 1 - \frac{2 \sum_c w_c \sum_i g_{ic} p_{ic} + δ}{\sum_c w_c \sum_i (g_{ic} + p_{ic}) + δ},
        \qquad w_c = \frac{1}{(\sum_i g_{ic})^2}

    one value per item (classes are summed inside the ratio). The weights are constants
    (no gradient), computed per item (per image, or over the batch for
    ``domain="batch"``).

    Convention:
        Guard for absent classes: a class with Σg = 0 would get an infinite weight; it
        takes the largest finite weight of its item instead (as MONAI does). An item in
        which no kept class is present uses weight 1 for every class, so that false
        positives on an empty target still give a loss and a gradient (MONAI gives
        weight 0 and loss 0 there).

    Args:
        weight_type: ``"square"`` (1/(Σg)², the paper), ``"simple"`` (1/Σg) or
            ``"uniform"`` (1).

    ``reduction="none"`` gives ``[B]`` (image domain) or a 0-dim tensor (batch domain).
    """
    v = _gdl_values(input, target, weight_type, soft_form, kw)
    return reduce_per_item(v, kw["reduction"], domain=kw["domain"])


@shared_keywords(REGION, defaults={"mode": "multiclass"}, without=("class_weights",))
def penalty_generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    k: float = 2.5,
    weight_type: str = "square",
    soft_form: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Penalty generalised Dice loss (Su et al. 2019; seed 001 eq. 14).

    .. math::
        L_{pGD} = \frac{L_{GD}}{1 + k\,(1 - L_{GD})}

    with :math:`L_{GD}` the generalised Dice loss of :func:`generalized_dice_loss`.
    ``k = 0`` gives the generalised Dice loss; ``k > 0`` weighs FP and FN more. Range
    [0, 1], minimum 0 at ``p = g``.

    Args:
        k: non-negative penalty coefficient (default 2.5, the paper's setting).
    """
    k = check_nonnegative("k", k)
    v = _gdl_values(input, target, weight_type, soft_form, kw)
    return reduce_per_item(v / (1 + k * (1 - v)), kw["reduction"], domain=kw["domain"])


@shared_keywords(REGION)
def sensitivity_specificity_loss(
    input: Tensor,
    target: Tensor,
    *,
    w: float = 0.05,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Sensitivity-specificity loss (Brosch et al. 2015; seed 001 eq. 7).

    .. math::
        L = w \frac{\sum (g - p)^2 g}{\sum g + ε} + (1 - w) \frac{\sum (g - p)^2 (1 - g)}{\sum (1 - g) + ε}

    per (item, class): the mean squared error over the positives (sensitivity term)
    and over the negatives (specificity term). Here ε is ``smooth``, added to the
    denominators only, as in the paper. Range [0, 1], minimum 0 at ``p = g``.

    Args:
        w: weight of the sensitivity term in [0, 1]; the paper's 0.05 weighs
            specificity higher.
    """
    w = check_fraction("w", w)
    smooth = check_nonnegative("smooth", kw["smooth"])
    m, _ = region_moments(input, target, ("g", "gg", "ggg", "pg", "pgg", "pp", "ppg", "n"), kw)
    # Σ(g - p)² g = Σg³ - 2Σpg² + Σp²g ;  Σ(g - p)² = Σg² - 2Σpg + Σp²
    sens_num = m["ggg"] - 2 * m["pgg"] + m["ppg"]
    spec_num = (m["gg"] - 2 * m["pg"] + m["pp"]) - sens_num
    sens = safe_ratio(sens_num, m["g"] + smooth, empty=0.0)
    spec = safe_ratio(spec_num, (m["n"] - m["g"]) + smooth, empty=0.0)
    return finish(w * sens + (1 - w) * spec, kw)


@shared_keywords(REGION)
def log_cosh_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    soft_form: bool = False,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Log-cosh Dice loss (Jadon 2020, "A survey of loss functions for semantic segmentation").

    .. math::
        L = \log\cosh\big(1 - D\big),\qquad D = \frac{2\,TP + δ}{2\,TP + FP + FN + δ}

    per (item, class), then the (weighted) class mean. :math:`\log\cosh x ≈ x^2/2` near 0
    and :math:`≈ |x| - \log 2` far from it: a smoothed Dice loss. Range
    [0, log cosh 1 ≈ 0.4338], minimum 0 at ``p = g``.

    Convention:
        Jadon applies log-cosh to the Dice loss of the whole prediction; here it is
        applied per (item, class) before the class mean, like every region loss (the
        two agree in binary mode and for one class).

    Args:
        soft_form: TP = (Σp + Σg − Σ|p−g|)/2, see :func:`tversky_loss`.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # D = 0.5: log cosh 0.5 = 0.1201
        >>> round(float(log_cosh_dice_loss(p, g, from_logits=False, smooth=0.0)), 4)
        0.1201
    """
    smooth = check_nonnegative("smooth", kw["smooth"])
    m, _ = region_moments(input, target, confusion_names(soft_form, False), kw)
    c = confusion_from_moments(m, soft_form=soft_form)
    x = 1 - safe_ratio(2 * c.tp + smooth, 2 * c.tp + c.fp + c.fn + smooth)
    # log cosh x = x + log1p(exp(-2x)) - log 2, stable for every x
    return finish(x + torch.nn.functional.softplus(-2 * x) - math.log(2.0), kw)
