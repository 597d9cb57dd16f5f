"""Soft skeleton, clDice (Shit et al. 2021) and skeleton recall (Kirchhoff et al. 2024).

Oracles: hand-drawn masks whose skeletons are known, the batchwise accumulator against
the whole batch, and (marker ``peers``) MONAI's ``SoftclDiceLoss`` / ``SoftDiceclDiceLoss``.
"""
from __future__ import annotations

import pytest
import torch

import seglosses as sl
from seglosses import functional as F

from tests.test_accumulate import accumulated, full_batch, make_batch, max_diff, small_net, splits


def _bar(size=7, rows=(2, 5)):
    m = torch.zeros(1, 1, size, size, dtype=torch.float64)
    m[..., rows[0]:rows[1], :] = 1
    return m


def test_soft_skeleton_of_hard_masks():
    # a bar 3 pixels thick: its centre row
    skel = F.soft_skeleton(_bar(), 3)
    assert skel[0, 0, 3].tolist() == [1.0] * 7
    assert float(skel.sum()) == 7.0
    # a 3D slab 3 voxels thick: its centre plane
    slab = torch.zeros(1, 1, 5, 4, 4, dtype=torch.float64)
    slab[:, :, 1:4] = 1
    s3 = F.soft_skeleton(slab, 2)
    assert float(s3[0, 0, 2].sum()) == 16.0 and float(s3.sum()) == 16.0
    # a bar 5 thick needs 2 erosions: with 0 iterations nothing of it survives the first opening
    thick = _bar(9, (2, 7))
    assert float(F.soft_skeleton(thick, 0).sum()) == 0.0
    assert F.soft_skeleton(thick, 2)[0, 0, 4].tolist() == [1.0] * 9
    with pytest.raises(ValueError, match="`iterations` must be an int >= 0"):
        F.soft_skeleton(thick, -1)
    with pytest.raises(ValueError, match="2 or 3 spatial dims"):
        F.soft_skeleton(torch.zeros(1, 1, 5), 1)


def test_cldice_hand_values():
    g = _bar()[:, 0].long()
    centre = torch.zeros_like(_bar())
    centre[..., 3, :] = 1
    # predicting the centre line only: Tprec = Tsens = 1
    assert float(F.cldice_loss(centre, g, from_logits=False, smooth=0.0, harmonic_smooth=0.0)) == 0.0
    # a prediction offset by 2 rows (rows 4-6): its skeleton (row 5) is outside the target,
    # Tprec = 0; the true skeleton row 3 is not covered, Tsens = 0: loss 1
    off = torch.zeros_like(_bar())
    off[..., 4:7, :] = 1
    v = F.cldice_loss(off, g, from_logits=False, smooth=0.0, harmonic_smooth=0.0)
    assert float(v) == pytest.approx(1.0)
    # Dice + clDice on the centre line: Dice = 2 * 7 / (7 + 21) = 0.5
    v = F.dice_cldice_loss(centre, g, from_logits=False, smooth=0.0, harmonic_smooth=0.0, alpha=0.3)
    assert float(v) == pytest.approx(0.7 * 0.5)


def test_skeleton_recall_hand_values_and_tube():
    g = _bar()[:, 0].long()
    p = torch.zeros_like(_bar())
    p[..., 3, :] = 1.0
    # tube 0: the skeleton row 3 is fully recalled
    assert float(F.skeleton_recall_loss(p, g, from_logits=False, smooth=0.0, tube=0)) == 0.0
    # tube 1: rows 2-4 (inside the mask), a third recalled
    assert float(F.skeleton_recall_loss(p, g, from_logits=False, smooth=0.0, tube=1)) == pytest.approx(2 / 3)
    # the tube stays inside the mask: tube 5 covers the bar (3 rows) only
    assert float(F.skeleton_recall_loss(p, g, from_logits=False, smooth=0.0, tube=5)) == pytest.approx(2 / 3)
    # 3D
    slab = torch.zeros(1, 5, 4, 4, dtype=torch.long)
    slab[:, 1:4] = 1
    q = torch.zeros(1, 1, 5, 4, 4)
    q[:, :, 2] = 0.5
    assert float(F.skeleton_recall_loss(q, slab, from_logits=False, smooth=0.0, tube=0)) == pytest.approx(0.5)


def test_skeleton_recall_refuses_a_target_with_gradient():
    t = torch.rand(1, 1, 5, 5, requires_grad=True)
    with pytest.raises(ValueError, match="`target`"):
        F.skeleton_recall_loss(torch.randn(1, 1, 5, 5), t)


def test_cldice_gives_the_target_its_gradient():
    torch.manual_seed(0)
    t = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: F.cldice_loss(x, z), (t,))


@pytest.mark.peers
@pytest.mark.parametrize("spatial", [(12, 13), (6, 7, 8)])
def test_cldice_agrees_with_monai(spatial):
    monai = pytest.importorskip("monai.losses")
    torch.manual_seed(3)
    x, t = torch.randn(3, 1, *spatial, dtype=torch.float64), torch.randint(0, 2, (3, *spatial))
    for it in (0, 3, 5):
        ref = monai.SoftclDiceLoss(iter_=it, sigmoid=True, reduction="none")(x, t[:, None].double())
        ours = F.cldice_loss(x, t, iterations=it, reduction="none")
        torch.testing.assert_close(ours.reshape(-1), ref.reshape(-1), rtol=1e-10, atol=1e-12)
        ref = monai.SoftDiceclDiceLoss(iter_=it, alpha=0.3, sigmoid=True)(x, t[:, None].double())
        torch.testing.assert_close(F.dice_cldice_loss(x, t, iterations=it, alpha=0.3), ref, rtol=1e-10, atol=1e-12)
    # multiclass: MONAI pools its channels; per channel the values are MONAI's
    xc, tc = torch.randn(3, 3, *spatial, dtype=torch.float64), torch.randint(0, 3, (3, *spatial))
    pr, oh = torch.softmax(xc, 1), torch.nn.functional.one_hot(tc, 3).movedim(-1, 1).double()
    ref = torch.stack([monai.SoftclDiceLoss(reduction="none")(pr[:, c:c + 1], oh[:, c:c + 1]) for c in range(3)], 1)
    torch.testing.assert_close(F.cldice_loss(xc, tc, mode="multiclass", reduction="none"), ref.reshape(3, 3),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["SoftClDiceLoss", "DiceClDiceLoss", "SkeletonRecallLoss"])
@pytest.mark.parametrize("domain", ["batch", "image"])
def test_accumulator_is_exact(name, domain):
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch(c=3, spatial=(6, 7), ignore=255)
    loss = getattr(sl, name)(mode="multiclass", domain=domain, ignore_index=255)
    v_full, g_full = full_batch(model, loss, x, y)
    for label, mbs in splits(x, y).items():
        v, g = accumulated(model, loss, mbs)
        assert max_diff(g, g_full) < 1e-6, label
        assert abs(float(v - v_full)) < 1e-6, label


def test_registry_rows():
    for alias, cls in (("cl_dice", sl.SoftClDiceLoss), ("soft_dice_cldice", sl.DiceClDiceLoss),
                       ("skel_recall", sl.SkeletonRecallLoss)):
        assert sl.registry.resolve(alias).cls is cls
        assert sl.registry.resolve(alias).family == "topology"
    loss = sl.build_loss("0.5*dice + skeleton_recall(tube=1, include_background=False, mode='multiclass')")
    assert loss.spec() == "0.5*dice + 1.0*skeleton_recall(tube=1, mode='multiclass', include_background=False)"
