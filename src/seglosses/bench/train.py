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

import copy
import csv
import io
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from seglosses import build_loss
from seglosses.accumulate import BatchwiseAccumulator, split_batch
from seglosses.bench.data import BenchData, RatioBatchSampler, foreground_flags
from seglosses.bench.evaluate import IMAGE_SUMS, QUICK_METRICS, evaluate, save_image_sums
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
from seglosses.bench.unet import UNet
from seglosses.losses import SegLoss, WeightedSum

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


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


def _seg_terms(loss: nn.Module) -> List[SegLoss]:
    return [m for m in loss.modules() if isinstance(m, SegLoss) and hasattr(type(m), "function")]


def loss_has_domain(spec: Any, mode: str) -> bool:
    """Whether some term of the loss ``spec`` takes a ``domain`` (image / batch) argument.

    Example:
        >>> loss_has_domain("dice", "binary"), loss_has_domain("ce", "binary")
        (True, False)
    """
    return any("domain" in term.config for term in _seg_terms(build_loss(spec, mode=mode)))


def build_run_loss(spec: Any, mode: str, domain: Optional[str] = None, *, distributed: bool = False) -> nn.Module:
    """The loss module of a run: ``build_loss(spec, mode=mode[, domain=domain])``.

    ``domain`` is passed only when some term takes it (a term's own ``domain`` wins). With
    ``distributed=True`` every batch-domain term that has a ``sync`` argument sums its
    statistics over the processes (``sync="distributed"``).

    Args:
        spec: a :func:`seglosses.build_loss` spec.
        mode: ``"binary"`` or ``"multiclass"``.
        domain: ``"image"``, ``"batch"`` or ``None``.
        distributed: set ``sync="distributed"`` on batch-domain terms.

    Raises:
        ValueError: an unknown loss name or argument (the message of :func:`build_loss`).

    Example:
        >>> build_run_loss("dice", "binary", "batch").spec()
        "dice(domain='batch')"
    """
    common: Dict[str, Any] = {"mode": mode}
    if domain is not None and loss_has_domain(spec, mode):
        common["domain"] = domain
    loss = build_loss(spec, **common)
    if distributed:
        for term in _seg_terms(loss):
            if term.config.get("domain") == "batch" and "sync" in term.config:
                term.config["sync"] = "distributed"
    return loss


def build_model(cfg: Mapping[str, Any], in_channels: int, out_channels: int,
                class_frequencies: Optional[Sequence[float]] = None) -> UNet:
    r"""The U-Net of a run from its ``model`` settings (``depth``, ``width``, ``norm``, ``groups``, ...).

    With ``prior_init: true`` in ``cfg`` and the training data's ``class_frequencies`` :math:`π_c`,
    the bias of the last 1x1 convolution starts at the prior, as Lin et al. (2017, section 4.1,
    "prior π for the rare class") initialise it:

    .. math::
        b = \log\frac{π_1}{1 - π_1}\ \text{(binary)},\qquad b_c = \log π_c\ \text{(multiclass)}

    so that the first predictions already have the data's class balance instead of p = 0.5. The
    same initialisation serves every loss of a study; without it, a pixelwise loss on
    two-way imbalanced data spends its first hundreds of Adam steps (about ``lr`` per step) moving
    that bias.

    Example:
        >>> net = build_model({"depth": 2, "width": 4, "prior_init": True}, 1, 1, [0.9, 0.1])
        >>> round(float(net.head.bias.detach()), 4)  # log(0.1 / 0.9)
        -2.1972
    """
    cfg = dict(cfg)
    prior = bool(cfg.pop("prior_init", False))
    model = UNet(in_channels, out_channels, **cfg)
    if prior and class_frequencies is not None:
        freq = torch.as_tensor(list(class_frequencies), dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        with torch.no_grad():
            if out_channels == 1:
                model.head.bias.fill_(float(torch.log(freq[1] / (1 - freq[1]))))
            else:
                model.head.bias.copy_(torch.log(freq / freq.sum()).to(model.head.bias.dtype))
    return model


def class_frequencies(dataset: Dataset, num_classes: int, max_items: int = 256) -> List[float]:
    """Fraction of the pixels of each class over (up to ``max_items`` evenly spread) items of a data set.

    Example:
        >>> from seglosses.bench.data import SegmentationDataset
        >>> masks = torch.tensor([[[0, 0, 0, 1]], [[0, 0, 1, 1]]])
        >>> class_frequencies(SegmentationDataset(torch.zeros(2, 1, 1, 4), masks), 2)
        [0.625, 0.375]
    """
    n = len(dataset)
    step = max(1, n / max_items)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i in sorted({int(j * step) for j in range(min(n, max_items))}):
        mask = dataset[i][1]
        counts += torch.bincount(mask.flatten().clamp(0, num_classes - 1), minlength=num_classes).double()
    return (counts / counts.sum().clamp_min(1)).tolist()


def build_optimizer(params, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam or AdamW from ``{"name": "adam"|"adamw", "lr": ..., "weight_decay": ..., "betas": ...}``.

    Seed 000 uses Adam; seed 003 AdamW with learning rate 1e-4.

    Raises:
        ValueError: an unknown optimiser name.

    Example:
        >>> opt = build_optimizer(nn.Linear(1, 1).parameters(), {"name": "adamw", "lr": 1e-4})
        >>> type(opt).__name__, opt.param_groups[0]["lr"]
        ('AdamW', 0.0001)
    """
    cfg = dict(cfg)
    name = str(cfg.pop("name", "adam")).lower()
    cfg.pop("grad_clip", None)
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ValueError(f"`optimizer.name` must be one of 'adam', 'adamw'; got {name!r}")
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return classes[name](params, **cfg)


class _Poly:
    """Polynomial decay factor ``(1 - epoch / epochs) ** power`` (a picklable schedule)."""

    def __init__(self, epochs: int, power: float) -> None:
        self.epochs, self.power = max(1, epochs), power

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.epochs) ** self.power


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], epochs: int):
    """A per-epoch learning-rate schedule: ``constant``, ``cosine``, ``step`` or ``poly``.

    ``{"name": "cosine", "min_lr": 0}`` anneals to ``min_lr`` over the run's epochs;
    ``{"name": "step", "step_size": 10, "gamma": 0.1}``; ``{"name": "poly", "power": 0.9}``.

    Raises:
        ValueError: an unknown schedule name.

    Example:
        >>> opt = build_optimizer(nn.Linear(1, 1).parameters(), {"lr": 1.0})
        >>> s = build_scheduler(opt, {"name": "step", "step_size": 1, "gamma": 0.5}, 3)
        >>> opt.step(); s.step(); opt.param_groups[0]["lr"]
        0.5
    """
    cfg = dict(cfg or {})
    name = str(cfg.pop("name", "constant")).lower()
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _Poly(epochs, 0.0))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs),
                                                          eta_min=float(cfg.get("min_lr", 0.0)))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(cfg.get("step_size", 10)),
                                               gamma=float(cfg.get("gamma", 0.1)))
    if name == "poly":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _Poly(epochs, float(cfg.get("power", 0.9))))
    raise ValueError(f"`schedule.name` must be one of 'constant', 'cosine', 'step', 'poly'; got {name!r}")


def autocast_factory(device: torch.device, amp: str = "auto"):
    """Mixed precision on CUDA only: ``(autocast factory or None, uses a gradient scaler)``.

    ``amp``: ``"auto"`` (bf16 where supported, else fp16), ``"bf16"``, ``"fp16"`` or ``"off"``.
    On any other device the answer is ``(None, False)``.

    Example:
        >>> autocast_factory(torch.device("cpu"), "auto")
        (None, False)
    """
    amp = str(amp).lower()
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"`amp` must be one of 'auto', 'bf16', 'fp16', 'off'; got {amp!r}")
    if device.type != "cuda" or amp == "off":
        return None, False
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype == torch.float16


class ShuffleBatchSampler(Sampler[List[int]]):
    """Shuffled batches whose order depends only on ``(seed, epoch)`` (resumable), split across processes.

    Every epoch draws a permutation from a generator seeded with ``(seed, epoch)``; each
    global step takes ``batch_size * num_replicas`` items and gives process ``rank`` its
    ``batch_size``. Incomplete steps are dropped, except when the data set is smaller than
    one step (then the one step cycles through the permutation).

    Args:
        n: data-set size.
        batch_size: items per batch and process.
        seed: seed of the shuffling.
        num_replicas: processes.
        rank: this process.
        num_batches: batches per epoch, overriding the count above (the permutation cycles).

    Example:
        >>> s = ShuffleBatchSampler(5, 2, seed=0)
        >>> len(s), sorted(i for b in s for i in b) == sorted(set(i for b in s for i in b))
        (2, True)
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 num_batches: Optional[int] = None) -> None:
        if n < 1:
            raise ValueError(f"`n` must be >= 1; got {n}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        step = batch_size * num_replicas
        self.num_batches = num_batches if num_batches is not None else max(1, n // step)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[List[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order: List[int] = []
        step = self.batch_size * self.num_replicas
        for _ in range(self.num_batches):
            while len(order) < step:
                order.extend(torch.randperm(self.n, generator=gen).tolist())
            chunk, order = order[:step], order[step:]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]


def distributed_context() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one.

    Example:
        >>> distributed_context()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sample_indices(dataset: Dataset, k: int = 4) -> List[int]:
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


def _train_sampler(dataset: Dataset, per_rank: int, cfg: Mapping[str, Any], seed: int, rank: int, world: int,
                   steps: Optional[int]) -> Sampler:
    sampler_cfg = cfg.get("sampler") or {}
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
    advice = redo_advice(config.get("run_id"))
    if final_path.is_file():
        return read_final(final_path, advice=advice)
    device = torch.device(device)
    rank, world = distributed_context()
    main = rank == 0
    config = copy.deepcopy(dict(config))
    if data.train is None or len(data.train) == 0:
        raise RunError(f"data set {data.name!r} has no training items")
    if data.val is None or len(data.val) == 0:
        raise RunError(f"data set {data.name!r} has no validation items (the split gives none)")
    eval_split = "test" if data.test is not None and len(data.test) > 0 else "val"
    eval_set = data.test if eval_split == "test" else data.val

    mode = _mode(data.num_classes)
    out_channels = 1 if mode == "binary" else data.num_classes
    seed = int(config["seed"])
    epochs = int(config["epochs"])
    batch_size = int(config["batch_size"])
    effective = int(config.get("effective_batch_size") or batch_size)
    if effective % world:
        raise RunError(f"`effective_batch_size` must be divisible by the {world} processes; got {effective}")
    per_rank = effective // world
    micro = min(batch_size, per_rank)

    loss_fn = build_run_loss(config["loss"], mode, config.get("domain"), distributed=world > 1)
    eval_loss = build_run_loss(config["loss"], mode, config.get("domain"))
    accumulator = None
    if per_rank > micro:
        norm = (config.get("model") or {}).get("norm", "batch")
        accumulator = BatchwiseAccumulator(loss_fn, batchnorm="allow" if norm == "batch" else "raise")

    seed_everything(seed)
    model_cfg = config.get("model") or {}
    freq = class_frequencies(data.train, data.num_classes) if model_cfg.get("prior_init") else None
    model = build_model(model_cfg, data.in_channels, out_channels, freq).to(device)
    optimizer = build_optimizer(model.parameters(), config.get("optimizer") or {})
    grad_clip = (config.get("optimizer") or {}).get("grad_clip")
    scheduler = build_scheduler(optimizer, config.get("schedule") or {}, epochs)
    autocast, use_scaler = autocast_factory(device, config.get("amp", "auto"))
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    history: List[Dict[str, Any]] = []
    start_epoch = 1
    elapsed = 0.0
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device, advice=advice, required=_CHECKPOINT_KEYS)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            if state.get("loss") is not None:
                loss_fn.load_state_dict(state["loss"])
            history = [dict(row) for row in state["history"]]
            elapsed = float(state.get("elapsed", 0.0))
            start_epoch = int(state["epoch"]) + 1
            set_rng_state(state["rng"])
        except Exception as err:  # noqa: BLE001 - whatever does not fit the run's model, optimiser, ... is damage
            raise DamagedFile(ckpt_path, f"it does not fit this run: {type(err).__name__}: "
                                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}",
                              advice) from None
        if main and start_epoch <= epochs:
            log(f"{config.get('label', run_dir.name)}: resuming after epoch {start_epoch - 1}/{epochs}")
    elif init_checkpoint is not None:
        pre_advice = redo_advice((config.get("pretrain") or {}).get("run"))
        state = load_checkpoint(init_checkpoint, map_location=device, advice=pre_advice, required=("model",))
        try:
            model.load_state_dict(state["model"])
        except Exception as err:  # noqa: BLE001
            raise DamagedFile(init_checkpoint, f"its model does not fit this run: {type(err).__name__}",
                              pre_advice) from None
    eval_loss.load_state_dict(loss_fn.state_dict())
    if main:
        atomic_write_json(run_dir / "config.json", config)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    steps = config.get("steps_per_epoch")
    sampler = _train_sampler(data.train, per_rank, config, seed, rank, world, steps)
    loader = DataLoader(data.train, batch_sampler=sampler, num_workers=int(config.get("num_workers", 0)))
    label = config.get("label", run_dir.name)
    eval_batch = max(1, int((config.get("eval") or {}).get("batch_size") or micro))

    epoch_bar = _progress(epochs, str(label), progress and main, position=0, initial=start_epoch - 1, unit="epoch")
    try:
        for epoch in range(start_epoch, epochs + 1):
            t0 = time.perf_counter()
            sampler.set_epoch(epoch)
            if hasattr(data.train, "set_epoch"):
                data.train.set_epoch(epoch)
            net.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            n_steps = 0
            bar = _progress(len(sampler), f"epoch {epoch}", progress and main)
            for images, masks in loader:
                images, masks = images.to(device), masks.to(device)
                optimizer.zero_grad(set_to_none=True)
                if accumulator is not None:
                    if autocast is not None:
                        with autocast():
                            value = accumulator.backward(net, split_batch(images, masks, micro), scaler=scaler)
                    else:
                        value = accumulator.backward(net, split_batch(images, masks, micro), scaler=scaler)
                else:
                    if autocast is not None:
                        with autocast():
                            logits = net(images)
                    else:
                        logits = net(images)
                    value = loss_fn(logits.float(), masks)
                    (value if scaler is None else scaler.scale(value)).backward()
                if grad_clip:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                loss_sum += value.detach().double()
                n_steps += 1
                if bar is not None:
                    bar.update(1)
                    if n_steps % 5 == 0:
                        bar.set_postfix(loss=f"{float(loss_sum) / n_steps:.4f}")
            if bar is not None:
                bar.close()
            if world > 1:
                dist.all_reduce(loss_sum)
                loss_sum /= world
            train_loss = float(loss_sum) / max(1, n_steps)
            if not math.isfinite(train_loss):
                raise RunError(f"the training loss is {train_loss} at epoch {epoch}: the run diverged "
                               f"(lower the learning rate or check the loss settings)")
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            weights = loss_fn.weights() if isinstance(loss_fn, WeightedSum) else None
            val = evaluate(model, data.val, mode=mode, num_classes=data.num_classes, metrics=QUICK_METRICS,
                           loss_fn=eval_loss, batch_size=eval_batch, device=device, per_image=False, autocast=autocast)
            seconds = time.perf_counter() - t0
            elapsed += seconds
            row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val["loss"],
                   "val_dice_dataset": val["dataset"]["dice"], "val_jaccard_dataset": val["dataset"]["jaccard"],
                   "seconds": seconds}
            if weights is not None:
                row["loss_weights"] = weights
            history.append(row)
            for schedule in (loss_fn, eval_loss):  # weight schedules advance once per epoch
                _step_schedules(schedule)
            if main:
                atomic_torch_save(ckpt_path, {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "loss": loss_fn.state_dict(), "rng": rng_state(), "history": history, "elapsed": elapsed,
                })
                _write_history_csv(run_dir / "metrics.csv", history)
                log(f"{label}  epoch {epoch}/{epochs}  train loss {train_loss:.4f}  val loss {val['loss']:.4f}  "
                    f"val Dice {row['val_dice_dataset']:.4f}  IoU {row['val_jaccard_dataset']:.4f}  {seconds:.1f}s")
            if epoch_bar is not None:
                epoch_bar.update(1)
                epoch_bar.set_postfix(val_dice=f"{row['val_dice_dataset']:.3f}")
            if world > 1:
                dist.barrier()
            if stop_after_epoch is not None and epoch == stop_after_epoch:
                raise RunInterrupted(f"stopped after epoch {epoch} (stop_after_epoch)")
    finally:
        if epoch_bar is not None:
            epoch_bar.close()
    if main and history:
        _write_history_csv(run_dir / "metrics.csv", history)
    eval_cfg = config.get("eval") or {}
    metrics = eval_cfg.get("metrics") or None
    t0 = time.perf_counter()
    kwargs = {} if metrics is None else {"metrics": metrics}
    result = evaluate(model, eval_set, mode=mode, num_classes=data.num_classes, loss_fn=eval_loss,
                      batch_size=eval_batch, device=device, per_image=True, autocast=autocast, **kwargs)
    eval_seconds = time.perf_counter() - t0
    final = {
        "config": config,
        "status": "finished",
        "dataset": data.name,
        "num_classes": data.num_classes,
        "class_names": getattr(data, "class_names", None),
        "mode": mode,
        "split": eval_split,
        "epochs_trained": len(history),
        "train_seconds": elapsed,
        "eval_seconds": eval_seconds,
        "history": history,
        "results": {k: result[k] for k in ("loss", "n_images", "dataset", "image_mean", "defined", "items")},
        "per_image": result["per_image"],
        "groups": result["groups"],
    }
    if result.get("reliability") is not None:  # calibration metrics asked for: the reliability diagram's bins
        final["results"]["reliability"] = result["reliability"]
    if main:
        _write_samples(run_dir / "samples.npz", model, eval_set, mode, device, autocast,
                       int(eval_cfg.get("samples", 4)))
        _write_per_image_csv(run_dir / "per_image.csv", result["per_image"])
        save_image_sums(run_dir / IMAGE_SUMS, result["image_sums"])
        atomic_write_json(final_path, final)
    if world > 1:
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


def _write_samples(path: Path, model: nn.Module, dataset: Dataset, mode: str, device: torch.device,
                   autocast, k: int) -> None:
    if k <= 0:
        return
    from seglosses.bench.evaluate import predict

    indices = sample_indices(dataset, k)
    names = getattr(dataset, "names", None)
    images, truths, preds = [], [], []
    model.eval()
    for i in indices:
        image, mask = dataset[i]
        probs = predict(model, image.unsqueeze(0).to(device), mode, autocast=autocast)[0].cpu()
        pred = (probs[0] >= 0.5).to(torch.uint8) if mode == "binary" else probs.argmax(0).to(torch.uint8)
        images.append(image.numpy().astype(np.float32))
        truths.append(mask.numpy().astype(np.uint8))
        preds.append(pred.numpy())
    buf = io.BytesIO()
    sample_names = np.array([str(names[i]) if names is not None else str(i) for i in indices])
    if len({im.shape for im in images}) == 1:
        np.savez_compressed(buf, images=np.stack(images), truths=np.stack(truths), preds=np.stack(preds),
                            names=sample_names)
    else:  # items of different sizes: store them one by one
        arrays = {f"image_{j}": a for j, a in enumerate(images)}
        arrays.update({f"truth_{j}": a for j, a in enumerate(truths)})
        arrays.update({f"pred_{j}": a for j, a in enumerate(preds)})
        np.savez_compressed(buf, names=sample_names, **arrays)
    atomic_write_bytes(path, buf.getvalue())
