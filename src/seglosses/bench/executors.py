"""Executors of ``seglosses bench``: where the runs of a study train.

The runs of a study are independent (each seeds every generator from its own ``seed`` and
draws its batches and crops from ``(seed, epoch)``), so they can train in any order, in any
process, on any machine, and give the same numbers as one after another in one process, as
long as every run uses the same number of threads (floating-point sums are grouped by thread).

=================  ===============================================================================
``inline``         one run after another in this process (the default; also under ``torchrun``)
``local``          ``--workers N``: N worker processes on this machine, each with its share of
                   the cores (``threads`` per run)
``ray``            ``--executor ray [--ray-address ADDR]``: each run a Ray task with the CPUs and
                   GPUs of ``resources``; no address starts a Ray instance on this machine
``slurm``          ``--executor slurm``: each run a SLURM job (or the ready runs as one job array)
                   submitted with ``submitit``; a preempted or timed-out job is requeued and
                   resumes from the run's checkpoint
=================  ===============================================================================

Every executor calls :func:`perform_run`, the one place that decides whether a run is
skipped (finished earlier), resumed (checkpoint) or trained, and that turns its errors into a
failed result; the scheduler (:func:`execute_runs`) orders pre-training runs before the runs
that start from them and never gives a run to an executor when it finished earlier.

Results: the run folders are written where the run trains, so the study folder must be on
storage every worker can see (a network file system, the cluster's shared file system), except
with Ray and ``ray: {results: return}`` (or ``auto`` when a worker cannot see the folder): the
run then trains in a temporary folder of the worker, which sends its files back as data
(:attr:`RunResult.files`) and the driver writes them into the study folder; a resumed run gets
its checkpoint shipped with the task. The data sets must be readable at the same paths on every
machine (synthetic data sets are generated where they are used).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import tempfile
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "RunTask",
    "RunResult",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "RayExecutor",
    "SlurmExecutor",
    "run_is_finished",
    "settle_run_folder",
    "take_lock",
    "perform_run",
    "execute_runs",
    "make_executor",
    "check_execution_settings",
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


# ------------------------------------------------------------------------------------------------
# One run
# ------------------------------------------------------------------------------------------------


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
    from seglosses.bench.study import build_data

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
    from seglosses.bench.runfiles import DamagedFile
    from seglosses.bench.runfiles import atomic_write_text
    from seglosses.bench.train import RunInterrupted, distributed_context, train_run

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
            if ship:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seglosses-run-")))
                for name, content in task.inputs.items():
                    (work / name).write_bytes(content)
                init = None
                if task.init_bytes is not None:
                    init = work / ".init_checkpoint.pt"
                    init.write_bytes(task.init_bytes)
            else:
                work, init = Path(task.run_dir), task.init_checkpoint
            status, error = "finished", None
            try:
                if data is None:
                    data = _data_for(task.data_spec)
                train_run(task.config, work, data, device=task.device or _default_device(), progress=progress,
                          log=log, stop_after_epoch=task.stop_after_epoch, init_checkpoint=init)
            except RunInterrupted as err:
                status, error = "interrupted", str(err)
            except Exception as err:  # noqa: BLE001 - any failure of one run; the study goes on
                status = "failed"
                error = str(err) if isinstance(err, DamagedFile) else f"{type(err).__name__}: {err}"
                if distributed_context()[0] == 0:
                    try:
                        atomic_write_text(work / "error.txt", error + "\n\n" + traceback.format_exc())
                    except OSError:
                        pass
            files = None
            if ship:
                files = {p.name: p.read_bytes() for p in sorted(work.iterdir())
                         if p.is_file() and not p.name.startswith(".")}
    finally:
        if lock is not None:
            lock.release()
    return RunResult(task.run_id, status, error, time.perf_counter() - t0, files, _where())


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


# ------------------------------------------------------------------------------------------------
# Executors
# ------------------------------------------------------------------------------------------------


class Executor:
    """Runs :class:`RunTask` s somewhere: ``submit`` hands one over, ``wait`` returns the results
    of the runs that ended (at least one, unless none is running), ``close`` stops everything.

    Attributes:
        name: the executor's name in messages.
        slots: runs it trains at a time (the scheduler hands over no more).
        ship: how runs return their results (see :class:`RunTask`).
    """

    name = "executor"
    slots = 1
    ship = "never"

    def start(self, log: Callable[[str], None]) -> None:
        """Prepare (start processes, connect); ``log`` receives the runs' messages."""
        self.log = log

    def submit(self, task: RunTask, data: Any = None) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def wait(self) -> List[RunResult]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self, cancel: bool = False) -> None:
        """Stop the workers (``cancel``: also the runs still training)."""

    def describe(self) -> str:
        return self.name


class InlineExecutor(Executor):
    """One run after another in this process (runs get the data the driver built).

    Example:
        >>> InlineExecutor().slots
        1
    """

    name = "inline"

    def __init__(self, *, progress: bool = False, threads: Optional[int] = None) -> None:
        self.progress = progress
        self.threads = threads
        self._queue: List[Tuple[RunTask, Any]] = []

    def start(self, log: Callable[[str], None]) -> None:
        super().start(log)
        if self.threads is not None:
            from seglosses.bench.resources import set_threads

            set_threads(self.threads)

    def describe(self) -> str:
        threads = f", {self.threads} thread(s)" if self.threads is not None else ""
        return f"one run at a time in this process{threads}"

    def submit(self, task: RunTask, data: Any = None) -> None:
        self._queue.append((task, data))

    def wait(self) -> List[RunResult]:
        if not self._queue:
            return []
        task, data = self._queue.pop(0)
        return [perform_run(task, data, log=self.log, progress=self.progress)]


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the processes started inside the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _local_worker(conn, threads: int, index: int) -> None:  # pragma: no cover - runs in a child process
    """A worker process of :class:`LocalExecutor`: receives tasks, sends back log lines and results."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops the workers on Ctrl-C
    from seglosses.bench.resources import set_threads

    set_threads(threads)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        if task.device is None:
            import torch

            if torch.cuda.is_available():
                task.device = f"cuda:{index % torch.cuda.device_count()}"
        result = perform_run(task, log=lambda m: conn.send(("log", m)), progress=False)
        conn.send(("result", result))


class LocalExecutor(Executor):
    """``workers`` processes on this machine, ``threads`` torch threads each.

    The workers are started with ``spawn`` (a fresh interpreter, never a copy of a process
    whose OpenMP threads exist) and with :func:`~seglosses.bench.resources.worker_environment`
    (thread counts, ``OMP_WAIT_POLICY=PASSIVE``) set before they import torch. A worker that
    dies (killed, out of memory) fails its run and is replaced.

    Example:
        >>> LocalExecutor(2, threads=1).slots
        2
    """

    name = "local"

    def __init__(self, workers: int, *, threads: int = 1) -> None:
        self.slots = int(workers)
        self.threads = int(threads)
        self._workers: List[Any] = []
        self._busy: Dict[int, RunTask] = {}

    def describe(self) -> str:
        from seglosses.bench.resources import usable_cpus

        text = f"{self.slots} local worker process(es), {self.threads} thread(s) each"
        cpus = usable_cpus()
        if self.slots * self.threads > cpus:
            text += f" (more threads than the {cpus} usable core(s): the runs share cores)"
        return text

    def _spawn(self, index: int):
        import multiprocessing as mp

        from seglosses.bench.resources import worker_environment

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_local_worker, args=(child, self.threads, index), daemon=False,
                           name=f"seglosses-worker-{index}")
        with _environment(worker_environment(self.threads)):
            proc.start()
        child.close()
        return proc, parent

    def start(self, log: Callable[[str], None]) -> None:
        super().start(log)
        self._workers = [self._spawn(i) for i in range(self.slots)]

    def submit(self, task: RunTask, data: Any = None) -> None:
        for i in range(self.slots):
            if i not in self._busy:
                self._busy[i] = task
                self._workers[i][1].send(task)
                return
        raise RuntimeError("no idle worker")  # the scheduler never hands over more than `slots`

    def wait(self) -> List[RunResult]:
        from multiprocessing.connection import wait

        if not self._busy:
            return []
        results: List[RunResult] = []
        while not results:
            watched = {}
            for i in self._busy:
                proc, conn = self._workers[i]
                watched[conn] = i
                watched[proc.sentinel] = i
            for ready in wait(list(watched)):
                i = watched[ready]
                if i not in self._busy:
                    continue
                proc, conn = self._workers[i]
                try:
                    while conn.poll():
                        kind, payload = conn.recv()
                        if kind == "log":
                            self.log(payload)
                        else:
                            results.append(payload)
                            del self._busy[i]
                            break
                except (EOFError, OSError):
                    pass
                if i in self._busy and not proc.is_alive():
                    task = self._busy.pop(i)
                    proc.join()
                    results.append(RunResult(task.run_id, "failed",
                                             f"WorkerDied: the worker process ended with exit code {proc.exitcode} "
                                             f"while training the run (killed, or out of memory?)"))
                    self._workers[i] = self._spawn(i)
        return results

    def close(self, cancel: bool = False) -> None:
        for proc, conn in self._workers:
            if cancel:
                proc.terminate()
            else:
                try:
                    conn.send(None)
                except OSError:
                    pass
        for proc, conn in self._workers:
            proc.join(timeout=None if not cancel else 10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._workers, self._busy = [], {}


def _ray_task(task: RunTask) -> RunResult:  # pragma: no cover - runs in a Ray worker
    return perform_run(task, log=lambda m: print(m, flush=True), progress=False)


class RayExecutor(Executor):
    """Each run a Ray task with ``cpus`` CPUs and ``gpus`` GPUs (``resources`` of the study).

    ``address`` is a Ray cluster's address (``ray://host:10001``, ``auto``); ``None`` starts a
    Ray instance on this machine (with ``num_cpus`` CPUs, default all usable cores). Worker
    processes get ``OMP_WAIT_POLICY=PASSIVE`` through the runtime environment, and each run
    ``cpus`` torch threads. ``results`` is ``"shared"``, ``"return"`` or ``"auto"`` (see the
    module's docstring). Needs the ``ray`` extra: ``pip install "seglosses[ray]"``.
    """

    name = "ray"

    def __init__(self, *, address: Optional[str] = None, cpus: float = 1, gpus: float = 0, results: str = "auto",
                 num_cpus: Optional[int] = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("`--executor ray` needs Ray: pip install \"seglosses[ray]\"") from None
        if results not in ("shared", "return", "auto"):
            raise ValueError(f"`ray.results` must be 'shared', 'return' or 'auto'; got {results!r}")
        self.address, self.cpus, self.gpus, self.num_cpus = address, cpus, gpus, num_cpus
        self.ship = {"shared": "never", "return": "always", "auto": "auto"}[results]
        self._pending: Dict[Any, RunTask] = {}
        self._started_ray = False

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"Ray tasks on {where}, {self.cpus:g} CPU(s) and {self.gpus:g} GPU(s) per run ({self.slots} at a time)"

    def start(self, log: Callable[[str], None]) -> None:
        import ray

        from seglosses.bench.resources import usable_cpus, worker_environment

        super().start(log)
        threads = max(1, int(self.cpus))
        env = worker_environment(threads)
        pythonpath = os.environ.get("PYTHONPATH")
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        if not ray.is_initialized():
            kwargs: Dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": True,
                                      "include_dashboard": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.num_cpus or usable_cpus()
            ray.init(**kwargs)
            self._started_ray = True
        total = ray.cluster_resources().get("CPU", 1)
        self.slots = max(1, int(total // max(self.cpus, 1e-9)))
        if self.gpus:
            self.slots = min(self.slots, max(1, int(ray.cluster_resources().get("GPU", 0) // self.gpus)))
        self._remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_ray_task)

    def submit(self, task: RunTask, data: Any = None) -> None:
        task.threads = max(1, int(self.cpus))
        self._pending[self._remote.remote(task)] = task

    def wait(self) -> List[RunResult]:
        import ray

        if not self._pending:
            return []
        ready, _ = ray.wait(list(self._pending), num_returns=1)
        results = []
        for ref in ready:
            task = self._pending.pop(ref)
            try:
                results.append(ray.get(ref))
            except Exception as err:  # noqa: BLE001 - a task that died (worker lost, out of memory)
                results.append(RunResult(task.run_id, "failed", f"RayTaskError: {type(err).__name__}: {err}"))
        return results

    def close(self, cancel: bool = False) -> None:
        import ray

        if cancel:
            for ref in self._pending:
                ray.cancel(ref, force=True)
        self._pending = {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


class SlurmRun:
    """The callable of a SLURM job: trains one run; checkpointable (``submitit``).

    When SLURM preempts the job or its time limit is near, ``submitit`` calls
    :meth:`checkpoint`, which resubmits the same run: the requeued job finds the run's
    ``checkpoint.pt`` (written after every epoch) and resumes after the last finished epoch.

    Example:
        >>> job = SlurmRun(); job.checkpoint(RunTask("r", "r", {}, {}, "/tmp/r")).args[0].run_id
        'r'
    """

    def __call__(self, task: RunTask) -> RunResult:
        return perform_run(task, log=lambda m: print(m, flush=True), progress=False)

    def checkpoint(self, task: RunTask) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SlurmRun(), task)


class SlurmExecutor(Executor):
    """Each run a SLURM job, submitted with ``submitit`` (the ``slurm`` extra).

    Args:
        folder: ``submitit``'s folder (job scripts, pickles, logs): ``OUT/<study>/slurm`` by default.
        partition, time, mem_gb, gpus, cpus: the job's resources (``time`` in minutes).
        array: submit the runs ready at the same moment as one job array.
        max_parallel: the array's ``%`` limit (runs at a time), and the runs handed to SLURM at once.
        setup: shell lines run before each job (``module load ...``); ``OMP_WAIT_POLICY`` and the
            thread counts are always exported.
        extra: other ``sbatch`` parameters (``{"account": "x", "qos": "y"}``).
        cluster: ``"slurm"``, or ``"local"`` (``submitit``'s local executor: jobs as processes of
            this machine, same requeue protocol; for tests).
        poll: seconds between two looks at the jobs.
    """

    name = "slurm"

    def __init__(self, folder: str | Path, *, partition: Optional[str] = None, time: int = 60,
                 mem_gb: Optional[float] = None, gpus: int = 0, cpus: int = 1, array: bool = False,
                 max_parallel: Optional[int] = None, setup: Sequence[str] = (), extra: Optional[Mapping] = None,
                 cluster: str = "slurm", poll: float = 2.0) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ImportError("`--executor slurm` needs submitit: pip install \"seglosses[slurm]\"") from None
        self.folder = Path(folder)
        self.partition, self.time, self.mem_gb, self.gpus, self.cpus = partition, time, mem_gb, gpus, cpus
        self.array, self.setup, self.extra, self.cluster, self.poll = array, list(setup), dict(extra or {}), cluster, poll
        self.slots = int(max_parallel) if max_parallel else 1_000_000
        self.max_parallel = max_parallel
        self._jobs: Dict[Any, RunTask] = {}
        self._batch: List[RunTask] = []

    def describe(self) -> str:
        how = "job array(s)" if self.array else "one job per run"
        part = f" on partition {self.partition}" if self.partition else ""
        return f"SLURM ({self.cluster}): {how}{part}, {self.cpus} CPU(s), {self.gpus} GPU(s), {self.time} min per run"

    def start(self, log: Callable[[str], None]) -> None:
        import submitit

        from seglosses.bench.resources import worker_environment

        super().start(log)
        env = worker_environment(max(1, int(self.cpus)))
        setup = [f"export {k}={v}" for k, v in env.items()] + self.setup
        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder=self.folder)
            ex.update_parameters(timeout_min=self.time, gpus_per_node=self.gpus, setup=setup)
        else:
            ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
            params: Dict[str, Any] = {"timeout_min": self.time, "cpus_per_task": self.cpus, "tasks_per_node": 1,
                                      "nodes": 1, "slurm_setup": setup}
            if self.gpus:
                params["gpus_per_node"] = self.gpus
            if self.mem_gb:
                params["mem_gb"] = self.mem_gb
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.max_parallel:
                params["slurm_array_parallelism"] = self.max_parallel
            if self.extra:
                params["slurm_additional_parameters"] = self.extra
            ex.update_parameters(**params)
        self._executor = ex

    def submit(self, task: RunTask, data: Any = None) -> None:
        task.threads = max(1, int(self.cpus))
        if self.array:
            self._batch.append(task)  # flushed as one array by wait()
        else:
            self._jobs[self._executor.submit(SlurmRun(), task)] = task

    def _flush(self) -> None:
        if not self._batch:
            return
        with self._executor.batch():
            jobs = [self._executor.submit(SlurmRun(), t) for t in self._batch]
        for job, task in zip(jobs, self._batch):
            self._jobs[job] = task
        self._batch = []

    def wait(self) -> List[RunResult]:
        self._flush()
        if not self._jobs:
            return []
        while True:
            results = []
            for job in [j for j in self._jobs if j.done()]:
                task = self._jobs.pop(job)
                try:
                    results.append(job.result())
                except Exception as err:  # noqa: BLE001 - the job failed outside the run (node lost, cancelled)
                    text = str(err).strip().splitlines()
                    results.append(RunResult(task.run_id, "failed",
                                             f"SlurmJobError: job {job.job_id}: {text[-1] if text else type(err).__name__}"))
            if results:
                return results
            time.sleep(self.poll)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for job in self._jobs:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
        self._jobs = {}


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


def make_executor(kind: str, *, study_settings: Mapping[str, Any], folder: Path, workers: int = 1,
                  threads: Optional[int] = None, progress: bool = False, options: Optional[Mapping[str, Any]] = None
                  ) -> Executor:
    """The executor ``kind`` (``"local"``, ``"ray"``, ``"slurm"``) with the study's settings and
    the command line's ``options`` (which win).

    ``local`` with one worker is the inline executor (this process). ``threads`` is the study's
    or the command line's threads per run (``None``: :func:`~seglosses.bench.resources.plan_threads`).

    Raises:
        ValueError: an unknown kind or bad settings.
        ImportError: Ray or submitit missing.

    Example:
        >>> make_executor("local", study_settings={"resources": {}, "ray": {}, "slurm": {}}, folder=Path("x"),
        ...               workers=2, threads=1).describe()
        '2 local worker process(es), 1 thread(s) each'
    """
    from seglosses.bench.resources import plan_threads

    options = {k: v for k, v in (options or {}).items() if v is not None}
    resources = {**(study_settings.get("resources") or {}), **options.get("resources", {})}
    if kind == "local":
        n = plan_threads(workers, threads)
        if workers == 1:
            return InlineExecutor(progress=progress, threads=n)
        return LocalExecutor(workers, threads=n)
    if kind == "ray":
        ray_cfg = {**(study_settings.get("ray") or {}), **options.get("ray", {})}
        return RayExecutor(address=ray_cfg.get("address"), cpus=resources.get("cpus") or 1,
                           gpus=resources.get("gpus") or 0, results=ray_cfg.get("results") or "auto")
    if kind == "slurm":
        sl = {**(study_settings.get("slurm") or {}), **options.get("slurm", {})}
        return SlurmExecutor(sl.get("folder") or folder / "slurm", partition=sl.get("partition"),
                             time=int(sl.get("time") or 60), mem_gb=resources.get("memory_gb"),
                             gpus=int(resources.get("gpus") or 0), cpus=int(resources.get("cpus") or 1),
                             array=bool(sl.get("array")), max_parallel=sl.get("max_parallel"),
                             setup=sl.get("setup") or (), extra=sl.get("extra"), cluster=sl.get("cluster") or "slurm")
    raise ValueError(f"`executor` must be 'local', 'ray' or 'slurm'; got {kind!r}")


# ------------------------------------------------------------------------------------------------
# The scheduler
# ------------------------------------------------------------------------------------------------


def execute_runs(
    batches: Sequence[Tuple[Any, Sequence[Any]]],
    folder: Path,
    executor: Executor,
    *,
    spec_of: Callable[[Any], Mapping[str, Any]],
    device: Optional[str] = None,
    log: Callable[[str], None] = print,
    stop_after_epoch: Optional[int] = None,
    display: Any = None,
    config_of: Callable[[Any], Dict[str, Any]] = lambda run: run.config,
    redo_of: Callable[[Any], bool] = lambda run: False,
) -> Iterator[Tuple[Any, RunResult]]:
    """Train the runs of a study on ``executor``; yield ``(run, result)`` as runs end.

    Runs are handed over in the study's order, at most ``executor.slots`` at a time; a run that
    starts from a pre-training run waits for it (one pre-training serves every run that shares
    it; its failure fails them). A finished run (:func:`run_is_finished`) is yielded as skipped
    without being handed over. A run whose lock another process holds comes back ``"busy"``; once
    every other run has ended, such runs are handed over again to wait for their lock.

    Args:
        batches: ``(data, runs)`` per data-set entry (:class:`~seglosses.bench.study.RunSpec` s).
        folder: the study folder (``OUT/<study>``).
        executor: where the runs train.
        spec_of: the resolved data-set spec of a ``data`` object.
        device: the device of every run (``None``: each worker's default).
        log: messages.
        stop_after_epoch: test hook; the first interrupted run stops the study (after the runs
            in flight end) with :class:`~seglosses.bench.train.RunInterrupted`.
        display: a :class:`~seglosses.bench.progress.StudyProgress` (or ``None``).
        config_of: the configuration a run trains with.
        redo_of: whether a run (or pre-training run) is to be trained again from scratch
            (``--redo``); asked once per run.

    Raises:
        RunInterrupted: see ``stop_after_epoch``.
    """
    from seglosses.bench.runfiles import atomic_write_text
    from seglosses.bench.train import RunError, RunInterrupted, distributed_context

    runs_dir = folder / "runs"
    locks_dir = folder / ".locks"
    driver_locks = executor.ship != "never"  # the runs write no folder here: the driver holds their locks
    probe = None
    if executor.ship == "auto":
        token = secrets.token_hex(8)
        probe_path = folder / ".probe"
        atomic_write_text(probe_path, token)
        probe = (str(probe_path.resolve()), token)

    queue: List[Tuple[Any, Any, str]] = []
    for data, runs in batches:
        for i, run in enumerate(runs, 1):
            queue.append((data, run, f"[{data.name} {i}/{len(runs)}] {run.label} seed {run.seed}"))
    position = {item[1].id: i for i, item in enumerate(queue)}
    later: List[Tuple[Any, Any, str]] = []  # runs another process holds: after the others, waiting
    redone: set = set()
    blocking = False
    pre_state: Dict[str, str] = {}  # id -> "running" | "done" | "failed" | "later"
    pre_error: Dict[str, str] = {}
    in_flight: Dict[str, Tuple[Any, Any, str, Any, bool]] = {}  # id -> (data, spec, prefix, lock held here, redo)
    interrupted: Optional[str] = None

    def name_of(spec, data) -> str:
        return f"{spec.label} seed {spec.seed} [{data.name}]"

    def make_task(data, spec, kind: str, init: Optional[str], prefix: str, redo: bool) -> RunTask:
        run_dir = runs_dir / spec.id
        task = RunTask(spec.id, name_of(spec, data), config_of(spec), dict(spec_of(data)), str(run_dir.resolve()),
                       kind=kind, init_checkpoint=init, device=None if device is None else str(device),
                       stop_after_epoch=stop_after_epoch, ship=executor.ship, probe=probe,
                       lock=None if driver_locks else str((locks_dir / f"{spec.id}.lock").resolve()),
                       blocking=blocking, redo=redo, prefix=prefix)
        if driver_locks:
            task.inputs = {n: (run_dir / n).read_bytes() for n in RESUME_FILES if (run_dir / n).is_file()}
            if init is not None:
                task.init_bytes = Path(init).read_bytes()
        return task

    def hand_over(data, spec, kind: str, prefix: str, init: Optional[str] = None) -> str:
        """Give a run to the executor: ``"handed"``, ``"skipped"`` (finished) or ``"busy"`` (held)."""
        redo = redo_of(spec) and spec.id not in redone
        lock = None
        if driver_locks:
            lock = take_lock(locks_dir / f"{spec.id}.lock", blocking=blocking, log=log, prefix=prefix)
            if lock is None:
                return "busy"
            finished = settle_run_folder(runs_dir / spec.id, spec.id, spec.config, redo=redo, log=log, prefix=prefix)
            if redo:
                redone.add(spec.id)
            redo = False
            if finished:
                lock.release()
                return "skipped"
        elif not redo and run_is_finished(runs_dir / spec.id, spec.config):
            return "skipped"
        task = make_task(data, spec, kind, init, prefix, redo)
        in_flight[spec.id] = (data, spec, prefix, lock, redo)
        if display is not None:
            display.start(spec.id, task.label)
        executor.submit(task, data)
        return "handed"

    def settle(spec, data, result: RunResult) -> None:
        lock, redo = in_flight.pop(spec.id)[3:]
        if redo and result.status != "busy":
            redone.add(spec.id)
        try:
            if result.files is not None:
                write_returned_files(runs_dir / spec.id, result.files)
        finally:
            if lock is not None:
                lock.release()
        if display is not None and result.status != "busy":
            display.end(spec.id, name_of(spec, data),
                        "failed" if result.status in ("failed", "interrupted") else result.status)

    def next_ready():
        """Hand over the first run of the queue that can start; what happened to it, or ``None``."""
        for k, (data, run, prefix) in enumerate(queue):
            pre = run.pretrain
            if pre is not None and pre_state.get(pre.id) != "done":
                state = pre_state.get(pre.id)
                if state is None:
                    outcome = hand_over(data, pre, "pretrain", f"{prefix} (pre-training)")
                    if outcome == "handed":
                        pre_state[pre.id] = "running"
                        log(f"{prefix}: pre-training with {pre.config['loss_label']} for {pre.config['epochs']} epochs")
                        return ("handed", None)
                    pre_state[pre.id] = "done" if outcome == "skipped" else "later"
                    if outcome == "busy":
                        continue
                if pre_state[pre.id] in ("running", "later"):
                    continue
                if pre_state[pre.id] == "failed":
                    del queue[k]
                    message = f"RunError: its pre-training run {pre.id} failed ({pre_error[pre.id]})"
                    if distributed_context()[0] == 0:
                        atomic_write_text(runs_dir / run.id / "error.txt", message + "\n")
                    if display is not None:
                        display.start(run.id, run.label)
                        display.end(run.id, name_of(run, data), "failed")
                    log(f"FAILED {prefix}: {message}")
                    return ("yield", (run, RunResult(run.id, "failed", message)))
            del queue[k]
            init = str(runs_dir / pre.id / "checkpoint.pt") if pre is not None else None
            outcome = hand_over(data, run, "run", prefix, init)
            if outcome == "skipped":
                log(f"{prefix}: finished earlier, skipped")
                if display is not None:
                    display.end(run.id, name_of(run, data), "skipped")
                return ("yield", (run, RunResult(run.id, "skipped")))
            if outcome == "busy":
                later.append((data, run, prefix))
                return ("busy", None)
            log(f"{prefix}: training")
            return ("handed", None)
        return None

    executor.start(log)
    if display is not None:
        display.slots = max(1, min(executor.slots, len(queue)))
    try:
        while True:
            while interrupted is None and len(in_flight) < executor.slots:
                step = next_ready()
                if step is None:
                    break
                if step[0] == "yield":
                    yield step[1]
            if not in_flight:
                if interrupted is None and (later or any(v == "later" for v in pre_state.values())) and not blocking:
                    # every other run has ended: now wait for the runs other processes hold
                    blocking = True
                    queue[:0] = later
                    queue.sort(key=lambda item: position[item[1].id])
                    later = []
                    for pid, state in list(pre_state.items()):
                        if state == "later":
                            del pre_state[pid]
                    continue
                if interrupted is not None or not queue:
                    break
                raise RunError("no run can start")  # unreachable: a waiting run has a pre-training in flight
            for result in executor.wait():
                data, spec, prefix = in_flight[result.run_id][:3]
                settle(spec, data, result)
                is_pre = spec.config.get("kind") == "pretrain"
                if result.status == "interrupted":
                    interrupted = result.error
                    continue
                if result.status == "busy":
                    if is_pre:
                        pre_state[spec.id] = "later"
                    else:
                        later.append((data, spec, prefix))
                    continue
                if is_pre:
                    pre_state[spec.id] = "done" if result.status in ("finished", "skipped") else "failed"
                    if result.status == "failed":
                        pre_error[spec.id] = result.error or "unknown error"
                        log(f"FAILED {prefix}: {result.error}")
                    continue
                if result.status == "skipped":
                    log(f"{prefix}: finished earlier, skipped")
                if result.status == "failed":
                    log(f"FAILED {prefix}: {result.error}")
                yield spec, result
    except BaseException:
        for _, _, _, lock, _ in in_flight.values():
            if lock is not None:
                lock.release()
        executor.close(cancel=True)
        raise
    else:
        executor.close()
    finally:
        if probe is not None:
            Path(probe[0]).unlink(missing_ok=True)
    if interrupted is not None:
        raise RunInterrupted(interrupted)
