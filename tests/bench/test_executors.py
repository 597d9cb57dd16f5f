"""Executors of the benchmark (seglosses.bench.executors, .progress, .resources): every executor gives
the sequential run's numbers, the skip/resume/failure rules hold everywhere, and threads are sized from
the usable cores."""
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seglosses.bench import resources
from seglosses.bench.executors import (
    InlineExecutor,
    LocalExecutor,
    RunTask,
    SlurmRun,
    check_execution_settings,
    make_executor,
    perform_run,
    write_returned_files,
)
from seglosses.bench.progress import StudyProgress, format_duration
from seglosses.bench.study import StudyError, parse_study, run_study
from seglosses.bench.train import RunInterrupted

SRC = str(Path(__file__).resolve().parents[2] / "src")

# a tiny study with every kind of run: two losses x two seeds, and a pre-training shared by the runs
TINY = {
    "name": "tiny",
    "datasets": [{"name": "blobs", "type": "synthetic", "n_images": 16, "size": 32, "positive_fraction": 0.75,
                  "seed": 5, "split": {"counts": [8, 4, 4], "seed": 0}}],
    "losses": ["ce", "dice"], "seeds": [0, 1], "epochs": 2, "batch_size": 4,
    "model": {"depth": 2, "width": 4}, "eval": {"metrics": ["dice", "jaccard", "hd95"], "samples": 1},
    "pretrain": {"loss": "ce", "epochs": 1}, "threads": 1,
}


def _quiet(message):
    pass


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sequential run of TINY in this process, one thread per run."""
    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("sequential")
    try:
        outcome = run_study(parse_study(TINY), out, log=_quiet, executor=InlineExecutor(threads=1))
    finally:
        torch.set_num_threads(before)
    assert len(outcome.finished) == 4 and not outcome.failures
    return out / "tiny"


def _results(folder: Path) -> dict:
    """Every number of a study folder that must not depend on the executor (times left out)."""
    found = {}
    for final in sorted((folder / "runs").rglob("final.json")):
        run = final.parent
        data = json.loads(final.read_text())
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in data["history"]]
        with open(run / "metrics.csv") as f:
            rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
        found[run.relative_to(folder).as_posix()] = {
            "results": data["results"], "per_image": data["per_image"], "history": history,
            "per_image.csv": (run / "per_image.csv").read_text(), "metrics.csv": rows,
            "split": data["split"], "epochs": data["epochs_trained"],
        }
    return found


def assert_same_results(folder: Path, reference: Path) -> None:
    got, want = _results(folder), _results(reference)
    assert sorted(got) == sorted(want) and len(want) == 6  # 4 runs and the pre-training of each seed
    for run in want:
        for key in want[run]:
            assert got[run][key] == want[run][key], f"{run}: {key} differs"
    index, ref_index = (json.loads((f / "study.json").read_text()) for f in (folder, reference))
    assert index["finished"] == ref_index["finished"]  # the study's order, not the order runs ended in


# ------------------------------------------------------------------------------------------------
# local worker processes


def test_local_workers_equal_the_sequential_run(reference, tmp_path):
    messages = []
    outcome = run_study(parse_study(TINY), tmp_path, log=messages.append, executor=LocalExecutor(2, threads=1))
    assert len(outcome.finished) == 4 and not outcome.failures
    assert_same_results(tmp_path / "tiny", reference)
    assert sum("pre-training with ce" in m for m in messages) == 2  # one per seed, shared by both losses
    assert sum("epoch 1/1" in m for m in messages) == 2  # the workers' epoch lines come back
    config = json.loads(next((tmp_path / "tiny" / "runs").rglob("config.json")).read_text())
    assert config["threads"] == 1 and config["num_workers"] == 0


def test_local_workers_resume_and_skip(reference, tmp_path):
    study = parse_study(TINY)
    runs = tmp_path / "tiny" / "runs" / "blobs"
    # "killed" twice after epoch 1: first the pre-trainings (1 epoch, not yet evaluated), then the runs
    for finals in (0, 2):
        with pytest.raises(RunInterrupted):
            run_study(study, tmp_path, log=_quiet, executor=LocalExecutor(2, threads=1), stop_after_epoch=1)
        assert len(list(runs.rglob("final.json"))) == finals and list(runs.rglob("checkpoint.pt"))
    messages = []
    outcome = run_study(study, tmp_path, log=messages.append, executor=LocalExecutor(2, threads=1))
    assert len(outcome.finished) == 4
    assert any("resuming after epoch 1/2" in m for m in messages)
    assert_same_results(tmp_path / "tiny", reference)
    messages.clear()
    again = run_study(study, tmp_path, log=messages.append, executor=LocalExecutor(2, threads=1))
    assert len(again.finished) == 4 and sum("finished earlier, skipped" in m for m in messages) == 4
    assert not any("training" in m for m in messages)  # nothing was handed to a worker


def _planned(study):
    from seglosses.bench.study import build_data, plan_runs, resolve_dataset

    entry = study["datasets"][0]
    return plan_runs(study, entry, resolve_dataset(entry), build_data(resolve_dataset(entry)))


def test_local_worker_failures_are_recorded_and_the_study_goes_on(tmp_path):
    study = parse_study({**TINY, "pretrain": None, "losses": ["ce"], "seeds": [0, 1, 2]})
    runs = _planned(study)
    for run in runs[:2]:  # a checkpoint that cannot be read fails its run, in whichever worker
        (tmp_path / "tiny" / "runs" / run.id).mkdir(parents=True)
        (tmp_path / "tiny" / "runs" / run.id / "checkpoint.pt").write_bytes(b"not a checkpoint")
    outcome = run_study(study, tmp_path, log=_quiet, executor=LocalExecutor(2, threads=1))
    assert outcome.finished == [runs[2].id] and len(outcome.failures) == 2
    for failure, run in zip(outcome.failures, runs):
        path = tmp_path / "tiny" / "runs" / run.id / "checkpoint.pt"
        assert failure["id"] == run.id  # in the study's order
        assert failure["error"].startswith(f"`{path.resolve()}` is damaged (not a readable checkpoint")
        assert f"--redo {run.id}" in failure["error"]
        error = (tmp_path / "tiny" / "runs" / run.id / "error.txt").read_text()
        assert error.startswith(failure["error"]) and "Traceback" in error


def test_failed_pretraining_fails_its_runs(tmp_path, one_thread):
    study = parse_study({**TINY, "seeds": [0]})
    pre = _planned(study)[0].pretrain
    (tmp_path / "tiny" / "runs" / pre.id).mkdir(parents=True)
    (tmp_path / "tiny" / "runs" / pre.id / "checkpoint.pt").write_bytes(b"not a checkpoint")
    messages = []
    outcome = run_study(study, tmp_path, log=messages.append, executor=InlineExecutor(threads=1))
    assert len(outcome.failures) == 2 and not outcome.finished
    for failure in outcome.failures:
        assert failure["error"].startswith(f"RunError: its pre-training run {pre.id} failed (`")
        assert "checkpoint.pt` is damaged (not a readable checkpoint" in failure["error"]
    assert sum("pre-training with ce" in m for m in messages) == 1  # tried once, not once per run


# ------------------------------------------------------------------------------------------------
# the one per-run function


def test_perform_run_rules_and_shipping(tmp_path, one_thread):
    spec = TINY["datasets"][0]
    cfg = {"loss": "dice", "batch_size": 4, "seed": 0, "epochs": 2, "model": {"depth": 2, "width": 4},
           "eval": {"metrics": ["dice"], "samples": 0}}
    shared = RunTask("r", "dice seed 0", cfg, spec, str(tmp_path / "shared"), threads=1)
    assert perform_run(shared, log=_quiet).status == "finished"
    assert perform_run(shared, log=_quiet).status == "skipped"  # final.json: never retrained
    # shipped: interrupted after epoch 1 in a temporary folder, its files come back as data ...
    cut = RunTask("r", "dice seed 0", cfg, spec, str(tmp_path / "nowhere"), threads=1, ship="always",
                  stop_after_epoch=1)
    result = perform_run(cut, log=_quiet)
    assert result.status == "interrupted" and not (tmp_path / "nowhere").exists()
    assert sorted(result.files) == ["checkpoint.pt", "config.json", "metrics.csv"]
    # ... and the next task resumes from the checkpoint shipped with it
    messages = []
    resumed = RunTask("r", "dice seed 0", cfg, spec, str(tmp_path / "nowhere"), threads=1, ship="always",
                      inputs=result.files)
    done = perform_run(resumed, log=messages.append)
    assert done.status == "finished" and any("resuming after epoch 1/2" in m for m in messages)
    write_returned_files(tmp_path / "returned", done.files)
    assert json.loads((tmp_path / "returned" / "final.json").read_text())["results"] == \
        json.loads((tmp_path / "shared" / "final.json").read_text())["results"]
    # auto: ships only when the probe file is not visible
    (tmp_path / "probe").write_text("token")
    seen = RunTask("r", "x", cfg, spec, str(tmp_path / "shared"), ship="auto", probe=(str(tmp_path / "probe"), "token"))
    assert perform_run(seen, log=_quiet).status == "skipped"  # it saw the folder: the shared path
    unseen = RunTask("r", "x", {**cfg, "epochs": 1}, spec, str(tmp_path / "x"), ship="auto",
                     probe=(str(tmp_path / "probe"), "other"))
    assert perform_run(unseen, log=_quiet).files is not None


def test_perform_run_failure_writes_error_txt(tmp_path):
    cfg = {"loss": "dice", "batch_size": 4, "seed": 0, "epochs": 1, "optimizer": {"name": "sgdd"}}
    result = perform_run(RunTask("r", "x", cfg, TINY["datasets"][0], str(tmp_path)), log=_quiet)
    assert result.status == "failed" and result.error.startswith("ValueError: `optimizer.name`")
    assert (tmp_path / "error.txt").read_text().startswith(result.error)


def test_slurm_checkpoint_resubmits_the_same_run(tmp_path, one_thread):
    # what submitit does when SLURM preempts the job: call checkpoint(), run the returned submission
    cfg = {"loss": "dice", "batch_size": 4, "seed": 0, "epochs": 2, "model": {"depth": 2, "width": 4},
           "eval": {"metrics": ["dice"], "samples": 0}}
    task = RunTask("r", "x", cfg, TINY["datasets"][0], str(tmp_path / "run"), threads=1, stop_after_epoch=1)
    assert SlurmRun()(task).status == "interrupted"
    pytest.importorskip("submitit", reason="the slurm extra (submitit) is not installed")
    task.stop_after_epoch = None
    again = SlurmRun().checkpoint(task)
    assert again.result().status == "finished"
    assert json.loads((tmp_path / "run" / "final.json").read_text())["epochs_trained"] == 2


# ------------------------------------------------------------------------------------------------
# settings


@pytest.mark.parametrize("changes, match", [
    ({"threads": 0}, "`threads` must be an integer >= 1 or null"),
    ({"resources": {"cpu": 2}}, r"`resources` keys must be among cpus, gpus, memory_gb; got \['cpu'\]"),
    ({"resources": {"gpus": -1}}, "`resources.gpus` must be a number >= 0"),
    ({"ray": {"results": "nfs"}}, "`ray.results` must be 'shared', 'return' or 'auto'; got 'nfs'"),
    ({"slurm": {"time": "1h"}}, "`slurm.time` must be an integer >= 1"),
    ({"slurm": {"setup": "module load x"}}, "`slurm.setup` must be a list of shell lines"),
])
def test_execution_settings_are_checked(changes, match):
    with pytest.raises(StudyError, match=match):
        parse_study({**TINY, **changes}, source="s.yaml")


def test_execution_settings_do_not_change_run_ids(tmp_path):
    from seglosses.bench.study import build_data, plan_runs, resolve_dataset

    entry = TINY["datasets"][0]
    spec = resolve_dataset(entry)
    data = build_data(spec)
    plain = parse_study({**TINY, "threads": None})
    tuned = parse_study({**TINY, "threads": 4, "resources": {"cpus": 4, "gpus": 1}, "slurm": {"partition": "gpu"},
                         "ray": {"address": "auto"}})
    assert [r.id for r in plan_runs(plain, entry, spec, data)] == [r.id for r in plan_runs(tuned, entry, spec, data)]
    check_execution_settings(tuned.settings)


def test_make_executor_kinds_and_errors(tmp_path):
    settings = parse_study(TINY).settings
    inline = make_executor("local", study_settings=settings, folder=tmp_path, workers=1, threads=3)
    assert isinstance(inline, InlineExecutor) and inline.threads == 3
    local = make_executor("local", study_settings=settings, folder=tmp_path, workers=2)
    assert isinstance(local, LocalExecutor) and local.threads == max(1, resources.usable_cpus() // 2)
    crowded = LocalExecutor(resources.usable_cpus() + 1, threads=1)
    assert crowded.describe().endswith(f"(more threads than the {resources.usable_cpus()} usable core(s): "
                                       "the runs share cores)")
    with pytest.raises(ValueError, match="`executor` must be 'local', 'ray' or 'slurm'; got 'dask'"):
        make_executor("dask", study_settings=settings, folder=tmp_path)


# ------------------------------------------------------------------------------------------------
# cores and threads


@pytest.mark.parametrize("layout, expected", [
    ({"cpu.max": "200000 100000"}, 2.0),
    ({"cpu.max": "max 100000"}, None),
    ({"a/cpu.max": "max 100000", "cpu.max": "50000 100000"}, 0.5),  # a parent's quota binds its children
    ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_cgroup_cpu_limit_v1_and_v2(tmp_path, layout, expected):
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    v1 = any(name.startswith("cpu/") for name in layout)
    proc = "4:cpu,cpuacct:/\n1:memory:/x\n" if v1 else "0::/a\n"
    assert resources.cgroup_cpu_limit(tmp_path, proc_cgroup=proc) == expected


def test_usable_cpus_takes_the_smaller_of_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: 2.5)
    assert resources.usable_cpus() == 2
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: 0.5)
    assert resources.usable_cpus() == 1
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: None)
    assert resources.usable_cpus() == 4


def test_plan_threads_and_worker_environment():
    assert [resources.plan_threads(w, cpus=8) for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert resources.plan_threads(4, 3, cpus=2) == 3
    with pytest.raises(ValueError, match="`workers` must be an integer >= 1; got 0"):
        resources.plan_threads(0)
    env = resources.worker_environment(3, base={"OMP_WAIT_POLICY": "active"})
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OMP_WAIT_POLICY": "active"}


def test_local_workers_start_with_passive_waiting_and_their_threads(tmp_path):
    # the worker's environment is in place before the worker imports torch: read it back from a worker
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    before = {k: os.environ.get(k) for k in keys}
    executor = LocalExecutor(1, threads=1)
    executor.start(_quiet)
    assert {k: os.environ.get(k) for k in keys} == before  # set for the workers only
    try:
        proc, _ = executor._workers[0]
        environ = Path(f"/proc/{proc.pid}/environ")
        if not environ.exists():
            pytest.skip("no /proc on this platform")
        deadline = time.monotonic() + 60  # /proc shows the environment the process was executed with
        while "spawn_main" not in Path(f"/proc/{proc.pid}/cmdline").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        values = dict(item.split("=", 1) for item in environ.read_text().split("\0") if "=" in item)
        assert values["OMP_NUM_THREADS"] == "1"
        assert values["OMP_WAIT_POLICY"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    finally:
        executor.close()


# ------------------------------------------------------------------------------------------------
# progress display


def test_progress_plain_lines_and_eta():
    ticks = iter([0.0, 0.0, 2.0, 10.0, 12.0, 12.0, 30.0])
    out = io.StringIO()
    p = StudyProgress(4, slots=2, stream=out, clock=lambda: next(ticks))
    assert not p.live  # a StringIO is not a terminal
    p.start("a", "A")             # t=0
    p.start("b", "B")             # t=2
    p.end("a", "A", "finished")   # t=10: a took 10 s; 3 left, b has run 8 s
    p.end("c", "C", "skipped")    # t=12: no line for a run finished earlier
    p.start("d", "D")             # t=12
    p.end("b", "B", "failed")     # t=30
    lines = out.getvalue().splitlines()
    assert lines == [
        "[1/4] A: finished in 0:10; 1 running, 0 failed, elapsed 0:10, ETA 0:11",  # (3*10 - 8) / 2
        "[3/4] B: failed in 0:28; 1 running, 1 failed, elapsed 0:30, ETA 0:00",    # (1*10 - 10) / 1
    ]
    assert format_duration(3599.6) == "1:00:00"


def test_progress_live_line(tmp_path):
    out = io.StringIO()
    p = StudyProgress(2, stream=out, live=True)
    p.start("a", "A")
    p.end("a", "A", "finished")
    p.close()
    assert "study: 1/2 runs done, 0 running, 0 failed; elapsed 0:00" in out.getvalue()


# ------------------------------------------------------------------------------------------------
# command line


def _cli(*args, env=None, timeout=600):
    full_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "seglosses.cli", *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_workers_and_wait_policy(tmp_path, reference):
    study = tmp_path / "tiny.json"
    study.write_text(json.dumps(TINY))
    # the console entry sets OMP_WAIT_POLICY before torch loads (the process starts again with it)
    done = _cli("bench", str(study), "--out", str(tmp_path / "w2"), "--workers", "2", "--no-report")
    assert done.returncode == 0, done.stderr
    assert "execution: 2 local worker process(es), 1 thread(s) each; OMP_WAIT_POLICY=PASSIVE" in done.stdout
    assert "study tiny: 4 of 4 planned runs finished" in done.stdout
    # stderr is a pipe: one plain progress line per run that ends (4 runs and 2 pre-trainings)
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 6 and lines[-1].startswith("[6/6] ") and "ETA 0:00" in lines[-1]
    assert_same_results(tmp_path / "w2" / "tiny", reference)
    # a value the user set is kept
    kept = _cli("bench", str(study), "--out", str(tmp_path / "w2"), "--no-report", env={"OMP_WAIT_POLICY": "ACTIVE"})
    assert kept.returncode == 0 and "OMP_WAIT_POLICY=ACTIVE" in kept.stdout


def test_cli_execution_usage_errors(tmp_path, capsys):
    from seglosses.cli import main

    study = tmp_path / "tiny.json"
    study.write_text(json.dumps(TINY))
    assert main(["bench", str(study), "--executor", "ray", "--workers", "2"]) == 2
    assert "`--workers` is for the local executor; got --workers 2 with --executor ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", str(study), "--workers", "0"])
    assert "--workers: must be an integer >= 1; got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", str(study), "--executor", "ray", "--cpus-per-run", "0.5"])
    assert "--cpus-per-run: must be a number >= 1; got '0.5'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Ray and SLURM (slow: they start a Ray instance, or job processes)


@pytest.mark.slow
@pytest.mark.parametrize("results", ["shared", "return"])
def test_ray_local_instance_equals_the_sequential_run(reference, tmp_path, results):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'seglosses[ray]')")
    from seglosses.bench.executors import RayExecutor

    executor = RayExecutor(cpus=1, results=results, num_cpus=2)
    outcome = run_study(parse_study(TINY), tmp_path, log=_quiet, executor=executor)
    assert len(outcome.finished) == 4 and not outcome.failures
    assert_same_results(tmp_path / "tiny", reference)


@pytest.mark.slow
def test_submitit_local_executor_equals_the_sequential_run_and_resumes_after_preemption(reference, tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed (pip install 'seglosses[slurm]')")
    import signal

    from seglosses.bench.executors import SlurmExecutor

    study = parse_study(TINY)
    executor = SlurmExecutor(tmp_path / "jobs", cluster="local", time=10, cpus=1, array=True, poll=0.5)
    outcome = run_study(study, tmp_path / "out", log=_quiet, executor=executor)
    assert len(outcome.finished) == 4 and not outcome.failures
    assert_same_results(tmp_path / "out" / "tiny", reference)

    # preemption: signal a running job once its first checkpoint exists; it is requeued and resumes
    slow = parse_study({**TINY, "pretrain": None, "losses": ["dice"], "seeds": [0], "epochs": 30})
    executor = SlurmExecutor(tmp_path / "jobs2", cluster="local", time=10, cpus=1, poll=0.5)
    from seglosses.bench import executors as ex

    preempted = []
    original_wait = ex.SlurmExecutor.wait

    def wait_and_preempt(self):
        if not preempted:
            job = next(iter(self._jobs))
            run_dir = Path(self._jobs[job].run_dir)
            deadline = time.monotonic() + 300
            while not (run_dir / "checkpoint.pt").is_file() and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in _descendants(job._process.pid):
                if "submitit.core._submit" in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGUSR2)
                    preempted.append(pid)
        return original_wait(self)

    ex.SlurmExecutor.wait = wait_and_preempt
    try:
        outcome = run_study(slow, tmp_path / "out2", log=_quiet, executor=executor)
    finally:
        ex.SlurmExecutor.wait = original_wait
    assert preempted and len(outcome.finished) == 1
    logs = "".join(p.read_text() for p in (tmp_path / "jobs2").rglob("*_log.out"))
    assert "resuming after epoch" in logs
    final = json.loads(next((tmp_path / "out2").rglob("final.json")).read_text())
    assert final["epochs_trained"] == 30


def _descendants(pid: int) -> list:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in children:
            found.append(int(c))
            todo.append(int(c))
    return found
