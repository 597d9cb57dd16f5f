"""The ``seglosses`` command line: ``bench``, ``report`` and ``losses``.

::

    seglosses bench                       # the embedded default study (bundled synthetic data)
    seglosses bench STUDY.yaml            # a study file (.yaml, .yml, .toml, .json)
    seglosses report RUNS_DIR             # the report of a study folder (OUT/<study>)
    seglosses losses                      # the registered losses, one line each

``bench`` and ``report`` take ``--out DIR`` (default ``runs/``); the report goes to
``DIR/<study>/report/``. Quick-run options of ``bench`` (smaller studies for a first look or
for tests; they change the run ids, so they never mix with full runs): ``--epochs N``,
``--max-images N``, ``--size PX``, ``--width C``, ``--seeds 0,1``, ``--losses CE,Dice``,
``--pretrain-epochs N`` (checked as the study file's values are). ``--redo RUN[,RUN]`` trains the
named runs again from scratch (run ids as in the messages, labels or shell patterns). Before the
first run, the whole study, ``--device`` and ``--out`` are checked; every problem of the study is
listed at once. ``--stop-after-epoch K`` stops every run right after the checkpoint of
epoch K, as if the process had been killed there (for resumption tests).

Execution options of ``bench`` (never change a result): ``--workers N`` and ``--threads T`` (N
runs at a time in local processes, T threads each), ``--executor ray`` / ``--executor slurm``
with their options; see :mod:`seglosses.bench.study` and :mod:`seglosses.bench.executors`.
The console script starts ``bench`` with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set
(:func:`console_main`). A study-level progress line is shown on stderr (one line per run that
ends when stderr is not a terminal).

Exit codes: 0 success; 1 some runs failed (the others finished, the report was written);
2 a usage, study-file or report error; 3 stopped by ``--stop-after-epoch``; 130 interrupted.

Under ``torchrun`` the process group is initialised here (NCCL on CUDA, else gloo) and every
process runs the same study; only rank 0 writes files and the report.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["main", "console_main", "build_parser"]


def _int_list(text: str) -> List[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers; got {text!r}") from None


def _str_list(text: str) -> List[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def _at_least(low: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be a number >= {low:g}; got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``seglosses`` command.

    Example:
        >>> build_parser().parse_args(["bench", "--epochs", "1"]).epochs
        1
    """
    parser = argparse.ArgumentParser(
        prog="seglosses", description="Segmentation losses: benchmark, report, list.")
    sub = parser.add_subparsers(dest="command", metavar="{bench,report,losses}")

    bench = sub.add_parser("bench", help="train and evaluate a U-Net per loss, then write the report",
                           description="Run a study (default: the embedded one on bundled synthetic data); "
                                       "finished runs are skipped, interrupted ones resumed.")
    bench.add_argument("study", nargs="?", help="study file (.yaml, .yml, .toml, .json); default: the embedded study")
    bench.add_argument("--out", default="runs", help="output folder (default: runs/)")
    bench.add_argument("--baseline", default=None, help="reference loss of the significance tests (default: the "
                                                        "study's baseline, else its first loss)")
    bench.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    bench.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines")
    bench.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    quick = bench.add_argument_group("quick-run overrides")
    quick.add_argument("--epochs", type=int, help="epochs of every run")
    quick.add_argument("--max-images", type=int, help="images per split (synthetic data: images in total)")
    quick.add_argument("--size", type=int, help="synthetic image size; other data: training crop and central "
                                                "evaluation crop")
    quick.add_argument("--width", type=int, help="U-Net width (channels of the first level)")
    quick.add_argument("--seeds", type=_int_list, help="comma-separated seeds")
    quick.add_argument("--losses", type=_str_list, help="comma-separated loss labels (or specs) to keep")
    quick.add_argument("--pretrain-epochs", type=int, help="epochs of the pre-training (seed 003 protocol)")
    bench.add_argument("--redo", type=_str_list, action="append", metavar="RUN",
                       help="train these runs again from scratch (their folders are removed): comma-separated "
                            "run ids (as in study.json and the messages), labels or shell patterns; repeatable")
    bench.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    ex = bench.add_argument_group("execution (never changes a result; see the study reference)")
    ex.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                    help="where the runs train: local processes (default), Ray tasks, SLURM jobs")
    ex.add_argument("--workers", type=_positive_int, default=1,
                    help="local: runs at a time, each in its own process (default 1: in this process)")
    ex.add_argument("--threads", type=_positive_int, default=None,
                    help="torch threads per run (default: the study's `threads`, else usable cores / workers)")
    ex.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    ex.add_argument("--ray-results", choices=("shared", "return", "auto"), default=None,
                    help="Ray: runs write the study folder (shared), send their files back (return), or "
                         "whichever works (auto, default)")
    ex.add_argument("--cpus-per-run", type=_at_least(1), default=None, help="Ray/SLURM: CPUs per run (study `resources.cpus`)")
    ex.add_argument("--gpus-per-run", type=_at_least(0), default=None, help="Ray/SLURM: GPUs per run (study `resources.gpus`)")
    ex.add_argument("--mem-per-run", type=_at_least(0), default=None, help="SLURM: memory per run in GB")
    ex.add_argument("--slurm-partition", default=None, help="SLURM partition")
    ex.add_argument("--slurm-time", type=_positive_int, default=None, help="SLURM time limit per job, minutes")
    ex.add_argument("--slurm-array", action="store_true", default=None,
                    help="SLURM: submit the runs ready together as one job array")
    ex.add_argument("--slurm-max-parallel", type=_positive_int, default=None,
                    help="SLURM: jobs at a time (the array's %%-limit)")

    report = sub.add_parser("report", help="write the comparison report of a study folder")
    report.add_argument("runs_dir", help="a study folder (OUT/<study>), or an output folder holding studies")
    report.add_argument("--out", default=None, help="report folder (default: <study>/report)")
    report.add_argument("--baseline", default=None, help="reference loss of the significance tests")
    report.add_argument("--no-figures", action="store_true", help="tables only")
    report.add_argument("--compare", default=None, help="the factor to compare (domain, batch_size, loss, ...; "
                                                        "default: the study's `compare`)")

    sub.add_parser("losses", help="list the registered losses")
    return parser


def _init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return True


def _cmd_losses() -> int:
    from seglosses.registry import ENTRIES

    width = max(len(e.name) for e in ENTRIES)
    for e in ENTRIES:
        aliases = f"  (also: {', '.join(e.aliases)})" if e.aliases else ""
        print(f"{e.name:<{width}}  {e.description}{aliases}")
    return 0


def _cmd_report(args) -> int:
    from seglosses.bench.report import ReportError, find_studies, write_report
    from seglosses.bench.runfiles import folder_problem

    def warn(message: str) -> None:
        print(f"seglosses report: {message}", file=sys.stderr)

    try:
        folders = find_studies(args.runs_dir)
        for folder in folders:
            out = args.out if args.out is None or len(folders) == 1 else Path(args.out) / folder.name
            problem = folder_problem(Path(out) if out is not None else folder / "report")
            if problem:
                raise ReportError(f"`--out` must be a folder the report can be written to; {problem}")
            path = write_report(folder, out=out, baseline=args.baseline, figures=not args.no_figures, warn=warn,
                                compare=args.compare)
            print(f"report: {path / 'report.md'}")
    except ReportError as err:
        print(f"seglosses report: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"seglosses report: error: cannot write the report: {err}", file=sys.stderr)
        return 2
    return 0


def _device(text: Optional[str]):
    """The ``--device`` value as a torch device; ``ValueError`` with a one-line message when unusable."""
    import torch

    if text is None:
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"`--device` must be cpu, cuda, cuda:N, mps, ...; got {text!r}") from None
    available = {"cuda": torch.cuda.is_available,
                 "mps": lambda: bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if device.type in available and not available[device.type]():
        raise ValueError(f"`--device` must be available on this machine; got {text!r} (torch finds no "
                         f"{device.type.upper()} device)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"`--device` must name one of the {torch.cuda.device_count()} CUDA devices; got {text!r}")
    return device


def _cmd_bench(args) -> int:
    from seglosses.bench.executors import InlineExecutor
    from seglosses.bench.progress import StudyProgress
    from seglosses.bench.study import StudyError
    from seglosses.bench.train import distributed_context

    distributed = _init_distributed()
    rank, _ = distributed_context()
    main = rank == 0
    try:
        study, device = _bench_study(args, main)
    except (StudyError, ValueError) as err:
        print(f"seglosses bench: error: {err}", file=sys.stderr)
        return 2
    try:
        executor = _executor(args, study, distributed)
    except (ValueError, ImportError) as err:
        print(f"seglosses bench: error: {err}", file=sys.stderr)
        return 2
    inline = isinstance(executor, InlineExecutor)
    live = not args.quiet and sys.stderr.isatty() and main  # bars and a status line on the terminal
    progress = live and inline  # the bars of each run: only when it trains in this process
    if main and not args.quiet:
        print(f"execution: {executor.describe()}; {_wait_policy_note()}", flush=True)
    display = StudyProgress(0, slots=executor.slots, enabled=main and not args.quiet, position=2 if progress else 0)
    t0 = time.perf_counter()
    outcome = _bench_run(args, study, device=device, progress=progress, log=_bench_log(args, main, live),
                         executor=executor, display=display, main=main, distributed=distributed)
    if isinstance(outcome, int):
        return outcome
    if not main:
        return 0
    print(f"study {study.name}: {outcome.summary()} in "
          f"{time.perf_counter() - t0:.1f} s; folder {outcome.folder}")
    return _bench_report(args, outcome)


def _bench_study(args, main: bool):
    """The study of ``bench`` (file or embedded default, with the quick-run overrides), checked
    whole, and the device; raises StudyError or ValueError."""
    from seglosses.bench.checks import validate_study
    from seglosses.bench.default_study import default_study
    from seglosses.bench.runfiles import folder_problem
    from seglosses.bench.study import apply_overrides, load_study, parse_study

    study = load_study(args.study) if args.study else parse_study(default_study(), source=None)
    study = apply_overrides(study, epochs=args.epochs, max_images=args.max_images, size=args.size,
                            width=args.width, seeds=args.seeds, pretrain_epochs=args.pretrain_epochs,
                            losses=args.losses)
    validate_study(study)
    device = _device(args.device)
    problem = folder_problem(Path(args.out) / study.name) if main else None
    if problem:
        raise ValueError(f"`--out` must be a folder the runs can be written to; {problem}")
    return study, device


def _bench_log(args, main: bool, live: bool):
    """Where the messages of ``bench`` go: above the progress bars on a terminal, else stdout."""
    def log(message: str) -> None:
        if args.quiet or not main:
            return
        if live:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stdout)
        else:
            print(message, flush=True)

    return log


def _bench_run(args, study, *, device, progress: bool, log, executor, display, main: bool, distributed: bool):
    """Run the study; its outcome, or the exit code when it stopped (2 error, 3 interrupted by the
    test hook, 130 Ctrl-C)."""
    from seglosses.bench.study import StudyError, run_study
    from seglosses.bench.train import RunInterrupted

    redo = [x for group in args.redo or [] for x in group]
    try:
        return run_study(study, args.out, device=device, progress=progress, log=log,
                         stop_after_epoch=args.stop_after_epoch, redo=redo, executor=executor, display=display)
    except StudyError as err:
        if main:
            print(f"seglosses bench: error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        if main:
            print(f"seglosses bench: {err}; re-run the same command to resume", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        if main:
            print("seglosses bench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        display.close()
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _bench_report(args, outcome) -> int:
    """Write the report (unless ``--no-report``) and list the failures; the exit code."""
    from seglosses.bench.report import ReportError, write_report

    status = 0
    if not args.no_report and outcome.finished:
        try:
            path = write_report(outcome.folder, baseline=args.baseline,
                                warn=lambda m: print(f"seglosses bench: report: {m}", file=sys.stderr))
            print(f"report: {path / 'report.md'}")
        except (ReportError, OSError) as err:
            print(f"seglosses bench: report error: {err}", file=sys.stderr)
            status = 2
    if outcome.failures:
        print(f"{len(outcome.failures)} failure(s):", file=sys.stderr)
        for f in outcome.failures:
            print(f"  - {f['run']}: {f['error']}", file=sys.stderr)
        status = status or 1
    return status


def _executor(args, study, distributed: bool):
    """The executor of ``bench`` from the command line and the study (the command line wins)."""
    from seglosses.bench.executors import InlineExecutor, make_executor

    threads = args.threads if args.threads is not None else study.settings.get("threads")
    if distributed:
        if args.executor != "local" or args.workers != 1:
            raise ValueError("`--executor`/`--workers` must be left at their defaults under torchrun; "
                             f"got --executor {args.executor} --workers {args.workers}")
        return InlineExecutor(progress=not args.quiet and sys.stderr.isatty(), threads=threads)
    if args.executor != "local" and args.workers != 1:
        raise ValueError(f"`--workers` is for the local executor; got --workers {args.workers} with "
                         f"--executor {args.executor} (Ray and SLURM take `resources` per run)")
    options = {
        "resources": {k: v for k, v in (("cpus", args.cpus_per_run), ("gpus", args.gpus_per_run),
                                        ("memory_gb", args.mem_per_run)) if v is not None},
        "ray": {k: v for k, v in (("address", args.ray_address), ("results", args.ray_results)) if v is not None},
        "slurm": {k: v for k, v in (("partition", args.slurm_partition), ("time", args.slurm_time),
                                    ("array", args.slurm_array), ("max_parallel", args.slurm_max_parallel))
                  if v is not None},
    }
    folder = Path(args.out).resolve() / study.name
    return make_executor(args.executor, study_settings=study.settings, folder=folder, workers=args.workers,
                         threads=threads, progress=not args.quiet and sys.stderr.isatty(), options=options)


def _initial_environment() -> dict:
    """The environment this process started with (what the OpenMP runtime read when torch loaded)."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _wait_policy_note() -> str:
    policy = _initial_environment().get("OMP_WAIT_POLICY")
    if policy is None:
        return ("OpenMP threads of this process busy-wait (OMP_WAIT_POLICY unset when torch loaded: "
                "a busy machine slows the runs here; the seglosses command sets it)")
    return f"OMP_WAIT_POLICY={policy}"


def console_main() -> int:
    """Entry point of the ``seglosses`` console script (and ``python -m seglosses.cli``).

    ``bench`` trains in this process: its OpenMP threads must sleep rather than spin while they
    wait (see :mod:`seglosses.bench.resources`), and the OpenMP runtime reads
    ``OMP_WAIT_POLICY`` once, when torch loads, which importing this module has already done.
    So when the variable is unset, ``bench`` sets it and replaces this process with a fresh
    interpreter running the same command (``os.execv``: same process id, same terminal); a value
    the user set is kept. Everything else runs :func:`main` directly.
    """
    argv = sys.argv[1:]
    if argv[:1] == ["bench"] and "OMP_WAIT_POLICY" not in os.environ and hasattr(os, "execv") and sys.executable:
        from seglosses.bench.resources import WAIT_POLICY

        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "seglosses.cli", *argv])
    return main(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``seglosses`` console script; returns the exit code.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Example:
        >>> main(["losses"]) == 0  # doctest: +ELLIPSIS
        dice ...
        True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "losses":
        return _cmd_losses()
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "bench":
        return _cmd_bench(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
