"""The scheduler of a study's runs: which run goes to the executor next.

:func:`execute_runs` hands runs over in the study's order, at most the executor's ``slots`` at a
time; pre-training runs go before the runs that start from them, a run finished earlier is never
handed over, and runs another process holds are taken up again once every other run has ended.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from seglosses.bench.executors import Executor
from seglosses.bench.runtask import (
    RESUME_FILES,
    RunResult,
    RunTask,
    run_is_finished,
    settle_run_folder,
    take_lock,
    write_returned_files,
)

__all__ = ["execute_runs"]


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
