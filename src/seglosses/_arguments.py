"""The keyword arguments shared by families of losses and metrics, defined once.

A family (the region losses, the overlap metrics) has one table of shared keywords:
their types (a ``TypedDict``, so that ``**kw: Unpack[RegionKeywords]`` in a signature
tells type checkers and editors every name and type), their defaults and their docs.
:func:`shared_keywords` turns a function written as

.. code-block:: python

    @shared_keywords(REGION)
    def dice_loss(input, target, *, squared_denominator=False, **kw: Unpack[RegionKeywords]):
        ...  # kw holds every shared keyword, defaults filled in

into the public function: the missing shared keywords get their defaults, unknown
ones raise ``TypeError`` with the closest name, ``inspect.signature`` (``help()``, the
loss modules' constructors, :func:`seglosses.build_loss`) lists every keyword with its
default, and the docstring gets the shared arguments' docs. :func:`with_docs` is the
one place that inserts a docs block into a docstring.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from torch import Tensor
from typing_extensions import TypedDict

from ._options import did_you_mean

F = TypeVar("F", bound=Callable[..., Any])


def with_docs(block: str) -> Callable[[F], F]:
    """Insert ``block`` (indented docstring text) before the docstring's ``Example:``."""

    def deco(fn: F) -> F:
        head, sep, tail = (fn.__doc__ or "").partition("    Example:")
        fn.__doc__ = head.rstrip() + "\n\n" + block.rstrip() + "\n" + ("\n" + sep + tail if sep else "")
        return fn

    return deco


@dataclass(frozen=True)
class Family:
    """The shared keywords of a family: defaults (in signature order), docs, notes."""

    name: str
    defaults: Mapping[str, Any]
    annotations: Mapping[str, str]
    docs: Mapping[str, str]
    notes: str = ""
    head: Tuple[str, ...] = field(default=("input", "target"))
    returns: str = ""
    raises: str = ""

    def block(self, names: Sequence[str], head: Optional[Sequence[str]] = None, doc: str = "") -> str:
        """The docs of ``head`` (default :attr:`head`) and ``names``, the notes, and the family's
        ``Returns:`` / ``Raises:`` sections where ``doc`` has none of its own."""
        lines = ["    Common args:"]
        for n in list(self.head if head is None else head) + [n for n in self.defaults if n in names]:
            lines.append(f"        {n}: {self.docs[n]}")
        out = "\n".join(lines) + ("\n\n" + self.notes.rstrip() if self.notes else "")
        for title, text in (("Returns", self.returns), ("Raises", self.raises)):
            if text and f"    {title}:" not in doc:
                out += f"\n\n    {title}:\n        " + text.strip()
        return out


def shared_keywords(family: Family, *, defaults: Optional[Mapping[str, Any]] = None,
                    without: Sequence[str] = ()) -> Callable[[F], F]:
    """Make ``fn(input, target, *, own..., **kw)`` the public function of ``family``.

    Args:
        family: the table of shared keywords.
        defaults: the function's own defaults of some shared keywords (e.g. ``mode``).
        without: shared keywords the function does not take.
    """
    for key in list(defaults or {}) + list(without):
        if key not in family.defaults:
            raise ValueError(f"`defaults`/`without` must name keywords of {family.name!r}; got {key!r}")
    shared = {k: v for k, v in {**family.defaults, **(defaults or {})}.items() if k not in without}

    def deco(fn: F) -> F:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        clash = [p.name for p in own if p.name in shared]
        if clash:
            raise ValueError(f"`{fn.__name__}` must not restate the shared keywords {clash}")
        extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=family.annotations[k])
                 for k, v in shared.items()]
        own_names = {p.name for p in own if p.kind is p.KEYWORD_ONLY}
        valid = [p.name for p in own if p.kind is p.KEYWORD_ONLY] + list(shared)

        @functools.wraps(fn)
        def public(*args: Any, **kwargs: Any) -> Any:
            for key in kwargs:
                if key not in shared and key not in own_names:
                    raise TypeError(f"{fn.__name__}() got an unexpected keyword argument {key!r}"
                                    f"{did_you_mean(key, valid)}")
            return fn(*args, **{**shared, **kwargs})

        public.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        public.shared_defaults = shared  # type: ignore[attr-defined]  # the family's, with the function's own
        head = [p.name for p in own if p.kind is not p.KEYWORD_ONLY and p.name in family.docs]
        with_docs(family.block(list(shared), head, fn.__doc__ or ""))(public)
        return public  # type: ignore[return-value]

    return deco


# --------------------------------------------------------------------------- region losses

_CONVENTION_REGION = """    Convention:
        Empty masks: with ``smooth > 0`` a class absent from target and prediction has
        index 1 (loss 0) and a false positive on an empty target gives a loss that
        grows with FP and a non-zero gradient. With ``smooth = 0`` a 0/0 index is
        taken as 1 with zero gradient. A dense (soft) target that requires grad gets the
        exact gradient of the loss (the statistics are sums; see :mod:`seglosses._stats`)."""


class RegionKeywords(TypedDict, total=False):
    """The shared keywords of the region losses (:data:`REGION`)."""

    mode: str
    from_logits: bool
    domain: str
    smooth: float
    include_background: bool
    ignore_index: Optional[int]
    class_weights: Optional[Sequence[float]]
    label_smoothing: float
    reduction: str
    check_values: bool
    sync: object
    mask: Optional[Tensor]


REGION = Family(
    "region losses",
    defaults=dict(mode="binary", from_logits=True, domain="image", smooth=1e-5, include_background=True,
                  ignore_index=None, class_weights=None, label_smoothing=0.0, reduction="mean", check_values=True,
                  sync=None, mask=None),
    annotations=dict(mode="str", from_logits="bool", domain="str", smooth="float", include_background="bool",
                     ignore_index="Optional[int]", class_weights="Optional[Sequence[float]]",
                     label_smoothing="float", reduction="str", check_values="bool", sync="object",
                     mask="Optional[Tensor]"),
    docs=dict(
        input="""prediction ``[B, C, *S]`` (2D, 3D or any number of spatial dims): logits
            (``from_logits=True``, the default) or probabilities.""",
        target="""label map ``[B, *S]`` (integer), or ``[B, C, *S]`` one-hot / soft labels
            (float); binary mode also takes ``[B, *S]`` / ``[B, 1, *S]`` float probabilities.""",
        mode="""``"binary"`` (1 channel), ``"multiclass"`` (softmax over C) or
            ``"multilabel"`` (C independent sigmoids).""",
        from_logits="apply sigmoid (binary, multilabel) or softmax (multiclass) first.",
        domain="""``"image"``: one index per image, then averaged; ``"batch"``: one index
            over the whole batch (seed 000 section 2.1; MONAI calls this ``batch=True``,
            smp the absence of its ``-imagewise`` suffix).""",
        smooth="the δ of seed 000 eq. 3, added to numerator and denominator.",
        include_background="""keep channel 0 (multiclass, multilabel). Binary mode always
            scores its single (foreground) channel.""",
        ignore_index="target value whose pixels leave every statistic.",
        class_weights="""one weight per kept class; the class mean becomes
            ``Σ w_c L_c / Σ w_c``.""",
        label_smoothing="""ε in [0, 1): train on smoothed targets
            :math:`(1 - ε) g + ε/K` (K = C classes in multiclass mode, K = 2 for each
            binary or multilabel channel; :func:`seglosses.functional.label_smoothing`).
            A label map becomes a dense target (memory ``[B, C, *S]``). With the standard
            statistics the optimum stays at {0, 1} (seed 000 Claim 1); ``soft_form=True``
            moves it to the smoothed target.""",
        reduction="""``"mean"``, ``"sum"`` or ``"none"`` (``[B, C]`` in the image domain,
            ``[C]`` in the batch domain).""",
        check_values="""check label range, probability range and finiteness (one pass
            over the data and a device sync); shapes and dtypes are always checked.""",
        sync="""``None``; or, with ``domain="batch"``, ``"distributed"`` (or a
            ``torch.distributed`` process group) to sum the batch statistics over all
            processes, with autograd, before the formula: every rank gets the loss of the
            global batch and DDP's gradient averaging gives its exact gradient (see
            :mod:`seglosses.distributed`; the identity without a process group).""",
        mask="""spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1 applies to every
            image): bool (False leaves the pixel out, as ``ignore_index`` does; both
            combine) or float per-pixel weights (finite, >= 0) that weigh every sum.""",
    ),
    notes=_CONVENTION_REGION,
)


# --------------------------------------------------------------------------- overlap metrics


class _HardPairKeywords(TypedDict, total=False):
    """The keywords that make a metric's prediction hard and describe its pair (overlap, surface)."""

    mode: str
    from_logits: bool
    threshold: float
    num_classes: Optional[int]
    include_background: bool
    ignore_index: Optional[int]


class OverlapKeywords(_HardPairKeywords, total=False):
    """The shared keywords of the overlap metrics (:data:`OVERLAP`)."""

    domain: str
    reduction: str
    empty: Union[float, str]
    average: Optional[str]
    check_values: bool
    mask: Optional[Tensor]


OVERLAP = Family(
    "overlap metrics",
    defaults=dict(mode="binary", from_logits=False, threshold=0.5, num_classes=None, include_background=True,
                  ignore_index=None, domain="image", reduction="mean", empty=1.0, average=None,
                  check_values=True, mask=None),
    annotations=dict(mode="str", from_logits="bool", threshold="float", num_classes="Optional[int]",
                     include_background="bool", ignore_index="Optional[int]", domain="str", reduction="str",
                     empty="float | str", average="Optional[str]", check_values="bool", mask="Optional[Tensor]"),
    docs=dict(
        input="""the prediction: probabilities (``from_logits=False``, the default), logits
            (``from_logits=True``) or a hard prediction (integer or bool: ``[B, *S]`` /
            ``[B, 1, *S]`` in {0, 1} for binary, a label map ``[B, *S]`` for multiclass,
            ``[B, C, *S]`` in {0, 1} for multilabel). ``S`` is any number of spatial dims.""",
        target="""label map ``[B, *S]`` (integer), or ``[B, C, *S]`` one-hot (float);
            binary mode also takes ``[B, 1, *S]`` and float {0, 1} targets.""",
        mode="""``"binary"``, ``"multiclass"`` or ``"multilabel"``.""",
        from_logits="the float prediction is logits (sigmoid, or softmax in multiclass mode).",
        threshold="""binary and multilabel probabilities are positive where ``p >= threshold``;
            multiclass predictions take the arg-max over classes (``threshold`` unused).""",
        num_classes="""the number of classes of a multiclass label-map prediction (read from
            the channels of a float prediction, or from a one-hot target, otherwise).""",
        include_background="""keep channel 0 (multiclass, multilabel); binary mode always
            scores its single foreground channel.""",
        ignore_index="target value whose pixels leave every count.",
        domain="""``"image"``: one value per image and class; ``"batch"``: the counts are
            summed over the batch first, one value per class (the data-set-level value
            when the batch is the data set).""",
        reduction="""``"mean"`` (NaN values left out), ``"sum"`` or ``"none"`` (``[B, C]``
            for ``domain="image"``, ``[C]`` for ``domain="batch"``).""",
        empty="""the value of a 0/0 ratio (a class absent from prediction and target):
            ``1.0`` (seed 003: "the convention that 0/0 = 1") or ``"nan"`` (MONAI's
            ``ignore_empty``; NaN values are then left out of ``reduction="mean"``).""",
        average="""``None`` (one value per class, reduced by ``reduction``) or how the
            classes of an item are combined into one value (scikit-learn's and torchmetrics'
            ``average``): ``"macro"`` (the mean of the per-class values, NaN left out),
            ``"micro"`` (the counts summed over the classes first, then the formula) or
            ``"weighted"`` (the per-class values weighted by their support ``TP + FN``;
            NaN when the item has no positive pixel). ``reduction`` then acts on the
            items: ``"none"`` gives ``[B]`` (image domain) or a 0-dim value (batch
            domain).""",
        check_values="""check label ranges, probability range and finiteness (one pass over
            the data and a device sync); shapes and dtypes are always checked.""",
        mask="""spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1 applies to every
            image): bool (False leaves the pixel out, as ``ignore_index`` does; both
            combine) or float per-pixel weights (finite, >= 0) that weigh every sum.""",
    ),
    notes="""    Convention:
        A ratio whose denominator is 0 takes ``empty``; no other value is special. An
        ignored pixel counts nowhere; a class absent from an image is scored for that
        image (e.g. a false positive on an empty target gives Dice 0).""",
    returns="""The reduced value, or ``[B, C]`` / ``[C]`` values with ``reduction="none"``.""",
    raises="""ValueError: mismatched shapes, labels out of range, probabilities outside [0, 1],
            NaN/Inf, an empty batch, an unknown option (see :func:`~seglosses._inputs.canonicalize`).
        TypeError: a float label-map target, an integer one-hot target in multiclass mode,
            non-tensor arguments.""",
)

# --------------------------------------------------------------------------- boundary losses


class BoundaryKeywords(TypedDict, total=False):
    """The shared keywords of the boundary (distance- and morphology-based) losses (:data:`BOUNDARY`)."""

    mode: str
    from_logits: bool
    domain: str
    include_background: Optional[bool]
    ignore_index: Optional[int]
    spacing: Optional[Union[float, Sequence[float]]]
    class_weights: Optional[Sequence[float]]
    reduction: str
    check_values: bool
    mask: Optional[Tensor]


BOUNDARY = Family(
    "boundary losses",
    defaults=dict(mode="binary", from_logits=True, domain="image", include_background=None, ignore_index=None,
                  spacing=None, class_weights=None, reduction="mean", check_values=True, mask=None),
    annotations=dict(mode="str", from_logits="bool", domain="str", include_background="Optional[bool]",
                     ignore_index="Optional[int]", spacing="Optional[float | Sequence[float]]",
                     class_weights="Optional[Sequence[float]]", reduction="str", check_values="bool",
                     mask="Optional[Tensor]"),
    docs=dict(
        input="""prediction ``[B, C, *S]`` (2D, 3D or any number of spatial dims): logits
            (``from_logits=True``, the default) or probabilities.""",
        target="""label map ``[B, *S]`` (integer), or ``[B, C, *S]`` one-hot / soft labels
            (float; thresholded at 0.5 for the distance maps); binary mode also takes
            ``[B, *S]`` / ``[B, 1, *S]``.""",
        mode="""``"binary"`` (sigmoid, 1 channel), ``"multiclass"`` (softmax over C) or
            ``"multilabel"`` (C independent sigmoids).""",
        from_logits="apply sigmoid (binary, multilabel) or softmax (multiclass) first.",
        domain="""``"image"`` (a mean over each image's valid pixels, then over images)
            or ``"batch"`` (one mean over the valid pixels of the whole batch).""",
        include_background="""keep channel 0. ``None`` (default): ``False`` in multiclass
            mode (channel 0 is the background, left out as Kervadec et al. do),
            ``True`` in multilabel mode. Binary mode always scores its single channel.""",
        ignore_index="""target value whose pixels are left out of the mean. Their label
            is unknown, so they count as outside every class in the distance maps.""",
        spacing="""pixel size per spatial dim (a number or one per dim) for the
            distance maps; ``None`` = 1.""",
        class_weights="""one weight per kept class; the class mean becomes
            ``Σ w_c L_c / Σ w_c``.""",
        reduction="""``"mean"``, ``"sum"`` or ``"none"`` (``[B, C]`` in the image domain,
            ``[C]`` in the batch domain, C the kept classes).""",
        check_values="""check label range, probability range and finiteness (one pass
            over the data and a device sync); shapes and dtypes are always checked.""",
        mask="""spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1 applies to every
            image): bool (False leaves the pixel out exactly as ``ignore_index`` does: out
            of the mean and outside every class in the distance maps) or float per-pixel
            weights (finite, >= 0): a pixel of weight 0 is left out, the others weigh the
            mean, Σ w v / Σ w.""",
    ),
)

# --------------------------------------------------------------------------- pixel-mean losses


class PixelKeywords(TypedDict, total=False):
    """The shared keywords of the per-pixel losses and penalties (:data:`PIXEL`)."""

    mode: str
    from_logits: bool
    ignore_index: Optional[int]
    class_weights: Union[None, str, Sequence[float], Tensor]
    reduction: str
    check_values: bool
    mask: Optional[Tensor]


PIXEL = Family(
    "pixel losses",
    defaults=dict(mode="binary", from_logits=True, ignore_index=None, class_weights=None, reduction="mean",
                  check_values=True, mask=None),
    annotations=dict(mode="str", from_logits="bool", ignore_index="Optional[int]",
                     class_weights="Union[None, str, Sequence[float], Tensor]", reduction="str",
                     check_values="bool", mask="Optional[Tensor]"),
    docs=dict(
        input="""prediction ``[B, C, *S]`` (any number of spatial dims): logits
            (``from_logits=True``, the default) or probabilities.""",
        target="""label map ``[B, *S]`` (integer), or ``[B, C, *S]`` one-hot / soft labels
            (float); binary mode also takes ``[B, *S]`` / ``[B, 1, *S]`` float probabilities.""",
        mode="""``"binary"`` (1 channel, sigmoid), ``"multiclass"`` (softmax over C) or
            ``"multilabel"`` (C independent sigmoids, per-channel values summed).""",
        from_logits="the input is logits (computed in log space); otherwise probabilities.",
        ignore_index="""target value whose pixels are left out (0 in ``"none"`` maps).""",
        class_weights="""``None``; one weight per class (multiclass: C; binary: 2 weights
            ``(negatives, positives)`` or 1 weight for the channel; multilabel: C, one per
            channel, applied to both outcomes); or ``"inverse_frequency"`` /
            ``"sqrt_inverse_frequency"``, computed from the target's valid pixels over the
            whole batch, see :func:`~seglosses.functional.class_frequency_weights`.""",
        reduction="""``"mean"`` over valid pixels, ``"sum"``, or ``"none"`` (``[B, *S]``).""",
        check_values="""check label range, probability range and finiteness (one pass over
            the data and a device sync); shapes and dtypes are always checked.""",
        mask="""spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1 applies to every
            image): bool (False leaves the pixel out, as ``ignore_index`` does) or float
            per-pixel weights (finite, >= 0): the mean becomes ``Σ w l / Σ w``.""",
    ),
)


# --------------------------------------------------------------------------- score metrics


class ScoreKeywords(TypedDict, total=False):
    """The shared keywords of the metrics of the raw scores (:data:`SCORES`): ranking, calibration,
    and the soft confusion statistics."""

    mode: str
    from_logits: bool
    include_background: bool
    ignore_index: Optional[int]
    domain: str
    reduction: str
    bins: Optional[int]
    empty: Union[float, str]
    check_values: bool
    mask: Optional[Tensor]


SCORES = Family(
    "score metrics",
    defaults=dict(mode="binary", from_logits=False, include_background=True, ignore_index=None, domain="image",
                  reduction="mean", bins=None, empty="nan", check_values=True, mask=None),
    annotations=dict(mode="str", from_logits="bool", include_background="bool", ignore_index="Optional[int]",
                     domain="str", reduction="str", bins="Optional[int]", empty="float | str",
                     check_values="bool", mask="Optional[Tensor]"),
    docs=dict(
        input="""scores ``[B, C, *S]`` (any number of spatial dims ``S``): probabilities
            (``from_logits=False``, the default), or logits with ``from_logits=True``.""",
        target="""label map ``[B, *S]`` (integer), or ``[B, C, *S]`` one-hot / {0, 1} / soft
            (float; a soft target counts a pixel fractionally); binary mode also takes
            ``[B, *S]`` / ``[B, 1, *S]``.""",
        mode="""``"binary"``, ``"multiclass"`` or ``"multilabel"``.""",
        from_logits="apply the sigmoid (binary, multilabel) or the softmax (multiclass) first.",
        include_background="""keep channel 0 (multiclass, multilabel); binary mode always
            scores its single foreground channel.""",
        ignore_index="target value whose pixels are left out of every sum, ranking and bin.",
        domain="""``"image"``: one value per image and class; ``"batch"``: one value per
            class over every pixel of the batch.""",
        reduction="""``"mean"`` (NaN values left out), ``"sum"`` or ``"none"`` (``[B, C]``
            for ``domain="image"``, ``[C]`` for ``domain="batch"``).""",
        bins="""``None`` (the exact value, by sorting: the ranking metrics) or the number of
            equal bins of [0, 1]; a score ``s`` falls into bin
            :math:`\\min(\\lfloor s \\cdot \\text{bins}\\rfloor, \\text{bins} - 1)`.""",
        empty="""the value of an item where the metric is undefined (see the Convention):
            a number or ``"nan"`` (NaN values are left out of ``reduction="mean"``).""",
        check_values="""check label ranges, probability range and finiteness (one pass over
            the data and a device sync); shapes and dtypes are always checked.""",
        mask="""spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1 applies to every
            image): bool (False leaves the pixel out, as ``ignore_index`` does; both
            combine) or float per-pixel weights (finite, >= 0): a pixel of weight ``w``
            counts as ``w`` pixels of its score and target.""",
    ),
    returns="""The reduced value, or ``[B, C]`` / ``[C]`` values with ``reduction="none"``.""",
    raises="""TypeError: an integer prediction (these metrics need scores); wrong argument types.
        ValueError: as :func:`seglosses.metrics.dice`; a bad ``bins``; an unknown ``domain``.""",
)

# --------------------------------------------------------------------------- surface metrics


class SurfaceKeywords(_HardPairKeywords, total=False):
    """The shared keywords of the surface-distance metrics (:data:`SURFACE`)."""

    spacing: Optional[Union[float, Sequence[float]]]
    reduction: str
    empty: Union[float, str]
    missing: Union[float, str]
    distance: str
    directed: bool
    backend: str
    check_values: bool
    mask: Optional[Tensor]


SURFACE = Family(
    "surface metrics",
    defaults=dict(mode="binary", from_logits=False, threshold=0.5, num_classes=None, include_background=True,
                  ignore_index=None, spacing=None, reduction="mean", empty=0.0, missing="inf",
                  distance="euclidean", directed=False, backend="auto", check_values=True, mask=None),
    annotations=dict(mode="str", from_logits="bool", threshold="float", num_classes="Optional[int]",
                     include_background="bool", ignore_index="Optional[int]",
                     spacing="Optional[float | Sequence[float]]", reduction="str", empty="float | str",
                     missing="float | str", distance="str", directed="bool", backend="str", check_values="bool",
                     mask="Optional[Tensor]"),
    docs=dict(
        input="""the prediction, as for :func:`seglosses.metrics.dice`: probabilities
            (thresholded at ``threshold``), logits (``from_logits=True``), multiclass
            scores (arg-max) or a hard prediction (integer/bool; a multiclass label map
            needs ``num_classes``).""",
        target="""label map ``[B, *S]`` or ``[B, C, *S]`` one-hot / {0, 1}; 2D or 3D
            (any number of spatial dims).""",
        mode="""``"binary"``, ``"multiclass"`` or ``"multilabel"``.""",
        from_logits="the float prediction is logits (sigmoid, or softmax in multiclass mode).",
        threshold="""binary and multilabel probabilities are foreground where ``p >= threshold``;
            multiclass predictions take the arg-max over classes.""",
        num_classes="the number of classes of a multiclass label-map prediction.",
        include_background="""keep channel 0 (multiclass, multilabel); binary mode always
            scores its single foreground channel.""",
        ignore_index="""target value whose pixels are left out: such a pixel belongs to no
            class of the target (the true surface runs along the ignored region) and
            surface points there are dropped from both surfaces (MONAI's ``mask``).""",
        spacing="""pixel size per spatial axis (``None`` = 1, a number, or one per axis);
            distances are in its unit.""",
        reduction="""``"mean"`` over images and classes (NaN left out; an ``inf`` value
            makes the mean ``inf``), ``"sum"``, or ``"none"`` for ``[B, C]``.""",
        empty="""value when both surfaces (point sets) are empty, the class absent from
            prediction and target: a number or ``"nan"`` (default 0.0 for the distances,
            1.0 for the surface Dice).""",
        missing="""value when exactly one surface is empty: ``"inf"`` (default), ``"nan"``,
            ``"diagonal"`` (the image diagonal) or a number.""",
        distance="""the point-to-point distance: ``"euclidean"`` (default),
            ``"chessboard"`` (:math:`\\max_a s_a |x_a - y_a|`) or ``"taxicab"``
            (:math:`\\sum_a s_a |x_a - y_a|`), with the ``spacing`` ``s`` (MONAI's and
            torchmetrics' ``distance_metric``; see
            :func:`~seglosses.metrics._surface_points.lattice_distance`).""",
        directed="""only the distances from the predicted surface to the true one
            (MONAI's ``directed=True`` / ``symmetric=False``, torchmetrics'
            ``directed=True``).""",
        backend="""``"auto"``: the point search of
            :func:`~seglosses.metrics._surface_points.mutual_distances` (its fallback for
            far points uses :func:`seglosses.distance.edt` with ``"auto"``); ``"torch"``,
            ``"scipy"``, ``"edt"``: a distance transform of every mask with that
            :func:`seglosses.distance.edt` backend.""",
        check_values="""check label ranges, probability range and finiteness (one pass over
            the data and a device sync); shapes and dtypes are always checked.""",
        mask="""spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (a batch of 1 applies to every
            image), bool (or float holding only 0 and 1): a pixel where it is False is
            left out exactly as ``ignore_index`` leaves it out (both combine). It belongs
            to no class of the target, so the true surface runs along the edge of the
            masked region; the prediction is read there as it is (its surface is found
            from the whole predicted mask); then every surface point at a masked pixel is
            dropped from both surfaces, neither measured from nor to. The foreground
            point sets of :func:`modified_hausdorff` leave masked pixels out of both.""",
    ),
    returns="""The reduced value, or ``[B, C]`` with ``reduction="none"``.""",
    raises="""ValueError, TypeError: as :func:`seglosses.metrics.dice`; a bad ``spacing``,
            ``empty``, ``missing``, ``distance`` or ``mask``.""",
)

FAMILIES: Dict[str, Family] = {"region": REGION, "overlap": OVERLAP, "boundary": BOUNDARY, "pixel": PIXEL,
                               "scores": SCORES, "surface": SURFACE}
