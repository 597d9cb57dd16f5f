"""Build loss modules from specs: strings, dicts and lists (for YAML / JSON configs).

A spec names registered losses (:func:`seglosses.list_losses`) with keyword arguments
and weights::

    "0.5*dice + 0.5*ce"
    "tversky(alpha=0.3, beta=0.7, domain='batch') + 0.1*confidence_penalty"
    "ramp(0.0, 1.0, 50)*boundary + generalized_dice"          # a scheduled weight
    {"terms": [{"name": "dice", "weight": 0.5}, {"name": "ce", "weight": 0.5}], "mode": "multiclass"}
    [{"name": "dice", "smooth": 1.0}, {"name": "focal", "weight": {"ramp": [0, 1, 10]}}]
    {"name": "tversky", "alpha": 0.3, "beta": 0.7}

The string form is parsed with :mod:`ast`, never evaluated: a sum (``+``, ``-``) of terms,
each a name or a call with keyword arguments whose values are Python literals, optionally
multiplied or divided by a number or by ``ramp(start, end, steps)`` (a
:class:`~seglosses.losses.compound.Ramp` schedule). Every loss module has a :meth:`spec`
that :func:`build_loss` turns back into an equal module.
"""
from __future__ import annotations

import ast
import inspect
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from ._options import did_you_mean
from .losses import SegLoss, WeightedSum
from .losses.compound import Ramp
from .registry import ALIASES, LOSSES, resolve

__all__ = ["build_loss", "loss_spec"]

Spec = Union[str, Mapping[str, Any], Sequence[Mapping[str, Any]], SegLoss]

_WEIGHT_KEYS = ("name", "weight")


class _Term:
    __slots__ = ("name", "weight", "explicit", "kwargs", "where")

    def __init__(self, name: str, weight: Any, explicit: bool, kwargs: Dict[str, Any], where: str) -> None:
        self.name, self.weight, self.explicit, self.kwargs, self.where = name, weight, explicit, kwargs, where


# --------------------------------------------------------------------------- string specs


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"`spec` {where}: {message}")


def _osa(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (typos such as 'dcie' for 'dice')."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _suggest(key: str, names) -> str:
    """``" (did you mean 'x'?)"``: the nearest name by edit distance, else difflib's closest."""
    names = list(names)
    if names:
        best = min(names, key=lambda n: (_osa(key, n), n))
        if _osa(key, best) <= max(1, len(key) // 3):
            return f" (did you mean {best!r}?)"
    return did_you_mean(key, names)


def _scale(w: Any, f: float, where: str = "weight") -> Any:
    if isinstance(w, Ramp):
        try:
            return Ramp(w.start * f, w.end * f, w.steps)
        except ValueError as e:
            raise _fail(where, f"a weight must be finite; {e}") from None
    return _finite(w * f, where)


def _finite(w: float, where: str) -> float:
    """A numeric weight, refused when it is not finite (``1e999``, an overflowing product)."""
    if not math.isfinite(w):
        raise _fail(where, f"a weight must be a finite number; got {w!r}")
    return w


def _mul_weights(a: Any, b: Any, where: str) -> Any:
    if isinstance(a, Ramp) and isinstance(b, Ramp):
        raise _fail(where, "a term can have one schedule; got a product of two ramps")
    if isinstance(a, Ramp):
        return _scale(a, b, where)
    return _scale(b, a, where)


def _weight_node(node: ast.AST, where: str) -> Optional[Any]:
    """The weight a node denotes (number or Ramp), or None when it is not a weight expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        try:
            return _finite(float(node.value), where)
        except OverflowError:  # an integer literal beyond the float range
            raise _fail(where, f"a weight must be a finite number; got an integer of {len(str(node.value))} "
                               f"digits") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        w = _weight_node(node.operand, where)
        return None if w is None else (_scale(w, -1.0, where) if isinstance(node.op, ast.USub) else w)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ramp":
        if node.keywords or len(node.args) != 3:
            raise _fail(where, "`ramp` must be called as ramp(start, end, steps) with three numbers")
        try:
            args = [ast.literal_eval(a) for a in node.args]
        except ValueError:
            raise _fail(where, "`ramp` arguments must be numbers") from None
        try:
            return Ramp(*args)
        except ValueError as e:
            raise _fail(where, str(e)) from None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
        a, b = _weight_node(node.left, where), _weight_node(node.right, where)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Div):
            if isinstance(b, Ramp) or b == 0:
                raise _fail(where, "a weight can be divided by a non-zero number only")
            return _scale(a, 1.0 / b, where)
        return _mul_weights(a, b, where)
    return None


def _term_node(node: ast.AST, text: str, where: str) -> Tuple[Any, bool, ast.AST]:
    """Split a term into (weight, explicit, call-or-name node)."""
    w = _weight_node(node, where)
    if w is not None:
        raise _fail(where, f"a term must name a loss; got only a weight {text!r}")
    if isinstance(node, (ast.Name, ast.Call)):
        return 1.0, False, node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner_w, _, inner = _term_node(node.operand, text, where)
        return (_scale(inner_w, -1.0, where) if isinstance(node.op, ast.USub) else inner_w), True, inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
        wl, wr = _weight_node(node.left, where), _weight_node(node.right, where)
        if isinstance(node.op, ast.Mult) and wl is not None:
            inner_w, _, inner = _term_node(node.right, text, where)
            return _mul_weights(wl, inner_w, where), True, inner
        if wr is not None:
            if isinstance(node.op, ast.Div):
                if isinstance(wr, Ramp) or wr == 0:
                    raise _fail(where, "a loss can be divided by a non-zero number only")
                wr = 1.0 / wr
            inner_w, _, inner = _term_node(node.left, text, where)
            return _mul_weights(inner_w, wr, where), True, inner
    raise _fail(where, f"each term must be `name`, `name(key=value, ...)` or `weight*name(...)`; got {text!r}")


def _split_sum(node: ast.AST, sign: float = 1.0) -> List[Tuple[float, ast.AST]]:
    """The signed terms of a sum, left to right, without recursion (``a + b + ...`` nests
    to the left: one level per term, far beyond Python's recursion limit in long specs)."""
    out: List[Tuple[float, ast.AST]] = []
    stack: List[Tuple[float, ast.AST]] = [(sign, node)]
    while stack:
        s, n = stack.pop()
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
            stack.append((s if isinstance(n.op, ast.Add) else -s, n.right))
            stack.append((s, n.left))  # popped first: terms come out in order
        else:
            out.append((s, n))
    return out


def _segments(text: str) -> Callable[[ast.AST], str]:
    """``node -> its source text``, as :func:`ast.get_source_segment` (which splits the
    whole text on every call: quadratic in the length of a long spec)."""
    lines = [line.encode() for line in text.splitlines(keepends=True)]

    def segment(node: ast.AST) -> str:
        first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
        start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        if first == last:
            return lines[first][start:end].decode()
        return b"".join([lines[first][start:]] + lines[first + 1:last] + [lines[last][:end]]).decode()

    return segment


def _parse_string(spec: str) -> List[_Term]:
    text = spec.strip()
    if not text:
        raise ValueError("`spec` must name at least one loss; got an empty string")
    try:
        tree = ast.parse(text, mode="eval")
    except (RecursionError, MemoryError):
        raise ValueError(f"`spec` must be a sum of weighted loss terms that Python can parse; got one nested too "
                         f"deeply ({len(text)} characters): write long sums as a list of term dicts") from None
    except SyntaxError as e:
        col = (e.offset or 1) - 1
        raise ValueError(f"`spec` must be a sum of weighted loss terms; got a syntax error at column {col}: "
                         f"{text!r}\n{' ' * (col + len('got ') + 1)}^ ({e.msg})") from None
    terms: List[_Term] = []
    source = _segments(text)
    for i, (sign, node) in enumerate(_split_sum(tree.body), start=1):
        seg = source(node)
        where = f"term {i} ({seg!r} at column {node.col_offset})"
        weight, explicit, call = _term_node(node, seg, where)
        if sign < 0:
            weight, explicit = _scale(weight, -1.0, where), True
        if isinstance(call, ast.Name):
            name, kwargs = call.id, {}
        else:
            if not isinstance(call.func, ast.Name):
                raise _fail(where, f"a loss must be called by its name; got {source(call.func)!r}")
            name = call.func.id
            if call.args:
                raise _fail(where, f"arguments of {name!r} must be given by keyword (key=value); got "
                                   f"{len(call.args)} positional")
            kwargs = {}
            for kw in call.keywords:
                if kw.arg is None:
                    raise _fail(where, "`**` arguments are not allowed; write key=value")
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    raise _fail(where, f"keyword {kw.arg!r} must have a literal value (number, string, "
                                       f"tuple, list, dict, True/False/None); got "
                                       f"{source(kw.value)!r}") from None
        terms.append(_Term(name, weight, explicit, kwargs, where))
    return terms


# --------------------------------------------------------------------------- dict / list specs


def _dict_weight(w: Any, where: str) -> Any:
    if isinstance(w, Mapping):
        if set(w) != {"ramp"}:
            raise _fail(where, f"a weight schedule must be {{'ramp': [start, end, steps]}}; got {dict(w)!r}")
        args = w["ramp"]
        if not isinstance(args, (list, tuple)) or len(args) != 3:
            raise _fail(where, f"'ramp' must be a list [start, end, steps]; got {args!r}")
        try:
            return Ramp(*args)
        except ValueError as e:
            raise _fail(where, str(e)) from None
    if callable(w) and not isinstance(w, (int, float)):
        return w
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise _fail(where, f"'weight' must be a number, a callable or {{'ramp': [start, end, steps]}}; "
                           f"got {w!r}")
    try:
        return _finite(float(w), where)
    except OverflowError:
        raise _fail(where, f"a weight must be a finite number; got an integer of {len(str(w))} digits") from None


def _parse_term_dict(d: Any, where: str) -> _Term:
    if not isinstance(d, Mapping):
        raise _fail(where, f"a term must be a dict with a 'name' key; got {type(d).__name__}")
    if "name" not in d or not isinstance(d["name"], str):
        raise _fail(where, f"a term must have a string 'name'; got keys {sorted(map(str, d))}")
    where = f"{where} (name {d['name']!r})"
    kwargs = {k: v for k, v in d.items() if k not in _WEIGHT_KEYS}
    explicit = "weight" in d
    weight = _dict_weight(d["weight"], where) if explicit else 1.0
    return _Term(d["name"], weight, explicit, kwargs, where)


def _parse_mapping(spec: Mapping[str, Any]) -> Tuple[List[_Term], Dict[str, Any]]:
    if "terms" in spec:
        terms = spec["terms"]
        if isinstance(terms, str) or not isinstance(terms, Sequence) or not terms:
            raise ValueError(f"`spec` 'terms' must be a non-empty list of term dicts; got {terms!r}")
        common = {k: v for k, v in spec.items() if k != "terms"}
        return [_parse_term_dict(t, f"terms[{i}]") for i, t in enumerate(terms)], common
    return [_parse_term_dict(spec, "term")], {}


# --------------------------------------------------------------------------- building


def _accepted(cls: type) -> Dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


def _build_term(term: _Term, common: Mapping[str, Any], used: set) -> SegLoss:
    try:
        entry = resolve(term.name)
    except ValueError:
        known = sorted(set(LOSSES) | set(ALIASES))
        key = str(term.name).strip().lower().replace("-", "_")
        raise _fail(term.where, f"must name a registered loss; got {term.name!r}{_suggest(key, known)}. "
                                f"Registered: {', '.join(sorted(LOSSES))}") from None
    accepted = _accepted(entry.cls)
    for key in term.kwargs:
        if key not in accepted:
            raise _fail(term.where, f"{entry.name!r} has no keyword argument {key!r}{_suggest(key, accepted)}; "
                                    f"valid: {', '.join(accepted)}")
    kwargs = {}
    for key, value in common.items():
        if key in accepted:
            kwargs[key] = value
            used.add(key)
    kwargs.update(term.kwargs)
    try:
        return entry.cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise _fail(term.where, str(e)) from None


def build_loss(spec: Spec, **common: Any) -> nn.Module:
    r"""Build a loss module from a spec string, dict or list of term dicts.

    .. math::
        L = \sum_k w_k\, L_k(\text{input}, \text{target})

    where each :math:`L_k` is a registered loss (by canonical name or alias, see
    :func:`seglosses.list_losses`) built with its keyword arguments, and :math:`w_k` a
    number or a schedule. Forms (see the module docstring for examples):

    * a string: a sum of terms ``name``, ``name(key=literal, ...)``, each optionally
      multiplied or divided by a number or multiplied by ``ramp(start, end, steps)``;
      ``a - b`` is ``a + (-1)*b``. Parsed with :mod:`ast`, never evaluated;
    * a dict ``{"name": ..., "weight": ..., **kwargs}`` (one term), or
      ``{"terms": [term dicts], **common}`` (top-level keys besides ``terms`` act as
      ``common``); a ``weight`` is a number, a callable ``step -> weight`` (Python API) or
      ``{"ramp": [start, end, steps]}``: linear from ``start`` at step 0 to ``end`` at
      ``steps``, then constant, advanced by :meth:`WeightedSum.step`;
    * a list of term dicts;
    * a loss module (returned as is).

    Keyword arguments given to ``build_loss`` (``mode``, ``from_logits``,
    ``ignore_index``, ``domain``, ...) go to every term that accepts them; a term's own
    arguments take precedence.

    Convention:
        A single term without a weight gives the bare loss module; anything else (several
        terms, or a weight) gives a :class:`~seglosses.losses.compound.WeightedSum`. Every
        module's :meth:`~seglosses.losses.SegLoss.spec` round-trips:
        ``build_loss(loss.spec())`` has the same type and ``config``.

    Args:
        spec: the spec (string, dict, list of dicts, or a module).
        **common: keyword arguments for every term that accepts them.

    Returns:
        The loss module.

    Raises:
        ValueError: malformed spec, unknown loss name, unknown keyword, non-literal value,
            a common keyword that no term accepts, or a value a loss rejects; the message
            names the term (its text and column, or its index in the list) and suggests
            the closest name.

    Example:
        >>> loss = build_loss("0.5*dice + 0.5*ce", mode="multiclass")
        >>> [(round(w, 2), type(l).__name__, l.config["mode"]) for w, l in loss.terms()]
        [(0.5, 'DiceLoss', 'multiclass'), (0.5, 'CrossEntropyLoss', 'multiclass')]
        >>> build_loss("tversky(alpha=0.4)").spec()
        'tversky(alpha=0.4)'
    """
    if isinstance(spec, nn.Module):
        if common:
            raise ValueError(f"`common` keyword arguments must be empty when `spec` is a module; got {sorted(common)}")
        return spec
    if isinstance(spec, str):
        terms, extra = _parse_string(spec), {}
    elif isinstance(spec, Mapping):
        terms, extra = _parse_mapping(spec)
    elif isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        if not spec:
            raise ValueError("`spec` must name at least one loss; got an empty list")
        terms, extra = [_parse_term_dict(t, f"terms[{i}]") for i, t in enumerate(spec)], {}
    else:
        raise TypeError(f"`spec` must be a string, a dict, a list of dicts or a loss module; got {type(spec).__name__}")
    merged = {**extra, **common}
    used: set = set()
    modules = [_build_term(t, merged, used) for t in terms]
    unused = sorted(set(merged) - used)
    if unused:
        names = sorted({p for t in terms for p in _accepted(resolve(t.name).cls)})
        hints = "".join(_suggest(k, names) for k in unused)
        raise ValueError(f"`common` keyword arguments must be accepted by at least one term; got {unused}{hints}")
    if len(terms) == 1 and not terms[0].explicit:
        return modules[0]
    return WeightedSum([(t.weight, m) for t, m in zip(terms, modules)])


# --------------------------------------------------------------------------- specs of modules


def _literal(value: Any, where: str) -> str:
    text = repr(value)
    try:
        ok = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        ok = False
    if not ok:
        raise ValueError(f"`loss` {where} must be a Python literal to have a spec; got {value!r}")
    return text


def _weight_spec(w: Any) -> str:
    if isinstance(w, Ramp):
        return repr(w)
    factor, inner = getattr(w, "factor", None), getattr(w, "inner", None)
    if isinstance(inner, Ramp) and isinstance(factor, (int, float)):
        return repr(_scale(inner, float(factor)))
    if callable(w):
        raise ValueError(f"`loss` weight must be a number or a Ramp to have a spec; got the callable {w!r}")
    return repr(float(w))


def _flat_terms(loss: WeightedSum, factor: Any = 1.0) -> List[Tuple[Any, nn.Module]]:
    out = []
    for w, term in loss.terms():
        if isinstance(term, WeightedSum):
            if callable(w) and not isinstance(w, Ramp):
                raise ValueError("`loss` nested sums must have numeric weights to have a spec")
            out += _flat_terms(term, _mul_weights(factor, w, "nested sum"))
        else:
            out.append((_mul_weights(factor, w, "weight") if not callable(w) or isinstance(w, Ramp) else w, term))
    return out


def loss_spec(loss: nn.Module) -> str:
    """The spec string of a loss module: ``name(key=value, ...)`` with the non-default
    arguments, or ``w1*a(...) + w2*b(...)`` for a :class:`WeightedSum`.

    Raises:
        ValueError: the module (or a term) is not registered, or holds a value that is not
            a Python literal or a weight that is an arbitrary callable.

    Example:
        >>> from seglosses import TverskyLoss
        >>> loss_spec(0.5 * TverskyLoss(alpha=0.2, domain="batch"))
        "0.5*tversky(alpha=0.2, domain='batch')"
    """
    if isinstance(loss, WeightedSum):
        text = ""
        for w, term in _flat_terms(loss):
            ws = _weight_spec(w)
            if text and ws.startswith("-"):
                text += f" - {ws[1:]}*{loss_spec(term)}"
            else:
                text += f"{' + ' if text else ''}{ws}*{loss_spec(term)}"
        return text
    name = getattr(type(loss), "registry_name", None)
    if name is None or not isinstance(loss, SegLoss):
        raise ValueError(f"`loss` must be a registered loss module to have a spec; got {type(loss).__name__}")
    defaults = {k: p.default for k, p in _accepted(type(loss)).items()}
    args = []
    for key, value in loss.config.items():
        if key in defaults and defaults[key] is not inspect.Parameter.empty and _same(defaults[key], value):
            continue
        args.append(f"{key}={_literal(value, f'config {key!r}')}")
    return f"{name}({', '.join(args)})" if args else name


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b) or (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
            and not isinstance(b, bool) and float(a) == float(b))
    except Exception:  # noqa: BLE001 - tensors and other odd defaults: not the same
        return False
