"""Reliability and safety of the bench: run files, checkpoints, locks, whole-study checks, the command line."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seglosses import build_loss
from seglosses.bench.data import build_dataset
from seglosses.bench.runfiles import (
    DamagedFile,
    RunLock,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    load_samples,
    read_final,
    rng_state,
    set_rng_state,
)
from seglosses.bench.study import StudyError, apply_overrides, parse_study
from seglosses.bench.train import RunInterrupted, train_run
from seglosses.cli import main

SYNTH = {"name": "tiny", "type": "synthetic", "n_images": 12, "size": 32, "positive_fraction": 0.5, "seed": 3,
         "split": {"counts": [6, 3, 3], "seed": 0}}
STUDY = {"name": "r", "datasets": [SYNTH], "losses": ["dice"], "epochs": 2, "batch_size": 3,
         "model": {"depth": 2, "width": 4}, "eval": {"metrics": ["dice"], "samples": 2}}


def _write_study(tmp_path, **changes):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**STUDY, **changes}))
    return path


def _run_dir(out):
    return next(p.parent for p in Path(out).rglob("config.json") if "_pretrain" not in str(p))


class _Payload:
    """A pickle that runs code when unpickled (creates a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------------------ security


def test_crafted_checkpoint_is_refused_not_executed(tmp_path, capsys):
    study = _write_study(tmp_path, epochs=1)
    out = tmp_path / "out"
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report"]) == 0
    run = _run_dir(out)
    (run / "final.json").unlink()
    marker = tmp_path / "PWNED"
    torch.save({"epoch": _Payload(marker), "model": {}}, run / "checkpoint.pt")
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    run_id = run.relative_to(out / "r" / "runs").as_posix()
    assert (f"`{run / 'checkpoint.pt'}` is damaged (it holds objects other than tensors, numbers, strings and "
            f"plain containers (posix.system); refused unread); delete the run folder or re-run with "
            f"`--redo {run_id}`") in err
    # --redo trains the run again from scratch
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report", "--redo", run_id]) == 0
    assert read_final(run / "final.json")["epochs_trained"] == 1 and not marker.exists()


def test_crafted_pretraining_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"model": _Payload(marker)}, tmp_path / "pre.pt")
    data = build_dataset(SYNTH)
    cfg = {"loss": "ce", "batch_size": 3, "seed": 0, "epochs": 1, "model": {"depth": 1, "width": 2},
           "eval": {"metrics": ["dice"], "samples": 0}, "pretrain": {"run": "tiny/_pretrain/ce-1"}}
    with pytest.raises(DamagedFile, match=r"pre\.pt` is damaged .*refused unread.*--redo tiny/_pretrain/ce-1"):
        train_run(cfg, tmp_path / "run", data, log=lambda m: None, init_checkpoint=tmp_path / "pre.pt")
    assert not marker.exists()


def test_checkpoint_holds_only_plain_values_and_rng_round_trips(tmp_path):
    data = build_dataset(SYNTH)
    cfg = {"loss": "dice", "batch_size": 3, "seed": 0, "epochs": 1, "model": {"depth": 1, "width": 2},
           "eval": {"metrics": ["dice"], "samples": 0}}
    train_run(cfg, tmp_path, data, log=lambda m: None)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # the safe loader accepts it
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "history", "loss"}
    s = rng_state()
    atomic_torch_save(tmp_path / "rng.pt", s)
    a = (torch.rand(2), np.random.rand(), __import__("random").random())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt"))
    b = (torch.rand(2), np.random.rand(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_run_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_torch_save(tmp_path / "b.pt", {"x": torch.ones(1)})
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "c.bin", b"x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE((tmp_path / p).stat().st_mode)  # noqa: E731
    assert (mode("a.json"), mode("b.pt"), mode("c.bin")) == (0o644, 0o644, 0o600)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------------------------ schedules


def test_weight_schedules_step_once_per_epoch_and_resume_exactly(tmp_path):
    data = build_dataset(SYNTH)
    cfg = {"loss": "dice + ramp(0.0, 1.0, 4)*ce", "batch_size": 3, "seed": 1, "epochs": 3,
           "model": {"depth": 1, "width": 2}, "eval": {"metrics": ["dice"], "samples": 0}}
    full = train_run(cfg, tmp_path / "full", data, log=lambda m: None)
    assert [row["loss_weights"] for row in full["history"]] == [[1.0, 0.0], [1.0, 0.25], [1.0, 0.5]]
    state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    loss = build_loss(cfg["loss"], mode="binary")
    loss.load_state_dict(state["loss"])
    assert loss.current_step == 3 and loss.weights() == [1.0, 0.75]
    with pytest.raises(RunInterrupted):
        train_run(cfg, tmp_path / "cut", data, log=lambda m: None, stop_after_epoch=1)
    resumed = train_run(cfg, tmp_path / "cut", data, log=lambda m: None)
    assert [r["loss_weights"] for r in resumed["history"]] == [r["loss_weights"] for r in full["history"]]
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in full["history"]]
    assert resumed["results"] == full["results"]


def test_weighted_sum_state_dict_holds_the_schedule_position():
    loss = build_loss("dice + ramp(0.0, 1.0, 10)*ce", mode="binary")
    loss.step(4)
    other = build_loss("dice + ramp(0.0, 1.0, 10)*ce", mode="binary")
    other.load_state_dict(loss.state_dict())
    assert other.current_step == 4 and other.weights() == loss.weights()
    with pytest.raises(ValueError, match="schedule position"):
        other.load_state_dict({"_extra_state": {"step": -1}})


# ------------------------------------------------------------------------------------------------ checks


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "`--epochs` must be an integer >= 1; got 0"),
    (["--epochs", "-1"], "`--epochs` must be an integer >= 1; got -1"),
    (["--max-images", "0"], "`--max-images` must be an integer >= 1; got 0"),
    (["--device", "bogus"], "`--device` must be cpu, cuda, cuda:N, mps, ...; got 'bogus'"),
])
def test_bad_command_line_values_exit_2_with_one_line(tmp_path, capsys, flags, message):
    study = _write_study(tmp_path)
    assert main(["bench", str(study), "--out", str(tmp_path / "out"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"seglosses bench: error: {message}\n"
    assert not (tmp_path / "out" / "r" / "runs").exists()


def test_unwritable_out_folders_exit_2_with_one_line(tmp_path, capsys):
    study = _write_study(tmp_path, epochs=1)
    (tmp_path / "file").write_text("")
    assert main(["bench", str(study), "--out", str(tmp_path / "file" / "sub"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"seglosses bench: error: `--out` must be a folder the runs can be written to; "
                                       f"'{tmp_path}/file/sub/r' cannot be created: Not a directory\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: use a path no one can create instead
            ro = Path("/proc/seglosses-test")
        assert main(["bench", str(study), "--out", str(ro), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("seglosses bench: error: `--out` must be a folder the runs can be written to; ")
        assert err.count("\n") == 1
        out = tmp_path / "out"
        assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report"]) == 0
        assert main(["report", str(out / "r"), "--out", str(ro / "rep")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("seglosses report: error: `--out` must be a folder the report can be written to; ")
        assert err.count("\n") == 1
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_whole_study_is_checked_before_the_first_run(tmp_path, capsys):
    study = tmp_path / "bad.yaml"
    study.write_text(textwrap.dedent(f"""\
        datasets:
          - {json.dumps(SYNTH)}
          - {{type: synthetic, n_imgs: 4}}
          - {{type: folder, name: nowhere, images: {tmp_path}/no/images, masks: {tmp_path}/no/masks}}
        losses: [ce, dcie, "0.5*dice + tversky(alpah=0.3)"]
        epochs: 1
        model: {{dpeth: 2, width: 4}}
        optimizer: {{lr: -0.1, wieght_decay: 0}}
        schedule: {{name: cosine, min_lr: -1}}
        sampler: {{ratio: 2}}
        eval: {{metrics: [dice, hd59], samples: 0}}
        """))
    assert main(["bench", str(study), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seglosses bench: error: `eval.metrics` must name metrics among")  # parse problems first
    assert "did you mean 'hd95'" in err
    study.write_text(study.read_text().replace("hd59", "hd95"))
    assert main(["bench", str(study), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"seglosses bench: error: the study '{study}' has 9 problems:"
    text = "\n".join(lines)
    for part in (
        "  - `datasets[1]`: `n_imgs` must be a key of a 'synthetic' data set (",
        "); got an unknown key (did you mean 'n_images'?)",
        f"  - `datasets[2]`: `images` must be an existing path; got '{tmp_path}/no/images'",
        f"  - `datasets[2]`: `masks` must be an existing path; got '{tmp_path}/no/masks'",
        "  - `losses[1]` ('dcie'): `spec` term 1 ('dcie' at column 0): must name a registered loss; got 'dcie' "
        "(did you mean 'dice'?)",
        "  - `losses[2]` ('0.5*dice + tversky(alpah=0.3)'): ",
        "  - `model.dpeth` must be one of the U-Net settings (depth, width, norm, groups, dropout, upsampling, prior_init); "
        "got an unknown key (did you mean 'depth'?)",
        "  - `optimizer.wieght_decay` must be one of the 'adam' optimiser settings (",
        "got an unknown key (did you mean 'weight_decay'?)",
        "  - `schedule.min_lr` must be a finite number >= 0; got -1",
        "  - `sampler.ratio` must be 'dataset', null or a fraction in (0, 1); got 2",
    ):
        assert part in text, part
    assert "has no keyword argument 'alpah' (did you mean 'alpha'?)" in lines[5]
    assert not (tmp_path / "out" / "r").exists()  # nothing trained
    # the negative learning rate is reported once the key is right
    study.write_text(study.read_text().replace("wieght_decay", "weight_decay"))
    assert main(["bench", str(study), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "  - `optimizer.lr` must be a finite number > 0; got -0.1" in capsys.readouterr().err


def test_overrides_get_the_study_checks():
    study = parse_study(STUDY)
    with pytest.raises(StudyError, match=r"has 2 problems:\n  - `--epochs` must be an integer >= 1; got 0\n"
                                         r"  - `--seeds` must hold integers >= 0; got -2"):
        apply_overrides(study, epochs=0, seeds=[-2])


# ------------------------------------------------------------------------------------------------ damaged runs


def _truncate(path, n=100):
    path.write_bytes(path.read_bytes()[:n])


@pytest.mark.parametrize("damage, reason", [
    ("truncated", "truncated JSON"),
    ("garbage", "invalid JSON at line 1 column 1: Expecting value"),
    ("missing key", "missing key 'results'"),
    ("samples", "not a readable .npz archive"),
])
def test_damaged_results_are_run_again_and_reported(tmp_path, capsys, damage, reason):
    study = _write_study(tmp_path)
    out = tmp_path / "out"
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report"]) == 0
    run = _run_dir(out)
    before = read_final(run / "final.json")
    final = run / "final.json"
    if damage == "truncated":
        _truncate(final)
    elif damage == "garbage":
        final.write_bytes(b"\x00garbage")
    elif damage == "missing key":
        obj = json.loads(final.read_text())
        del obj["results"]
        final.write_text(json.dumps(obj))
    else:
        (run / "samples.npz").write_bytes(b"PK\x03\x04 not a zip")
    damaged = run / ("samples.npz" if damage == "samples" else "final.json")
    # the report skips (and lists) the run it cannot read, and writes the others
    if damage != "samples":
        other = tmp_path / "out" / "r" / "runs" / "tiny" / "copy-s9-00000000"
        other.mkdir()
        obj = dict(before, config={**before["config"], "label": "copy", "seed": 9})
        (other / "final.json").write_text(json.dumps(obj))
        (out / "r" / "study.json").unlink()  # the report reads every final.json below the folder
        assert main(["report", str(out / "r"), "--no-figures"]) == 0
        err = capsys.readouterr().err
        run_id = run.relative_to(out / "r" / "runs").as_posix()
        assert (f"seglosses report: skipped a run: `{damaged}` is damaged ({reason}); delete the run folder or "
                f"re-run with `--redo {run_id}`") in err
        md = (out / "r" / "report" / "report.md").read_text()
        assert "**Runs left out (their results cannot be read):**" in md and "| metric | copy |" in md
        import shutil

        shutil.rmtree(other)
    else:
        assert main(["report", str(out / "r")]) == 0
        assert f"`{damaged}` is damaged (not a readable .npz archive" in capsys.readouterr().err
    # bench runs it again (from its checkpoint: the final evaluation only) instead of skipping it
    capsys.readouterr()
    assert main(["bench", str(study), "--out", str(out), "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert f"`{damaged}` is damaged ({reason}" in printed and "); running it again" in printed
    assert "finished earlier, skipped" not in printed and "epoch 1/2" not in printed
    after = read_final(run / "final.json")
    assert after["results"] == before["results"] and after["history"] == before["history"]
    load_samples(run / "samples.npz")


def test_damaged_study_index_is_a_one_line_report_error(tmp_path, capsys):
    study = _write_study(tmp_path, epochs=1)
    out = tmp_path / "out"
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report"]) == 0
    _truncate(out / "r" / "study.json")
    assert main(["report", str(out / "r")]) == 2
    assert capsys.readouterr().err == (
        f"seglosses report: error: `{out / 'r' / 'study.json'}` is damaged (truncated JSON); delete it and run "
        "`seglosses bench` on the study again to rewrite it\n")


@pytest.mark.parametrize("content, reason", [
    (b"", "not a readable checkpoint"),
    (b"garbage", "not a readable checkpoint"),
])
def test_damaged_checkpoint_names_the_file(tmp_path, content, reason):
    (tmp_path / "checkpoint.pt").write_bytes(content)
    with pytest.raises(DamagedFile, match=f"checkpoint.pt` is damaged \\({reason}"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    atomic_torch_save(tmp_path / "c.pt", {"epoch": 1})
    with pytest.raises(DamagedFile, match="missing key 'model'"):
        load_checkpoint(tmp_path / "c.pt", required=["epoch", "model"])


def test_truncated_checkpoint_fails_the_run_with_its_path(tmp_path, capsys):
    study = _write_study(tmp_path)
    out = tmp_path / "out"
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--stop-after-epoch", "1"]) == 3
    run = _run_dir(out)
    _truncate(run / "checkpoint.pt", 5000)
    assert main(["bench", str(study), "--out", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert f"`{run / 'checkpoint.pt'}` is damaged (not a readable checkpoint: " in err and "--redo " in err


# ------------------------------------------------------------------------------------------------ locks


def test_lock_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / "locks" / "run.lock"
    holder = _holder(path)
    try:
        lock = RunLock(path)
        assert not lock.acquire(blocking=False)
        assert lock.holder() == f"process {holder.pid}"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock.acquire(blocking=False)  # the dead process's lock is taken over
    lock.release()


def _holder(path):
    """A process that takes the lock at ``path`` and keeps it until it is killed."""
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).parents[2] / 'src')!r})\n"
            "from seglosses.bench.runfiles import RunLock\n"
            f"RunLock({str(path)!r}).acquire(); print('locked', flush=True); time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_bench_leaves_a_held_run_for_later_waits_and_takes_over_a_dead_holder(tmp_path):
    from seglosses.bench.study import build_data, plan_runs, resolve_dataset

    study_file = _write_study(tmp_path, losses=["dice", "ce"], epochs=1)
    study = parse_study(json.loads(study_file.read_text()))
    runs = plan_runs(study, SYNTH, resolve_dataset(SYNTH), build_data(resolve_dataset(SYNTH)))
    out = tmp_path / "out"
    lock_path = out / "r" / ".locks" / f"{runs[0].id}.lock"
    holder = _holder(lock_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    bench = subprocess.Popen([sys.executable, "-m", "seglosses.cli", "bench", str(study_file), "--out", str(out),
                              "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in bench.stdout:
            lines.append(line)
            if "waiting for" in line:
                holder.send_signal(signal.SIGKILL)  # the holder dies: its lock is stale
    finally:
        holder.kill()
        holder.wait()
        bench.wait(timeout=300)
    text = "".join(lines)
    assert bench.returncode == 0, text
    assert (f"[tiny 1/2] dice seed 0: process {holder.pid} holds `{lock_path}`; coming back to it after the "
            "other runs") in text
    assert f"[tiny 1/2] dice seed 0: waiting for process {holder.pid}, which holds `{lock_path}`" in text
    order = [ln.split("  epoch")[0] for ln in lines if "  epoch 1/1" in ln]
    assert order == ["ce", "dice"]  # the free run first, then the one taken over
    assert all(read_final(f)["epochs_trained"] == 1 for f in (out / "r" / "runs").rglob("final.json"))


def test_two_bench_processes_on_one_out_share_no_run(tmp_path):
    study = _write_study(tmp_path, losses=["dice", "ce"], epochs=3)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "seglosses.cli", "bench", str(study), "--out", str(out), "--no-report"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lock_dir = out / "r" / ".locks"
    deadline = time.time() + 120
    while not (lock_dir.is_dir() and any(p.stat().st_size for p in lock_dir.rglob("*.lock"))):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    first_out = first.communicate(timeout=300)[0]
    assert first.returncode == 0 and second.returncode == 0, (first_out, second.stdout)
    both = first_out + second.stdout
    # every epoch of every run was trained exactly once, by one of the two processes, however they interleaved
    for label in ("dice", "ce"):
        for epoch in (1, 2, 3):
            lines = [ln for ln in both.splitlines() if ln.startswith(f"{label}  epoch {epoch}/3 ")]
            assert len(lines) == 1, both
    assert "resuming" not in both
    finals = list((out / "r" / "runs").rglob("final.json"))
    assert len(finals) == 2 and all(read_final(f)["epochs_trained"] == 3 for f in finals)
