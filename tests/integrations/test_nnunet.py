"""The nnU-Net v2 integration: deep-supervision weights, target layout, the trainer's loss hook."""
from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

import seglosses as sl
from seglosses.integrations import nnunet as nn_int


def test_deep_supervision_weights_are_nnunets():
    # nnU-Net v2: 1/2^i, last 0 (1e-6 under DDP), normalised
    raw = [1.0, 0.5, 0.25, 0.125, 0.0]
    assert nn_int.deep_supervision_weights(5) == pytest.approx([w / sum(raw) for w in raw])
    ddp = nn_int.deep_supervision_weights(3, ddp=True)
    assert ddp[-1] > 0 and sum(ddp) == pytest.approx(1.0)
    assert nn_int.deep_supervision_weights(1) == [1.0]
    with pytest.raises(ValueError, match="`num_outputs` must be an int >= 1; got 0"):
        nn_int.deep_supervision_weights(0)


def _outputs_targets(num_classes=3, sizes=(16, 8, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = [torch.randn(2, num_classes, s, s, generator=g, dtype=torch.float64, requires_grad=True) for s in sizes]
    targets = [torch.randint(0, num_classes, (2, 1, s, s), generator=g).double() for s in sizes]
    return outputs, targets


def test_deep_supervised_loss_is_the_weighted_sum_over_scales():
    outputs, targets = _outputs_targets()
    loss = nn_int.build_nnunet_loss("tversky(alpha=0.3, beta=0.7) + ce", num_outputs=3)
    weights = nn_int.deep_supervision_weights(3)
    ref_fn = sl.build_loss("tversky(alpha=0.3, beta=0.7) + ce", mode="multiclass")
    expected = sum(w * ref_fn(x, y[:, 0].long()) for w, x, y in zip(weights, outputs, targets))
    value = loss(outputs, targets)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    value.backward()
    assert outputs[2].grad is None or float(outputs[2].grad.abs().sum()) == 0.0  # weight 0: not computed
    assert float(outputs[0].grad.abs().sum()) > 0


def test_one_full_size_target_is_resized_to_each_output():
    outputs, targets = _outputs_targets(sizes=(8, 4))
    full = torch.zeros(2, 1, 8, 8)
    full[:, :, 2:6, 2:6] = 1
    loss = nn_int.DeepSupervisedLoss(nn_int.NnUNetTargetLoss(sl.DiceLoss(mode="multiclass")), [0.5, 0.5])
    small = torch.zeros(2, 1, 4, 4)
    small[:, :, 1:3, 1:3] = 1
    expected = loss(outputs, [full, small])
    assert float(loss(outputs, full).detach()) == pytest.approx(float(expected.detach()))


def test_ignore_label_and_regions():
    outputs, targets = _outputs_targets()
    targets[0][:, :, :4] = 3  # nnU-Net's ignore label: the highest label value
    loss = nn_int.build_nnunet_loss("dice", ignore_label=3)
    cropped = sl.DiceLoss(mode="multiclass", ignore_index=3)(outputs[0], targets[0][:, 0].long())
    assert float(loss(outputs[0], targets[0])) == pytest.approx(float(cropped))
    regions = nn_int.build_nnunet_loss("dice", has_regions=True)
    region_target = (torch.rand(2, 3, 16, 16) > 0.5).float()
    expected = sl.DiceLoss(mode="multilabel")(outputs[0], region_target)
    assert float(regions(outputs[0], region_target)) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="`ignore_label` must be None with region training"):
        nn_int.build_nnunet_loss("dice", has_regions=True, ignore_label=4)


def test_spec_from_the_environment(monkeypatch):
    monkeypatch.setenv(nn_int.ENV_LOSS, "focal(gamma=1.0)")
    loss = nn_int.build_nnunet_loss()
    assert isinstance(loss.loss, sl.FocalLoss) and loss.loss.config["gamma"] == 1.0
    monkeypatch.delenv(nn_int.ENV_LOSS)
    assert nn_int.build_nnunet_loss().loss.spec() == sl.build_loss("dice + ce", mode="multiclass").spec()


@pytest.fixture
def fake_nnunet(monkeypatch):
    """A stand-in for nnunetv2's trainer module: the base class with the attributes the hook reads."""

    class nnUNetTrainer:  # noqa: N801
        def __init__(self, deep_supervision=True, regions=False, ignore=None, scales=4):
            self.enable_deep_supervision = deep_supervision
            self.is_ddp = False
            self.label_manager = types.SimpleNamespace(has_regions=regions, ignore_label=ignore)
            self._scales = scales

        def _get_deep_supervision_scales(self):
            return [[1.0, 1.0]] + [[0.5 ** i] * 2 for i in range(1, self._scales)]

        def initialize(self):
            self.loss = self._build_loss()

    names = ["nnunetv2", "nnunetv2.training", "nnunetv2.training.nnUNetTrainer",
             "nnunetv2.training.nnUNetTrainer.nnUNetTrainer"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[names[-1]].nnUNetTrainer = nnUNetTrainer
    module = importlib.reload(nn_int)
    yield module
    monkeypatch.undo()
    vars(nn_int).pop("nnUNetTrainerSeglosses", None)  # reload keeps old names: drop the fake-based class
    importlib.reload(nn_int)


def test_trainer_builds_the_seglosses_loss_through_nnuneths_hook(fake_nnunet):
    trainer_cls = fake_nnunet.nnUNetTrainerSeglosses
    trainer = trainer_cls(deep_supervision=True, scales=4)
    trainer.initialize()
    assert isinstance(trainer.loss, fake_nnunet.DeepSupervisedLoss)
    assert trainer.loss.weights == pytest.approx(fake_nnunet.deep_supervision_weights(4))

    class Tversky(trainer_cls):
        loss_spec = "tversky(alpha=0.3, beta=0.7)"

    plain = Tversky(deep_supervision=False, ignore=3)
    plain.initialize()
    assert isinstance(plain.loss.loss, sl.TverskyLoss)
    assert plain.loss.loss.config["ignore_index"] == 3 and plain.loss.loss.config["mode"] == "multiclass"


def test_trainer_without_nnunet_says_what_is_missing():
    if nn_int._NnUNetTrainer is not None:
        pytest.skip("nnunetv2 is installed here")
    with pytest.raises(ImportError, match="needs nnU-Net v2"):
        _ = nn_int.nnUNetTrainerSeglosses
