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
failed result; the scheduler (:func:`~seglosses.bench.scheduler.execute_runs`) orders pre-training runs before the runs
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
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from seglosses.bench.runtask import (
    RunResult,
    RunTask,
    perform_run,
    run_is_finished,
    settle_run_folder,
    take_lock,
    write_returned_files,
)
from seglosses.bench.studyfile import check_execution_settings

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
    "make_executor",
    "check_execution_settings",
    "write_returned_files",
]


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
