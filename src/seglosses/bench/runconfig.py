"""The typed configuration of one benchmark run, read once from its mapping.

A run's configuration travels as a plain mapping (it is written to ``config.json`` as is, and
the study, the executors and the report read it); :class:`RunConfig` reads it once, fills the
defaults and converts the numbers, so the training code works with named, typed fields instead
of nested ``.get(...)`` look-ups. The mapping's keys are those of :mod:`seglosses.bench.study`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["EvalConfig", "RunConfig"]


def _section(config: Mapping[str, Any], key: str) -> Dict[str, Any]:
    """``config[key]`` as a dict; an absent or ``null`` section is empty."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"`{key}` must be a mapping; got {type(value).__name__} {value!r}")
    return dict(value)


def _int(config: Mapping[str, Any], key: str, default: Optional[int] = None) -> int:
    value = config.get(key)
    if value is None:
        if default is None:
            raise ValueError(f"`{key}` must be given in the run configuration; got none")
        return default
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"`{key}` must be an integer; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` section: the final evaluation's ``metrics`` (``None``: the default set), its
    ``batch_size`` (``None``: the training micro-batch) and the number of ``samples`` saved for
    the report's figure."""

    metrics: Optional[List[str]] = None
    batch_size: Optional[int] = None
    samples: int = 4

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> "EvalConfig":
        """Example:
            >>> EvalConfig.from_mapping({"metrics": ["dice"], "samples": 0})
            EvalConfig(metrics=['dice'], batch_size=None, samples=0)
        """
        metrics = section.get("metrics") or None
        size = section.get("batch_size") or None
        return cls(metrics=list(metrics) if metrics is not None else None,
                   batch_size=int(size) if size is not None else None, samples=_int(section, "samples", 4))


@dataclass(frozen=True)
class RunConfig:
    """The settings of one run (the keys of a run configuration; see :mod:`seglosses.bench.study`).

    Example:
        >>> cfg = RunConfig.from_mapping({"loss": "dice", "batch_size": 2, "seed": 0, "epochs": 1})
        >>> cfg.effective_batch_size, cfg.model, cfg.eval.samples, cfg.amp
        (2, {}, 4, 'auto')
    """

    loss: Any
    seed: int
    epochs: int
    batch_size: int
    effective_batch_size: int
    domain: Optional[str] = None
    label: Optional[str] = None
    run_id: Optional[str] = None
    model: Dict[str, Any] = field(default_factory=dict)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    schedule: Dict[str, Any] = field(default_factory=dict)
    sampler: Dict[str, Any] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    amp: Optional[str] = "auto"
    num_workers: int = 0
    steps_per_epoch: Optional[int] = None
    pretrain_run: Optional[str] = None

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> "RunConfig":
        """Read a run configuration mapping (defaults filled, numbers converted).

        Raises:
            ValueError: a required key is missing, a number is not an integer or a section is
                not a mapping.
        """
        if "loss" not in config:
            raise ValueError("`loss` must be given in the run configuration; got none")
        batch_size = _int(config, "batch_size")
        steps = config.get("steps_per_epoch")
        return cls(
            loss=config["loss"], seed=_int(config, "seed"), epochs=_int(config, "epochs"), batch_size=batch_size,
            effective_batch_size=_int(config, "effective_batch_size", 0) or batch_size,
            domain=config.get("domain"), label=config.get("label"), run_id=config.get("run_id"),
            model=_section(config, "model"), optimizer=_section(config, "optimizer"),
            schedule=_section(config, "schedule"), sampler=_section(config, "sampler"),
            eval=EvalConfig.from_mapping(_section(config, "eval")), amp=config.get("amp", "auto"),
            num_workers=_int(config, "num_workers", 0), steps_per_epoch=int(steps) if steps is not None else None,
            pretrain_run=_section(config, "pretrain").get("run"),
        )
