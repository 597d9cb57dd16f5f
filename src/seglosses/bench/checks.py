"""The whole-study check that runs before the first run trains.

:func:`parse_study <seglosses.bench.study.parse_study>` checks a study file's top-level settings;
:func:`check_study` checks everything a run would otherwise find out only when it starts: every
loss spec built (in the data sets' modes and the study's domains), the model, optimiser,
schedule, sampler and evaluation settings (keys, with a did-you-mean, and values), and every
data-set entry (preset, type, keys, the folders and files it names). :func:`validate_study`
raises one :class:`~seglosses.bench.studyfile.StudyError` listing every problem, each with where it
is in the study file, so a misspelt key never fails a study after other runs have trained.

Loading the data itself (reading images, mask values) still happens when a data set's turn comes.
"""
from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence

import torch

from seglosses._options import did_you_mean
from seglosses.bench.builders import build_optimizer, build_run_loss, build_scheduler
from seglosses.bench.data import spec as _data
from seglosses.bench.studydata import resolve_dataset
from seglosses.bench.studyfile import Study, StudyError, raise_problems
from seglosses.bench.unet import UNet

__all__ = ["check_study", "validate_study"]

_SCHEDULE_KEYS = {"constant": (), "cosine": ("min_lr",), "step": ("step_size", "gamma"), "poly": ("power",)}
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
_AMP = ("auto", "bf16", "fp16", "off")


def validate_study(study: Study) -> None:
    """Raise one :class:`~seglosses.bench.studyfile.StudyError` listing every problem :func:`check_study` finds.

    Example:
        >>> from seglosses.bench.study import parse_study
        >>> study = parse_study({"datasets": ["synthetic"], "losses": ["dcie"], "model": {"dpeth": 2}})
        >>> validate_study(study)
        Traceback (most recent call last):
        ...
        seglosses.bench.studyfile.StudyError: the study has 2 problems:
          - `losses[0]` ('dcie'): `spec` term 1 ('dcie' at column 0): must name a registered loss; got 'dcie' ...
          - `model.dpeth` must be one of the U-Net settings (...); got an unknown key (did you mean 'depth'?)
    """
    raise_problems(check_study(study), study.source)


def check_study(study: Study) -> List[str]:
    """Every problem of a parsed study, each naming where it is (``model.dpeth``, ``losses[2]``).

    Example:
        >>> from seglosses.bench.study import parse_study
        >>> check_study(parse_study({"datasets": ["synthetic"], "losses": ["ce"], "optimizer": {"lr": -1}}))
        ['`optimizer.lr` must be a finite number > 0; got -1']
    """
    st = study.settings
    problems: List[str] = []
    modes = _dataset_modes(st["datasets"], study.base_dir, problems)
    domains = list(st["domains"]) or [None]
    for i, entry in enumerate(st["losses"]):
        message = _loss_problem(entry["loss"], modes, domains)
        if message:
            problems.append(f"`losses[{i}]` ({entry['label']!r}): {message}")
    if st["pretrain"] is not None:
        message = _loss_problem(st["pretrain"]["loss"], modes, [None])
        if message:
            problems.append(f"`pretrain.loss`: {message}")
    problems += _model_problems(st["model"])
    problems += _optimizer_problems(st["optimizer"])
    problems += _schedule_problems(st["schedule"])
    problems += _other_problems(st)
    return problems


# ------------------------------------------------------------------------------------------------


def _dataset_modes(entries: Sequence[Any], base_dir: Path, problems: List[str]) -> List[Optional[str]]:
    """Check every data-set entry; the loss modes they need (``None``: known only once loaded)."""
    modes: List[Optional[str]] = []
    names: List[str] = []
    for i, entry in enumerate(entries):
        where = f"`datasets[{i}]`"
        try:
            spec = resolve_dataset(entry, base_dir)
        except StudyError as err:
            problems.append(f"{where}: {err}")
            continue
        spec = {k: v for k, v in spec.items() if k not in ("max_images", "size_override", "class_names")}
        kind = spec.get("type")
        if kind not in _data._TYPE_KEYS:
            hint = did_you_mean(kind, _data._TYPE_KEYS) if isinstance(kind, str) else ""
            problems.append(f"{where}: `type` must be one of {', '.join(map(repr, _data._TYPE_KEYS))}; "
                            f"got {kind!r}{hint}")
            continue
        allowed = {**_data._COMMON_KEYS, **_data._TYPE_KEYS[kind]}
        for key in spec:
            if key not in allowed:
                problems.append(f"{where}: `{key}` must be a key of a {kind!r} data set ({', '.join(sorted(allowed))}); "
                                f"got an unknown key{did_you_mean(str(key), allowed)}")
        name = str(spec.get("name"))
        if name in names:
            problems.append(f"{where}: `name` must be unique among the data sets; got {name!r} twice (set `name`)")
        names.append(name)
        for key in ("images", "masks", "manifest"):
            value = spec.get(key)
            for path in value if isinstance(value, list) else [value]:
                if isinstance(path, str) and not Path(path).exists():
                    problems.append(f"{where}: `{key}` must be an existing path; got '{path}'")
        if kind == "synthetic":
            num_classes = spec.get("num_classes")
            multi = spec.get("mode", "binary") != "binary" or (num_classes is not None and num_classes != 2)
            modes.append("multiclass" if multi else "binary")
        else:
            modes.append(spec.get("num_classes") and ("binary" if spec["num_classes"] == 2 else "multiclass"))
    return modes


def _loss_problem(spec: Any, modes: Sequence[Optional[str]], domains: Sequence[Optional[str]]) -> Optional[str]:
    """The error of building ``spec`` in the data sets' modes (a loss that builds in no mode at all
    when a data set's mode is not known yet), or ``None``."""
    wanted = sorted({m for m in modes if m is not None}) or []
    unknown = any(m is None for m in modes) or not modes
    for mode in wanted:
        message = _build_error(spec, mode, domains)
        if message:
            return message
    if unknown:
        errors = [_build_error(spec, mode, domains) for mode in ("binary", "multiclass")]
        if all(errors):
            return errors[0]
    return None


def _build_error(spec: Any, mode: str, domains: Sequence[Optional[str]]) -> Optional[str]:
    try:
        for domain in domains:
            build_run_loss(spec, mode, domain)
    except (ValueError, TypeError, RecursionError) as err:
        return str(err)
    return None


def _keys(where: str, cfg: Any, allowed: Sequence[str], what: str) -> List[str]:
    if not isinstance(cfg, Mapping):
        return [f"`{where}` must be a mapping of {what} settings; got {cfg!r}"]
    return [f"`{where}.{key}` must be one of the {what} settings ({', '.join(allowed)}); got an unknown key"
            f"{did_you_mean(str(key), allowed)}" for key in cfg if key not in allowed]


def _model_problems(cfg: Any) -> List[str]:
    params = [p for p in inspect.signature(UNet.__init__).parameters if p not in ("self", "in_channels", "num_classes")]
    problems = _keys("model", cfg, params + ["prior_init"], "U-Net")
    if problems:
        return problems
    cfg = dict(cfg)
    if not isinstance(cfg.pop("prior_init", False), bool):
        problems.append(f"`model.prior_init` must be true or false; got {dict(cfg).get('prior_init')!r}")
    try:
        UNet(1, 1, **cfg)
    except (ValueError, TypeError) as err:
        problems.append(f"`model`: {err}")
    return problems


def _positive(value: Any, low_ok: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if low_ok else value > 0


def _optimizer_problems(cfg: Any) -> List[str]:
    if not isinstance(cfg, Mapping):
        return [f"`optimizer` must be a mapping of optimiser settings; got {cfg!r}"]
    name = str(cfg.get("name", "adam")).lower()
    if name not in _OPTIMIZERS:
        return [f"`optimizer.name` must be one of {', '.join(map(repr, _OPTIMIZERS))}; got {cfg.get('name')!r}"
                f"{did_you_mean(name, _OPTIMIZERS)}"]
    params = [p for p in inspect.signature(_OPTIMIZERS[name].__init__).parameters if p not in ("self", "params")]
    problems = _keys("optimizer", cfg, ["name", "grad_clip"] + params, f"{name!r} optimiser")
    if problems:
        return problems
    if "lr" in cfg and not _positive(cfg["lr"]):
        problems.append(f"`optimizer.lr` must be a finite number > 0; got {cfg['lr']!r}")
    if "weight_decay" in cfg and not _positive(cfg["weight_decay"], low_ok=True):
        problems.append(f"`optimizer.weight_decay` must be a finite number >= 0; got {cfg['weight_decay']!r}")
    if cfg.get("grad_clip") is not None and not _positive(cfg["grad_clip"]):
        problems.append(f"`optimizer.grad_clip` must be null or a finite number > 0; got {cfg['grad_clip']!r}")
    if not problems:
        try:
            build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
        except (ValueError, TypeError) as err:
            problems.append(f"`optimizer`: {err}")
    return problems


def _schedule_problems(cfg: Any) -> List[str]:
    if not isinstance(cfg, Mapping):
        return [f"`schedule` must be a mapping of schedule settings; got {cfg!r}"]
    name = str(cfg.get("name", "constant")).lower()
    if name not in _SCHEDULE_KEYS:
        return [f"`schedule.name` must be one of {', '.join(map(repr, _SCHEDULE_KEYS))}; got {cfg.get('name')!r}"
                f"{did_you_mean(name, _SCHEDULE_KEYS)}"]
    problems = _keys("schedule", cfg, ("name",) + _SCHEDULE_KEYS[name], f"{name!r} schedule")
    checks = {"min_lr": (True, "a finite number >= 0"), "gamma": (False, "a finite number > 0"),
              "power": (True, "a finite number >= 0")}
    for key, (low_ok, text) in checks.items():
        if key in cfg and key in _SCHEDULE_KEYS[name] and not _positive(cfg[key], low_ok):
            problems.append(f"`schedule.{key}` must be {text}; got {cfg[key]!r}")
    if "step_size" in cfg and (isinstance(cfg["step_size"], bool) or not isinstance(cfg["step_size"], int)
                               or cfg["step_size"] < 1):
        problems.append(f"`schedule.step_size` must be an integer >= 1; got {cfg['step_size']!r}")
    if not problems:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        try:
            build_scheduler(opt, cfg, 2)
        except (ValueError, TypeError) as err:
            problems.append(f"`schedule`: {err}")
    return problems


def _int_or_null(value: Any, low: int) -> bool:
    return value is None or (not isinstance(value, bool) and isinstance(value, int) and value >= low)


def _other_problems(st: Mapping[str, Any]) -> List[str]:
    problems: List[str] = []
    sampler = st["sampler"]
    if sampler is not None:
        problems += _keys("sampler", sampler, ["ratio"], "sampler")
        if isinstance(sampler, Mapping) and "ratio" in sampler:
            ratio = sampler["ratio"]
            if not (ratio in (None, False, "dataset") or (_positive(ratio) and ratio < 1)):
                problems.append(f"`sampler.ratio` must be 'dataset', null or a fraction in (0, 1); got {ratio!r}")
    ev = st["eval"]
    if isinstance(ev, Mapping):
        if not _int_or_null(ev.get("batch_size"), 1):
            problems.append(f"`eval.batch_size` must be null or an integer >= 1; got {ev.get('batch_size')!r}")
        if not _int_or_null(ev.get("samples", 4), 0) or ev.get("samples", 4) is None:
            problems.append(f"`eval.samples` must be an integer >= 0; got {ev.get('samples')!r}")
    if str(st["amp"]).lower() not in _AMP:
        problems.append(f"`amp` must be one of {', '.join(map(repr, _AMP))}; got {st['amp']!r}")
    if not _int_or_null(st["num_workers"], 0) or st["num_workers"] is None:
        problems.append(f"`num_workers` must be an integer >= 0; got {st['num_workers']!r}")
    if not _int_or_null(st["steps_per_epoch"], 1):
        problems.append(f"`steps_per_epoch` must be null or an integer >= 1; got {st['steps_per_epoch']!r}")
    if st["baseline"] is not None and not isinstance(st["baseline"], str):
        problems.append(f"`baseline` must be null or a loss label; got {st['baseline']!r}")
    return problems
