"""The study file: reading it, its settings and their checks (the keys and their defaults are
described in :mod:`seglosses.bench.study`).

:func:`load_study` reads a YAML, TOML or JSON file; :func:`parse_study` checks the top-level
settings and fills in :data:`DEFAULTS`; :func:`apply_overrides` applies the command line's
quick-run values. Each step lists all its problems at once (:func:`raise_problems`).
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from seglosses._options import did_you_mean
from seglosses.bench.evaluate import check_metric_names

__all__ = [
    "DEFAULTS",
    "COMPARABLE",
    "StudyError",
    "Study",
    "load_study",
    "parse_study",
    "raise_problems",
    "apply_overrides",
    "check_execution_settings",
]

DEFAULTS: Dict[str, Any] = {
    "name": None,
    "datasets": None,
    "losses": None,
    "domains": ["image"],
    "batch_sizes": [8],
    "effective_batch_sizes": [None],
    "seeds": [0],
    "epochs": [20],
    "steps_per_epoch": None,
    "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    "schedule": {"name": "constant"},
    "model": {"depth": 4, "width": 16, "norm": "batch", "prior_init": True},
    "sampler": {"ratio": "dataset"},
    "pretrain": None,
    "eval": {"metrics": None, "batch_size": None, "samples": 4},
    "amp": "auto",
    "num_workers": 0,
    "baseline": None,
    "threads": None,
    "resources": {"cpus": 1, "gpus": 0, "memory_gb": None},
    "ray": {"address": None, "results": "auto"},
    "slurm": {"partition": None, "time": 60, "array": False, "max_parallel": None, "setup": [], "extra": {},
              "folder": None, "cluster": "slurm"},
    "compare": None,
}
#: The factors a study can ``compare:`` (the report pairs configurations that differ in it only).
COMPARABLE = ("domain", "batch_size", "effective_batch_size", "epochs", "loss", "dataset", "pretrain")
_SINGULAR = {"domain": "domains", "batch_size": "batch_sizes", "effective_batch_size": "effective_batch_sizes",
             "seed": "seeds", "dataset": "datasets", "loss": "losses"}
_LISTS = ("domains", "batch_sizes", "effective_batch_sizes", "seeds", "epochs", "datasets", "losses")


class StudyError(ValueError):
    """A study file that cannot be read or has invalid settings (the message names the file and key).

    Example:
        >>> issubclass(StudyError, ValueError)
        True
    """


@dataclass
class Study:
    """A parsed study: the settings of :data:`DEFAULTS` with every list axis as a list.

    Attributes:
        name: the study's name (folder name under the output folder).
        settings: every key of :data:`DEFAULTS`.
        source: the study file, or ``None`` for the embedded default.
        base_dir: the folder relative paths are also tried against.

    Example:
        >>> Study("s", {"seeds": [0]})["seeds"]
        [0]
    """

    name: str
    settings: Dict[str, Any]
    source: Optional[str] = None
    base_dir: Path = field(default_factory=Path.cwd)

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]


def load_study(path: str | Path) -> Study:
    """Read and check a study file (YAML, TOML or JSON).

    Args:
        path: the study file.

    Returns:
        The parsed :class:`Study`.

    Raises:
        StudyError: a missing or unreadable file, an unknown suffix, invalid settings.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "mine.yaml"
        >>> _ = path.write_text("datasets: [synthetic]\\nlosses: [ce, dice]\\nseeds: [0, 1]\\n")
        >>> study = load_study(path)
        >>> study.name, study["seeds"], [e["label"] for e in study["losses"]]
        ('mine', [0, 1], ['ce', 'dice'])
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"`study` must be an existing file; got '{path}'")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        elif suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        elif suffix == ".json":
            raw = json.loads(text)
        else:
            raise StudyError(f"`study` must be a .yaml, .yml, .toml or .json file; got '{path}'")
    except StudyError:
        raise
    except Exception as err:  # noqa: BLE001 - parser errors of three libraries, re-raised with the file
        raise StudyError(f"`study` must be valid {suffix[1:].upper()}; got an error in '{path}': {err}") from None
    return parse_study(raw, source=str(path), base_dir=path.resolve().parent, default_name=path.stem)


def parse_study(raw: Any, *, source: Optional[str] = None, base_dir: str | Path | None = None,
                default_name: str = "study") -> Study:
    """Check a study mapping and fill in the defaults.

    Args:
        raw: the mapping read from a study file (keys of :data:`DEFAULTS`, singular or plural).
        source: the file it came from (for messages).
        base_dir: folder for relative paths (after the working directory).
        default_name: the name when ``raw`` has none.

    Returns:
        The :class:`Study`.

    Raises:
        StudyError: unknown keys, missing ``datasets``/``losses``, wrong types or values.

    Example:
        >>> s = parse_study({"datasets": [{"type": "synthetic"}], "losses": ["ce"], "seed": 1})
        >>> s.name, s["seeds"], s["epochs"]
        ('study', [1], [20])
    """
    where = f" in '{source}'" if source else ""
    if not isinstance(raw, Mapping):
        raise StudyError(f"`study` must be a mapping of settings{where}; got {type(raw).__name__}")
    problems: List[str] = []
    settings = _merge_defaults(raw, problems)
    _listify_axes(settings, problems)
    _check_axes(settings, problems)
    _check_pretrain(settings, problems)
    _check_eval(settings, problems)
    _check_losses(settings, problems)
    try:
        check_execution_settings(settings)
    except ValueError as err:
        problems.append(str(err))
    compare = settings.get("compare")
    if compare is not None and compare not in COMPARABLE:
        problems.append(f"`compare` must be null or a factor among {', '.join(COMPARABLE)}; got {compare!r}"
                        f"{did_you_mean(str(compare), COMPARABLE)}")
    name = settings["name"] or default_name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", str(name)):
        problems.append(f"`name` must use letters, digits, '.', '_' or '-'; got {name!r}")
    raise_problems(problems, source)
    settings["name"] = str(name)
    return Study(name=str(name), settings=settings, source=source,
                 base_dir=Path(base_dir) if base_dir is not None else Path.cwd())


def _merge_defaults(raw: Mapping[str, Any], problems: List[str]) -> Dict[str, Any]:
    """:data:`DEFAULTS` with the study's keys (singular or plural) put in; mappings are merged key by key."""
    settings = copy.deepcopy(DEFAULTS)
    seen = set()
    for key, value in raw.items():
        canon = _SINGULAR.get(key, key)
        if canon not in DEFAULTS:
            problems.append(f"`{key}` must be a study setting ({', '.join(DEFAULTS)}); "
                            f"got an unknown key{did_you_mean(str(key), list(DEFAULTS) + list(_SINGULAR))}")
            continue
        if canon in seen:
            problems.append(f"`{canon}` must be given once; got it twice (singular and plural)")
            continue
        seen.add(canon)
        if isinstance(DEFAULTS[canon], dict) and isinstance(value, Mapping):
            settings[canon] = {**DEFAULTS[canon], **value}
        else:
            settings[canon] = copy.deepcopy(value)
    return settings


def _listify_axes(settings: Dict[str, Any], problems: List[str]) -> None:
    """Every axis of the grid as a list; ``datasets`` and ``losses`` must list something."""
    for key in _LISTS:
        value = settings[key]
        if value is None or isinstance(value, (str, int, float, Mapping)):
            settings[key] = [value] if value is not None else None
        elif not isinstance(value, list):
            problems.append(f"`{key}` must be a value or a list; got {type(value).__name__}")
            settings[key] = copy.deepcopy(DEFAULTS[key])
    for key in ("datasets", "losses"):
        if not settings[key]:
            problems.append(f"`{key}` must list at least one entry; got none")
            settings[key] = []


def _check_axes(settings: Mapping[str, Any], problems: List[str]) -> None:
    for d in settings["domains"] or []:
        if d not in ("image", "batch"):
            problems.append(f"`domains` must hold 'image' or 'batch'; got {d!r}")
    for key in ("batch_sizes", "seeds", "epochs"):
        for v in settings[key] or []:
            low = 0 if key == "seeds" else 1
            if not _is_int(v, low):
                problems.append(f"`{key}` must hold integers >= {low}; got {v!r}")
    for v in settings["effective_batch_sizes"] or []:
        if v is not None and not _is_int(v, 1):
            problems.append(f"`effective_batch_size` must hold integers >= 1 or null; got {v!r}")


def _check_pretrain(settings: Dict[str, Any], problems: List[str]) -> None:
    pre = settings["pretrain"]
    if pre is None:
        return
    if not isinstance(pre, Mapping) or set(pre) - {"loss", "epochs", "label"} or "epochs" not in pre:
        problems.append(f"`pretrain` must be null or {{loss: <spec>, epochs: N}}; got {pre!r}")
    elif not _is_int(pre["epochs"], 1):
        problems.append(f"`pretrain.epochs` must be an integer >= 1; got {pre['epochs']!r}")
    else:
        settings["pretrain"] = {"loss": pre.get("loss", "ce"), "epochs": int(pre["epochs"]),
                                "label": pre.get("label")}


def _check_eval(settings: Dict[str, Any], problems: List[str]) -> None:
    if not isinstance(settings["eval"], Mapping):
        problems.append(f"`eval` must be a mapping (metrics, batch_size, samples); got {settings['eval']!r}")
        return
    metrics = settings["eval"].get("metrics")
    if metrics is not None:
        names = [metrics] if isinstance(metrics, str) else list(metrics) if isinstance(metrics, list) else None
        if names is None:
            problems.append(f"`eval.metrics` must be a list of metric names or null; got {metrics!r}")
        else:
            for name in names:
                try:
                    check_metric_names([name], "eval.metrics")
                except ValueError as err:
                    problems.append(str(err))
            settings["eval"]["metrics"] = names
    unknown = set(settings["eval"]) - {"metrics", "batch_size", "samples", "positives_only"}
    if unknown:
        problems.append(f"`eval` keys must be among metrics, batch_size, samples, positives_only; "
                        f"got {sorted(unknown)}")
    if not isinstance(settings["eval"].get("positives_only", False), bool):
        problems.append(f"`eval.positives_only` must be true or false; got {settings['eval']['positives_only']!r}")


def _check_losses(settings: Dict[str, Any], problems: List[str]) -> None:
    """Each ``losses`` entry as ``{"label": ..., "loss": spec}``."""
    entries = []
    for i, e in enumerate(settings["losses"]):
        try:
            entries.append(_loss_entry(e, ""))
        except StudyError as err:
            problems.append(f"`losses[{i}]`: {err}")
    settings["losses"] = entries


def _is_int(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def raise_problems(problems: Sequence[str], source: Optional[str] = None) -> None:
    """Raise one :class:`StudyError` listing every problem (nothing when there is none).

    Each problem names where it is in the study file (``model.dpeth``, ``losses[2]``).

    Example:
        >>> raise_problems(["`a` must be 1; got 2", "`b` must be 3; got 4"], "s.yaml")
        Traceback (most recent call last):
        ...
        seglosses.bench.studyfile.StudyError: the study 's.yaml' has 2 problems:
          - `a` must be 1; got 2
          - `b` must be 3; got 4
    """
    if not problems:
        return
    if len(problems) == 1:
        raise StudyError(problems[0] + (f" (in '{source}')" if source else ""))
    what = f"the study '{source}'" if source else "the study"
    raise StudyError(f"{what} has {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems))


def _loss_entry(entry: Any, where: str) -> Dict[str, Any]:
    """``{"label": str, "loss": spec}`` from a spec string, a labelled mapping or a build_loss dict."""
    if isinstance(entry, str):
        return {"label": entry.strip(), "loss": entry}
    if isinstance(entry, Mapping) and "loss" in entry:
        extra = set(entry) - {"label", "loss"}
        if extra:
            raise StudyError(f"`losses` entries with 'loss' take only 'label' besides{where}; got {sorted(extra)}")
        return {"label": str(entry.get("label") or _spec_text(entry["loss"])), "loss": entry["loss"]}
    if isinstance(entry, (Mapping, list)):
        return {"label": _spec_text(entry), "loss": entry}
    raise StudyError(f"`losses` entries must be build_loss specs (string or mapping){where}; got {entry!r}")


def _spec_text(spec: Any) -> str:
    return spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True)


def apply_overrides(study: Study, *, epochs: Optional[int] = None, max_images: Optional[int] = None,
                    size: Optional[int] = None, width: Optional[int] = None, seeds: Optional[Sequence[int]] = None,
                    pretrain_epochs: Optional[int] = None, losses: Optional[Sequence[str]] = None) -> Study:
    """A copy of the study with quick-run overrides (the command line's debug options).

    ``epochs`` replaces every epoch count; ``max_images`` caps the images of every split
    (synthetic data: ``n_images``); ``size`` sets the synthetic image size, and for other data
    the training crop and a central crop of the evaluation items; ``width`` the U-Net width;
    ``seeds`` the seeds; ``pretrain_epochs`` the pre-training epochs; ``losses`` keeps the losses
    whose label or spec is listed. The values get the study file's checks (``--epochs 0`` is refused).

    Raises:
        StudyError: a value the study file would not accept, or ``losses`` naming none of the study's.

    Example:
        >>> s = parse_study({"datasets": [{"type": "synthetic"}], "losses": ["ce", "dice"]})
        >>> t = apply_overrides(s, epochs=1, losses=["dice"])
        >>> t["epochs"], [e["label"] for e in t["losses"]]
        ([1], ['dice'])
    """
    problems = []
    for flag, value, low in (("--epochs", epochs, 1), ("--max-images", max_images, 1), ("--size", size, 1),
                             ("--width", width, 1), ("--pretrain-epochs", pretrain_epochs, 1)):
        if value is not None and not _is_int(value, low):
            problems.append(f"`{flag}` must be an integer >= {low}; got {value!r}")
    for value in seeds or []:
        if not _is_int(value, 0):
            problems.append(f"`--seeds` must hold integers >= 0; got {value!r}")
    if seeds is not None and not seeds:
        problems.append("`--seeds` must hold at least one seed; got none")
    raise_problems(problems)
    s = copy.deepcopy(study)
    st = s.settings
    if epochs is not None:
        st["epochs"] = [int(epochs)]
    if seeds is not None:
        st["seeds"] = [int(x) for x in seeds]
    if width is not None:
        st["model"]["width"] = int(width)
    if pretrain_epochs is not None and st["pretrain"] is not None:
        st["pretrain"]["epochs"] = int(pretrain_epochs)
    if losses is not None:
        wanted = [str(x).strip() for x in losses]
        kept = [e for e in st["losses"] if e["label"] in wanted or _spec_text(e["loss"]) in wanted]
        if not kept:
            labels = [e["label"] for e in st["losses"]]
            raise StudyError(f"`--losses` must name losses of the study ({', '.join(labels)}); got {wanted}")
        st["losses"] = kept
    if max_images is not None or size is not None:
        entries = []
        for entry in st["datasets"]:
            entry = dict(entry) if isinstance(entry, Mapping) else {"preset": entry}
            if max_images is not None:
                entry["max_images"] = int(max_images)
            if size is not None:
                entry["size_override"] = int(size)
            entries.append(entry)
        st["datasets"] = entries
    return s


_EXECUTION_KEYS = {
    "resources": {"cpus", "gpus", "memory_gb"},
    "ray": {"address", "results"},
    "slurm": {"partition", "time", "array", "max_parallel", "setup", "extra", "folder", "cluster"},
}


def _number(value: Any, name: str, low: float, *, integer: bool = False, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"`{name}` must be {kind} >= {low:g}{' or null' if allow_none else ''}; got {value!r}")


def check_execution_settings(settings: Mapping[str, Any]) -> None:
    """Check the study keys that say how runs execute (``threads``, ``resources``, ``ray``, ``slurm``).

    None of them changes a result, so none is part of a run's id.

    Raises:
        ValueError: an unknown key or a bad value (the message names the key).

    Example:
        >>> check_execution_settings({"threads": 2, "resources": {"cpus": 2, "gpus": 0}})
        >>> check_execution_settings({"resources": {"cpu": 2}})
        Traceback (most recent call last):
        ...
        ValueError: `resources` keys must be among cpus, gpus, memory_gb; got ['cpu']
    """
    _number(settings.get("threads"), "threads", 1, integer=True)
    for key, allowed in _EXECUTION_KEYS.items():
        value = settings.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise ValueError(f"`{key}` must be a mapping ({', '.join(sorted(allowed))}); got {value!r}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"`{key}` keys must be among {', '.join(sorted(allowed))}; got {unknown}")
    res = settings.get("resources") or {}
    _number(res.get("cpus"), "resources.cpus", 1)
    _number(res.get("gpus"), "resources.gpus", 0)
    _number(res.get("memory_gb"), "resources.memory_gb", 0)
    ray_cfg = settings.get("ray") or {}
    if ray_cfg.get("results") not in (None, "shared", "return", "auto"):
        raise ValueError(f"`ray.results` must be 'shared', 'return' or 'auto'; got {ray_cfg.get('results')!r}")
    slurm = settings.get("slurm") or {}
    _number(slurm.get("time"), "slurm.time", 1, integer=True)
    _number(slurm.get("max_parallel"), "slurm.max_parallel", 1, integer=True)
    if slurm.get("cluster") not in (None, "slurm", "local"):
        raise ValueError(f"`slurm.cluster` must be 'slurm' or 'local'; got {slurm.get('cluster')!r}")
    setup = slurm.get("setup")
    if setup is not None and (isinstance(setup, str) or not all(isinstance(x, str) for x in setup)):
        raise ValueError(f"`slurm.setup` must be a list of shell lines; got {setup!r}")
