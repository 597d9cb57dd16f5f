r"""Studies for ``seglosses bench``: the configuration file, the grid of runs, run folders, resume.

A **study** compares losses on data sets: every combination of

    data sets × losses × loss domain (image / batch) × batch sizes × effective batch sizes
    × epochs × seeds

is one **run** (seed 000 section 3: one U-Net per configuration; seed 003: pre-train, then
fine-tune a copy per loss). A study file is YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON:

.. code-block:: yaml

    name: isbi2012                      # default: the file's stem
    datasets:                           # one line per data set
      - isbi2012-em                     # a known data set of the shared folder (see PRESETS)
      - {type: synthetic, n_images: 200, size: 64}          # any build_dataset spec
      - {preset: isbi2012-em, crop: 128, name: isbi-128}    # a preset with changes
      - {type: folder, images: imgs, masks: labels, class_names: [background, tumour]}
    losses:                             # any seglosses.build_loss spec, optionally labelled
      - ce
      - {label: Dice+CE, loss: "0.5*dice + 0.5*ce"}
      - "tversky(alpha=0.3, beta=0.7)"
    domains: [image, batch]             # for the losses that take a domain; others run once
    batch_sizes: [8]                    # images per forward pass
    effective_batch_size: null          # images per optimiser step (exact batchwise, see train)
    seeds: [0, 1, 2]
    epochs: 20
    steps_per_epoch: null               # null: one pass over the training split
    optimizer: {name: adam, lr: 1.0e-3, weight_decay: 0.0, grad_clip: null}
    schedule: {name: constant}          # constant | cosine | step | poly
    model: {depth: 4, width: 16, norm: batch, groups: 8, dropout: 0.0, prior_init: true}
    sampler: {ratio: dataset}           # seed 000 §3.1; null: plain shuffling; or a fraction
    pretrain: null                      # seed 003: {loss: ce, epochs: 50}
    eval: {metrics: null, batch_size: null, samples: 4}   # positives_only: true evaluates only the
                                        # items (quadrants, tiles) with foreground (seed 000 §3.2)
    amp: auto                           # CUDA only: auto | bf16 | fp16 | off
    num_workers: 0                      # data-loader workers per run (at most the run's threads)
    baseline: null                      # the report's reference loss (default: the first)
    # how the runs execute: never part of a run's id (see seglosses.bench.executors)
    threads: null                       # torch threads per run; null: usable cores / --workers
    resources: {cpus: 1, gpus: 0, memory_gb: null}   # per run, for --executor ray and slurm
    ray: {address: null, results: auto} # results: shared | return | auto (see below)
    slurm: {partition: null, time: 60, array: false, max_parallel: null, setup: [], extra: {},
            folder: null, cluster: slurm}  # time in minutes; folder default OUT/<study>/slurm
    compare: null                       # a factor (domain, batch_size, loss, ...): the report pairs
                                        # configurations that differ only in it

Keys may be given in the singular or plural (``seed: 0``, ``seeds: [0, 1]``). Relative
paths are resolved against the working directory, then against the study file's folder.

Runs live in ``OUT/<study>/runs/<data set>/<label>-s<seed>-<hash>``; the hash covers every
setting that changes the result, so an edited study gets new folders and an unchanged one
finds its finished runs (skipped) and its interrupted ones (resumed from the last checkpoint).
``OUT/<study>/study.json`` lists the runs in the study's order, for the report.
``OUT/<study>/.locks/`` holds one lock file per run (see :class:`~seglosses.bench.runfiles.RunLock`).

Checks: :func:`parse_study` checks the top-level settings and :func:`apply_overrides` the
command-line values; :func:`run_study` then checks the whole study
(:mod:`seglosses.bench.checks`) before its first run. Each step lists all its problems at once.

**Executors** (``seglosses bench`` options; the same study file, folders and numbers):

=====================================  =====================================================
``--workers N`` (``--threads T``)      N runs at a time in worker processes of this machine,
                                       T threads each (default: usable cores // N)
``--executor ray [--ray-address A]``   each run a Ray task with ``resources`` (no address: a
                                       Ray instance on this machine); ``pip install
                                       "seglosses[ray]"``
``--executor slurm``                   each run a SLURM job (``slurm.array``: the runs ready
                                       together as one job array), through ``submitit``;
                                       ``pip install "seglosses[slurm]"``; a preempted or
                                       timed-out job is requeued and resumes from the run's
                                       checkpoint
=====================================  =====================================================

Command-line options override the study's keys: ``--threads``, ``--cpus-per-run``,
``--gpus-per-run``, ``--mem-per-run``, ``--ray-address``, ``--ray-results``,
``--slurm-partition``, ``--slurm-time``, ``--slurm-array``, ``--slurm-max-parallel``.
Every executor applies the same rules (finished runs skipped, damaged results run again,
interrupted runs resumed, a run held by another process's lock left for later, failures
recorded, pre-training before the runs that start from it) and gives the sequential run's
numbers bit for bit, for the same ``threads`` per run (a different thread count groups the
floating-point sums differently; the runs' ``config.json`` records it).

Storage: runs write their folders where they train, so with ``--workers``, SLURM, and Ray on
one machine or with ``ray.results: shared``, ``OUT`` must be visible to every worker at the same
path (the cluster's shared file system). With ``ray.results: return`` a run trains in a
temporary folder of its worker and sends its files back; the driver writes them into ``OUT``
(a resumed run gets its checkpoint sent along). ``auto`` (default) returns the files only from
workers that cannot see ``OUT``. Data-set folders must be readable at the same paths on every
machine; synthetic data sets are generated where they are used.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from seglosses._options import did_you_mean
from seglosses.bench.data import BenchData, build_dataset, foreground_flags, positive_evaluation
from seglosses.bench.evaluate import check_metric_names
from seglosses.bench.executors import Executor, InlineExecutor, check_execution_settings, execute_runs
from seglosses.bench.progress import StudyProgress
from seglosses.bench.train import (
    RunInterrupted,
    atomic_write_json,
    build_run_loss,
    distributed_context,
    loss_has_domain,
)

__all__ = [
    "PRESETS",
    "StudyError",
    "Study",
    "RunSpec",
    "StudyOutcome",
    "shared_folder",
    "load_study",
    "parse_study",
    "apply_overrides",
    "resolve_dataset",
    "build_data",
    "plan_runs",
    "run_study",
]

#: Known data sets of the shared folder (``$SEGLOSSES_SHARED/datasets/<name>``), with the
#: settings their README gives. Paths are relative to the data set's folder.
PRESETS: Dict[str, Dict[str, Any]] = {
    "isbi2012-em": {
        "type": "folder", "images": "images", "masks": "masks",
        # membrane (value 0) is the foreground class; the cell interior (255) the background
        "classes": {0: 1, 255: 0},
        # contiguous slices: neighbouring slices are correlated
        "split": {"train": "0-19", "val": "20-24", "test": "25-29"},
        "crop": 256, "quadrants": True, "class_names": ["cell interior", "membrane"],
    },
    # 44 H&E tiles of 512x512, one TCGA patient each; split by patient as the README suggests
    # (train 24, val 6, test 14 = the challenge's test images); random rotated 256 crops for
    # training, the four 256x256 quadrants for evaluation (seed 000 section 3)
    "monuseg": {
        "type": "folder", "images": "images", "masks": "masks",
        "split": {"file": "manifest.csv", "column": "source_split", "key": "id"},
        "group_by": {"file": "manifest.csv", "column": "tcga_patient", "key": "id"},
        "crop": 256, "quadrants": True, "class_names": ["background", "nucleus"],
    },
    # 250 colonoscopy frames, long side 256 (height 177-256): training crops of 160, evaluation on
    # quadrants; the README's fixed-seed split 200 / 25 / 25 (no patient ids: each frame its own cluster)
    "kvasir-seg": {
        "type": "folder", "images": "images", "masks": "masks",
        "split": {"file": "manifest.csv", "column": "suggested_split", "key": "id"},
        "group_by": {"file": "manifest.csv", "column": "source_image", "key": "id"},
        "crop": 160, "quadrants": True, "class_names": ["background", "polyp"],
    },
    # 400 cine-MRI slices of 100 patients (4 per patient), sizes 154-512: split by patient as the
    # README suggests (70 / 10 / 20 patients); the patient is the cluster of the report's tests;
    # training crops of 128, evaluation on whole slices (seed 003)
    "acdc-slices": {
        "type": "folder", "images": "images", "masks": "masks",
        "split": {"file": "manifest.csv", "column": "source_split", "key": "id"},
        "group_by": {"file": "manifest.csv", "column": "patient", "key": "id"},
        "crop": 128, "class_names": ["background", "RV cavity", "myocardium", "LV cavity"],
    },
}

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


@dataclass
class RunSpec:
    """One run of the grid.

    Attributes:
        id: unique id, also the folder path relative to ``<study>/runs``.
        dataset: the data-set entry's name.
        label: the configuration's name in the report (all seeds of a configuration share it).
        seed: the run's seed.
        order: position of the configuration in the study (report column order).
        config: the run configuration given to :func:`~seglosses.bench.train.train_run`.
        pretrain: the pre-training run this run starts from (seed 003), or ``None``.

    Example:
        >>> RunSpec("d/ce-s0-1234abcd", "d", "ce", 0, 0, {}).label
        'ce'
    """

    id: str
    dataset: str
    label: str
    seed: int
    order: int
    config: Dict[str, Any]
    pretrain: Optional["RunSpec"] = None


@dataclass
class StudyOutcome:
    """What :func:`run_study` did: the study folder, the runs, the finished run ids, the failures
    (``{"run": label, "error": message}``) and the wall time in seconds.

    Example:
        >>> StudyOutcome(Path("runs/s"), [], [], [], 0.0).failures
        []
    """

    folder: Path
    runs: List[RunSpec]
    finished: List[str]
    failures: List[Dict[str, str]]
    seconds: float
    planned: int = 0
    failed_datasets: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """``"N of M planned runs finished"``, naming the data sets that failed as a whole.

        Example:
            >>> StudyOutcome(Path("s"), [], [], [], 0.0, planned=4, failed_datasets=["kvasir-seg"]).summary()
            '0 of 4 planned runs finished (data set kvasir-seg failed)'
        """
        planned = max(self.planned, len(self.runs))
        text = f"{len(self.finished)} of {planned} planned runs finished"
        if self.failed_datasets:
            text += f" (data set{'s' if len(self.failed_datasets) > 1 else ''} {', '.join(self.failed_datasets)} failed)"
        return text


# ------------------------------------------------------------------------------------------------
# Reading and checking
# ------------------------------------------------------------------------------------------------


def shared_folder() -> Optional[Path]:
    """The shared folder holding ``datasets/``: ``$SEGLOSSES_SHARED``, else ``../shared`` next to
    the working directory or to the repository; ``None`` when none exists.

    Example:
        >>> isinstance(shared_folder(), (type(None), Path))
        True
    """
    env = os.environ.get("SEGLOSSES_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd().parent / "shared", Path.cwd() / "shared",
                   Path(__file__).resolve().parents[3].parent / "shared"]
    for c in candidates:
        if (c / "datasets").is_dir():
            return c.resolve()
    return None


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
    pre = settings["pretrain"]
    if pre is not None:
        if not isinstance(pre, Mapping) or set(pre) - {"loss", "epochs", "label"} or "epochs" not in pre:
            problems.append(f"`pretrain` must be null or {{loss: <spec>, epochs: N}}; got {pre!r}")
        elif not _is_int(pre["epochs"], 1):
            problems.append(f"`pretrain.epochs` must be an integer >= 1; got {pre['epochs']!r}")
        else:
            settings["pretrain"] = {"loss": pre.get("loss", "ce"), "epochs": int(pre["epochs"]),
                                    "label": pre.get("label")}
    if not isinstance(settings["eval"], Mapping):
        problems.append(f"`eval` must be a mapping (metrics, batch_size, samples); got {settings['eval']!r}")
    else:
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
    entries = []
    for i, e in enumerate(settings["losses"]):
        try:
            entries.append(_loss_entry(e, ""))
        except StudyError as err:
            problems.append(f"`losses[{i}]`: {err}")
    settings["losses"] = entries
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


def _is_int(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def raise_problems(problems: Sequence[str], source: Optional[str] = None) -> None:
    """Raise one :class:`StudyError` listing every problem (nothing when there is none).

    Each problem names where it is in the study file (``model.dpeth``, ``losses[2]``).

    Example:
        >>> raise_problems(["`a` must be 1; got 2", "`b` must be 3; got 4"], "s.yaml")
        Traceback (most recent call last):
        ...
        seglosses.bench.study.StudyError: the study 's.yaml' has 2 problems:
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


# ------------------------------------------------------------------------------------------------
# Data sets
# ------------------------------------------------------------------------------------------------

# keys of a data-set entry that are not build_dataset's: quick-run overrides and report labels
_EXTRA_KEYS = ("max_images", "size_override", "class_names")


def resolve_dataset(entry: Any, base_dir: str | Path | None = None) -> Dict[str, Any]:
    """The :func:`~seglosses.bench.data.build_dataset` spec of a study's data-set entry.

    An entry is a preset name (:data:`PRESETS`, looked up in the shared folder's ``datasets``),
    a folder path with ``images/`` and ``masks/`` (a preset when its name is one), a mapping
    with ``preset`` and changes, or a full ``build_dataset`` spec. The keys ``max_images`` and
    ``size_override`` (quick-run overrides) and ``class_names`` (one name per class, background
    first, for the report) are kept for :func:`build_data`. Relative paths
    become absolute: against the working directory when they exist there, else ``base_dir``.

    Raises:
        StudyError: an unknown preset, a missing folder (the message says where it looked).

    Example:
        >>> resolve_dataset({"type": "synthetic", "n_images": 8})["name"]
        'synthetic'
    """
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    if isinstance(entry, str):
        entry = {"preset": entry}
    if not isinstance(entry, Mapping):
        raise StudyError(f"`datasets` entries must be a name, a folder or a mapping; got {entry!r}")
    entry = dict(entry)
    extras = {k: entry.pop(k) for k in _EXTRA_KEYS if k in entry}
    if "preset" in entry:
        spec = _preset(str(entry.pop("preset")), base_dir)
        spec.update(entry)
    else:
        spec = entry
        for key in ("images", "masks", "manifest"):
            value = spec.get(key)
            if isinstance(value, str):
                spec[key] = str(_existing(value, base_dir))
            elif isinstance(value, list):
                spec[key] = [str(_existing(v, base_dir)) for v in value]
    spec.setdefault("name", spec.get("type", "data"))
    spec.update(extras)
    return spec


def _existing(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for root in (Path.cwd(), base_dir):
        if (root / p).exists():
            return (root / p).resolve()
    return (Path.cwd() / p).resolve()  # build_dataset reports it missing, with this path


def _preset(name: str, base_dir: Path) -> Dict[str, Any]:
    candidate = Path(name).expanduser()
    folder: Optional[Path] = None
    key = name
    looked: List[str] = []
    if "/" in name or os.sep in name or candidate.is_dir():
        folder = _existing(name, base_dir)
        key = folder.name
        looked.append(str(folder))
    else:
        shared = shared_folder()
        if shared is not None:
            folder = shared / "datasets" / name
            looked.append(str(folder))
        else:
            looked.append("$SEGLOSSES_SHARED/datasets, ../shared/datasets")
    if name == "synthetic":
        return {"type": "synthetic", "name": "synthetic"}
    if folder is None or not folder.is_dir():
        known = ", ".join(PRESETS)
        raise StudyError(f"`datasets` entry {name!r} must be a known data set ({known}) found in the shared "
                         f"folder, or a folder with images/ and masks/; looked in {', '.join(looked)}"
                         f"{did_you_mean(name, PRESETS)}")
    if key in PRESETS:
        spec = copy.deepcopy(PRESETS[key])
    else:
        if not ((folder / "images").is_dir() and (folder / "masks").is_dir()):
            raise StudyError(f"`datasets` folder must hold images/ and masks/ sub-folders; got '{folder}'")
        spec = {"type": "folder", "images": "images", "masks": "masks"}
    spec["images"] = str(folder / spec["images"])
    spec["masks"] = str(folder / spec["masks"])
    for option in ("split", "group_by"):  # files named by the preset live in the data set's folder
        if isinstance(spec.get(option), Mapping) and "file" in spec[option]:
            spec[option] = {**spec[option], "file": str(folder / spec[option]["file"])}
    spec["name"] = key
    return spec


class _Capped(Dataset):
    """The first ``n`` items of a data set, and optionally a central crop (quick-run overrides)."""

    def __init__(self, base: Dataset, n: Optional[int], crop: Optional[int]) -> None:
        self.base = base
        self.n = len(base) if n is None else min(n, len(base))
        self.crop = crop
        self.names = list(getattr(base, "names", range(len(base))))[: self.n]
        self.groups = list(getattr(base, "groups", self.names))[: self.n]
        self._flags: Optional[List[bool]] = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(f"`index` must be in [0, {self.n}); got {index}")
        image, mask = self.base[index]
        if self.crop is not None:
            h, w = mask.shape[-2:]
            c = min(self.crop, h, w)
            top, left = (h - c) // 2, (w - c) // 2
            image, mask = image[:, top:top + c, left:left + c], mask[top:top + c, left:left + c]
        return image, mask

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    @property
    def in_channels(self) -> int:
        return int(self[0][0].shape[0])

    def foreground_flags(self) -> List[bool]:
        if self._flags is None:
            if self.crop is None:
                self._flags = foreground_flags(self.base)[: self.n]
            else:
                self._flags = [bool(self[i][1].any()) for i in range(self.n)]
        return list(self._flags)


def build_data(spec: Mapping[str, Any]) -> BenchData:
    """Build the data sets of a resolved entry (:func:`resolve_dataset`), with its overrides.

    ``max_images`` sets a synthetic set's ``n_images`` and caps every split of other data;
    ``size_override`` sets a synthetic set's ``size``, and for other data the training crop and
    a central crop of the validation and test items. ``class_names`` becomes ``data.class_names``.

    Raises:
        ValueError, FileNotFoundError: the messages of :func:`~seglosses.bench.data.build_dataset`.

    Example:
        >>> d = build_data({"type": "synthetic", "n_images": 100, "max_images": 10, "size_override": 32})
        >>> len(d.train) + len(d.val) + len(d.test), d.train[0][0].shape[-1]
        (10, 32)
    """
    spec = dict(spec)
    max_images = spec.pop("max_images", None)
    size = spec.pop("size_override", None)
    names = spec.pop("class_names", None)
    data = _build_data(spec, max_images, size)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != data.num_classes:
            raise ValueError(f"`class_names` must name the {data.num_classes} classes of {data.name!r} "
                             f"(background first); got {len(names)}: {names}")
    data.class_names = names
    return data


def _build_data(spec: Dict[str, Any], max_images: Optional[int], size: Optional[int]) -> BenchData:
    if spec.get("type") == "synthetic":
        if max_images is not None:
            spec["n_images"] = min(int(spec.get("n_images", 256)), max_images)
            split = spec.get("split")
            if isinstance(split, Mapping) and "counts" in split:  # counts no longer fit: keep their proportions
                counts = [int(c) for c in split["counts"]]
                spec["split"] = {"fractions": [c / sum(counts) for c in counts], "seed": split.get("seed", 0)}
        if size is not None:
            spec["size"] = size
        return build_dataset(spec)
    if size is not None and spec.get("crop") is not None:
        spec["crop"] = size
    data = build_dataset(spec)
    if max_images is None and size is None:
        return data
    for split in ("train", "val", "test"):
        ds = getattr(data, split)
        if ds is not None:
            crop = size if split != "train" or spec.get("crop") is None else None
            setattr(data, split, _Capped(ds, max_images, crop))
    return data


# ------------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")
    return s[:60] or "run"


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def plan_runs(study: Study, entry: Any, spec: Mapping[str, Any], data: BenchData,
              failures: Optional[List[Dict[str, str]]] = None) -> List[RunSpec]:
    """The runs of one data-set entry, in the study's order (losses, domains, sizes, epochs, seeds).

    A loss that takes no ``domain`` runs once whatever ``domains`` lists; configurations that
    build the same loss (e.g. a term with its own ``domain``) run once. A loss spec that does
    not build is recorded in ``failures`` and left out.

    Args:
        study: the study.
        entry: the data-set entry as written (hashed into the run ids).
        spec: its resolved spec.
        data: its data sets (for the class count).
        failures: where to record unbuildable losses.

    Returns:
        The :class:`RunSpec` list (fine-tuning runs carry their pre-training run).

    Example:
        >>> study = parse_study({"datasets": ["synthetic"], "losses": ["ce", "dice"], "domains": ["image", "batch"]})
        >>> spec = resolve_dataset("synthetic")
        >>> data = build_data({**spec, "max_images": 8, "size_override": 32})
        >>> [r.label for r in plan_runs(study, "synthetic", spec, data)]  # CE has no domain
        ['ce', 'dice (image)', 'dice (batch)']
    """
    st = study.settings
    mode = "binary" if data.num_classes == 2 else "multiclass"
    multi = {k: len(st[k]) > 1 for k in ("domains", "batch_sizes", "effective_batch_sizes", "epochs")}
    runs: List[RunSpec] = []
    seen: set = set()
    order = 0
    common = {
        "study": study.name, "dataset": data.name, "dataset_entry": entry, "optimizer": st["optimizer"],
        "schedule": st["schedule"], "model": st["model"], "sampler": st["sampler"],
        "steps_per_epoch": st["steps_per_epoch"], "eval": st["eval"], "amp": st["amp"],
    }
    for loss in st["losses"]:
        try:
            has_domain = loss_has_domain(loss["loss"], mode)
            domains = st["domains"] if has_domain else [None]
            specs = {d: build_run_loss(loss["loss"], mode, d).spec() for d in domains}
        except (ValueError, TypeError) as err:
            if failures is not None:
                failures.append({"run": f"{loss['label']} [{data.name}]", "error": f"loss {loss['label']!r}: {err}"})
            continue
        for domain in domains:
            for bs in st["batch_sizes"]:
                for ebs in st["effective_batch_sizes"]:
                    for epochs in st["epochs"]:
                        key = (specs[domain], bs, ebs or bs, epochs)
                        if key in seen:
                            continue
                        seen.add(key)
                        label = loss["label"]
                        if domain is not None and multi["domains"]:
                            label += f" ({domain})"
                        if multi["batch_sizes"]:
                            label += f" bs{bs}"
                        if multi["effective_batch_sizes"]:
                            label += f" ebs{ebs or bs}"
                        if multi["epochs"]:
                            label += f" {epochs}ep"
                        for seed in st["seeds"]:
                            config = {**common, "loss": loss["loss"], "loss_spec": specs[domain],
                                      "loss_label": loss["label"], "domain": domain, "batch_size": bs,
                                      "effective_batch_size": ebs or bs, "epochs": epochs, "seed": seed}
                            pre = _pretrain_run(study, config, data) if st["pretrain"] else None
                            if pre is not None:
                                config["pretrain"] = {"loss": pre.config["loss_spec"], "epochs": pre.config["epochs"],
                                                      "run": pre.id}
                            digest = _hash({k: v for k, v in config.items() if k not in ("study",)})
                            run_id = f"{_slug(data.name)}/{_slug(label)}-s{seed}-{digest}"
                            config.update(label=label, order=order, run_id=run_id, kind="run")
                            runs.append(RunSpec(run_id, data.name, label, seed, order, config, pre))
                        order += 1
    return runs


def _pretrain_run(study: Study, config: Mapping[str, Any], data: BenchData) -> RunSpec:
    pre = study.settings["pretrain"]
    mode = "binary" if data.num_classes == 2 else "multiclass"
    spec = build_run_loss(pre["loss"], mode, None).spec()
    cfg = {k: v for k, v in config.items() if k not in ("loss", "loss_spec", "loss_label", "domain", "epochs")}
    cfg.update(loss=pre["loss"], loss_spec=spec, loss_label=pre.get("label") or str(pre["loss"]), domain=None,
               epochs=pre["epochs"], eval={"metrics": ["dice", "jaccard"], "batch_size": config["eval"].get("batch_size"),
                                           "samples": 0})
    digest = _hash({k: v for k, v in cfg.items() if k not in ("study",)})
    label = f"pretrain {cfg['loss_label']}"
    run_id = f"{_slug(data.name)}/_pretrain/{_slug(cfg['loss_label'])}-bs{cfg['batch_size']}-s{cfg['seed']}-{digest}"
    cfg.update(label=label, order=-1, run_id=run_id, kind="pretrain")
    return RunSpec(run_id, data.name, label, int(cfg["seed"]), -1, cfg, None)


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def _default_device() -> torch.device:
    rank, world = distributed_context()
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) if world > 1 else 0)
    return torch.device("cpu")


def run_study(
    study: Study,
    out_dir: str | Path = "runs",
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    stop_after_epoch: Optional[int] = None,
    redo: Optional[Sequence[str]] = None,
    executor: Optional[Executor] = None,
    display: Optional[StudyProgress] = None,
) -> StudyOutcome:
    """Run every run of a study that is not finished yet; go on past failures.

    The whole study is checked first (:func:`seglosses.bench.checks.validate_study`): a problem
    anywhere stops it before the first run, with every problem listed. Then, for each data-set
    entry, the data are built once and the runs planned, and ``executor`` trains them (one after
    another in this process by default; :mod:`seglosses.bench.executors`). Every executor applies
    the rules of :func:`~seglosses.bench.executors.perform_run`: finished runs are skipped,
    interrupted ones resumed, an error in a run fails that run only. An error in a data set fails
    its runs; every failure is recorded (``error.txt`` in the run folder, ``study.json``) and the
    study goes on. ``OUT/<study>/study.json`` is rewritten after every run; its ``finished`` list
    is in the study's order whatever the order in which the runs end.

    Each run is trained under its :class:`~seglosses.bench.runfiles.RunLock`: a run that another
    process holds is left for later, and after the other runs the study waits for it (its
    results are then read, or, when the holder died, it is resumed from its checkpoint). So
    several processes may share one output folder; no run is ever trained twice at once.

    A run whose results are damaged (``final.json`` or ``samples.npz`` unreadable) is run again,
    from its checkpoint when that is sound; a damaged checkpoint fails the run with a message
    naming the file and ``--redo``.

    Args:
        study: the study.
        out_dir: the output folder (``OUT``).
        device: where to train (default: CUDA when available, else the CPU).
        progress: progress bars.
        log: where the messages and one-line summaries go.
        stop_after_epoch: passed to every run (a test hook simulating a kill); the study stops
            at the first run it interrupts.
        redo: runs to train again from scratch (their folders are removed first): run ids
            (``synthetic/dice-s0-1a2b3c4d``, also pre-training runs), configuration labels,
            shell patterns of either (``synthetic/*``).
        executor: where the runs train (:mod:`seglosses.bench.executors`; default: this process).
        display: the study-level progress display.

    Returns:
        A :class:`StudyOutcome`.

    Raises:
        StudyError: a problem in the study (all of them listed).
        RunInterrupted: from ``stop_after_epoch``.

    Example:
        >>> import tempfile
        >>> study = parse_study({"name": "tiny", "losses": ["dice"], "epochs": 1, "model": {"depth": 1, "width": 2},
        ...                      "datasets": [{"type": "synthetic", "n_images": 8, "size": 32, "positive_fraction": 0.5}],
        ...                      "eval": {"metrics": ["dice"], "samples": 0}})
        >>> outcome = run_study(study, tempfile.mkdtemp(), log=lambda m: None)
        >>> len(outcome.finished), outcome.failures, (outcome.folder / "study.json").is_file()
        (1, [], True)
    """
    from seglosses.bench.checks import validate_study

    validate_study(study)
    t_start = time.perf_counter()
    folder = Path(out_dir) / study.name
    rank, world = distributed_context()
    main = rank == 0
    device_arg = device
    device = torch.device(device) if device is not None else _default_device()
    index = _StudyIndex(study, folder, main)
    redo_patterns = [str(p) for p in (redo or [])]
    redo_used: set = set()

    def wanted_again(r: RunSpec) -> bool:
        hits = [p for p in redo_patterns if fnmatch.fnmatchcase(r.id, p) or fnmatch.fnmatchcase(r.label, p)]
        redo_used.update(hits)
        return bool(hits)

    batches, specs = _plan_datasets(study, index, log)
    executor = executor if executor is not None else InlineExecutor(progress=progress)
    run_device = device if isinstance(executor, InlineExecutor) else device_arg
    threads = getattr(executor, "threads", None) or getattr(executor, "cpus", None) or torch.get_num_threads()
    loader_workers = min(int(study.settings.get("num_workers") or 0), threads)
    position = {r.id: i for i, r in enumerate(index.runs)}
    if display is not None:
        display.total = len(index.runs) + len({r.pretrain.id for r in index.runs if r.pretrain is not None})
    results = execute_runs(batches, folder, executor, spec_of=lambda d: specs[id(d)], device=run_device, log=log,
                           stop_after_epoch=stop_after_epoch, display=display,
                           config_of=lambda r: {**r.config, "num_workers": loader_workers, "threads": threads},
                           redo_of=wanted_again)
    try:
        for run, result in results:
            if result.status in ("finished", "skipped"):
                index.finished.append(run.id)
            else:
                index.failures.append({"run": f"{run.label} seed {run.seed} [{run.dataset}]",
                                       "error": result.error or "", "id": run.id})
            index.finished.sort(key=position.get)
            index.failures.sort(key=lambda f: position.get(f.get("id"), -1))
            index.save()
    except (RunInterrupted, KeyboardInterrupt):
        index.save()
        raise
    unused = [p for p in redo_patterns if p not in redo_used]
    if unused:
        log(f"note: --redo {', '.join(unused)} matched no run of the study")
    index.save()
    return StudyOutcome(folder, index.runs, index.finished, index.failures, time.perf_counter() - t_start,
                        planned=index.planned, failed_datasets=index.failed_datasets)


class _StudyIndex:
    """The study's ``study.json``: its data sets, planned runs, finished runs and failures,
    re-written (by the main process) whenever one of them changes."""

    def __init__(self, study: Study, folder: Path, main: bool) -> None:
        self.study, self.folder, self.main = study, folder, main
        self.failures: List[Dict[str, str]] = []
        self.finished: List[str] = []
        self.runs: List[RunSpec] = []
        self.datasets: List[Dict[str, Any]] = []
        self.failed_datasets: List[str] = []
        self.unplanned = 0  # the runs of data sets that failed before their runs could be planned

    @property
    def planned(self) -> int:
        return len(self.runs) + self.unplanned

    def save(self) -> None:
        if not self.main:
            return
        study = self.study
        atomic_write_json(self.folder / "study.json", {
            "name": study.name, "source": study.source, "settings": study.settings,
            "datasets": self.datasets,
            "runs": [{"id": r.id, "dataset": r.dataset, "label": r.label, "seed": r.seed, "order": r.order,
                      "loss": r.config["loss_label"], "loss_spec": r.config["loss_spec"],
                      "domain": r.config["domain"], "batch_size": r.config["batch_size"],
                      "effective_batch_size": r.config["effective_batch_size"], "epochs": r.config["epochs"],
                      "pretrain": r.pretrain.id if r.pretrain else None} for r in self.runs],
            "finished": self.finished, "failures": self.failures, "planned": self.planned,
            "failed_datasets": self.failed_datasets,
        })


def _plan_datasets(study: Study, index: _StudyIndex, log: Callable[[str], None]
                   ) -> Tuple[List[Any], Dict[int, Dict[str, Any]]]:
    """Build each data set of the study and plan its runs (recorded in ``index``); a data set that
    cannot be built is a failure of its own and its runs count as planned."""
    batches: List[Any] = []
    specs: Dict[int, Dict[str, Any]] = {}
    names: List[str] = []
    for entry in study.settings["datasets"]:
        try:
            spec = resolve_dataset(entry, study.base_dir)
            if spec["name"] in names:
                raise StudyError(f"`datasets` names must be unique; got {spec['name']!r} twice (set `name`)")
            names.append(spec["name"])
            log(f"data set {spec['name']}: loading")
            data = build_data(spec)
            if study.settings["eval"].get("positives_only"):
                positive_evaluation(data)
        except (ValueError, FileNotFoundError, OSError) as err:
            label = entry if isinstance(entry, str) else (entry.get("name") or entry.get("preset") or entry.get("type"))
            index.failures.append({"run": f"data set {label}", "error": f"{type(err).__name__}: {err}"})
            index.failed_datasets.append(str(label))
            index.unplanned += count_runs(study)
            log(f"FAILED data set {label}: {err}")
            continue
        index.datasets.append({"name": data.name, "num_classes": data.num_classes,
                               "sizes": {s: (len(getattr(data, s)) if getattr(data, s) is not None else 0)
                                         for s in ("train", "val", "test")}})
        runs = plan_runs(study, entry, spec, data, index.failures)
        index.runs.extend(runs)
        index.save()
        batches.append((data, runs))
        specs[id(data)] = spec
    return batches, specs


def count_runs(study: Study, mode: str = "binary") -> int:
    """The runs one data-set entry of the study plans (an upper bound when configurations coincide):
    losses × domains (for losses with a domain) × batch sizes × effective batch sizes × epochs × seeds.

    Example:
        >>> count_runs(parse_study({"datasets": ["x"], "losses": ["ce", "dice"], "domains": ["image", "batch"],
        ...                         "seeds": [0, 1]}))
        6
    """
    st = study.settings
    per_loss = 0
    for loss in st["losses"]:
        try:
            per_loss += len(st["domains"]) if loss_has_domain(loss["loss"], mode) else 1
        except (ValueError, TypeError):
            continue
    return per_loss * len(st["batch_sizes"]) * len(st["effective_batch_sizes"]) * len(st["epochs"]) * len(st["seeds"])
