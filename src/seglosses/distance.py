"""Exact Euclidean distance transforms and signed distance maps for batched masks.

Three public functions:

* :func:`edt`: for every foreground pixel, the Euclidean distance to the nearest
  background pixel (the semantics of ``scipy.ndimage.distance_transform_edt``,
  applied image by image, with physical ``spacing``).
* :func:`signed_distance`: the level-set map :math:`\\phi` of the boundary loss
  (seed 001, section 4.1), negative inside the object and positive outside.
* :func:`two_sided_distance`: :math:`D(G) + D(\\lnot G)`, each pixel's distance to
  the other side of the boundary (the Hausdorff-DT loss's maps).

Both take a batch ``[B, *spatial]`` of binary masks with one or more spatial
dims and return a tensor of the same shape on the same device.

Backends:

* ``"torch"``: pure torch, runs on any device, batched, with no host round
  trip. It is the exact separable algorithm: a linear pass along one axis
  gives the distance to the nearest background pixel on each line, then, for
  every other axis, the lower envelope of parabolas

  .. math::

      g(x) = \\min_y \\; f(y) + s^2 (x - y)^2

  is taken along each line. The minimising :math:`y` is non-decreasing in
  :math:`x` (the cost matrix is Monge), so it is found by divide and conquer
  over rows: each level halves the row spacing and searches each new row only
  between the minimisers of its two already solved neighbours. Every level
  looks at fewer than ``2 n`` candidates per line, so a pass costs
  :math:`O(n \\log n)` per line with fixed tensor sizes (no data-dependent
  shapes, no synchronisation).
* ``"scipy"``: ``scipy.ndimage.distance_transform_edt`` per image, on the CPU.
* ``"edt"``: the multi-threaded ``edt`` package per image, on the CPU, with
  ``parallel=torch.get_num_threads()``.
* ``"auto"``: the torch path for tensors that are not on the CPU; on the CPU
  the fastest installed library, see :func:`edt`.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence

import torch

from ._arguments import with_docs
from ._options import lookup_option

__all__ = ["edt", "signed_distance", "two_sided_distance", "chessboard_distance", "lattice_passes", "min_max_line"]

BACKENDS = ("auto", "torch", "scipy", "edt")

# Candidates per chunk of lines in a lower-envelope pass (about 2 per pixel). On
# the CPU, chunks that stay in cache run several times faster than one big pass;
# elsewhere, large chunks bound memory while keeping kernel launches few.
_CHUNK_SLOTS_CPU = 1 << 20
_CHUNK_SLOTS_DEVICE = 1 << 24


# ----------------------------------------------------------------------------- checks


def _check_mask(mask: object) -> torch.Tensor:
    """Validate a mask and return it as a bool tensor."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`mask` must be a torch.Tensor; got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(f"`mask` must be a bool or integer tensor; got {mask.dtype}")
    if mask.ndim < 2:
        raise ValueError(
            f"`mask` must have a batch dim and at least one spatial dim [B, *spatial]; "
            f"got shape {tuple(mask.shape)}"
        )
    if 0 in mask.shape[1:]:
        # (an empty batch, B = 0, gives an empty result: callers transform the masks of
        # zero images; an image of zero pixels has no boundary to measure from)
        raise ValueError(
            f"`mask` must hold at least one pixel per image; got a spatial size of 0, shape {tuple(mask.shape)}"
        )
    if mask.dtype == torch.bool:
        return mask
    if mask.numel() and bool(((mask != 0) & (mask != 1)).any()):
        lo, hi = int(mask.min()), int(mask.max())
        raise ValueError(f"`mask` must contain only 0 and 1; got values in [{lo}, {hi}]")
    return mask != 0


def _check_spacing(spacing: object, ndim: int) -> tuple[float, ...]:
    """Validate ``spacing`` for ``ndim`` spatial dims; return one float per dim."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, torch.Tensor):
        spacing = spacing.tolist()
    if isinstance(spacing, (int, float)) and not isinstance(spacing, bool):
        values = (float(spacing),) * ndim
    elif isinstance(spacing, Sequence) and not isinstance(spacing, str):
        if len(spacing) != ndim:
            raise ValueError(
                f"`spacing` must have one value per spatial dim ({ndim}); "
                f"got {len(spacing)} values {tuple(spacing)}"
            )
        if any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in spacing):
            raise TypeError(f"`spacing` must contain numbers; got {tuple(spacing)}")
        values = tuple(float(s) for s in spacing)
    else:
        raise TypeError(
            f"`spacing` must be None, a number or a sequence of numbers; got {type(spacing).__name__}"
        )
    if not all(0.0 < s < math.inf for s in values):
        raise ValueError(f"`spacing` must be positive and finite; got {values}")
    return values


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating point torch.dtype; got {dtype}")
    return dtype


def _has_edt_package() -> bool:
    return importlib.util.find_spec("edt") is not None


def _resolve_backend(backend: object, device: torch.device, ndim: int, dtype: torch.dtype) -> str:
    backend = lookup_option("backend", backend, BACKENDS)
    if backend == "auto":
        if device.type != "cpu":
            return "torch"
        # Measured on the CPU (see the `edt` docstring): the `edt` package is the
        # fastest, then scipy, then the torch path. The `edt` package works in
        # float32, so a float64 result comes from scipy.
        if ndim <= 3 and dtype != torch.float64 and _has_edt_package():
            return "edt"
        return "scipy"
    if backend == "edt":
        if not _has_edt_package():
            raise ImportError("`backend` 'edt' needs the `edt` package; install it with `pip install edt`")
        if ndim > 3:
            raise ValueError(f"`backend` 'edt' supports 1 to 3 spatial dims; got {ndim}")
    return backend


def _checked(mask: object, spacing: object, backend: object, dtype: object
             ) -> tuple[torch.Tensor, tuple[float, ...], str, torch.dtype]:
    """The checked arguments of the public transforms: bool mask, spacing per dim, backend, dtype."""
    fg = _check_mask(mask)
    ndim = fg.ndim - 1
    spacing_t = _check_spacing(spacing, ndim)
    dtype = _check_dtype(dtype)
    return fg, spacing_t, _resolve_backend(backend, fg.device, ndim, dtype), dtype


#: the common end of the public transforms' docstrings
_RETURNS_RAISES = """    Returns:
        Tensor of shape ``mask.shape``, dtype ``dtype``, on ``mask.device``.

    Raises:
        TypeError, ValueError, ImportError: as :func:`edt`.
"""


# ----------------------------------------------------------------------------- helpers


def _border_distance(
    shape: Sequence[int], spacing: Sequence[float], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Distance from each pixel to the nearest point just outside the image.

    Along axis ``d`` the pixels just outside are at index ``-1`` and ``n_d``, so
    the distance is ``min_d min(i_d + 1, n_d - i_d) * s_d``. Returns a tensor of
    shape ``shape``.
    """
    out = None
    for d, (n, s) in enumerate(zip(shape, spacing)):
        i = torch.arange(n, device=device, dtype=dtype)
        b = torch.minimum(i + 1, n - i) * s
        b = b.view([n if k == d else 1 for k in range(len(shape))])
        out = b if out is None else torch.minimum(out, b)
    return out.expand(tuple(shape))


def _line_distance(bg: torch.Tensor, dim: int) -> torch.Tensor:
    """Distance in pixels (int64) to the nearest ``True`` of ``bg`` along ``dim``.

    Lines without any ``True`` get a value larger than the line length.
    """
    n = bg.shape[dim]
    shape = [1] * bg.ndim
    shape[dim] = n
    idx = torch.arange(n, device=bg.device).view(shape)
    far = 2 * n + 1
    last = torch.where(bg, idx, -far).cummax(dim).values
    nxt = torch.where(bg, idx, far).flip(dim).cummin(dim).values.flip(dim)
    return torch.minimum(idx - last, nxt - idx)


def _lower_envelope(f: torch.Tensor, scale: float) -> torch.Tensor:
    """Row-wise ``g[l, x] = min_y f[l, y] + scale * (x - y) ** 2`` for ``f`` of shape ``[L, n]``.

    ``f`` may hold ``inf``. The leftmost minimiser ``y*(x)`` is non-decreasing in
    ``x``: the cost matrix is Monge (its cross term is ``-2 * scale * x * y``), and
    a column that is ``inf`` is ``inf`` in every row. Rows are solved level by
    level: at the level with stride ``h`` the rows ``x_k = h - 1 + 2 h k`` are
    solved, and row ``x_k`` only looks at ``y`` in ``[a_k, a_{k+1}]``, between the
    minimisers of rows ``x_k - h`` and ``x_k + h`` (solved at coarser levels; the
    line ends where those rows fall outside). Consecutive brackets share their
    ends, so the candidates ``(k, y)`` of a level form a staircase path from
    ``(0, 0)`` to ``(R - 1, n - 1)`` of ``n - 1 + R`` cells: slot ``j`` holds row
    ``k_j`` (the number of row starts ``a_k + k <= j``, minus one) and column
    ``y_j = j - k_j``. The sizes are fixed, whatever the data.
    """
    L, n = f.shape
    if n == 1 or L == 0:
        return f.clone()
    device = f.device
    bits = (n - 1).bit_length()  # y < 2 ** bits
    arg = torch.zeros((L, n), dtype=torch.long, device=device)
    out = torch.empty_like(f)
    levels = n.bit_length()  # 2 ** (levels - 1) <= n < 2 ** levels
    for level in range(levels):
        h = 1 << (levels - 1 - level)
        R = (n - h) // (2 * h) + 1  # rows h - 1, 3h - 1, ... below n
        x = torch.arange(h - 1, n, 2 * h, device=device)
        bounds = arg[:, 2 * h - 1 :: 2 * h]  # minimisers at x_k + h, solved earlier
        if bounds.shape[1] == R:
            last = bounds[:, R - 1 : R]
        else:
            last = torch.full((L, 1), n - 1, dtype=torch.long, device=device)
        S = n - 1 + R
        j = torch.arange(S, device=device)
        marker = torch.zeros((L, S), dtype=torch.long, device=device)
        if R > 1:
            marker.scatter_(1, bounds[:, : R - 1] + j[1:R], 1)
        k = marker.cumsum(1)
        y = j - k
        dx = (k * (2 * h + 1) + (h - 1 - j)).to(f.dtype)  # x_k - y
        cost = f.gather(1, y).addcmul_(dx, dx, value=scale)
        cost.masked_fill_(y > last, math.inf)  # past the last row's bracket
        # One reduction gives the leftmost minimiser: for costs >= 0 the IEEE bit
        # pattern orders like the value, and y fills the low bits as tie-break.
        if cost.dtype == torch.float32:
            key = cost.view(torch.int32).long() << bits
        else:  # float64: the lowest `bits` mantissa bits give way to y
            key = (cost.view(torch.int64) >> bits) << bits
        key |= y
        first = torch.full((L, R), torch.iinfo(torch.long).max, dtype=torch.long, device=device)
        first.scatter_reduce_(1, k, key, "amin")
        first &= (1 << bits) - 1
        dxr = (x - first).to(f.dtype)
        arg[:, h - 1 :: 2 * h] = first
        out[:, h - 1 :: 2 * h] = f.gather(1, first).addcmul_(dxr, dxr, value=scale)
    return out


def _edt_torch(fg: torch.Tensor, spacing: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    """Pure torch EDT of a bool batch ``[B, *spatial]`` (inf where no background)."""
    ndim = fg.ndim - 1
    isotropic = all(s == spacing[0] for s in spacing)
    # Isotropic spacing: work in pixel units, where every squared distance is an
    # integer and float32 is exact up to 2 ** 24; scale once at the end.
    unit = (1.0,) * ndim if isotropic else spacing
    span = sum((n * s) ** 2 for n, s in zip(fg.shape[1:], unit))
    exact32 = isotropic and span < 2**24
    work = torch.float64 if (dtype == torch.float64 or not exact32) else torch.float32
    if work == torch.float64 and fg.device.type == "mps":  # no float64 there
        work = torch.float32
    # First pass along the last axis: the distance to the nearest background pixel on the line.
    d = _line_distance(~fg, fg.ndim - 1)
    n_last = fg.shape[-1]
    d = d.to(work) * unit[-1]
    sq = torch.where(d > n_last * unit[-1], math.inf, d * d)
    # Other axes: lower envelope of parabolas along each line.
    for axis in range(ndim - 1):
        dim = axis + 1
        moved = sq.movedim(dim, -1)
        shape = moved.shape
        budget = _CHUNK_SLOTS_CPU if fg.device.type == "cpu" else _CHUNK_SLOTS_DEVICE
        chunks = moved.reshape(-1, shape[-1]).split(max(1, budget // (2 * shape[-1])))
        g = torch.cat([_lower_envelope(c, unit[axis] ** 2) for c in chunks])
        sq = g.view(shape).movedim(-1, dim)
    out = sq.sqrt()
    if isotropic and spacing[0] != 1.0:
        out = out * spacing[0]
    return out.to(dtype).contiguous()


def _edt_numpy(fg: torch.Tensor, spacing: tuple[float, ...], backend: str, dtype: torch.dtype,
               two_sided: bool = False) -> torch.Tensor:
    """EDT image by image with scipy or the ``edt`` package, on the CPU.

    The whole path stays in NumPy until the result is wrapped, so it adds no
    torch kernels (and their thread start-up) around the library calls.
    ``two_sided`` (``edt`` package only): ``edt(m) + edt(~m)`` in one call per image,
    from the package's multi-label mode on the labels ``m + 1`` (each pixel gets its
    distance to the nearest pixel of the other label); images without a boundary
    (uniform) get the padding convention, as each of the two terms does.
    """
    import numpy as np

    if backend == "scipy":
        from scipy.ndimage import distance_transform_edt

        def one(img):
            return distance_transform_edt(img, sampling=spacing)

    else:
        import edt as edt_package

        threads = torch.get_num_threads()
        anisotropy = spacing[0] if len(spacing) == 1 else spacing  # 1D takes a number

        def one(img):
            if two_sided:
                img = img.view(np.uint8) + np.uint8(1)
            return edt_package.edt(img, anisotropy=anisotropy, black_border=False, parallel=threads)

    arr = fg.detach().cpu().numpy()
    out = np.empty(arr.shape, dtype=np.float64 if dtype == torch.float64 else np.float32)
    border = None
    for b in range(arr.shape[0]):
        if arr[b].all() or (two_sided and not arr[b].any()):  # no background: the padding convention
            if border is None:
                border = _border_distance(arr.shape[1:], spacing, torch.device("cpu"), torch.float64).numpy()
            out[b] = border
        else:
            out[b] = one(arr[b])
    return torch.from_numpy(out).to(device=fg.device, dtype=dtype)


# ----------------------------------------------------------------------------- public


def edt(
    mask: torch.Tensor,
    spacing: float | Sequence[float] | None = None,
    *,
    backend: str = "auto",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Exact Euclidean distance transform of a batch of binary masks.

    For every image :math:`b` with background set :math:`\mathcal{B}_b` (the
    pixels where ``mask`` is 0) and pixel :math:`p`:

    .. math::

        D_b(p) = \min_{q \in \mathcal{B}_b}
                 \sqrt{\textstyle\sum_d s_d^2 \, (p_d - q_d)^2},

    with :math:`s_d` the spacing along spatial axis :math:`d`. So
    :math:`D_b(p) = 0` on the background, and on the foreground it is the
    distance to the nearest background pixel: the value of
    ``scipy.ndimage.distance_transform_edt(mask[b], sampling=spacing)``.

    Convention:
        * An image with no foreground gives all zeros.
        * An image with no background (all foreground), where the formula has
          no candidate, is taken as padded with background: :math:`D_b(p)` is
          the distance to the nearest point just outside the image,
          :math:`\min_d \min(p_d + 1, n_d - p_d)\, s_d` for an axis of
          :math:`n_d` pixels. Only such images use the padding; in every other
          image the border is not background.
        * Images are independent: the distance never crosses the batch axis.

    Backends:
        ``"torch"`` runs on the tensor's device with no host round trip and
        no loop over images. ``"scipy"`` and ``"edt"`` run image by image on
        the CPU (tensors on other devices are copied there and back).
        ``"auto"`` takes ``"torch"`` for tensors not on the CPU; on the CPU it
        takes the ``edt`` package when installed (and ``dtype`` is not
        float64, as that package works in float32), else scipy: on a 2-core
        CPU, for 16x256x256, 16x512x512 and 1x128x128x128 masks, the ``edt``
        package was the fastest, then scipy, then the torch path
        (``benchmarks/bench_distance.py`` prints the table).

    Args:
        mask: bool or integer tensor of 0 and 1, shape ``[B, *spatial]`` with
            one or more spatial dims (1 = foreground).
        spacing: pixel size along each spatial axis: ``None`` (1 everywhere), a
            number (isotropic), or one positive number per spatial dim.
        backend: ``"auto"``, ``"torch"``, ``"scipy"`` or ``"edt"``.
        dtype: floating point dtype of the result. The torch path computes in
            float64 for a float64 result, for anisotropic spacing, and for
            images too large for exact float32 integer arithmetic; otherwise
            in float32, in pixel units, where isotropic squared distances are
            exact integers.

    Returns:
        Tensor of shape ``mask.shape``, dtype ``dtype``, on ``mask.device``.

    Raises:
        TypeError: ``mask`` is not a bool or integer tensor, or ``spacing`` or
            ``dtype`` has the wrong type.
        ValueError: ``mask`` has fewer than 2 dims or values other than 0 and
            1; ``spacing`` has the wrong length or a value that is not positive
            and finite; ``backend`` is unknown, or ``"edt"`` with more than 3
            spatial dims.
        ImportError: ``backend="edt"`` and the ``edt`` package is missing.

    Example:
        >>> import torch
        >>> edt(torch.tensor([[0, 1, 1, 1, 0]]), backend="torch")
        tensor([[0., 1., 2., 1., 0.]])
        >>> edt(torch.tensor([[0, 1, 1, 1, 0]]), spacing=0.5, backend="torch")
        tensor([[0.0000, 0.5000, 1.0000, 0.5000, 0.0000]])
        >>> edt(torch.tensor([[[1, 1, 1], [1, 0, 1], [1, 1, 1]]]), backend="torch")
        tensor([[[1.4142, 1.0000, 1.4142],
                 [1.0000, 0.0000, 1.0000],
                 [1.4142, 1.0000, 1.4142]]])
        >>> edt(torch.tensor([[1, 1, 1, 1]]), backend="torch")  # no background: padded
        tensor([[1., 2., 2., 1.]])
    """
    fg, spacing, backend, dtype = _checked(mask, spacing, backend, dtype)
    if fg.numel() == 0:
        return torch.zeros(fg.shape, dtype=dtype, device=fg.device)
    if backend != "torch":
        return _edt_numpy(fg, spacing, backend, dtype)
    out = _edt_torch(fg, spacing, dtype)
    full = fg.flatten(1).all(1).view((-1,) + (1,) * (fg.ndim - 1))
    return torch.where(full, _border_distance(fg.shape[1:], spacing, fg.device, dtype), out)


@with_docs(_RETURNS_RAISES)
def two_sided_distance(mask: torch.Tensor, spacing: float | Sequence[float] | None = None, *, backend: str = "auto",
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Each pixel's distance to the nearest pixel on the other side of the mask's boundary.

    .. math::

        d = D(G) + D(\lnot G)

    with :math:`D` = :func:`edt`: inside the object the distance to the nearest
    outside pixel, outside the distance to the nearest object pixel (the two terms
    are never both nonzero). It is what the boundary and Hausdorff-DT losses weight
    the errors by. With the ``edt`` package (``backend="edt"`` or ``"auto"`` on the
    CPU) it is one call per image instead of two; other backends add the two
    transforms.

    Convention:
        An image without a boundary (empty or full) follows :func:`edt`: the one
        nonzero term is the distance to the nearest point just outside the image.

    Args:
        mask, spacing, backend, dtype: as in :func:`edt`.

    Example:
        >>> import torch
        >>> two_sided_distance(torch.tensor([[0, 0, 1, 1, 1, 0]]), backend="torch")
        tensor([[2., 1., 1., 2., 1., 1.]])
    """
    fg, spacing_t, resolved, dtype = _checked(mask, spacing, backend, dtype)
    if fg.numel() == 0:
        return torch.zeros(fg.shape, dtype=dtype, device=fg.device)
    if resolved == "edt":
        return _edt_numpy(fg, spacing_t, "edt", dtype, two_sided=True)
    both = edt(torch.cat([fg, ~fg]), spacing, backend=backend, dtype=dtype)
    inside, outside = both.split(fg.shape[0])
    return inside + outside


@with_docs(_RETURNS_RAISES)
def signed_distance(mask: torch.Tensor, spacing: float | Sequence[float] | None = None, *, backend: str = "auto",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Signed distance map (level-set function) of a batch of binary masks.

    The map :math:`\phi` of the boundary loss (seed 001, section 4.1, after
    Kervadec et al.): negative inside the object, positive outside,

    .. math::

        \phi = D(\lnot G) - D(G),

    where :math:`D` is :func:`edt` and :math:`G` the mask. On a pixel grid, an
    outside pixel gets :math:`+` its distance to the nearest object pixel and
    an object pixel gets :math:`-` its distance to the nearest outside pixel.
    Every value is at least one pixel size in magnitude: there is no zero
    level; the contour lies between the pixels of value :math:`-s` and
    :math:`+s`. (Some implementations shift the inside by one pixel so that
    the object's rim is 0; this one does not.)

    Convention:
        The rule for images without background in :func:`edt` (padding with
        background) carries over, so :math:`\phi` is finite everywhere:

        * Empty mask (no object): :math:`\phi > 0` is the distance to the
          nearest point just outside the image, as if the object surrounded
          the image. Every predicted object pixel is thus penalised by the
          boundary loss, more so far from the border.
        * Full mask: :math:`\phi < 0` is minus that distance.

    Args:
        mask: bool or integer tensor of 0 and 1, shape ``[B, *spatial]``.
        spacing, backend, dtype: as in :func:`edt`.

    Example:
        >>> import torch
        >>> signed_distance(torch.tensor([[0, 0, 1, 1, 1, 0]]), backend="torch")
        tensor([[ 2.,  1., -1., -2., -1.,  1.]])
    """
    fg = _check_mask(mask)
    d = two_sided_distance(fg, spacing, backend=backend, dtype=dtype)
    return torch.where(fg, -d, d)


# ----------------------------------------------------------------------------- chessboard

def min_max_line(f: torch.Tensor, step: float) -> torch.Tensor:
    r"""``g_i = min_j max(f_j, step |i - j|)`` along the last axis (one pass of the chessboard transform).

    With :math:`m_r(i) = \min_{|i - j| \le r} f_j` (the minimum of the window of radius r,
    non-increasing in r), :math:`g_i = \min_r \max(m_r(i), s r)`: a non-increasing and an
    increasing function of r, so the minimum sits where they cross. Per pixel a binary
    search finds the smallest r with :math:`s r \ge m_r(i)`, and
    :math:`g_i = \min(s r, m_{r-1}(i))` (:math:`m_{n-1}(i)` when there is no such r).
    Each window minimum is two look-ups in a sparse table of the line (minima of the
    windows of length :math:`2^k`), so a pass costs :math:`O(n \log n)` per line instead
    of the :math:`O(n^2)` of all pairs, whatever the distances, and without a host sync.
    Exact: only minima, maxima and the products ``r * step`` of the direct form. Lines of
    at most 8 pixels take the all-pairs form.

    Args:
        f: ``[..., n]`` float values (``inf`` allowed).
        step: the pixel size along the axis, > 0.

    Returns:
        ``[..., n]``, the dtype of ``f``.

    Example:
        >>> min_max_line(torch.tensor([[float("inf")] * 4 + [0.0] + [float("inf")] * 5 + [2.5]]), 1.0).tolist()
        [[4.0, 3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.5, 2.5, 2.5]]
    """
    n = f.shape[-1]
    rows = f.reshape(-1, n)
    if n <= 8:
        return _min_max_all_pairs(rows, float(step)).view(f.shape)
    out = torch.empty_like(rows)
    levels = max(1, (n - 1).bit_length())
    chunk = max(1, _MINMAX_BLOCK // (n * (levels + 1)))
    for start in range(0, rows.shape[0], chunk):
        out[start:start + chunk] = _min_max_sparse(rows[start:start + chunk], float(step))
    return out.view(f.shape)


# Elements of one chunk of lines: the [rows, n, n] block of the all-pairs form, the
# [rows, levels, n] sparse table of the window form.
_MINMAX_BLOCK = 1 << 22


def _min_max_all_pairs(rows: torch.Tensor, step: float) -> torch.Tensor:
    n = rows.shape[-1]
    idx = torch.arange(n, device=rows.device)
    cost = (idx.view(n, 1) - idx.view(1, n)).abs().to(rows.dtype) * step  # [i, j]
    return torch.maximum(rows.unsqueeze(1), cost).amin(-1)


def _min_max_sparse(rows: torch.Tensor, step: float) -> torch.Tensor:
    """:func:`min_max_line` of ``[R, n]`` lines by binary search over window radii (see there)."""
    R, n = rows.shape
    dev = rows.device
    table = [rows]  # table[k][:, j] = min(rows[:, j : j + 2**k]) (truncated at the end of the line)
    while (1 << len(table)) <= n:
        prev, half = table[-1], 1 << (len(table) - 1)
        nxt = prev.clone()
        torch.minimum(prev[:, : n - half], prev[:, half:], out=nxt[:, : n - half])
        table.append(nxt)
    flat = torch.stack(table, 1).reshape(R, -1)  # [R, K * n]
    idx = torch.arange(n, device=dev)
    log2 = torch.zeros(n + 1, dtype=torch.long, device=dev)  # floor(log2(L)) for window lengths L
    for k in range(1, len(table)):
        log2[1 << k:] = k

    def window_min(radius: torch.Tensor) -> torch.Tensor:  # [R, n] radii -> m_r(i)
        a = (idx - radius).clamp_min(0)
        b = (idx + radius).clamp_max(n - 1)
        k = log2[b - a + 1]
        left = flat.gather(1, k * n + a)
        right = flat.gather(1, k * n + b - (1 << k) + 1)
        return torch.minimum(left, right)

    lo = torch.zeros(R, n, dtype=torch.long, device=dev)
    hi = torch.full((R, n), n, dtype=torch.long, device=dev)  # n: no radius in [0, n) crosses
    for _ in range(n.bit_length()):
        mid = (lo + hi) // 2
        crossed = mid.to(rows.dtype) * step >= window_min(mid.clamp_max(n - 1))
        open_ = lo < hi
        hi = torch.where(open_ & crossed, mid, hi)
        lo = torch.where(open_ & ~crossed, mid + 1, lo)
    r = lo.clamp_max(n - 1)
    at = torch.maximum(window_min(r), r.to(rows.dtype) * step)  # h(r*) (or h(n - 1) = m_{n-1})
    before = torch.where(r > 0, window_min((r - 1).clamp_min(0)), torch.full_like(rows, math.inf))
    return torch.minimum(at, before)


def chessboard_distance(
    mask: torch.Tensor,
    spacing: float | Sequence[float] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Exact chessboard distance transform of a batch of binary masks.

    .. math::

        D_b(p) = \min_{q \in \mathcal{B}_b} \max_d s_d \, |p_d - q_d|

    over the background pixels :math:`\mathcal{B}_b` (``mask`` 0) of image b: 0 on
    the background, the chessboard distance to the nearest background pixel on the
    foreground; for unit spacing the value of
    ``scipy.ndimage.distance_transform_cdt(mask[b], metric="chessboard")``.
    Separable: along the first axis :math:`g = \min_j f_j + s|i - j|`
    (two running minima), along each further axis :func:`min_max_line`
    (:func:`lattice_passes`).

    Convention:
        An image without background (no candidate) gives ``inf``; an image without
        foreground gives 0. Images are independent.

    Args:
        mask: bool or integer tensor of 0 and 1, ``[B, *spatial]``.
        spacing: pixel size per spatial axis (``None``: 1; a number: isotropic).
        dtype: floating point dtype of the result (computed in float64).

    Example:
        >>> chessboard_distance(torch.tensor([[[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]]))
        tensor([[[3., 2., 2., 2.],
                 [3., 2., 1., 1.],
                 [3., 2., 1., 0.]]])
    """
    fg = _check_mask(mask)
    ndim = fg.ndim - 1
    spacing = _check_spacing(spacing, ndim)
    dtype = _check_dtype(dtype)
    f = torch.where(fg, math.inf, 0.0).to(torch.float64)
    return lattice_passes(f, spacing, "chessboard").to(dtype)


def lattice_passes(f: torch.Tensor, spacing: Sequence[float], metric: str) -> torch.Tensor:
    r"""The separable passes of the taxicab or chessboard transform of ``f`` (float ``[N, *S]``:
    0 at the source pixels, ``inf`` elsewhere): one pass per spatial axis, along the first
    :math:`g_i = \min_j f_j + s|i - j|` for both metrics (two running minima), along each
    further one the same for taxicab and :func:`min_max_line` for chessboard.

    Example:
        >>> f = torch.tensor([[[0.0, math.inf, math.inf], [math.inf, math.inf, math.inf]]])
        >>> lattice_passes(f, (1.0, 1.0), "chessboard"), lattice_passes(f, (1.0, 1.0), "taxicab")
        (tensor([[[0., 1., 2.],
                 [1., 1., 2.]]]), tensor([[[0., 1., 2.],
                 [1., 2., 3.]]]))
    """
    for axis, step in enumerate(spacing):
        moved = f.movedim(axis + 1, -1)
        if metric == "taxicab" or axis == 0:
            moved = _min_plus_line(moved, float(step))
        else:
            moved = min_max_line(moved.contiguous(), float(step))
        f = moved.movedim(-1, axis + 1)
    return f.contiguous()


def _min_plus_line(f: torch.Tensor, step: float) -> torch.Tensor:
    """``g_i = min_j f_j + step |i - j|`` along the last axis (two running minima, exact)."""
    n = f.shape[-1]
    pos = torch.arange(n, dtype=f.dtype, device=f.device) * step
    left = torch.cummin(f - pos, dim=-1).values + pos
    right = torch.cummin((f + pos).flip(-1), dim=-1).values.flip(-1) - pos
    return torch.minimum(left, right)
