"""Batch statistics summed across processes: DDP gives the gradient of the global batch.

The multi-process tests spawn 2 and 3 CPU processes on gloo (``distributed`` marker);
every rank holds an uneven share of one global batch and compares, in float64, its
gradient after DDP's backward and its loss value with the single-process loss of the
concatenated batch (computed by each rank on an unwrapped copy of the model).
"""
from __future__ import annotations

import datetime
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn

import seglosses as sl
from seglosses.distributed import AllReduceSync, StatisticsSync, all_reduce_sum, resolve_sync

TOL = 1e-6

REGION = [
    "DiceLoss",
    "IoULoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "AsymmetricSimilarityLoss",
    "GeneralizedDiceLoss",
    "PenaltyGeneralizedDiceLoss",
    "SensitivitySpecificityLoss",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: thread start-up would dominate (and oversubscribe a shared CPU)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_net(out_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Tanh(), nn.Conv2d(4, out_channels, 3, padding=1)
    ).double()


def make_batch(b=6, c=3, spatial=(5, 7), seed=1, ignore=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, *spatial, generator=g, dtype=torch.float64)
    y = torch.randint(0, max(c, 2), (b,) + tuple(spatial), generator=g)
    if ignore is not None:
        y[torch.rand(y.shape, generator=g) < 0.25] = ignore
    return x, y


# uneven shares of a global batch of 6 images
SHARES = {2: [(0, 2), (2, 6)], 3: [(0, 1), (1, 3), (3, 6)]}


# ---------------------------------------------------------------------------------------
# single process: the sync argument and its hook


def test_sync_without_a_process_group_is_the_plain_loss():
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch()
    for name in REGION:
        values, grads = [], []
        for sync in (None, "distributed"):
            model.zero_grad()
            v = getattr(sl, name)(mode="multiclass", domain="batch", sync=sync)(model(x), y)
            v.backward()
            values.append(v.detach())
            grads.append(model[0].weight.grad.clone())
        assert torch.equal(values[0], values[1]), name
        assert torch.equal(grads[0], grads[1]), name


def test_sync_errors():
    x, y = make_batch()
    logits = torch.randn(6, 3, 5, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="`sync` must be None for domain='image'"):
        sl.DiceLoss(mode="multiclass", domain="image", sync="distributed")(logits, y)
    with pytest.raises(ValueError, match="`sync` must be None, 'distributed'.*got 'ddp'"):
        sl.functional.tversky_loss(logits, y, mode="multiclass", domain="batch", sync="ddp")
    with pytest.raises(ValueError, match="did you mean 'distributed'"):
        sl.functional.dice_loss(logits, y, mode="multiclass", domain="batch", sync="distribute")
    with pytest.raises(TypeError, match="`sync` must be None, 'distributed'.*got int"):
        sl.functional.iou_loss(logits, y, mode="multiclass", domain="batch", sync=1)
    assert resolve_sync(None) is None
    assert isinstance(resolve_sync("distributed", "batch"), AllReduceSync)


def test_all_reduce_sum_in_one_process_is_a_copy():
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    out = all_reduce_sum(t)
    assert torch.equal(out, t.detach()) and out is not t
    out.sum().backward()
    assert torch.equal(t.grad, torch.ones(2))


def test_a_custom_hook_sees_the_domain_moments():
    # the hook receives the summed [1, C] moments of the batch domain before the formula
    seen = {}

    class Spy(StatisticsSync):
        def __call__(self, moments, domain):
            seen.update(moments)
            return moments

    p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    g = torch.tensor([[[1, 0], [0, 1]]])
    sl.functional.dice_loss(p, g, from_logits=False, domain="batch", sync=Spy())
    # Σp = 2, Σg = 2, Σpg = 1 (one image, one class)
    assert {k: float(v) for k, v in seen.items()} == {"p": 2.0, "g": 2.0, "pg": 1.0}


# ---------------------------------------------------------------------------------------
# multi-process (gloo, CPU)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_grads(ddp, loss, x, y):
    ddp.zero_grad()
    v = loss(ddp(x), y)
    v.backward()
    return v.detach(), [p.grad.detach().clone() for p in ddp.parameters()]


def _reference(model, loss, x, y):
    model.zero_grad()
    v = loss(model(x), y)
    v.backward()
    return v.detach(), [p.grad.detach().clone() for p in model.parameters()]


def _diff(a, b):
    return max(float((u - v).abs().max()) for u, v in zip(a, b))


def _worker(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    failures = []
    try:
        lo, hi = SHARES[world][rank]
        torch.manual_seed(0)
        model = small_net(3)
        ref_model = small_net(3)
        ref_model.load_state_dict(model.state_dict())
        ddp = nn.parallel.DistributedDataParallel(model)

        # 1. every region loss, batch domain, sync="distributed": plain DDP backward
        x, y = make_batch()
        for name in REGION:
            cls = getattr(sl, name)
            v_ref, g_ref = _reference(ref_model, cls(mode="multiclass", domain="batch"), x, y)
            v, g = _ddp_grads(ddp, cls(mode="multiclass", domain="batch", sync="distributed"), x[lo:hi], y[lo:hi])
            if _diff(g, g_ref) > TOL or abs(float(v - v_ref)) > TOL:
                failures.append(f"{name}: grad {_diff(g, g_ref):.3g}, value {float(v - v_ref):.3g}")

        # 2. binary, ignore_index, an explicit process group
        xb, yb = make_batch(c=1, ignore=255)
        bin_ref = small_net(1)
        bin_model = small_net(1)
        bin_model.load_state_dict(bin_ref.state_dict())
        bin_ddp = nn.parallel.DistributedDataParallel(bin_model)
        v_ref, g_ref = _reference(bin_ref, sl.TverskyLoss(domain="batch", ignore_index=255), xb, yb)
        loss = sl.TverskyLoss(domain="batch", ignore_index=255, sync=dist.group.WORLD)
        v, g = _ddp_grads(bin_ddp, loss, xb[lo:hi], yb[lo:hi])
        if _diff(g, g_ref) > TOL or abs(float(v - v_ref)) > TOL:
            failures.append(f"binary group: grad {_diff(g, g_ref):.3g}, value {float(v - v_ref):.3g}")

        # 3. DDP + micro-batches: a compound with image-domain and pixel-mean terms whose
        #    counts differ between ranks (uneven shares, ignored pixels); two micro-batches per
        #    rank when the share allows it
        xc, yc = make_batch(ignore=255)
        common = dict(mode="multiclass", ignore_index=255)
        pixel = sl.CrossEntropyLoss(**common) if hasattr(sl, "CrossEntropyLoss") else sl.ConfidencePenalty(**common)

        def compound(sync):
            return (sl.TverskyLoss(domain="batch", sync=sync, **common) + 0.5 * sl.DiceLoss(domain="image", **common)
                    + 0.3 * pixel)

        v_ref, g_ref = _reference(ref_model, compound(None), xc, yc)
        acc = sl.BatchwiseAccumulator(compound("distributed"))
        ddp.zero_grad()
        v = acc.backward(ddp, sl.split_batch(xc[lo:hi], yc[lo:hi], 2))
        g = [p.grad.detach().clone() for p in ddp.parameters()]
        if _diff(g, g_ref) > TOL or abs(float(v - v_ref)) > TOL:
            failures.append(f"accumulator: grad {_diff(g, g_ref):.3g}, value {float(v - v_ref):.3g}")
        # the same with one micro-batch per rank (single pass), sync given to the accumulator
        acc = sl.BatchwiseAccumulator(compound(None), sync="distributed")
        ddp.zero_grad()
        v = acc.backward(ddp, [(xc[lo:hi], yc[lo:hi])])
        g = [p.grad.detach().clone() for p in ddp.parameters()]
        if _diff(g, g_ref) > TOL or abs(float(v - v_ref)) > TOL:
            failures.append(f"accumulator, one pass: grad {_diff(g, g_ref):.3g}, value {float(v - v_ref):.3g}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    assert not failures, f"rank {rank}/{world}: " + "; ".join(failures)


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, 3])
def test_ddp_gradient_and_value_equal_the_global_batch(world):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import multiprocessing

    import torch.multiprocessing as mp

    # a fork server imports torch (and what DDP imports lazily) once for all processes of
    # both tests, instead of once per spawned process
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        multiprocessing.set_forkserver_preload(["torch", "torch.nn.parallel", "torch._dynamo",
                                                "torch.distributed.fsdp", "seglosses"])
    mp.start_processes(_worker, args=(world, _free_port()), nprocs=world, join=True, start_method=method)
