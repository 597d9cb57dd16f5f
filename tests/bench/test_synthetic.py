"""Tests of the synthetic two-way imbalanced data (seglosses.bench.synthetic)."""
import pytest
import torch

from seglosses.bench.synthetic import make_synthetic


@pytest.fixture(scope="module")
def binary():
    return make_synthetic(48, 64, seed=0)


def _positive(masks):
    return masks.flatten(1).amax(1) > 0


def test_shapes_dtypes_and_range(binary):
    images, masks = binary
    assert images.shape == (48, 1, 64, 64) and images.dtype == torch.float32
    assert masks.shape == (48, 64, 64) and masks.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert set(masks.unique().tolist()) == {0, 1}


def test_same_seed_same_tensors_other_seed_other_tensors(binary):
    images, masks = make_synthetic(48, 64, seed=0)
    assert torch.equal(images, binary[0]) and torch.equal(masks, binary[1])
    other_images, other_masks = make_synthetic(48, 64, seed=1)
    assert not torch.equal(other_images, images)
    assert not torch.equal(other_masks, masks)


def test_global_rng_is_neither_used_nor_disturbed():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    images, _ = make_synthetic(4, 32, seed=5)
    assert torch.equal(torch.rand(3), before)
    torch.manual_seed(999)
    assert torch.equal(make_synthetic(4, 32, seed=5)[0], images)


def test_batch_level_imbalance_exact_positive_count(binary):
    _, masks = binary
    assert int(_positive(masks).sum()) == round(48 * 0.25)
    for n_images, fraction, n in ((10, 0.0, 0), (70, 0.1, 7), (10, 1.0, 10)):  # 70 > chunk size (64)
        _, m = make_synthetic(n_images, 32, positive_fraction=fraction, seed=2)
        assert int(_positive(m).sum()) == n


def test_image_level_imbalance_a_few_percent(binary):
    _, masks = binary
    fraction = (masks[_positive(masks)] > 0).double().mean(dim=(1, 2))
    assert fraction.min() > 0.002 and fraction.max() < 0.08
    assert 0.01 < fraction.mean() < 0.04


def test_foreground_not_separable_by_intensity_alone():
    # The foreground is brighter on average, but distractors and background shading make a
    # global intensity threshold useless: a model has to learn the texture.
    images, masks = make_synthetic(32, 64, seed=3, positive_fraction=0.5)
    x, y = images[:, 0], masks > 0
    assert x[y].mean() > x[~y].mean()
    best = 0.0
    for t in torch.linspace(0.2, 0.95, 31):
        p = x > t
        best = max(best, float(2 * (p & y).sum() / (p.sum() + y.sum())))
    assert best < 0.3


def test_multiclass_two_foreground_classes_with_distinct_appearance():
    images, masks = make_synthetic(32, 64, mode="multiclass", positive_fraction=0.5, seed=0)
    assert set(masks.unique().tolist()) == {0, 1, 2}
    assert int(_positive(masks).sum()) == 16
    x = images[:, 0]
    background = x[masks == 0].mean()
    assert x[masks == 1].mean() > background > x[masks == 2].mean()  # brighter / darker classes
    _, masks4 = make_synthetic(16, 48, mode="multiclass", num_classes=4, positive_fraction=1.0, seed=0)
    assert set(masks4.unique().tolist()) == {0, 1, 2, 3}


def test_defaults_and_size_argument():
    images, masks = make_synthetic(2)
    assert images.shape == (2, 1, 128, 128) and masks.shape == (2, 128, 128)
    images, masks = make_synthetic(2, 40)
    assert images.shape == (2, 1, 40, 40)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mode="multi"), ValueError, r"`mode` must be one of .*did you mean 'multiclass'"),
        (dict(num_classes=3), ValueError, r"`num_classes` must be 2 \(or None\) when `mode` is 'binary'; got 3"),
        (dict(mode="multiclass", num_classes=9), ValueError, r"`num_classes` must be in \[2, 5\]; got 9"),
        (dict(positive_fraction=1.5), ValueError, r"`positive_fraction` must be in \[0, 1\]; got 1.5"),
        (dict(n_images=0), ValueError, r"`n_images` must be >= 1; got 0"),
        (dict(size=16), ValueError, r"`size` must be >= 32; got 16"),
        (dict(seed=1.5), TypeError, r"`seed` must be an int; got float"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    args = {"n_images": 2, "size": 32, **kwargs}
    with pytest.raises(error, match=match):
        make_synthetic(**args)
