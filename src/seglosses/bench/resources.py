"""The cores a study may use, the threads of each run, and the environment of worker processes.

A run trains a small U-Net whose every layer is an OpenMP parallel region. Two things decide
how fast it goes on a machine that other processes share:

* **How many threads.** :func:`usable_cpus` counts the cores this process may run on: the
  CPU affinity mask (``os.sched_getaffinity``: ``taskset``, SLURM's and Docker's ``cpuset``)
  capped by the cgroup CPU quota (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us`` of cgroup v1: Docker's ``--cpus``, Kubernetes limits). A study with
  ``W`` local workers gives each run ``max(1, cores // W)`` threads (:func:`plan_threads`)
  unless ``threads`` says otherwise.
* **How threads wait.** By default the OpenMP runtime lets a thread that reaches the end of a
  parallel region spin for a while, waiting for the next one. On a machine where another
  process keeps one core busy, the spinning threads and the thread that still has work share
  the free core, and every layer waits for a time slice: an epoch took 35 s instead of 4 s.
  ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep instead. The OpenMP runtime reads it
  once, when torch is first imported, so :func:`worker_environment` gives it to the processes
  a study starts, and the ``seglosses`` console script sets it before torch is imported
  (:func:`seglosses.cli.console_main`). A value the user set is kept.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = [
    "WAIT_POLICY",
    "cgroup_cpu_limit",
    "usable_cpus",
    "plan_threads",
    "worker_environment",
    "set_threads",
]

#: The OpenMP wait policy of the processes that train runs (unless the user set one).
WAIT_POLICY = "PASSIVE"


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroups(proc_cgroup: Optional[str]) -> List[Tuple[str, str]]:
    """``(controllers, path)`` pairs of ``/proc/self/cgroup`` (``"0::/a/b"`` gives ``("", "/a/b")``)."""
    text = proc_cgroup if proc_cgroup is not None else _read(Path("/proc/self/cgroup"))
    pairs = []
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            pairs.append((parts[1], parts[2]))
    return pairs


def _ancestors(base: Path, rel: str) -> List[Path]:
    """``base/rel``, then each parent folder up to ``base`` (a parent's limit binds its children)."""
    rel_parts = [p for p in rel.split("/") if p]
    return [base.joinpath(*rel_parts[:k]) for k in range(len(rel_parts), -1, -1)]


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup", proc_cgroup: Optional[str] = None) -> Optional[float]:
    """The CPU quota of this process's cgroup, in cores (``None``: no quota, or no cgroup files).

    cgroup v2: ``cpu.max`` holds ``"<quota> <period>"`` or ``"max <period>"``; cgroup v1:
    ``cpu/cpu.cfs_quota_us`` (``-1`` for none) over ``cpu/cpu.cfs_period_us``. The process's
    own cgroup (``/proc/self/cgroup``) and every ancestor are read; the smallest quota wins.

    Args:
        root: the cgroup file-system mount.
        proc_cgroup: the text of ``/proc/self/cgroup`` (default: read it).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "cpu.max").write_text("150000 100000\\n")
        >>> cgroup_cpu_limit(root, proc_cgroup="0::/\\n")
        1.5
    """
    root = Path(root)
    limits: List[float] = []
    pairs = _own_cgroups(proc_cgroup) or [("", "/")]
    for controllers, rel in pairs:
        if controllers == "":  # cgroup v2 (unified hierarchy)
            for folder in _ancestors(root, rel):
                text = _read(folder / "cpu.max")
                if text:
                    quota, _, period = text.partition(" ")
                    if quota != "max" and period:
                        limits.append(int(quota) / int(period))
        elif "cpu" in controllers.split(","):  # cgroup v1
            for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                for folder in _ancestors(mount, rel):
                    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                    if quota and period and int(quota) > 0 and int(period) > 0:
                        limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def usable_cpus() -> int:
    """The cores this process may use: its CPU affinity, capped by the cgroup CPU quota (>= 1).

    A fractional quota rounds down (1.5 cores: 1 thread that never waits for its share);
    never less than 1.

    Example:
        >>> 1 <= usable_cpus() <= (os.cpu_count() or 1)
        True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, math.floor(limit))
    return max(1, cpus)


def plan_threads(workers: int, threads: Optional[int] = None, cpus: Optional[int] = None) -> int:
    """The threads of each run when ``workers`` runs share ``cpus`` cores.

    ``threads`` (the study's or the command line's) wins; otherwise each run gets an equal
    share, ``max(1, cpus // workers)``.

    Args:
        workers: runs at the same time (>= 1).
        threads: threads per run asked for, or ``None``.
        cpus: usable cores (default :func:`usable_cpus`).

    Raises:
        ValueError: ``workers`` or ``threads`` below 1.

    Example:
        >>> plan_threads(1, cpus=2), plan_threads(2, cpus=2), plan_threads(3, cpus=16), plan_threads(2, 4, cpus=2)
        (2, 1, 5, 4)
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an integer >= 1; got {workers!r}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"`threads` must be an integer >= 1 or null; got {threads!r}")
        return threads
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, cpus // workers)


def worker_environment(threads: int, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment variables a process that trains runs with ``threads`` threads starts with.

    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` size the thread pools; ``OMP_WAIT_POLICY``
    (:data:`WAIT_POLICY`, unless ``base`` already sets it) keeps idle threads from spinning.
    Only the variables to set are returned.

    Args:
        threads: threads per run.
        base: the environment they are added to (default ``os.environ``).

    Example:
        >>> worker_environment(2, base={})
        {'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': '2', 'OMP_WAIT_POLICY': 'PASSIVE'}
        >>> worker_environment(1, base={"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"]
        'ACTIVE'
    """
    base = os.environ if base is None else base
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OMP_WAIT_POLICY": base.get("OMP_WAIT_POLICY", WAIT_POLICY)}


def set_threads(threads: int) -> None:
    """Size torch's intra-op thread pool of this process (``torch.set_num_threads``).

    Example:
        >>> import torch
        >>> before = torch.get_num_threads(); set_threads(1); torch.get_num_threads()
        1
        >>> set_threads(before)
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(int(threads))
