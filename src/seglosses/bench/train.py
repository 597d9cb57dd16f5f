r"""Training of one benchmark run: a U-Net, one loss, checkpointed every epoch, resumable.

:func:`train_run` trains a :class:`~seglosses.bench.unet.UNet` with one loss (any
:func:`seglosses.build_loss` spec) on the training split of a
:class:`~seglosses.bench.data.BenchData`, validates after every epoch, checkpoints, and at the
end evaluates the model on the test split (the validation split when there is none) with
:func:`seglosses.bench.evaluate.evaluate`. Seed 000 (section 3) is the experiment: the same
U-Net and optimiser for every loss, only the loss changes.

A run folder holds (every file written atomically: a temporary file, then ``os.replace``, with the
permissions of an ordinary write):

=====================  ========================================================================
``config.json``        the run's configuration
``checkpoint.pt``      model, optimiser, schedule, gradient scaler, loss weight-schedule position,
                       random generator states and the per-epoch history, after the last
                       finished epoch; tensors, numbers, strings and plain containers only, read
                       back with ``torch.load(weights_only=True)``
``metrics.csv``        one row per epoch: learning rate, train loss, validation loss and metrics
``final.json``         the final evaluation (data-set level, per-image means, per-image values);
                       its presence marks the run as finished
``per_image.csv``      the per-image values of the final evaluation
``image_sums.npz``     per evaluation item: its source image / patient (cluster) and the sums it
                       adds to the pooled metrics (TP/FP/FN/TN per class, AP histograms), for
                       the report's paired cluster bootstrap of the data-set-level metrics
``samples.npz``        a few evaluation images, their truth and the prediction (report figures)
=====================  ========================================================================

Resumption: a run with a ``checkpoint.pt`` continues after its last finished epoch, with the
random generator states of that moment (torch, CUDA, NumPy, Python) and the data order of the
next epoch (the batch sampler and the random crops depend only on ``(seed, epoch)``), so the
final metrics equal those of an uninterrupted run on the same machine. A process killed at
any moment loses at most the epoch it was in.

Weight schedules (``ramp(start, end, steps)*loss``, ``{"weight": {"ramp": [...]}}``) advance once
per epoch: epoch ``e`` trains and validates with the weights of step ``e - 1`` (the first epoch
with the ramp's start), and the history records them (``loss_weights``). The position is saved
in the checkpoint, so a resumed run continues the ramp where it was.

Damaged files: a ``final.json`` or checkpoint that cannot be read back (truncated, garbage, a
pickle with objects other than tensors and plain values, keys missing, a model that does not fit)
raises :class:`~seglosses.bench.runfiles.DamagedFile`, naming the file and the remedy; a crafted
checkpoint is refused, never executed.

Batch sizes: ``effective_batch_size`` images make one optimiser step (over all processes);
``batch_size`` images go through the model at once. When the effective batch is larger, the
step runs through :class:`seglosses.BatchwiseAccumulator`, which gives the exact gradient of a
batchwise loss of the whole effective batch (seed 000 section 2.1; GPU memory capped the
seed's batch size at 64).

Mixed precision (bf16, or fp16 with a gradient scaler) is used on CUDA only. Under ``torchrun``
(``torch.distributed`` initialised) the model is wrapped in ``DistributedDataParallel``, every
process takes its share of each batch, batch-domain region losses sum their statistics over the
processes (``sync="distributed"``), and the evaluation is summed over the processes; only rank 0
writes files.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from seglosses.accumulate import BatchwiseAccumulator, split_batch
from seglosses.bench.builders import (
    autocast_factory,
    build_model,
    build_optimizer,
    build_run_loss,
    build_scheduler,
    class_frequencies,
    loss_has_domain,
)
from seglosses.bench.data import BenchData, RatioBatchSampler, foreground_flags
from seglosses.bench.data.datasets import ItemDataset
from seglosses.bench.data.sampling import ShuffleBatchSampler
from seglosses.bench.evaluate import IMAGE_SUMS, QUICK_METRICS, evaluate, save_image_sums
from seglosses.bench.runconfig import RunConfig
from seglosses.bench.runfiles import (
    DamagedFile,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    read_final,
    redo_advice,
    rng_state,
    set_rng_state,
)
from seglosses.losses import WeightedSum

__all__ = [
    "RunError",
    "RunInterrupted",
    "ShuffleBatchSampler",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "build_run_loss",
    "loss_has_domain",
    "build_model",
    "class_frequencies",
    "build_optimizer",
    "build_scheduler",
    "autocast_factory",
    "distributed_context",
    "sample_indices",
    "train_run",
]

CHECKPOINT = "checkpoint.pt"
FINAL = "final.json"
HISTORY_FIELDS = ("epoch", "lr", "train_loss", "val_loss", "val_dice_dataset", "val_jaccard_dataset", "seconds")


class RunError(RuntimeError):
    """A run that cannot go on (diverged loss, impossible configuration); the study continues.

    Example:
        >>> str(RunError("the training loss is nan at epoch 3"))
        'the training loss is nan at epoch 3'
    """


class RunInterrupted(RuntimeError):
    """Raised after the checkpoint of ``stop_after_epoch`` (a test hook that simulates a kill).

    Example:
        >>> issubclass(RunInterrupted, RuntimeError)
        True
    """


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def _write_history_csv(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HISTORY_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k)) for k in HISTORY_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


# ------------------------------------------------------------------------------------------------
# Random state
# ------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Example:
        >>> seed_everything(3); a = torch.rand(1); seed_everything(3); bool(torch.rand(1) == a)
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one.

    Example:
        >>> distributed_context()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sample_indices(dataset: ItemDataset, k: int = 4) -> List[int]:
    """Items for the sample-prediction figure: up to ``k`` items with foreground, spread evenly.

    Deterministic (a function of the data set only), so every run shows the same images. When
    fewer than ``k`` items have foreground, items without fill the rest.

    Example:
        >>> from seglosses.bench.data import SegmentationDataset
        >>> masks = torch.zeros(6, 2, 2, dtype=torch.long); masks[[1, 4], 0, 0] = 1
        >>> sample_indices(SegmentationDataset(torch.zeros(6, 1, 2, 2), masks), 3)
        [1, 4, 0]
    """
    flags = foreground_flags(dataset)
    positives = [i for i, f in enumerate(flags) if f]
    negatives = [i for i, f in enumerate(flags) if not f]
    chosen = [positives[round(j * (len(positives) - 1) / max(1, k - 1))] for j in range(k)] if len(positives) > k \
        else list(positives)
    chosen = list(dict.fromkeys(chosen))
    return chosen + negatives[: max(0, k - len(chosen))]


def _train_sampler(dataset: ItemDataset, per_rank: int, sampler_cfg: Mapping[str, Any], seed: int, rank: int,
                   world: int, steps: Optional[int]) -> Sampler:
    ratio = sampler_cfg.get("ratio", "dataset")
    if ratio is None or ratio is False:
        return ShuffleBatchSampler(len(dataset), per_rank, seed=seed, num_replicas=world, rank=rank, num_batches=steps)
    flags = foreground_flags(dataset)
    return RatioBatchSampler(flags, per_rank, None if ratio == "dataset" else float(ratio), seed=seed,
                             drop_last=len(dataset) >= per_rank * world, num_batches=steps,
                             num_replicas=world, rank=rank)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool, *, position: int = 1, initial: int = 0, unit: str = "batch"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, position=position,
                initial=initial, unit=unit)


_CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "scheduler", "rng", "history")


def _step_schedules(loss: nn.Module) -> None:
    """Advance every weight schedule of ``loss`` by one step (the bench steps once per epoch)."""
    for module in loss.modules():
        if isinstance(module, WeightedSum):
            module.step()


def _mode(num_classes: int) -> str:
    return "binary" if num_classes == 2 else "multiclass"


def train_run(
    config: Mapping[str, Any],
    run_dir: str | Path,
    data: BenchData,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] = print,
    stop_after_epoch: Optional[int] = None,
    init_checkpoint: Optional[str | Path] = None,
) -> Dict[str, Any]:
    r"""Train and evaluate one run; resume it from ``run_dir/checkpoint.pt`` when there is one.

    .. math::
        θ_{t+1} = \operatorname{Adam}\big(θ_t, \nabla_θ L(f_θ(x_t), y_t)\big)

    for the batches :math:`(x_t, y_t)` of the training split, with the run's loss ``L``
    (seed 000 section 3: "U-Net model, with optimiser Adam"; seed 003: AdamW, GroupNorm).

    Convention:
        Finished runs (``final.json`` present) are not retrained: their results are read and
        returned. The per-epoch validation uses the cheap metrics ``dice`` and ``jaccard`` at
        the data-set level and the loss; the final evaluation uses ``config["eval"]["metrics"]``.

    Args:
        config: the run configuration (see :mod:`seglosses.bench.study`): ``loss``, ``domain``,
            ``batch_size``, ``effective_batch_size``, ``seed``, ``epochs``, ``optimizer``,
            ``schedule``, ``model``, ``sampler``, ``amp``, ``num_workers``, ``eval``,
            ``steps_per_epoch``.
        run_dir: the run's folder (created).
        data: the data sets of the run's data-set entry.
        device: where to train.
        progress: show progress bars over the epochs and the batches.
        log: where the one-line summaries go.
        stop_after_epoch: raise :class:`RunInterrupted` right after the checkpoint of this
            epoch (simulates a killed process; for tests).
        init_checkpoint: a checkpoint whose model weights start the run (seed 003's
            fine-tuning of a pre-trained model); ignored when resuming.

    Returns:
        The content of ``final.json``.

    Raises:
        RunError: a diverged loss, a configuration the data cannot serve.
        RunInterrupted: see ``stop_after_epoch``.
        ValueError: bad loss spec or options (messages of the library).

    Example:
        >>> import tempfile
        >>> from seglosses.bench.data import build_dataset
        >>> data = build_dataset({"type": "synthetic", "n_images": 8, "size": 32, "positive_fraction": 0.5})
        >>> cfg = {"loss": "dice", "batch_size": 2, "seed": 0, "epochs": 1, "model": {"depth": 1, "width": 2},
        ...        "eval": {"metrics": ["dice"], "samples": 0}}
        >>> final = train_run(cfg, tempfile.mkdtemp(), data, log=lambda m: None)
        >>> final["status"], final["split"], sorted(final["results"]["dataset"])
        ('finished', 'test', ['dice'])
    """
    run_dir = Path(run_dir)
    final_path = run_dir / FINAL
    if final_path.is_file():
        return read_final(final_path, advice=redo_advice(config.get("run_id")))
    run = _prepare(config, run_dir, data, torch.device(device), log)
    _resume(run, init_checkpoint)
    epoch_bar = _progress(run.cfg.epochs, run.label, progress and run.main, position=0, initial=run.start_epoch - 1,
                          unit="epoch")
    try:
        for epoch in range(run.start_epoch, run.cfg.epochs + 1):
            t0 = time.perf_counter()
            train_loss = _train_epoch(run, epoch, progress)
            row = _validate(run, epoch, train_loss, t0)
            if epoch_bar is not None:
                epoch_bar.update(1)
                epoch_bar.set_postfix(val_dice=f"{row['val_dice_dataset']:.3f}")
            if run.world > 1:
                dist.barrier()
            if stop_after_epoch is not None and epoch == stop_after_epoch:
                raise RunInterrupted(f"stopped after epoch {epoch} (stop_after_epoch)")
    finally:
        if epoch_bar is not None:
            epoch_bar.close()
    return _finish(run)


@dataclass
class _Run:
    """Everything one run trains with, built by :func:`_prepare`; the steps of :func:`train_run`
    read and advance it."""

    config: Mapping[str, Any]  # the mapping, written to config.json and final.json as given
    cfg: RunConfig
    run_dir: Path
    data: BenchData
    device: torch.device
    log: Callable[[str], None]
    rank: int
    world: int
    mode: str
    micro: int
    per_rank: int
    loss_fn: nn.Module
    eval_loss: nn.Module
    accumulator: Optional[BatchwiseAccumulator]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    autocast: Optional[Callable[[], Any]]  # mixed precision (CUDA), else None
    scaler: Optional[Any]
    history: List[Dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 1
    elapsed: float = 0.0
    net: Optional[nn.Module] = None  # the model, wrapped in DistributedDataParallel under torchrun
    sampler: Any = None
    loader: Optional[DataLoader] = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def label(self) -> str:
        return str(self.cfg.label if self.cfg.label is not None else self.run_dir.name)

    @property
    def eval_batch(self) -> int:
        return max(1, int(self.cfg.eval.batch_size or self.micro))


def _prepare(config: Mapping[str, Any], run_dir: Path, data: BenchData, device: torch.device,
             log: Callable[[str], None]) -> _Run:
    """Step 1: check the data, read the configuration, build loss, model, optimiser and schedule."""
    rank, world = distributed_context()
    config = copy.deepcopy(dict(config))
    cfg = RunConfig.from_mapping(config)
    if data.train is None or len(data.train) == 0:
        raise RunError(f"data set {data.name!r} has no training items")
    if data.val is None or len(data.val) == 0:
        raise RunError(f"data set {data.name!r} has no validation items (the split gives none)")
    mode = _mode(data.num_classes)
    if cfg.effective_batch_size % world:
        raise RunError(f"`effective_batch_size` must be divisible by the {world} processes; "
                       f"got {cfg.effective_batch_size}")
    per_rank = cfg.effective_batch_size // world
    micro = min(cfg.batch_size, per_rank)
    loss_fn = build_run_loss(cfg.loss, mode, cfg.domain, distributed=world > 1)
    eval_loss = build_run_loss(cfg.loss, mode, cfg.domain)
    accumulator = None
    if per_rank > micro:
        batchnorm = "allow" if cfg.model.get("norm", "batch") == "batch" else "raise"
        accumulator = BatchwiseAccumulator(loss_fn, batchnorm=batchnorm)
    seed_everything(cfg.seed)
    freq = class_frequencies(data.train, data.num_classes) if cfg.model.get("prior_init") else None
    out_channels = 1 if mode == "binary" else data.num_classes
    model = build_model(cfg.model, data.in_channels, out_channels, freq).to(device)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    autocast, use_scaler = autocast_factory(device, cfg.amp)
    return _Run(config=config, cfg=cfg, run_dir=run_dir, data=data, device=device, log=log, rank=rank, world=world,
                mode=mode, micro=micro, per_rank=per_rank, loss_fn=loss_fn, eval_loss=eval_loss,
                accumulator=accumulator, model=model, optimizer=optimizer, scheduler=scheduler,
                autocast=autocast,
                scaler=torch.amp.GradScaler("cuda") if use_scaler else None)


def _resume(run: _Run, init_checkpoint: Optional[str | Path]) -> None:
    """Step 2: continue from the run's checkpoint (or start from a pre-trained model); write config.json."""
    advice = redo_advice(run.cfg.run_id)
    ckpt_path = run.run_dir / CHECKPOINT
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=run.device, advice=advice, required=_CHECKPOINT_KEYS)
        try:
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            if run.scaler is not None and state.get("scaler"):
                run.scaler.load_state_dict(state["scaler"])
            if state.get("loss") is not None:
                run.loss_fn.load_state_dict(state["loss"])
            run.history = [dict(row) for row in state["history"]]
            run.elapsed = float(state.get("elapsed", 0.0))
            run.start_epoch = int(state["epoch"]) + 1
            set_rng_state(state["rng"])
        except Exception as err:  # noqa: BLE001 - whatever does not fit the run's model, optimiser, ... is damage
            raise DamagedFile(ckpt_path, f"it does not fit this run: {type(err).__name__}: "
                                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}",
                              advice) from None
        if run.main and run.start_epoch <= run.cfg.epochs:
            run.log(f"{run.label}: resuming after epoch {run.start_epoch - 1}/{run.cfg.epochs}")
    elif init_checkpoint is not None:
        pre_advice = redo_advice(run.cfg.pretrain_run)
        state = load_checkpoint(init_checkpoint, map_location=run.device, advice=pre_advice, required=("model",))
        try:
            run.model.load_state_dict(state["model"])
        except Exception as err:  # noqa: BLE001
            raise DamagedFile(init_checkpoint, f"its model does not fit this run: {type(err).__name__}",
                              pre_advice) from None
    run.eval_loss.load_state_dict(run.loss_fn.state_dict())
    if run.main:
        atomic_write_json(run.run_dir / "config.json", run.config)
    run.net = run.model
    if run.world > 1:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        run.net = nn.parallel.DistributedDataParallel(run.model, device_ids=device_ids)
    run.sampler = _train_sampler(run.data.train, run.per_rank, run.cfg.sampler, run.cfg.seed, run.rank, run.world,
                                 run.cfg.steps_per_epoch)
    # DataLoader's annotation names the Dataset class; it needs only __len__ and __getitem__
    run.loader = DataLoader(cast(Dataset, run.data.train), batch_sampler=run.sampler, num_workers=run.cfg.num_workers)


def _train_step(run: _Run, images: Tensor, masks: Tensor) -> Tensor:
    """One optimiser step on one (effective) batch; the batch's loss value."""
    run.optimizer.zero_grad(set_to_none=True)
    with (run.autocast or contextlib.nullcontext)():  # one path with and without mixed precision
        if run.accumulator is not None:
            value = run.accumulator.backward(run.net, split_batch(images, masks, run.micro), scaler=run.scaler)
        else:
            logits = run.net(images)
    if run.accumulator is None:
        value = run.loss_fn(logits.float(), masks)
        (value if run.scaler is None else run.scaler.scale(value)).backward()
    grad_clip = run.cfg.optimizer.get("grad_clip")
    if grad_clip:
        if run.scaler is not None:
            run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), float(grad_clip))
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    return value


def _train_epoch(run: _Run, epoch: int, progress: bool) -> float:
    """Step 3: one epoch of training; the mean training loss over its steps (all processes)."""
    run.sampler.set_epoch(epoch)
    if hasattr(run.data.train, "set_epoch"):
        run.data.train.set_epoch(epoch)
    run.net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    n_steps = 0
    bar = _progress(len(run.sampler), f"epoch {epoch}", progress and run.main)
    for images, masks in run.loader:
        value = _train_step(run, images.to(run.device), masks.to(run.device))
        loss_sum += value.detach().double()
        n_steps += 1
        if bar is not None:
            bar.update(1)
            if n_steps % 5 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / n_steps:.4f}")
    if bar is not None:
        bar.close()
    if run.world > 1:
        dist.all_reduce(loss_sum)
        loss_sum /= run.world
    train_loss = float(loss_sum) / max(1, n_steps)
    if not math.isfinite(train_loss):
        raise RunError(f"the training loss is {train_loss} at epoch {epoch}: the run diverged "
                       f"(lower the learning rate or check the loss settings)")
    return train_loss


def _validate(run: _Run, epoch: int, train_loss: float, t0: float) -> Dict[str, Any]:
    """Step 4: advance the schedules, validate, record the epoch and write the checkpoint."""
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    weights = run.loss_fn.weights() if isinstance(run.loss_fn, WeightedSum) else None
    val = evaluate(run.model, run.data.val, mode=run.mode, num_classes=run.data.num_classes, metrics=QUICK_METRICS,
                   loss_fn=run.eval_loss, batch_size=run.eval_batch, device=run.device, per_image=False,
                   autocast=run.autocast)
    seconds = time.perf_counter() - t0
    run.elapsed += seconds
    row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val["loss"],
           "val_dice_dataset": val["dataset"]["dice"], "val_jaccard_dataset": val["dataset"]["jaccard"],
           "seconds": seconds}
    if weights is not None:
        row["loss_weights"] = weights
    run.history.append(row)
    for schedule in (run.loss_fn, run.eval_loss):  # weight schedules advance once per epoch
        _step_schedules(schedule)
    if run.main:
        atomic_torch_save(run.run_dir / CHECKPOINT, {
            "epoch": epoch, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict() if run.scaler else None,
            "loss": run.loss_fn.state_dict(), "rng": rng_state(), "history": run.history, "elapsed": run.elapsed,
        })
        _write_history_csv(run.run_dir / "metrics.csv", run.history)
        run.log(f"{run.label}  epoch {epoch}/{run.cfg.epochs}  train loss {train_loss:.4f}  val loss "
                f"{val['loss']:.4f}  val Dice {row['val_dice_dataset']:.4f}  IoU {row['val_jaccard_dataset']:.4f}  "
                f"{seconds:.1f}s")
    return row


def _finish(run: _Run) -> Dict[str, Any]:
    """Step 5: the final evaluation (test split, else validation) and the run's result files."""
    data = run.data
    if run.main and run.history:
        _write_history_csv(run.run_dir / "metrics.csv", run.history)
    eval_split = "test" if data.test is not None and len(data.test) > 0 else "val"
    eval_set = data.test if eval_split == "test" else data.val
    t0 = time.perf_counter()
    kwargs: Dict[str, Any] = {} if run.cfg.eval.metrics is None else {"metrics": run.cfg.eval.metrics}
    result = evaluate(run.model, eval_set, mode=run.mode, num_classes=data.num_classes, loss_fn=run.eval_loss,
                      batch_size=run.eval_batch, device=run.device, per_image=True, autocast=run.autocast, **kwargs)
    final = {
        "config": run.config,
        "status": "finished",
        "dataset": data.name,
        "num_classes": data.num_classes,
        "class_names": getattr(data, "class_names", None),
        "mode": run.mode,
        "split": eval_split,
        "epochs_trained": len(run.history),
        "train_seconds": run.elapsed,
        "eval_seconds": time.perf_counter() - t0,
        "history": run.history,
        "results": {k: result[k] for k in ("loss", "n_images", "dataset", "image_mean", "defined", "items")},
        "per_image": result["per_image"],
        "groups": result["groups"],
    }
    if result.get("reliability") is not None:  # calibration metrics asked for: the reliability diagram's bins
        final["results"]["reliability"] = result["reliability"]
    if run.main:
        _write_samples(run.run_dir / "samples.npz", run.model, eval_set, run.mode, run.device, run.autocast,
                       run.cfg.eval.samples)
        _write_per_image_csv(run.run_dir / "per_image.csv", result["per_image"])
        save_image_sums(run.run_dir / IMAGE_SUMS, result["image_sums"])
        atomic_write_json(run.run_dir / FINAL, final)
    if run.world > 1:
        dist.barrier()
    return final


def _write_per_image_csv(path: Path, per_image: Mapping[str, Mapping[str, float]]) -> None:
    keys: List[str] = []
    for row in per_image.values():
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", *keys])
    for name, row in per_image.items():
        writer.writerow([name, *(_fmt(row.get(k)) for k in keys)])
    atomic_write_text(path, buf.getvalue())


def _write_samples(path: Path, model: nn.Module, dataset: ItemDataset, mode: str, device: torch.device,
                   autocast, k: int) -> None:
    if k <= 0:
        return
    from seglosses.bench.evaluate import predict

    indices = sample_indices(dataset, k)
    names = getattr(dataset, "names", None)
    model.eval()
    items = [dataset[i] for i in indices]
    images = [image.numpy().astype(np.float32) for image, _ in items]
    truths = [mask.numpy().astype(np.uint8) for _, mask in items]
    if len({tuple(image.shape) for image, _ in items}) == 1:  # one forward pass for all samples
        batches = [torch.stack([image for image, _ in items])]
    else:
        batches = [image.unsqueeze(0) for image, _ in items]
    preds: List[np.ndarray] = []
    for batch in batches:
        probs = predict(model, batch.to(device), mode, autocast=autocast).cpu()
        hard = (probs[:, 0] >= 0.5) if mode == "binary" else probs.argmax(1)
        preds.extend(p.to(torch.uint8).numpy() for p in hard)
    buf = io.BytesIO()
    sample_names = np.array([str(names[i]) if names is not None else str(i) for i in indices])
    if len({im.shape for im in images}) == 1:
        np.savez_compressed(buf, images=np.stack(images), truths=np.stack(truths), preds=np.stack(preds),
                            names=sample_names)
    else:  # items of different sizes: store them one by one
        # Any: savez_compressed also takes allow_pickle by keyword, so a **dict of arrays fails its stub
        arrays: Dict[str, Any] = {f"image_{j}": a for j, a in enumerate(images)}
        arrays.update({f"truth_{j}": a for j, a in enumerate(truths)})
        arrays.update({f"pred_{j}": a for j, a in enumerate(preds)})
        np.savez_compressed(buf, names=sample_names, **arrays)
    atomic_write_bytes(path, buf.getvalue())
