"""Canonical inputs: the one place where (input, target) pairs are validated.

Every loss and metric of the package calls :func:`canonicalize`, which checks the
pair and flattens it to

* ``x``: the prediction ``[B, C, N]`` (spatial dims flattened, any number of them),
  still as given: logits when ``from_logits=True``, probabilities otherwise;
* either ``labels`` ``[B, N]`` (int64 class indices, a label map, never expanded to
  one-hot) or ``dense`` ``[B, C, N]`` (a float one-hot or soft target);
* ``valid`` ``[B, N]`` where ``ignore_index`` or ``mask`` removes or weighs pixels, else
  ``None``: bool (a pixel counts or not), or float per-pixel weights ``>= 0`` when a
  float ``mask`` is given (0 where ``ignore_index`` removes the pixel). Every statistic
  weighs pixel ``i`` by ``valid_i``: the sums of the statistics kernel, the pixel means
  of :func:`seglosses._reduce.reduce_pixels`.

The spatial ``mask`` (``[B, 1, *S]`` or ``[B, *S]``; a batch of 1 applies to every image)
generalises ``ignore_index``: a bool mask keeps the pixels where it is True (a pixel
left out by either is left out), a float mask weighs each pixel (finite, ``>= 0``). With
a bool mask, or a float one of 0 and 1, the result equals that of ``ignore_index`` on
the same pixels.

Target formats by ``mode`` (``S`` = the spatial dims):

============  =====================  ==============================================
mode          input                  target
============  =====================  ==============================================
binary        ``[B, 1, *S]``         ``[B, *S]`` or ``[B, 1, *S]``; integer/bool
                                     labels in {0, 1}, or float probabilities
multiclass    ``[B, C, *S]``, C >= 2 ``[B, *S]`` integer label map in [0, C), or
                                     ``[B, C, *S]`` float one-hot / soft labels
multilabel    ``[B, C, *S]``         ``[B, C, *S]``; integer/bool {0, 1} or float
============  =====================  ==============================================

Error messages follow one format: ```arg` must be <expectation>; got <actual>``.
Shape, dtype and option checks read only tensor metadata. Value checks (labels in
range, probabilities in [0, 1], no NaN/Inf) need one reduction over the data and a
device synchronisation; they run when ``check_values=True`` (the default) and can be
turned off per loss for tight GPU training loops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._options import check_mode

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Canonical:
    """A validated (input, target) pair in flattened form; see the module docstring."""

    x: Tensor
    mode: str
    from_logits: bool
    labels: Optional[Tensor]
    dense: Optional[Tensor]
    valid: Optional[Tensor]
    spatial_shape: Tuple[int, ...]
    include_background: bool
    pending_check: Optional["ValueCheck"] = None  # deferred value checks (``defer_checks=True``)

    @property
    def num_channels(self) -> int:
        """Channels of the prediction (C)."""
        return self.x.shape[1]

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def activation(self) -> str:
        """'sigmoid', 'softmax' or 'none' (already probabilities)."""
        if not self.from_logits:
            return "none"
        return "softmax" if self.mode == "multiclass" else "sigmoid"

    @property
    def first_class(self) -> int:
        """Index of the first channel that region statistics keep."""
        if self.include_background or self.mode == "binary":
            return 0
        return 1

    def probs(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        """Probabilities ``[B, C, N]`` (all channels), computed in ``dtype``."""
        x = self.x if dtype is None else self.x.to(dtype)
        act = self.activation
        if act == "sigmoid":
            return torch.sigmoid(x)
        if act == "softmax":
            return torch.softmax(x, dim=1)
        return x

    def dense_target(self, dtype: torch.dtype) -> Tensor:
        """The target as ``[B, C, N]`` in ``dtype`` (expands a label map: use sparingly)."""
        if self.dense is not None:
            return self.dense.to(dtype)
        c = self.num_channels
        return torch.nn.functional.one_hot(self.labels, c).movedim(-1, 1).to(dtype)

    def valid_float(self, dtype: torch.dtype) -> Optional[Tensor]:
        return None if self.valid is None else self.valid.to(dtype)


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor; got {type(value).__name__}")
    return value


def _in_memory_order(t: Tensor) -> Tensor:
    """The elements of ``t`` for a reduction over all of them (min/max): broadcast dims
    (stride 0) cut to one element, the rest permuted into memory order (a contiguous view
    for a dense tensor in any layout, e.g. channels-last). The CPU reduction kernels run
    several times slower across strides."""
    if t.is_contiguous():
        return t
    for d in range(t.dim()):
        if t.stride(d) == 0 and t.shape[d] > 1:
            t = t.narrow(d, 0, 1)
    if t.is_contiguous() or t.dim() < 2:
        return t
    strides = t.stride()
    order = sorted(range(t.dim()), key=lambda d: (-strides[d], -t.shape[d]))
    return t.permute(order)


def _bounds(t: Tensor) -> Tensor:
    """``[min, max]`` of ``t`` in float64, one pass (NaN propagates into both)."""
    lo, hi = torch.aminmax(_in_memory_order(t.detach()))
    return torch.stack([lo, hi]).to(torch.float64)


def _raise_not_finite(name: str, t: Tensor) -> None:
    n_nan = int(torch.isnan(t).sum())
    n_inf = int(torch.isinf(t).sum())
    raise ValueError(f"`{name}` must be finite; got {n_nan} NaN and {n_inf} Inf values")


def check_finite(name: str, t: Tensor) -> None:
    """Raise when a float tensor holds NaN or Inf (one reduction, one sync)."""
    if t.is_floating_point() and t.numel():
        lo, hi = _bounds(t).tolist()
        if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates into min and max
            _raise_not_finite(name, t)


def check_probabilities(name: str, t: Tensor) -> None:
    """Raise when a float tensor leaves [0, 1] (NaN included)."""
    if not t.numel():
        return
    lo, hi = map(float, torch.aminmax(t.detach()))
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1] (pass from_logits=True for logits); "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )


def check_labels(name: str, t: Tensor, num_classes: int, ignore_index: Optional[int]) -> None:
    """Raise when integer labels fall outside [0, num_classes) (ignore_index excepted)."""
    if not t.numel() or t.dtype == torch.bool:
        return
    if ignore_index is not None:
        # ignored pixels are replaced by 0, a valid label, so min/max see only the rest
        t = torch.where(t != ignore_index, t, torch.zeros((), dtype=t.dtype, device=t.device))
    lo, hi = map(int, torch.aminmax(t))
    if lo < 0 or hi >= num_classes:
        extra = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(
            f"`{name}` labels must lie in [0, {num_classes - 1}]{extra} for {num_classes} classes; "
            f"got values in [{lo}, {hi}]"
        )


@dataclass(frozen=True)
class ValueCheck:
    """The value checks of one (input, target) pair, judged from ``[min, max]`` bounds.

    :func:`canonicalize` runs them at once (one ``aminmax`` per tensor and one host sync
    for all), or, with ``defer_checks=True``, leaves them on the :class:`Canonical` for
    a kernel that computes the same bounds inside its own pass over the data (the
    compiled statistics kernel). A failing check is rerun by its own function, which
    raises its usual message. ``target`` is the target as checked: cleaned of
    ``ignore_index`` (ignored entries are 0), ``None`` when it needs no check (bool).

    Checks, in order: input finite; input in [0, 1] (``from_logits=False``); labels in
    range (label maps, integer multilabel targets); float target finite and in [0, 1].
    """

    input: Tensor
    from_logits: bool
    target: Optional[Tensor]
    target_is_labels: bool
    raw_target: Tensor
    num_classes: int
    ignore_index: Optional[int]

    def tensors(self) -> Tuple[Tensor, ...]:
        """The tensors whose bounds :meth:`judge` reads, in order."""
        return (self.input,) if self.target is None else (self.input, self.target)

    def run(self) -> None:
        """Compute the bounds (one pass per tensor, one sync) and judge them.

        On the CPU, where reading a number back costs no synchronisation, the bounds are
        read as they are (no stacking or casting: fewer operations per call)."""
        tensors = self.tensors()
        if tensors[0].device.type == "cpu":
            bounds = []
            for t in tensors:
                lo, hi = torch.aminmax(_in_memory_order(t.detach()))
                bounds += [lo.item(), hi.item()]
            self.judge(bounds)
        else:
            self.judge(torch.cat([_bounds(t) for t in tensors]).tolist())

    def judge(self, bounds: Sequence[float]) -> None:
        """Raise the first failing check; ``bounds`` is ``[lo, hi]`` per :meth:`tensors`."""
        lo, hi = bounds[0], bounds[1]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _raise_not_finite("input", self.input)
        if not self.from_logits and not (lo >= 0.0 and hi <= 1.0):
            check_probabilities("input", self.input)
        if self.target is None:
            return
        lo, hi = bounds[2], bounds[3]
        if self.target_is_labels:
            if lo < 0 or hi >= self.num_classes:
                check_labels("target", self.raw_target, self.num_classes, self.ignore_index)
        else:
            if not (math.isfinite(lo) and math.isfinite(hi)):
                _raise_not_finite("target", self.raw_target)
            if not (lo >= 0.0 and hi <= 1.0):
                check_probabilities("target", self.target)


def check_mask(mask: object, input: Tensor, *, check_values: bool, weights: bool) -> Tensor:
    """Validate a spatial ``mask`` against ``input`` ``[B, C, *S]``; return it as ``[B, N]``
    (bool, or float weights in float32/float64).

    ``weights=False``: the caller takes no per-pixel weights, so a float mask must hold
    only 0 and 1 (returned as bool). Value checks (finite, ``>= 0``; 0/1) run with
    ``check_values`` (one reduction and one sync).
    """
    mask = check_tensor("mask", mask)
    b, spatial = input.shape[0], tuple(input.shape[2:])
    if mask.dtype != torch.bool and mask.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"`mask` must be a bool or floating-point tensor (per-pixel weights); got {mask.dtype}")
    if mask.device != input.device:
        raise ValueError(f"`mask` must be on the input's device {input.device}; got {mask.device}")
    m = mask
    if m.dim() == len(spatial) + 2 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != len(spatial) + 1 or tuple(m.shape[1:]) != spatial or m.shape[0] not in (1, b):
        want = "(" + ", ".join(str(d) for d in (b, 1) + spatial) + ")"
        alt = "(" + ", ".join(str(d) for d in (b,) + spatial) + ")"
        raise ValueError(f"`mask` must have shape {want} or {alt} (a batch of 1 applies to every image) to match "
                         f"`input` {_shape(input)}; got {_shape(mask)}")
    m = m.expand((b,) + spatial).reshape(b, -1)
    if m.dtype == torch.bool:
        return m
    if check_values and m.numel():
        lo, hi = (float(v) for v in torch.aminmax(m.detach()))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _raise_not_finite("mask", m)
        if lo < 0:
            raise ValueError(f"`mask` weights must be >= 0; got values in [{lo:.4g}, {hi:.4g}]")
        if not weights and bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"`mask` must be boolean (or hold only 0 and 1) here: this function takes no "
                             f"per-pixel weights; got values in [{lo:.4g}, {hi:.4g}]")
    if not weights:
        return m != 0
    return m.detach().to(torch.float64 if input.dtype == torch.float64 else torch.float32)


def check_ignore_index(ignore_index: Optional[int], mode: str, num_classes: int, *, label_map: bool) -> None:
    """Refuse an ``ignore_index`` that is a value the target holds for a class: a class
    index of a multiclass label map (``label_map=True``), or 0 / 1 of a binary, multilabel
    or dense (one-hot / soft) multiclass target. It would remove a class, or every pixel."""
    if ignore_index is None:
        return
    if mode == "multiclass" and label_map and 0 <= ignore_index < num_classes:
        raise ValueError(
            f"`ignore_index` must not be a class index in [0, {num_classes - 1}] (it would remove class "
            f"{ignore_index}); got {ignore_index} (use e.g. 255 or -100)"
        )
    if ignore_index in (0, 1) and (mode != "multiclass" or not label_map):
        what = {"binary": "the background" if ignore_index == 0 else "the foreground",
                "multilabel": "every pixel where a label is " + ("off" if ignore_index == 0 else "on"),
                "multiclass": "every pixel of a one-hot target"}[mode]
        kind = "a one-hot / soft target's value" if mode == "multiclass" else f"a target value in {mode} mode"
        raise ValueError(
            f"`ignore_index` must not be {kind} (0 or 1: it would remove {what}); "
            f"got {ignore_index} (use e.g. 255 or -100)"
        )


def _check_options(from_logits: object, include_background: object, ignore_index: object) -> None:
    if not isinstance(from_logits, bool):
        raise TypeError(f"`from_logits` must be a bool; got {type(from_logits).__name__}")
    if not isinstance(include_background, bool):
        raise TypeError(f"`include_background` must be a bool; got {type(include_background).__name__}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"`ignore_index` must be an int or None; got {type(ignore_index).__name__}")


@dataclass(frozen=True)
class _Layout:
    """How :func:`canonicalize` reads a target, decided from metadata only (and cached)."""

    squeeze: bool  # a binary target given as [B, 1, *S]: its channel is dropped
    label_map: bool  # the target holds class indices (a label map, or binary integer labels)
    int_target: bool  # integer or bool dtype


# layouts of the (shape, dtype, device, option) combinations seen: a loss called in a
# training loop repeats one combination, and its metadata checks then cost one lookup
_LAYOUTS: Dict[tuple, _Layout] = {}
_LAYOUTS_MAX = 256


def _layout(input: Tensor, target: Tensor, mode: str, include_background: bool,
            ignore_index: Optional[int]) -> _Layout:
    """The metadata checks of a pair (every one that reads no data), cached by their inputs."""
    key = (mode, include_background, ignore_index, input.shape, input.dtype, input.device,
           target.shape, target.dtype, target.device)
    layout = _LAYOUTS.get(key)
    if layout is None:
        _check_input(input)
        layout = _check_target(input, target, mode, include_background)
        check_ignore_index(ignore_index, mode, input.shape[1], label_map=layout.label_map)
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def _check_input(input: Tensor) -> None:
    """Dtype and shape of the prediction ``[B, C, *S]`` (returns nothing; raises)."""
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"`input` must be a floating-point tensor; got {input.dtype}")
    if input.dim() < 3:
        raise ValueError(
            f"`input` must have shape [B, C, *spatial] with at least one spatial dim; got {_shape(input)}"
        )
    if input.shape[0] == 0:
        raise ValueError(f"`input` must hold at least one image; got batch size 0, shape {_shape(input)}")
    if input.shape[1] == 0:
        raise ValueError(f"`input` must have at least one channel; got 0 channels, shape {_shape(input)}")
    if 0 in input.shape[2:]:
        raise ValueError(
            f"`input` must hold at least one pixel per image; got a spatial size of 0, shape {_shape(input)}"
        )


def _check_target(input: Tensor, target: Tensor, mode: str, include_background: bool) -> _Layout:
    """Device, dtype and shape of the target for ``mode`` (see the table in the module docstring)."""
    if target.device != input.device:
        raise ValueError(f"`target` must be on the input's device {input.device}; got {target.device}")
    is_float = target.dtype in _FLOAT_DTYPES
    is_int = target.dtype == torch.bool or not (is_float or target.is_complex())
    if not (is_float or is_int):
        raise TypeError(f"`target` must be an integer, bool or float tensor; got {target.dtype}")
    if mode == "binary":
        return _check_binary(input, target, is_int)
    if mode == "multiclass":
        return _check_multiclass(input, target, is_int)
    c = input.shape[1]
    if c == 1 and not include_background:
        raise ValueError(
            f"`include_background` must be True for a single-channel input in multilabel mode (leaving channel "
            f"0 out would leave no class to score); got False with shape {_shape(input)}"
        )
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"`target` must have shape {_shape(input)} in multilabel mode (one channel per label); "
            f"got {_shape(target)}"
        )
    return _Layout(squeeze=False, label_map=False, int_target=is_int)


def _check_binary(input: Tensor, target: Tensor, is_int: bool) -> _Layout:
    c = input.shape[1]
    if c != 1:
        raise ValueError(
            f"`input` must have 1 channel in binary mode (use mode='multiclass' or 'multilabel' "
            f"for {c} channels); got shape {_shape(input)}"
        )
    squeeze = target.shape == input.shape
    if not squeeze and tuple(target.shape) != (input.shape[0],) + tuple(input.shape[2:]):
        raise ValueError(
            f"`target` must have shape {_shape(input[:, 0])} or {_shape(input)} to match `input` "
            f"{_shape(input)} in binary mode; got {_shape(target)}"
        )
    return _Layout(squeeze=squeeze, label_map=is_int, int_target=is_int)


def _check_multiclass(input: Tensor, target: Tensor, is_int: bool) -> _Layout:
    c = input.shape[1]
    if c < 2:
        raise ValueError(
            f"`input` must have at least 2 channels in multiclass mode (use mode='binary' for one); "
            f"got shape {_shape(input)}"
        )
    if target.dim() == input.dim() - 1:
        if not is_int:
            raise TypeError(
                f"`target` label map [B, *spatial] must be an integer tensor in multiclass mode; got "
                f"{target.dtype} (a float target must be one-hot or soft labels of shape {_shape(input)})"
            )
        if tuple(target.shape) != (input.shape[0],) + tuple(input.shape[2:]):
            raise ValueError(
                f"`target` label map must have shape {_shape(input[:, 0])} to match `input` "
                f"{_shape(input)}; got {_shape(target)}"
            )
        return _Layout(squeeze=False, label_map=True, int_target=True)
    if target.dim() == input.dim():
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(
                f"`target` must have shape {_shape(input)} (one-hot / soft, {c} classes) or "
                f"{_shape(input[:, 0])} (label map); got {_shape(target)}"
            )
        if is_int:
            raise TypeError(
                f"`target` of shape [B, C, *spatial] must be a float one-hot or soft target in multiclass "
                f"mode; got integer dtype {target.dtype} (pass a label map [B, *spatial] for class indices)"
            )
        return _Layout(squeeze=False, label_map=False, int_target=False)
    raise ValueError(
        f"`target` must have shape {_shape(input[:, 0])} (label map) or {_shape(input)} (one-hot) "
        f"for input {_shape(input)}; got {_shape(target)}"
    )


def _remove_ignored(labels: Optional[Tensor], dense: Optional[Tensor], ignore_index: Optional[int]
                    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """``(labels, dense, valid)``: the pixels whose target is ``ignore_index`` marked invalid
    and their target set to 0 (before the value checks, which read the cleaned target)."""
    if ignore_index is None:
        return labels, dense, None
    if labels is not None:
        valid = labels != ignore_index
        return torch.where(valid, labels, torch.zeros((), dtype=labels.dtype, device=labels.device)), dense, valid
    bad = dense == ignore_index
    zero = torch.zeros((), dtype=dense.dtype, device=dense.device)
    return labels, torch.where(bad, zero, dense), ~bad.any(dim=1)


def _with_mask(valid: Optional[Tensor], mask: Tensor, input: Tensor, check_values: bool,
               weights: bool) -> Tensor:
    """``valid`` combined with a spatial ``mask`` (see the module docstring)."""
    m = check_mask(mask, input, check_values=check_values, weights=weights)
    m = m.view((input.shape[0],) + tuple(input.shape[2:]))
    if m.dtype == torch.bool:
        return m if valid is None else valid & m
    return m if valid is None else m * valid


def _flatten(input: Tensor, mode: str, labels: Optional[Tensor], dense: Optional[Tensor],
             valid: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """``(x, labels, dense, valid)`` flattened to ``[B, C, N]`` / ``[B, N]``; an integer target
    that is not a multiclass label map becomes a float map."""
    b, c = input.shape[:2]
    if mode == "binary" and labels is not None:
        # the single channel is the foreground: g = [label == 1], a float map of the
        # label map's size (no class axis to expand)
        dense, labels = labels.unsqueeze(1), None
    if dense is not None and not dense.is_floating_point():
        dense = dense.to(input.dtype if input.dtype == torch.float64 else torch.float32)
    x = input.reshape(b, c, -1)
    if labels is not None:
        labels = labels.reshape(b, -1)
        labels = labels if labels.dtype == torch.int64 else labels.long()
    if dense is not None:
        dense = dense.reshape(b, dense.shape[1], -1)
    if valid is not None:
        valid = valid.reshape(b, -1)
    return x, labels, dense, valid


def canonicalize(
    input: Tensor,
    target: Tensor,
    *,
    mode: str = "binary",
    from_logits: bool = True,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    check_values: bool = True,
    defer_checks: bool = False,
    mask: Optional[Tensor] = None,
    mask_weights: bool = True,
) -> Canonical:
    """Validate an (input, target) pair and flatten it; see the module docstring.

    Four steps: the metadata checks (options, dtypes, shapes, devices: :func:`_layout`,
    cached per combination), the removal of ``ignore_index`` and the ``mask``
    (:func:`_remove_ignored`, :func:`_with_mask`), the value checks (:class:`ValueCheck`)
    and the flattening (:func:`_flatten`).

    Args:
        input: prediction ``[B, C, *S]``, float.
        target: label map ``[B, *S]`` (integer) or dense ``[B, C, *S]``.
        mode: "binary", "multiclass" or "multilabel".
        from_logits: the input is logits (sigmoid for binary/multilabel, softmax for
            multiclass is applied by the statistics); otherwise probabilities.
        include_background: keep channel 0 in multiclass/multilabel statistics.
        ignore_index: target value whose pixels leave every statistic.
        check_values: run the value checks (one pass over the data, one sync).
        defer_checks: leave the value checks on the result (``pending_check``, a
            :class:`ValueCheck`) for the statistics kernel, which judges them from bounds
            it computes in its own pass (:func:`seglosses._stats.moments`). Only for
            callers that pass the result straight to that kernel.
        mask: spatial mask ``[B, 1, *S]`` or ``[B, *S]`` (bool, or float weights >= 0),
            combined with ``ignore_index`` into ``valid`` (see the module docstring).
        mask_weights: the caller weighs pixels by a float ``valid``; ``False`` refuses a
            float mask that is not 0/1 (callers whose statistics only keep or drop pixels).

    Raises:
        TypeError: non-tensor arguments, a non-float input, a float label map or an
            integer one-hot target in multiclass mode.
        ValueError: unknown mode, mismatched shapes, wrong class count, labels out of
            range, probabilities outside [0, 1], NaN/Inf in the input or target.
    """
    mode = check_mode(mode)
    input = check_tensor("input", input)
    target = check_tensor("target", target)
    _check_options(from_logits, include_background, ignore_index)
    layout = _layout(input, target, mode, include_background, ignore_index)
    if layout.squeeze:
        target = target[:, 0]
    if layout.label_map:
        labels, dense = target, None
    else:
        labels, dense = None, (target.unsqueeze(1) if mode == "binary" else target)
    raw_target = dense if labels is None else labels
    labels, dense, valid = _remove_ignored(labels, dense, ignore_index)
    if mask is not None:
        valid = _with_mask(valid, mask, input, check_values, mask_weights)
    pending = None
    if check_values:  # one min/max pass per tensor, one device sync in all
        checked = labels if labels is not None else dense
        if checked is not None and checked.dtype == torch.bool:
            checked = None
        c = input.shape[1]
        pending = ValueCheck(input, from_logits, checked, layout.int_target, raw_target,
                             c if mode == "multiclass" else 2, ignore_index)
        if not defer_checks:
            pending.run()
            pending = None
    x, labels, dense, valid = _flatten(input, mode, labels, dense, valid)
    return Canonical(x=x, mode=mode, from_logits=from_logits, labels=labels, dense=dense, valid=valid,
                     spatial_shape=tuple(input.shape[2:]), include_background=include_background,
                     pending_check=pending)


def float_tuple(name: str, value: object) -> Tuple[float, ...]:
    """A sequence of real numbers (list, tuple, 1-D tensor or array) as a tuple of floats.

    Raises a ``TypeError`` naming ``name`` for anything else (a string, a mapping,
    non-numeric items, complex values) and a ``ValueError`` for nested sequences.
    """
    bad = TypeError(f"`{name}` must be a sequence of real numbers; got {_short_repr(value)}")
    if isinstance(value, (str, Mapping, bytes, bytearray)) or isinstance(value, bool):
        raise bad
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise bad from None
    if t.is_complex() or t.dtype == torch.bool:
        raise bad
    if t.dim() > 1:
        raise ValueError(f"`{name}` must be one-dimensional (one value per class or dim); got shape {tuple(t.shape)}")
    return tuple(float(v) for v in t.reshape(-1).tolist())


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_class_weights(class_weights: Optional[Sequence[float] | Tensor], num: int, like: Tensor) -> Optional[Tensor]:
    """Validate per-class weights against the number of classes the loss keeps.

    Returns a float tensor on ``like``'s device, or ``None``. A string is refused here:
    only the distribution losses take weight scheme names (their own check lists them).
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        raise TypeError(
            f"`class_weights` must be None or one weight per class (a sequence of numbers or a tensor) for this loss, "
            f"which takes no weight scheme name; got {class_weights!r}"
        )
    if not isinstance(class_weights, Tensor):
        class_weights = float_tuple("class_weights", class_weights)
    elif class_weights.is_complex() or class_weights.dtype == torch.bool:
        raise TypeError(f"`class_weights` must hold real numbers; got a tensor of {class_weights.dtype}")
    w = torch.as_tensor(class_weights, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)
    w = w.to(like.device)
    if w.dim() != 1 or w.numel() != num:
        raise ValueError(
            f"`class_weights` must hold one weight per class kept by the loss ({num}); got shape {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not bool(w.sum() > 0):
        raise ValueError(f"`class_weights` must be finite, >= 0 and not all 0; got {w.tolist()}")
    return w


def check_constant_target(target: Optional[Tensor], why: str) -> None:
    """Refuse a target that requires grad where the loss reads it through a transform
    without a gradient (a distance map, a label map, class counts): its gradient would
    otherwise be dropped, or be only the share of the other terms, without a word.

    ``target`` is the target as given or as canonicalised (``Canonical.dense``); integer
    targets never require grad.
    """
    if target is not None and target.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            f"`target` must not require grad here: {why}, which has no gradient; got a target with "
            f"requires_grad=True (pass target.detach() to use it as a constant)"
        )


def with_valid(canon: Canonical, valid: Optional[Tensor]) -> Canonical:
    """A copy of ``canon`` with another validity mask (used by compound losses)."""
    return replace(canon, valid=valid)


def check_distance_matrix(matrix: object, num_classes: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A class distance matrix ``[C, C]`` (non-negative, finite, zero diagonal, not all 0),
    scaled to maximum 1; ``None`` gives ``1 - I``."""
    if matrix is None:
        return 1 - torch.eye(num_classes, dtype=dtype, device=device)
    try:
        m = torch.as_tensor(matrix, dtype=torch.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`dist_matrix` must be a [C, C] matrix of numbers; got {_short_repr(matrix)}") from None
    if m.shape != (num_classes, num_classes):
        raise ValueError(f"`dist_matrix` must have shape ({num_classes}, {num_classes}) to match the {num_classes} "
                         f"classes of `input`; got {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or bool((m.diagonal() != 0).any()):
        raise ValueError(f"`dist_matrix` must be finite, non-negative, with a zero diagonal; got "
                         f"{_short_repr(m.tolist())}")
    top = float(m.max())
    if top == 0:
        raise ValueError("`dist_matrix` must have a positive entry; got all zeros")
    return (m / top).to(dtype=dtype, device=device)
