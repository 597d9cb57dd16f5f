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
from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from seglosses.bench.checks import validate_study
from seglosses.bench.data import positive_evaluation
from seglosses.bench.executors import Executor, InlineExecutor
from seglosses.bench.planning import RunSpec, count_runs, plan_runs
from seglosses.bench.progress import StudyProgress
from seglosses.bench.runfiles import atomic_write_json
from seglosses.bench.scheduler import execute_runs
from seglosses.bench.studydata import PRESETS, build_data, resolve_dataset, shared_folder
from seglosses.bench.studyfile import (
    COMPARABLE,
    DEFAULTS,
    Study,
    StudyError,
    apply_overrides,
    load_study,
    parse_study,
    raise_problems,
)
from seglosses.bench.train import RunInterrupted, distributed_context

__all__ = [
    "PRESETS",
    "DEFAULTS",
    "COMPARABLE",
    "StudyError",
    "Study",
    "RunSpec",
    "StudyOutcome",
    "shared_folder",
    "load_study",
    "parse_study",
    "raise_problems",
    "apply_overrides",
    "resolve_dataset",
    "build_data",
    "plan_runs",
    "count_runs",
    "run_study",
]


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
