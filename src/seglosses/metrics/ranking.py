r"""Average precision: the area under the precision-recall curve of the raw scores.

Seed 000 (section 3, "Metrics") reports the "average precision score [...] the area
under the precision-recall curve", computed "on the raw output" (not thresholded).
With the pixels ranked by decreasing score and grouped by equal score (one threshold
per distinct score, as scikit-learn's ``average_precision_score``):

.. math::
    \mathrm{AP} = \sum_n (R_n - R_{n-1})\,P_n
                = \frac{1}{P} \sum_{i} g_i\,\frac{TP(s_i)}{N(s_i)}

where :math:`R_n`, :math:`P_n` are recall and precision at the n-th threshold,
:math:`P = \sum_i g_i` the number of positives, and :math:`TP(s)`, :math:`N(s)` the
positives and the pixels with score :math:`\ge s`. The exact value sorts the scores;
the *binned* value replaces each score by the lower edge of its bin of width
``1/bins`` and needs only two histograms per class, which can be summed over batches
and processes (the streaming metric uses it).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._arguments import SCORES, ScoreKeywords, shared_keywords
from .._inputs import canonicalize
from .._options import lookup_option
from .._reduce import reduce_items
from ._hard import check_empty, stat_dtype
from .overlap import out_dtype

__all__ = ["average_precision", "average_precision_error_bound", "roc_auc", "roc_auc_error_bound"]

DOMAINS = ("image", "batch")


def scores_and_targets(input: Tensor, target: Tensor, kw: Mapping[str, Any]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Scores ``[B, C, N]`` (probabilities), targets and weights ``[B, C, N]``/``[B, 1, N]`` in float64.

    ``kw`` holds the keywords of :data:`~seglosses._arguments.SCORES` that describe the
    pair (``mode``, ``from_logits``, ``include_background``, ``ignore_index``,
    ``check_values``, ``mask``).
    """
    canon = canonicalize(
        input, target, mode=kw["mode"], from_logits=kw["from_logits"], include_background=kw["include_background"],
        ignore_index=kw["ignore_index"], check_values=kw["check_values"], mask=kw.get("mask"),
    )
    dtype = stat_dtype(canon.x.device)
    scores = canon.probs(torch.float64 if dtype == torch.float64 else torch.float32)
    c = canon.num_channels
    if canon.labels is not None:
        classes = torch.arange(c, device=scores.device).view(1, c, 1)
        g = (canon.labels.unsqueeze(1) == classes).to(dtype)
    else:
        g = canon.dense.to(dtype)
    w = None if canon.valid is None else canon.valid.to(dtype).unsqueeze(1)
    first = canon.first_class
    return scores[:, first:], g[:, first:], w


def rows_of(t: Optional[Tensor], domain: str, like: Tensor) -> Tensor:
    """``[B, C, N]`` -> rows ``[B*C, N]`` (image domain) or ``[C, B*N]`` (batch domain)."""
    if t is None:
        t = torch.ones((), dtype=like.dtype, device=like.device).expand(like.shape[0], 1, like.shape[2])
    t = t.expand(like.shape[0], like.shape[1], like.shape[2])
    if domain == "image":
        return t.reshape(-1, t.shape[-1])
    return t.permute(1, 0, 2).reshape(t.shape[1], -1)


def score_rows(scores: Tensor, g: Tensor, w: Optional[Tensor], domain: str) -> Tuple[Tensor, Tensor, Tensor]:
    """The rows (:func:`rows_of`) of scores, targets and weights, the weights in the targets' dtype."""
    return rows_of(scores, domain, scores), rows_of(g, domain, scores), rows_of(w, domain, g).to(g.dtype)


def check_bins(bins: object, optional: bool = False) -> Optional[int]:
    """``bins``: an int >= 1 (or ``None`` where ``optional``)."""
    if bins is None and optional:
        return None
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"`bins` must be {'None or ' if optional else ''}an int >= 1; got {bins!r}")
    return bins


#: the values of the rows of one score metric: ``(scores, targets, weights, bins, empty) -> [R]``
RowValues = Callable[[Tensor, Tensor, Tensor, Optional[int], float], Tensor]


def score_metric(input: Tensor, target: Tensor, kw: ScoreKeywords, row_values: RowValues,
                 bins_optional: bool = True) -> Tensor:
    """The body of every score metric: check the options, score the pair, form the rows of the
    domain, compute ``row_values`` of each row and reduce the ``[B, C]`` / ``[1, C]`` values."""
    domain = lookup_option("domain", kw["domain"], DOMAINS)
    empty_value: float = check_empty("empty", kw["empty"])
    bins = check_bins(kw["bins"], bins_optional)
    scores, g, w = scores_and_targets(input, target, kw)
    b, c = scores.shape[:2]
    values = row_values(*score_rows(scores, g, w, domain), bins, empty_value)
    values = values.view(b, c) if domain == "image" else values.view(1, c)
    return reduce_items(values, kw["reduction"], domain=domain, skip_nan=True).to(out_dtype(input))


def exact_ap_rows(scores: Tensor, g: Tensor, w: Tensor, empty: float) -> Tensor:
    """Exact AP of each row of ``[R, M]`` scores (ties grouped, as scikit-learn), no loop over rows."""
    s, order = scores.sort(dim=-1, descending=True)
    gs = g.gather(-1, order)
    ws = w.gather(-1, order)
    pos = gs * ws
    ctp = pos.cumsum(-1)
    cnt = ws.cumsum(-1)
    m = s.shape[-1]
    # index of the last element of each tie group: the smallest j >= k where s[j] != s[j+1]
    idx = torch.arange(m, device=s.device).expand_as(s)
    is_end = torch.ones_like(s, dtype=torch.bool)
    is_end[..., :-1] = s[..., :-1] != s[..., 1:]
    ends = torch.where(is_end, idx, torch.full_like(idx, m))
    ends = ends.flip(-1).cummin(-1).values.flip(-1)
    prec = ctp.gather(-1, ends) / cnt.gather(-1, ends).clamp_min(torch.finfo(cnt.dtype).tiny)
    total = pos.sum(-1)
    ap = (pos * prec).sum(-1)
    zero = total == 0
    return torch.where(zero, torch.full_like(ap, empty), ap / torch.where(zero, torch.ones_like(total), total))


def ap_histograms(scores: Tensor, g: Tensor, w: Tensor, bins: int) -> Tuple[Tensor, Tensor]:
    """Per-row histograms ``[R, bins]`` of the positives and of all (valid) pixels.

    A score ``s`` in [0, 1] falls into bin ``min(floor(s * bins), bins - 1)``.
    """
    idx = (scores * bins).floor_().clamp_(0, bins - 1).long()
    zeros = torch.zeros(scores.shape[0], bins, dtype=g.dtype, device=scores.device)
    return zeros.scatter_add(1, idx, g * w), zeros.scatter_add(1, idx, w.expand_as(g).contiguous())


def ap_from_histograms(pos: Tensor, tot: Tensor, empty: float) -> Tensor:
    """Binned AP of each row: every bin is one tie group, bins in decreasing order of score."""
    pos_d = pos.flip(-1)
    ctp = pos_d.cumsum(-1)
    cnt = tot.flip(-1).cumsum(-1)
    prec = ctp / cnt.clamp_min(torch.finfo(cnt.dtype).tiny)
    total = pos.sum(-1)
    ap = (pos_d * prec).sum(-1)
    zero = total == 0
    return torch.where(zero, torch.full_like(ap, empty), ap / torch.where(zero, torch.ones_like(total), total))


def average_precision_error_bound(pos: Tensor, tot: Tensor) -> Tensor:
    r"""A bound on ``|AP_exact - AP_binned|`` from the two histograms alone.

    In decreasing order of score, let bin ``b`` hold ``n`` pixels of which ``t`` are
    positive, after ``N_0`` pixels and ``T_0`` positives of higher bins. Whatever the
    order of the scores inside the bin (ties included), its k-th positive has a precision
    between :math:`(T_0+k)/(N_0+n-t+k)` (all its negatives before it) and
    :math:`(T_0+t)/(N_0+t)`; the binned value gives all of them :math:`(T_0+t)/(N_0+n)`,
    which lies in between. Hence

    .. math::
        |\mathrm{AP} - \mathrm{AP}_{\text{bins}}| \le \frac1P \sum_b
        \max\Big(U_b - V_b,\; V_b - L_b\Big),\quad
        U_b = \frac{t(T_0+t)}{N_0+t},\ V_b = \frac{t(T_0+t)}{N_0+n},\
        L_b = \sum_{k=1}^{t}\frac{T_0+k}{A+k}

    with :math:`A = N_0+n-t` and :math:`L_b = t - (A-T_0)(\psi(A+t+1)-\psi(A+1))`
    (ψ the digamma function). The bound is 0 when every bin holds one distinct score or
    only positives or only negatives; it shrinks as ``bins`` grows. Valid for hard
    (0/1) targets.

    Args:
        pos: ``[..., bins]`` positives per bin (bin 0 = lowest scores).
        tot: ``[..., bins]`` valid pixels per bin.

    Returns:
        ``[...]`` the bound per row (0 where there is no positive).

    Example:
        >>> # scores 0.1 (negative) and 0.15 (positive) share bin 0 of 2
        >>> average_precision_error_bound(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]))
        tensor(0.5000)
    """
    pos_d = pos.flip(-1).double()
    tot_d = tot.flip(-1).double()
    t0 = pos_d.cumsum(-1) - pos_d
    n0 = tot_d.cumsum(-1) - tot_d
    t, n = pos_d, tot_d
    safe = lambda x: x.clamp_min(1e-300)  # noqa: E731  (terms with t = 0 are masked below)
    upper = t * (t0 + t) / safe(n0 + t)
    value = t * (t0 + t) / safe(n0 + n)
    a = n0 + n - t
    lower = t - (a - t0) * (torch.digamma(a + t + 1) - torch.digamma(a + 1))
    gap = torch.where(t > 0, torch.maximum(upper - value, value - lower), torch.zeros_like(t))
    total = pos_d.sum(-1)
    bound = gap.sum(-1) / torch.where(total > 0, total, torch.ones_like(total))
    return bound.clamp_min(0).to(pos.dtype if pos.is_floating_point() else torch.float64)


@shared_keywords(SCORES, defaults={"empty": 1.0})
def average_precision(input: Tensor, target: Tensor, **kw: Unpack[ScoreKeywords]) -> Tensor:
    r"""Average precision of the scores, per image and class or over the batch (seed 000 section 3).

    .. math::
        \mathrm{AP}_c = \sum_n (R_n - R_{n-1})\,P_n
                      = \frac{1}{P_c} \sum_i g_{ic}\,\frac{TP_c(s_{ic})}{N_c(s_{ic})}

    over the pixels of one image (``domain="image"``) or of the whole batch
    (``domain="batch"``), one class against the rest: :math:`R_n, P_n` are recall and
    precision when the pixels with score :math:`\ge` the n-th largest distinct score are
    called positive, :math:`TP_c(s)` and :math:`N_c(s)` count the positives and all
    pixels with score :math:`\ge s`. This is scikit-learn's ``average_precision_score``
    (step-wise, no interpolation; equal scores share one threshold). Scores are the
    probabilities: the sigmoid (or, in multiclass mode, the softmax) of logits with
    ``from_logits=True``. The value is a ranking statistic: no threshold is applied.

    With ``bins`` (an int), each score :math:`s` is replaced by
    :math:`\lfloor s \cdot \text{bins}\rfloor/\text{bins}` (the top bin includes 1) and
    the AP of these quantised scores is computed from two histograms per class (O(bins)
    memory, summable across batches and processes). The error against the exact value
    is bounded by :func:`average_precision_error_bound` of the histograms; it is 0 when
    no bin holds two different scores of opposite labels.

    Convention:
        A class without positive pixels has no precision-recall curve: its AP is
        ``empty`` (1.0 by default, the package's 0/0 = 1; ``"nan"`` on request, then
        left out of ``reduction="mean"``). scikit-learn returns 0 there, with a warning.
        Ignored pixels (``ignore_index``) are left out of the ranking. A soft target
        counts fractionally.

    Example:
        >>> s = torch.tensor([[[0.9, 0.8, 0.3, 0.1]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> # ranks: +, -, +, -: precision 1/1 at the first positive, 2/3 at the second
        >>> average_precision(s, g)   # (1 + 2/3) / 2
        tensor(0.8333)
        >>> average_precision(s, g, bins=2)   # bins: {0.3, 0.1} and {0.9, 0.8}: (1/2 + 2/4) / 2
        tensor(0.5000)
    """
    return score_metric(input, target, kw, ranking_rows(exact_ap_rows, ap_histograms, ap_from_histograms))


def ranking_rows(exact: Callable[..., Tensor], histograms: Callable[..., Tuple[Tensor, Tensor]],
                 from_histograms: Callable[..., Tensor]) -> RowValues:
    """The row values of a ranking metric: ``exact`` (``bins=None``), or ``from_histograms`` of its ``histograms``."""

    def rows(rs: Tensor, rg: Tensor, rw: Tensor, bins: Optional[int], empty: float) -> Tensor:
        if bins is None:
            return exact(rs, rg, rw, empty)
        return from_histograms(*histograms(rs, rg, rw, bins), empty)

    return rows


# ----------------------------------------------------------------------------- ROC AUC


def exact_auc_rows(scores: Tensor, g: Tensor, w: Tensor, empty: float) -> Tensor:
    """Exact ROC AUC of each row of ``[R, M]`` scores (ties count one half, as scikit-learn), no loop over rows.

    In increasing order of score, a positive's share is the negatives strictly below it
    plus half the negatives of its tie group: ``(neg_before_group + neg_through_group) / 2``.
    """
    s, order = scores.sort(dim=-1)
    pos = (g * w).gather(-1, order)
    neg = ((1 - g) * w).gather(-1, order)
    cneg = neg.cumsum(-1)
    m = s.shape[-1]
    idx = torch.arange(m, device=s.device).expand_as(s)
    is_end = torch.ones_like(s, dtype=torch.bool)
    is_end[..., :-1] = s[..., :-1] != s[..., 1:]
    is_start = torch.ones_like(s, dtype=torch.bool)
    is_start[..., 1:] = is_end[..., :-1]
    ends = torch.where(is_end, idx, torch.full_like(idx, m)).flip(-1).cummin(-1).values.flip(-1)
    starts = torch.where(is_start, idx, torch.full_like(idx, -1)).cummax(-1).values
    through = cneg.gather(-1, ends)
    before = (cneg - neg).gather(-1, starts)
    area = (pos * (before + through)).sum(-1) / 2
    return _auc_ratio(area, pos.sum(-1), neg.sum(-1), empty)


def _auc_ratio(area: Tensor, n_pos: Tensor, n_neg: Tensor, empty: float) -> Tensor:
    den = n_pos * n_neg
    zero = den == 0
    return torch.where(zero, torch.full_like(area, empty), area / torch.where(zero, torch.ones_like(den), den))


def auc_histograms(scores: Tensor, g: Tensor, w: Tensor, bins: int) -> Tuple[Tensor, Tensor]:
    """Per-row histograms ``[R, bins]`` of the positives and of the negatives (bins as :func:`ap_histograms`)."""
    idx = (scores * bins).floor_().clamp_(0, bins - 1).long()
    zeros = torch.zeros(scores.shape[0], bins, dtype=g.dtype, device=scores.device)
    return zeros.scatter_add(1, idx, g * w), zeros.scatter_add(1, idx, (1 - g) * w)


def auc_from_histograms(pos: Tensor, neg: Tensor, empty: float) -> Tensor:
    """Binned ROC AUC of each row: every bin is one tie group (a pair in one bin counts one half)."""
    cneg = neg.cumsum(-1)
    area = (pos * (2 * cneg - neg)).sum(-1) / 2
    return _auc_ratio(area, pos.sum(-1), neg.sum(-1), empty)


def roc_auc_error_bound(pos: Tensor, neg: Tensor) -> Tensor:
    r"""A bound on ``|AUC_exact - AUC_binned|`` from the two histograms alone.

    Pairs of a positive and a negative in different bins are ordered the same way by
    the exact and the binned scores. A pair inside one bin counts 1/2 in the binned
    value and 0, 1/2 or 1 in the exact one, hence

    .. math::

        \lvert \mathrm{AUC} - \mathrm{AUC}_{\text{bins}} \rvert \le \frac{\sum_b t_b\, f_b}{2\,P\,N}

    with :math:`t_b`, :math:`f_b` the positives and negatives of bin ``b`` and
    :math:`P`, :math:`N` their totals. 0 when no bin holds both a positive and a
    negative. Valid for hard (0/1) targets.

    Args:
        pos: ``[..., bins]`` positives per bin.
        neg: ``[..., bins]`` negatives per bin.

    Returns:
        ``[...]`` the bound per row (0 where there is no positive or no negative).

    Example:
        >>> # one positive and one negative share bin 1; one negative alone in bin 0
        >>> roc_auc_error_bound(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))
        tensor(0.2500)
    """
    p, n = pos.double(), neg.double()
    den = p.sum(-1) * n.sum(-1)
    bound = (p * n).sum(-1) / (2 * torch.where(den > 0, den, torch.ones_like(den)))
    return torch.where(den > 0, bound, torch.zeros_like(bound)).to(
        pos.dtype if pos.is_floating_point() else torch.float64)


@shared_keywords(SCORES)
def roc_auc(input: Tensor, target: Tensor, **kw: Unpack[ScoreKeywords]) -> Tensor:
    r"""Area under the ROC curve of the scores, per image and class or over the batch (Hanley & McNeil 1982).

    .. math::

        \mathrm{AUC}_c = \frac{1}{P_c N_c} \sum_{i:\,g_{ic}=1}\ \sum_{j:\,g_{jc}=0}
        \Big([s_{ic} > s_{jc}] + \tfrac12 [s_{ic} = s_{jc}]\Big)

    the probability that a positive pixel scores above a negative one (ties count one
    half): the trapezoidal area under the curve of true against false positive rate over
    every threshold, scikit-learn's ``roc_auc_score`` (per class, one against the rest).
    Exact by sorting; with ``bins`` (an int) each score becomes the lower edge of its bin
    of width ``1/bins`` (the top bin includes 1), and the value comes from two histograms
    per class (summable over batches and processes; the streaming metric's form), within
    :func:`roc_auc_error_bound` of the exact value. Scores are the probabilities (sigmoid
    or softmax of logits with ``from_logits=True``); no threshold is applied.

    Convention:
        A class without positive or without negative pixels has no ROC curve: its AUC is
        ``empty``, NaN by default (left out of ``reduction="mean"``; scikit-learn raises
        an error there, MONAI's ``compute_roc_auc`` returns NaN). Ignored pixels leave
        the ranking; a soft target counts a pixel as ``g`` positive and ``1 - g``
        negative.

    Example:
        >>> s = torch.tensor([[[0.9, 0.8, 0.3, 0.1]]])
        >>> g = torch.tensor([[1, 0, 1, 0]])
        >>> # pairs (positive, negative): (0.9, 0.8) (0.9, 0.1) (0.3, 0.1) right, (0.3, 0.8) wrong
        >>> roc_auc(s, g)
        tensor(0.7500)
        >>> roc_auc(s, g, bins=2)   # bins {0.1, 0.3} and {0.8, 0.9}: (1/2 + 1 + 0 + 1/2) / 4
        tensor(0.5000)
    """
    return score_metric(input, target, kw, ranking_rows(exact_auc_rows, auc_histograms, auc_from_histograms))
