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
    scheduler = _Scheduler(batches, folder, executor, spec_of=spec_of, device=device, log=log,
                           stop_after_epoch=stop_after_epoch, display=display, config_of=config_of,
                           redo_of=redo_of)
    yield from scheduler.run()


_Item = Tuple[Any, Any, str]  # (data, run, message prefix)
_Step = Optional[Tuple[str, Any]]  # ("handed" | "busy", None) or ("yield", (run, result)); None: nothing ready


class _Scheduler:
    """The state of :func:`execute_runs`: the queue, the runs in flight, the pre-training runs."""

    def __init__(self, batches: Sequence[Tuple[Any, Sequence[Any]]], folder: Path, executor: Executor, *,
                 spec_of: Callable[[Any], Mapping[str, Any]], device: Optional[str], log: Callable[[str], None],
                 stop_after_epoch: Optional[int], display: Any, config_of: Callable[[Any], Dict[str, Any]],
                 redo_of: Callable[[Any], bool]) -> None:
        self.folder, self.executor, self.spec_of, self.device, self.log = folder, executor, spec_of, device, log
        self.stop_after_epoch, self.display, self.config_of, self.redo_of = stop_after_epoch, display, config_of, redo_of
        self.runs_dir = folder / "runs"
        self.locks_dir = folder / ".locks"
        self.driver_locks = executor.ship != "never"  # the runs write no folder here: the driver holds their locks
        self.probe: Optional[Tuple[str, str]] = None
        self.queue: List[_Item] = []
        for data, runs in batches:
            for i, run in enumerate(runs, 1):
                self.queue.append((data, run, f"[{data.name} {i}/{len(runs)}] {run.label} seed {run.seed}"))
        self.position = {item[1].id: i for i, item in enumerate(self.queue)}
        self.later: List[_Item] = []  # runs another process holds: after the others, waiting
        self.redone: set = set()
        self.blocking = False
        self.pre_state: Dict[str, str] = {}  # id -> "running" | "done" | "failed" | "later"
        self.pre_error: Dict[str, str] = {}
        self.in_flight: Dict[str, Tuple[Any, Any, str, Any, bool]] = {}  # id -> (data, spec, prefix, lock, redo)
        self.interrupted: Optional[str] = None

    def run(self) -> Iterator[Tuple[Any, RunResult]]:
        """Hand runs over and collect their results until every run has ended."""
        from seglosses.bench.train import RunError, RunInterrupted

        self._write_probe()
        self.executor.start(self.log)
        if self.display is not None:
            self.display.slots = max(1, min(self.executor.slots, len(self.queue)))
        try:
            while True:
                yield from self._fill_slots()
                if not self.in_flight:
                    if self._take_up_held_runs():
                        continue
                    if self.interrupted is not None or not self.queue:
                        break
                    raise RunError("no run can start")  # unreachable: a waiting run has a pre-training in flight
                yield from self._collect()
        except BaseException:
            for _, _, _, lock, _ in self.in_flight.values():
                if lock is not None:
                    lock.release()
            self.executor.close(cancel=True)
            raise
        else:
            self.executor.close()
        finally:
            if self.probe is not None:
                Path(self.probe[0]).unlink(missing_ok=True)
        if self.interrupted is not None:
            raise RunInterrupted(self.interrupted)

    def _write_probe(self) -> None:
        """``ship: auto``: a file in the study folder that tells a worker whether it sees the folder."""
        from seglosses.bench.runfiles import atomic_write_text

        if self.executor.ship == "auto":
            token = secrets.token_hex(8)
            probe_path = self.folder / ".probe"
            atomic_write_text(probe_path, token)
            self.probe = (str(probe_path.resolve()), token)

    @staticmethod
    def _name_of(spec: Any, data: Any) -> str:
        return f"{spec.label} seed {spec.seed} [{data.name}]"

    def _make_task(self, data: Any, spec: Any, kind: str, init: Optional[str], prefix: str, redo: bool) -> RunTask:
        run_dir = self.runs_dir / spec.id
        task = RunTask(spec.id, self._name_of(spec, data), self.config_of(spec), dict(self.spec_of(data)),
                       str(run_dir.resolve()), kind=kind, init_checkpoint=init,
                       device=None if self.device is None else str(self.device),
                       stop_after_epoch=self.stop_after_epoch, ship=self.executor.ship, probe=self.probe,
                       lock=None if self.driver_locks else str((self.locks_dir / f"{spec.id}.lock").resolve()),
                       blocking=self.blocking, redo=redo, prefix=prefix)
        if self.driver_locks:
            task.inputs = {n: (run_dir / n).read_bytes() for n in RESUME_FILES if (run_dir / n).is_file()}
            if init is not None:
                task.init_bytes = Path(init).read_bytes()
        return task

    def _hand_over(self, data: Any, spec: Any, kind: str, prefix: str, init: Optional[str] = None) -> str:
        """Give a run to the executor: ``"handed"``, ``"skipped"`` (finished) or ``"busy"`` (held)."""
        redo = self.redo_of(spec) and spec.id not in self.redone
        lock = None
        if self.driver_locks:
            lock = take_lock(self.locks_dir / f"{spec.id}.lock", blocking=self.blocking, log=self.log, prefix=prefix)
            if lock is None:
                return "busy"
            finished = settle_run_folder(self.runs_dir / spec.id, spec.id, spec.config, redo=redo, log=self.log,
                                         prefix=prefix)
            if redo:
                self.redone.add(spec.id)
            redo = False
            if finished:
                lock.release()
                return "skipped"
        elif not redo and run_is_finished(self.runs_dir / spec.id, spec.config):
            return "skipped"
        task = self._make_task(data, spec, kind, init, prefix, redo)
        self.in_flight[spec.id] = (data, spec, prefix, lock, redo)
        if self.display is not None:
            self.display.start(spec.id, task.label)
        self.executor.submit(task, data)
        return "handed"

    def _settle(self, spec: Any, data: Any, result: RunResult) -> None:
        """A run came back: write shipped files, release its lock, update the display."""
        lock, redo = self.in_flight.pop(spec.id)[3:]
        if redo and result.status != "busy":
            self.redone.add(spec.id)
        try:
            if result.files is not None:
                write_returned_files(self.runs_dir / spec.id, result.files)
        finally:
            if lock is not None:
                lock.release()
        if self.display is not None and result.status != "busy":
            self.display.end(spec.id, self._name_of(spec, data),
                             "failed" if result.status in ("failed", "interrupted") else result.status)

    def _fill_slots(self) -> Iterator[Tuple[Any, RunResult]]:
        """Hand over runs while the executor has free slots; yield the runs that end at once."""
        while self.interrupted is None and len(self.in_flight) < self.executor.slots:
            step = self._next_ready()
            if step is None:
                break
            if step[0] == "yield":
                yield step[1]

    def _next_ready(self) -> _Step:
        """Hand over the first run of the queue that can start; what happened to it, or ``None``."""
        for k, (data, run, prefix) in enumerate(self.queue):
            pre = run.pretrain
            if pre is not None and self.pre_state.get(pre.id) != "done":
                step = self._through_pretraining(k, data, run, prefix)
                if step[0] == "wait":
                    continue
                if step[0] != "go":
                    return step
            del self.queue[k]
            init = str(self.runs_dir / pre.id / "checkpoint.pt") if pre is not None else None
            outcome = self._hand_over(data, run, "run", prefix, init)
            if outcome == "skipped":
                self.log(f"{prefix}: finished earlier, skipped")
                if self.display is not None:
                    self.display.end(run.id, self._name_of(run, data), "skipped")
                return ("yield", (run, RunResult(run.id, "skipped")))
            if outcome == "busy":
                self.later.append((data, run, prefix))
                return ("busy", None)
            self.log(f"{prefix}: training")
            return ("handed", None)
        return None

    def _through_pretraining(self, k: int, data: Any, run: Any, prefix: str) -> Tuple[str, Any]:
        """A queued run whose pre-training is not done yet: start the pre-training, or fail the run
        when it failed. ``("wait", None)``: the run waits (its pre-training runs or another process
        holds it); ``("go", None)``: the pre-training finished earlier, the run can start; else the
        step taken."""
        pre = run.pretrain
        if self.pre_state.get(pre.id) is None:
            outcome = self._hand_over(data, pre, "pretrain", f"{prefix} (pre-training)")
            if outcome == "handed":
                self.pre_state[pre.id] = "running"
                self.log(f"{prefix}: pre-training with {pre.config['loss_label']} for {pre.config['epochs']} epochs")
                return ("handed", None)
            self.pre_state[pre.id] = "done" if outcome == "skipped" else "later"
            if outcome == "busy":
                return ("wait", None)
        if self.pre_state[pre.id] in ("running", "later"):
            return ("wait", None)
        if self.pre_state[pre.id] == "failed":
            del self.queue[k]
            return ("yield", (run, self._fail_after_pretraining(data, run, prefix)))
        return ("go", None)

    def _fail_after_pretraining(self, data: Any, run: Any, prefix: str) -> RunResult:
        from seglosses.bench.runfiles import atomic_write_text
        from seglosses.bench.train import distributed_context

        pre = run.pretrain
        message = f"RunError: its pre-training run {pre.id} failed ({self.pre_error[pre.id]})"
        if distributed_context()[0] == 0:
            atomic_write_text(self.runs_dir / run.id / "error.txt", message + "\n")
        if self.display is not None:
            self.display.start(run.id, run.label)
            self.display.end(run.id, self._name_of(run, data), "failed")
        self.log(f"FAILED {prefix}: {message}")
        return RunResult(run.id, "failed", message)

    def _take_up_held_runs(self) -> bool:
        """Once every other run has ended, queue again the runs other processes hold, now waiting
        for their locks; whether there were any."""
        held = self.later or any(v == "later" for v in self.pre_state.values())
        if self.interrupted is not None or not held or self.blocking:
            return False
        self.blocking = True
        self.queue[:0] = self.later
        self.queue.sort(key=lambda item: self.position[item[1].id])
        self.later = []
        for pid, state in list(self.pre_state.items()):
            if state == "later":
                del self.pre_state[pid]
        return True

    def _collect(self) -> Iterator[Tuple[Any, RunResult]]:
        """Wait for runs to end; yield the runs' results (pre-training runs only change the state)."""
        for result in self.executor.wait():
            data, spec, prefix = self.in_flight[result.run_id][:3]
            self._settle(spec, data, result)
            is_pre = spec.config.get("kind") == "pretrain"
            if result.status == "interrupted":
                self.interrupted = result.error
                continue
            if result.status == "busy":
                if is_pre:
                    self.pre_state[spec.id] = "later"
                else:
                    self.later.append((data, spec, prefix))
                continue
            if is_pre:
                self.pre_state[spec.id] = "done" if result.status in ("finished", "skipped") else "failed"
                if result.status == "failed":
                    self.pre_error[spec.id] = result.error or "unknown error"
                    self.log(f"FAILED {prefix}: {result.error}")
                continue
            if result.status == "skipped":
                self.log(f"{prefix}: finished earlier, skipped")
            if result.status == "failed":
                self.log(f"FAILED {prefix}: {result.error}")
            yield spec, result
