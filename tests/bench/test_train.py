"""Tests of the benchmark's training loop (seglosses.bench.train) and evaluation (bench.evaluate)."""
import json
import math

import pytest
import torch
from torch import nn

from seglosses.bench.data import SegmentationDataset, build_dataset
from seglosses.bench.evaluate import evaluate
from seglosses.bench.train import (
    RunError,
    RunInterrupted,
    ShuffleBatchSampler,
    atomic_write_json,
    build_optimizer,
    build_run_loss,
    build_scheduler,
    loss_has_domain,
    rng_state,
    sample_indices,
    set_rng_state,
    train_run,
)

SYNTH = {"name": "tiny", "type": "synthetic", "n_images": 16, "size": 32, "positive_fraction": 0.5, "seed": 3,
         "split": {"counts": [8, 4, 4], "seed": 0}}


def _config(**changes):
    cfg = {
        "label": "dice", "loss": "dice", "domain": "batch", "batch_size": 4, "effective_batch_size": 4, "seed": 7,
        "epochs": 3, "optimizer": {"name": "adam", "lr": 3e-3}, "schedule": {"name": "cosine"},
        "model": {"depth": 2, "width": 4, "norm": "batch"}, "sampler": {"ratio": "dataset"},
        "eval": {"metrics": ["dice", "jaccard", "hd95", "iou_per_class"], "batch_size": 4, "samples": 2},
    }
    cfg.update(changes)
    return cfg


@pytest.fixture(scope="module")
def tiny():
    return build_dataset(SYNTH)


def test_resume_after_interruption_equals_uninterrupted_run(tiny, tmp_path):
    # the reference: 3 epochs in one go
    ref = train_run(_config(), tmp_path / "ref", tiny, log=lambda m: None)
    # "kill" after epoch 1 (checkpoint written), then resume in a fresh call with fresh global RNG state
    with pytest.raises(RunInterrupted):
        train_run(_config(), tmp_path / "cut", tiny, log=lambda m: None, stop_after_epoch=1)
    assert (tmp_path / "cut" / "checkpoint.pt").is_file() and not (tmp_path / "cut" / "final.json").exists()
    assert len((tmp_path / "cut" / "metrics.csv").read_text().strip().splitlines()) == 2  # header + epoch 1
    torch.manual_seed(12345)  # the resumed run must restore the generator state itself
    resumed = train_run(_config(), tmp_path / "cut", tiny, log=lambda m: None)
    assert resumed["results"] == ref["results"]  # bit-for-bit: same floats
    assert resumed["per_image"] == ref["per_image"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in ref["history"]]
    # a finished run is not retrained: its stored result comes back
    again = train_run(_config(), tmp_path / "cut", tiny, log=lambda m: None)
    assert again["results"] == ref["results"]


def test_run_folder_contents(tiny, tmp_path):
    out = train_run(_config(epochs=1), tmp_path / "r", tiny, log=lambda m: None)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "checkpoint.pt", "metrics.csv", "final.json", "per_image.csv", "samples.npz"} <= files
    assert not any(name.endswith(".tmp") for name in files)  # no temporary file left behind
    final = json.loads((tmp_path / "r" / "final.json").read_text())
    assert final["split"] == "test" and final["results"]["n_images"] == 4
    assert set(final["per_image"]) == set(tiny.test.names)
    assert len(final["results"]["dataset"]["iou_per_class"]) == 2
    assert math.isfinite(out["results"]["dataset"]["dice"])
    header = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_loss,val_loss,val_dice_dataset,val_jaccard_dataset,seconds"


def test_effective_batch_size_matches_the_full_batch(tiny, tmp_path):
    # GroupNorm: micro-batches of 2 accumulated to 4 give the gradient of the batch of 4 (batchwise Dice),
    # so training follows the same path up to rounding
    common = dict(epochs=2, model={"depth": 2, "width": 4, "norm": "group", "groups": 2},
                  eval={"metrics": ["dice"], "samples": 0})
    full = train_run(_config(batch_size=4, effective_batch_size=4, **common), tmp_path / "a", tiny, log=lambda m: None)
    micro = train_run(_config(batch_size=2, effective_batch_size=4, **common), tmp_path / "b", tiny,
                      log=lambda m: None)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert full["history"][-1]["train_loss"] == pytest.approx(micro["history"][-1]["train_loss"], rel=1e-4)


def test_diverged_run_raises_run_error(tiny, tmp_path, monkeypatch):
    class NaNLoss(nn.Module):
        def forward(self, logits, target):
            return logits.mean() * float("nan")

    monkeypatch.setattr("seglosses.bench.train.build_run_loss", lambda *a, **k: NaNLoss())
    with pytest.raises(RunError, match="diverged"):
        train_run(_config(epochs=1), tmp_path / "x", tiny, log=lambda m: None)
    assert not (tmp_path / "x" / "final.json").exists()


def test_multiclass_run_and_pretrained_start(tmp_path):
    data = build_dataset(dict(SYNTH, mode="multiclass", num_classes=3))
    pre = train_run(_config(loss="ce", domain=None, epochs=1, eval={"metrics": ["dice"], "samples": 0}),
                    tmp_path / "pre", data, log=lambda m: None)
    assert pre["mode"] == "multiclass"
    lines = []
    out = train_run(_config(loss="lovasz", epochs=1), tmp_path / "ft", data, log=lines.append,
                    init_checkpoint=tmp_path / "pre" / "checkpoint.pt")
    assert len(out["results"]["dataset"]["iou_per_class"]) == 3
    assert lines and "epoch 1/1" in lines[0] and "val Dice" in lines[0]


def test_shuffle_sampler_is_a_function_of_seed_and_epoch():
    a, b = ShuffleBatchSampler(10, 3, seed=1), ShuffleBatchSampler(10, 3, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and len(a) == 3
    b.set_epoch(3)
    assert list(a) != list(b)
    # two processes split every global step without overlap
    r0 = ShuffleBatchSampler(10, 2, seed=1, num_replicas=2, rank=0)
    r1 = ShuffleBatchSampler(10, 2, seed=1, num_replicas=2, rank=1)
    for x, y in zip(r0, r1):
        assert not set(x) & set(y)


def test_rng_state_round_trip():
    state = rng_state()
    first = (torch.rand(3), __import__("random").random())
    set_rng_state(state)
    assert torch.equal(torch.rand(3), first[0]) and __import__("random").random() == first[1]


def test_loss_building_helpers():
    assert loss_has_domain("0.5*dice + 0.5*ce", "binary") and not loss_has_domain("focal", "binary")
    assert build_run_loss("ce", "binary", "batch").spec() == "cross_entropy"  # no domain to set
    assert build_run_loss("dice(domain='image')", "binary", "batch").spec() == "dice"  # the term's own wins
    loss = build_run_loss("tversky", "binary", "batch", distributed=True)
    assert loss.config["sync"] == "distributed"
    with pytest.raises(ValueError, match="did you mean 'dice'"):
        build_run_loss("dcie", "binary")


def test_optimizer_and_schedule_options():
    params = nn.Linear(1, 1).parameters()
    with pytest.raises(ValueError, match="`optimizer.name` must be one of"):
        build_optimizer(params, {"name": "sgd"})
    opt = build_optimizer(nn.Linear(1, 1).parameters(), {"name": "adam", "lr": 1.0})
    sched = build_scheduler(opt, {"name": "cosine"}, 2)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # (1 + cos(pi/2)) / 2
    with pytest.raises(ValueError, match="`schedule.name` must be one of"):
        build_scheduler(opt, {"name": "warm"}, 2)


def test_atomic_json_leaves_no_partial_file(tmp_path):
    atomic_write_json(tmp_path / "f.json", {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "f.json", {"a": Boom()})
    assert json.loads((tmp_path / "f.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_evaluate_hand_values():
    # logits -> hard predictions: image 0 predicts [1, 1, 0, 0] for truth [1, 0, 1, 0] (TP 1, FP 1, FN 1, TN 1);
    # image 1 predicts nothing on an empty truth (0/0 -> 1 for the overlap metrics, no surface distance)
    logits = torch.tensor([[[[5.0, 5.0, -5.0, -5.0]]], [[[-5.0, -5.0, -5.0, -5.0]]]])
    masks = torch.tensor([[[1, 0, 1, 0]], [[0, 0, 0, 0]]])
    ds = SegmentationDataset(logits, masks, names=["a", "b"])
    out = evaluate(nn.Identity(), ds, mode="binary", num_classes=2,
                   metrics=["dice", "jaccard", "pixel_accuracy", "hd95", "iou_per_class"])
    # data set: TP 1, FP 1, FN 1 -> Dice 2/4, IoU 1/3; pixels: 6 of 8 right
    assert out["dataset"]["dice"] == pytest.approx(0.5)
    assert out["dataset"]["jaccard"] == pytest.approx(1 / 3)
    assert out["dataset"]["pixel_accuracy"] == pytest.approx(6 / 8)
    # background IoU: TN 5 / (TN 5 + FN 1 + FP 1)
    assert out["dataset"]["iou_per_class"] == pytest.approx([5 / 7, 1 / 3])
    # per image: (0.5 + 1) / 2
    assert out["image_mean"]["dice"] == pytest.approx(0.75)
    assert out["per_image"]["b"]["dice"] == 1.0
    # hd95 only defined on image a: surfaces {0,1} vs {0,2}: directed 95th percentiles 0.95 and 0.95
    # (1-row image: every foreground pixel is surface; distances {0, 1} each way, 95th percentile 0.95)
    assert math.isnan(out["per_image"]["b"]["hd95"]) and out["defined"]["hd95"] == 1
    assert out["image_mean"]["hd95"] == pytest.approx(0.95)


def test_sample_indices_prefer_foreground():
    masks = torch.zeros(10, 2, 2, dtype=torch.long)
    masks[[2, 5, 6, 9], 0, 0] = 1
    ds = SegmentationDataset(torch.zeros(10, 1, 2, 2), masks)
    assert sample_indices(ds, 2) == [2, 9]
    assert sample_indices(ds, 6) == [2, 5, 6, 9, 0, 1]
