"""One run of a study, wherever it trains: the task a worker receives, the result it sends
back, and :func:`perform_run`, the one place that decides whether a run is skipped (finished
earlier), resumed (checkpoint) or trained, and that turns its errors into a failed result.
Every executor (:mod:`seglosses.bench.executors`) calls it.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

__all__ = [
    "RESUME_FILES",
    "RunTask",
    "RunResult",
    "run_is_finished",
    "settle_run_folder",
    "take_lock",
    "perform_run",
    "write_returned_files",
]

#: Files of a run folder that let a run resume (shipped to a worker that cannot see the folder).
RESUME_FILES = ("checkpoint.pt", "config.json", "metrics.csv")
FINAL = "final.json"
SAMPLES = "samples.npz"


@dataclass
class RunTask:
    """One run, with everything a worker anywhere needs to train it (picklable).

    Attributes:
        run_id: the run's id (its folder relative to ``<study>/runs``).
        label: the name shown in messages (``"CE seed 0 [synthetic-binary]"``).
        config: the run configuration for :func:`~seglosses.bench.train.train_run`.
        data_spec: the resolved data-set spec (:func:`~seglosses.bench.study.build_data`).
        run_dir: the run folder (absolute).
        kind: ``"run"`` or ``"pretrain"``.
        init_checkpoint: the pre-training checkpoint the run starts from, or ``None``.
        device: where to train (``None``: CUDA when available, else the CPU).
        threads: torch threads of the run (``None``: leave the process's setting).
        stop_after_epoch: test hook of :func:`~seglosses.bench.train.train_run`.
        ship: ``"never"`` (write into ``run_dir``), ``"always"`` (train in a temporary folder and
            return the files) or ``"auto"`` (ship when ``probe`` is not visible).
        probe: ``(path, token)``: a file the driver wrote in the study folder.
        inputs: files of an unfinished run (checkpoint ...) to resume from when shipping.
        init_bytes: the content of ``init_checkpoint`` when shipping.
        lock: the run's lock file (:class:`~seglosses.bench.runfiles.RunLock`), taken by the
            process that writes the run folder; ``None`` when the driver holds it.
        blocking: wait for the lock's holder (else a held run comes back as ``"busy"``).
        redo: remove the run folder first and train from scratch (``--redo``).
        prefix: the beginning of the run's messages (``"[blobs 1/4] dice seed 0"``).

    Example:
        >>> RunTask("d/ce-s0-12345678", "ce seed 0 [d]", {}, {}, "/tmp/r").kind
        'run'
    """

    run_id: str
    label: str
    config: Dict[str, Any]
    data_spec: Dict[str, Any]
    run_dir: str
    kind: str = "run"
    init_checkpoint: Optional[str] = None
    device: Optional[str] = None
    threads: Optional[int] = None
    stop_after_epoch: Optional[int] = None
    ship: str = "never"
    probe: Optional[Tuple[str, str]] = None
    inputs: Dict[str, bytes] = field(default_factory=dict)
    init_bytes: Optional[bytes] = None
    lock: Optional[str] = None
    blocking: bool = False
    redo: bool = False
    prefix: str = ""


@dataclass
class RunResult:
    """What became of a run: ``status`` is ``"finished"`` (trained now), ``"skipped"`` (finished
    earlier), ``"failed"``, ``"interrupted"`` (``stop_after_epoch``) or ``"busy"`` (another process
    holds its lock; it comes back later); ``error`` the message of a
    failure; ``files`` the run folder's files when the run was shipped; ``where`` host and process.

    Example:
        >>> RunResult("d/ce-s0-12345678", "skipped").error is None
        True
    """

    run_id: str
    status: str
    error: Optional[str] = None
    seconds: float = 0.0
    files: Optional[Dict[str, bytes]] = None
    where: str = ""


def run_is_finished(run_dir: str | Path, config: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether a run folder holds a finished run whose results read back (it is then skipped).

    ``final.json`` must be there and sound, and so must ``samples.npz`` when the run keeps
    samples; this only looks (:func:`settle_run_folder` removes damaged results).

    Example:
        >>> import tempfile
        >>> run_is_finished(tempfile.mkdtemp())
        False
    """
    from seglosses.bench.runfiles import DamagedFile, load_samples, read_final

    run_dir = Path(run_dir)
    if not (run_dir / FINAL).is_file():
        return False
    try:
        read_final(run_dir / FINAL)
        if _keeps_samples(config) and (run_dir / SAMPLES).is_file():
            load_samples(run_dir / SAMPLES)
    except DamagedFile:
        return False
    return True


def _keeps_samples(config: Optional[Mapping[str, Any]]) -> bool:
    return int(((config or {}).get("eval") or {}).get("samples", 4)) > 0


def settle_run_folder(run_dir: str | Path, run_id: str, config: Optional[Mapping[str, Any]] = None, *,
                      redo: bool = False, log: Callable[[str], None] = print, prefix: str = "") -> bool:
    """Under the run's lock: carry out ``--redo``, drop damaged results; whether the run is finished.

    ``redo`` removes the run folder. A ``final.json`` (or ``samples.npz``) that does not read
    back is removed with ``per_image.csv``, so the run is evaluated again, from its checkpoint
    when that is sound. Under ``torchrun`` rank 0 removes and every process sees the same folder.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "final.json").write_text("{trunc")
        >>> settle_run_folder(d, "r", log=print, prefix="r")  # doctest: +ELLIPSIS
        r: `...final.json` is damaged (...); running it again
        False
        >>> (d / "final.json").exists()
        False
    """
    import shutil

    from seglosses.bench.runfiles import DamagedFile, load_samples, read_final, redo_advice
    from seglosses.bench.train import distributed_context

    run_dir = Path(run_dir)
    rank, world = distributed_context()
    main = rank == 0
    if world > 1:
        import torch.distributed as dist
    if main and redo and run_dir.exists():
        shutil.rmtree(run_dir)
        log(f"{prefix}: --redo: removed its folder, training it again")
    if world > 1:
        dist.barrier()  # every process sees what rank 0 removed
    if not (run_dir / FINAL).is_file():
        return False
    damage: Optional[DamagedFile] = None
    advice = redo_advice(run_id)
    try:
        read_final(run_dir / FINAL, advice=advice)
        if _keeps_samples(config) and (run_dir / SAMPLES).is_file():
            load_samples(run_dir / SAMPLES, advice=advice)
    except DamagedFile as err:
        damage = err
    if world > 1:
        dist.barrier()  # every process has read the files before rank 0 removes any
    if damage is not None and main:
        log(f"{prefix}: `{damage.path}` is damaged ({damage.reason}); running it again")
        for name in (FINAL, SAMPLES, "per_image.csv"):
            (run_dir / name).unlink(missing_ok=True)
    if damage is not None and world > 1:
        dist.barrier()  # removed before any process looks again
    return damage is None


def take_lock(path: str | Path, *, blocking: bool, log: Callable[[str], None], prefix: str) -> Any:
    """The run's lock, taken (``None``: another process holds it and ``blocking`` is off).

    Under ``torchrun`` rank 0 holds the lock for every process (and waits for it); the other
    ranks get a lock object they never take.

    Example:
        >>> import tempfile
        >>> lock = take_lock(Path(tempfile.mkdtemp()) / "r.lock", blocking=False, log=print, prefix="r")
        >>> take_lock(lock.path, blocking=False, log=print, prefix="r")  # doctest: +ELLIPSIS
        r: process ... holds `...r.lock`; coming back to it after the other runs
        >>> lock.release()
    """
    from seglosses.bench.runfiles import RunLock
    from seglosses.bench.train import distributed_context

    lock = RunLock(path)
    rank, world = distributed_context()
    if rank != 0:
        return lock
    waiting = lambda holder: log(f"{prefix}: waiting for {holder}, which holds `{lock.path}`")  # noqa: E731
    if not lock.acquire(blocking=blocking or world > 1, on_wait=waiting):
        log(f"{prefix}: {lock.holder()} holds `{lock.path}`; coming back to it after the other runs")
        return None
    return lock


_DATA_CACHE: "OrderedDict[str, Any]" = OrderedDict()
_DATA_CACHE_SIZE = 2


def _data_for(spec: Mapping[str, Any]) -> Any:
    """The data sets of a spec, built once per worker process (the last two are kept)."""
    from seglosses.bench.studydata import build_data

    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = build_data(spec)
        while len(_DATA_CACHE) > _DATA_CACHE_SIZE:
            _DATA_CACHE.popitem(last=False)
    _DATA_CACHE.move_to_end(key)
    return _DATA_CACHE[key]


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _ships(task: RunTask) -> bool:
    if task.ship == "always":
        return True
    if task.ship == "auto" and task.probe is not None:
        path, token = task.probe
        try:
            return Path(path).read_text() != token
        except OSError:
            return True
    return False


def perform_run(task: RunTask, data: Any = None, *, log: Callable[[str], None] = print,
                progress: bool = False) -> RunResult:
    """Skip, resume or train one run and report how it went; every executor calls this.

    The rules, applied under the run's lock (:func:`take_lock`; a run another process holds
    comes back ``"busy"`` unless ``task.blocking``): ``--redo`` removes the folder; a run whose
    ``final.json`` (and ``samples.npz``) read back is skipped, damaged results are removed and the
    run evaluated again (:func:`settle_run_folder`); a run with a ``checkpoint.pt`` resumes after
    its last epoch (:func:`~seglosses.bench.train.train_run`); any other is trained from the
    start (or from ``init_checkpoint``). An exception of the run becomes a ``"failed"`` result
    and ``error.txt`` in the run folder (message and traceback). A shipped run (see
    :class:`RunTask`) trains in a temporary folder: the driver, which sees the study folder,
    holds its lock and settles its folder.

    Args:
        task: the run.
        data: its data sets, when the caller has them (otherwise built from ``task.data_spec``).
        log: where the run's messages go.
        progress: progress bars of the run.

    Returns:
        The :class:`RunResult`; with ``files`` when the run was shipped (see :class:`RunTask`).

    Example:
        >>> import tempfile
        >>> spec = {"type": "synthetic", "n_images": 8, "size": 32, "positive_fraction": 0.5}
        >>> cfg = {"loss": "dice", "batch_size": 2, "seed": 0, "epochs": 1, "model": {"depth": 1, "width": 2},
        ...        "eval": {"metrics": ["dice"], "samples": 0}}
        >>> task = RunTask("r", "dice seed 0", cfg, spec, tempfile.mkdtemp())
        >>> perform_run(task, log=lambda m: None).status, perform_run(task, log=lambda m: None).status
        ('finished', 'skipped')
    """
    t0 = time.perf_counter()
    ship = _ships(task)
    prefix = task.prefix or task.label
    lock = None
    if not ship and task.lock is not None:
        lock = take_lock(task.lock, blocking=task.blocking, log=log, prefix=prefix)
        if lock is None:
            return RunResult(task.run_id, "busy", where=_where())
    try:
        if not ship and settle_run_folder(task.run_dir, task.run_id, task.config, redo=task.redo, log=log,
                                          prefix=prefix):
            return RunResult(task.run_id, "skipped", where=_where())
        if task.threads is not None:
            from seglosses.bench.resources import set_threads

            set_threads(task.threads)
        with contextlib.ExitStack() as stack:
            work, init = _workspace(task, ship, stack)
            status, error = _train(task, work, init, data, log=log, progress=progress)
            files = None
            if ship:
                files = {p.name: p.read_bytes() for p in sorted(work.iterdir())
                         if p.is_file() and not p.name.startswith(".")}
    finally:
        if lock is not None:
            lock.release()
    return RunResult(task.run_id, status, error, time.perf_counter() - t0, files, _where())


def _workspace(task: RunTask, ship: bool, stack: contextlib.ExitStack) -> Tuple[Path, Any]:
    """The folder the run trains in and its initial checkpoint: the run folder, or for a shipped
    run a temporary folder (removed when ``stack`` closes) holding the files sent along."""
    if not ship:
        return Path(task.run_dir), task.init_checkpoint
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seglosses-run-")))
    for name, content in task.inputs.items():
        (work / name).write_bytes(content)
    init = None
    if task.init_bytes is not None:
        init = work / ".init_checkpoint.pt"
        init.write_bytes(task.init_bytes)
    return work, init


def _train(task: RunTask, work: Path, init: Any, data: Any, *, log: Callable[[str], None],
           progress: bool) -> Tuple[str, Optional[str]]:
    """Train (or resume) the run in ``work``: ``(status, error)``; a failure is written to ``error.txt``."""
    from seglosses.bench.runfiles import DamagedFile, atomic_write_text
    from seglosses.bench.train import RunInterrupted, distributed_context, train_run

    try:
        if data is None:
            data = _data_for(task.data_spec)
        train_run(task.config, work, data, device=task.device or _default_device(), progress=progress,
                  log=log, stop_after_epoch=task.stop_after_epoch, init_checkpoint=init)
    except RunInterrupted as err:
        return "interrupted", str(err)
    except Exception as err:  # noqa: BLE001 - any failure of one run; the study goes on
        error = str(err) if isinstance(err, DamagedFile) else f"{type(err).__name__}: {err}"
        if distributed_context()[0] == 0:
            try:
                atomic_write_text(work / "error.txt", error + "\n\n" + traceback.format_exc())
            except OSError:
                pass
        return "failed", error
    return "finished", None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def write_returned_files(run_dir: str | Path, files: Mapping[str, bytes]) -> None:
    """Write the files a shipped run sent back into its run folder, ``final.json`` last.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()) / "run"
        >>> write_returned_files(d, {"final.json": b"{}", "metrics.csv": b"epoch\\n"})
        >>> sorted(p.name for p in d.iterdir())
        ['final.json', 'metrics.csv']
    """
    from seglosses.bench.runfiles import atomic_write_bytes

    run_dir = Path(run_dir)
    for name in sorted(files, key=lambda n: n == FINAL):
        atomic_write_bytes(run_dir / name, files[name])
