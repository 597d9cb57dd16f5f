"""Average precision: hand values, the naive reference, scikit-learn, the binned variant and its bound."""
from __future__ import annotations

import math

import pytest
import torch

from seglosses import metrics as M
from seglosses.metrics.ranking import ap_from_histograms, ap_histograms

from . import _ref as R


def test_hand_values():
    # scores 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-): precision 1/1 at the first positive, 2/3 at the second
    s = torch.tensor([[[0.9, 0.8, 0.3, 0.1]]])
    g = torch.tensor([[1, 0, 1, 0]])
    assert M.average_precision(s, g).item() == pytest.approx((1 + 2 / 3) / 2)
    # a tie between the top positive and a negative: one threshold, precision 1/2 for that positive
    s2 = torch.tensor([[[0.9, 0.9, 0.3, 0.1]]])
    assert M.average_precision(s2, g).item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    # perfect ranking: 1; reversed ranking of 1 positive among 4: 1/4
    assert M.average_precision(torch.tensor([[[0.9, 0.1, 0.2, 0.3]]]), torch.tensor([[1, 0, 0, 0]])).item() == 1.0
    assert M.average_precision(torch.tensor([[[0.0, 0.1, 0.2, 0.3]]]), torch.tensor([[1, 0, 0, 0]])).item() == 0.25


def test_empty_convention_and_ignore():
    s = torch.tensor([[[0.9, 0.8, 0.3, 0.1]]])
    none = torch.zeros(1, 4, dtype=torch.long)
    assert M.average_precision(s, none).item() == 1.0
    assert math.isnan(M.average_precision(s, none, empty="nan").item())
    assert M.average_precision(s, none, empty=0.0).item() == 0.0
    # the negative at 0.8 ignored: ranks +, +, -: AP 1
    g = torch.tensor([[1, 255, 1, 0]])
    assert M.average_precision(s, g, ignore_index=255).item() == 1.0


def test_logits_and_multiclass_softmax():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 5, 7), generator=gen)
    torch.testing.assert_close(M.average_precision(x, t, mode="multiclass", from_logits=True, reduction="none"),
                               M.average_precision(x.softmax(1), t, mode="multiclass", reduction="none"))
    # include_background drops channel 0
    full = M.average_precision(x.softmax(1), t, mode="multiclass", reduction="none")
    torch.testing.assert_close(
        M.average_precision(x.softmax(1), t, mode="multiclass", reduction="none", include_background=False),
        full[:, 1:])


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("spatial", [(4, 7), (3, 4, 5)])
def test_against_naive_reference(mode, spatial):
    gen = torch.Generator().manual_seed(5)
    b, c = 2, (1 if mode == "binary" else 3)
    scores = (torch.rand(b, c, *spatial, generator=gen, dtype=torch.float64) * 8).round() / 8  # many ties
    if mode == "multiclass":
        t = torch.randint(0, c, (b, *spatial), generator=gen)
        g = torch.stack([t == k for k in range(c)], 1)
    elif mode == "binary":
        t = torch.randint(0, 2, (b, *spatial), generator=gen)
        g = t.unsqueeze(1).bool()
    else:
        t = torch.randint(0, 2, (b, c, *spatial), generator=gen)
        g = t.bool()
    got = M.average_precision(scores, t, mode=mode, reduction="none", empty="nan")
    expected = torch.tensor([[R.average_precision(scores[i, k].numpy(), g[i, k].numpy()) for k in range(c)]
                             for i in range(b)], dtype=torch.float64)
    torch.testing.assert_close(got, expected, equal_nan=True)
    got_b = M.average_precision(scores, t, mode=mode, domain="batch", reduction="none", empty="nan")
    expected_b = torch.tensor([R.average_precision(scores[:, k].numpy(), g[:, k].numpy()) for k in range(c)],
                              dtype=torch.float64)
    torch.testing.assert_close(got_b, expected_b, equal_nan=True)


def test_binned_equals_exact_on_quantised_scores():
    # binned AP = exact AP of floor(s * bins) / bins (the top bin includes 1)
    gen = torch.Generator().manual_seed(1)
    s = torch.rand(3, 2, 40, generator=gen, dtype=torch.float64)
    s[0, 0, :3] = 1.0
    t = torch.randint(0, 2, (3, 2, 40), generator=gen)
    for bins in (1, 3, 10, 64):
        q = (s * bins).floor().clamp_max(bins - 1) / bins
        for domain in ("image", "batch"):
            torch.testing.assert_close(
                M.average_precision(s, t, mode="multilabel", bins=bins, domain=domain, reduction="none"),
                M.average_precision(q, t, mode="multilabel", domain=domain, reduction="none"))


def test_binned_error_within_bound_and_bound_shrinks():
    gen = torch.Generator().manual_seed(2)
    n = 5000
    t = (torch.rand(4, n, generator=gen) < 0.2).long()
    # informative scores: positives shifted up
    s = (torch.rand(4, 1, n, generator=gen, dtype=torch.float64) * 0.7 + 0.3 * t.unsqueeze(1)).clamp(0, 1)
    exact = M.average_precision(s, t, reduction="none")[:, 0]
    prev = None
    for bins in (4, 16, 64, 256, 1024, 4096):
        binned = M.average_precision(s, t, reduction="none", bins=bins)[:, 0]
        pos, tot = ap_histograms(s[:, 0], t.double(), torch.ones(4, n, dtype=torch.float64), bins)
        torch.testing.assert_close(ap_from_histograms(pos, tot, 1.0), binned)
        bound = M.average_precision_error_bound(pos, tot)
        assert bool(((exact - binned).abs() <= bound + 1e-12).all()), (bins, exact - binned, bound)
        if prev is not None:
            assert bool((bound <= prev + 1e-12).all())
        prev = bound
    assert float(prev.max()) < 2e-3  # 4096 bins
    # adversarial arrangement inside one bin: positives last / first within the bin reach the bound's sides
    s1 = torch.tensor([[[0.10, 0.11, 0.12, 0.13]]], dtype=torch.float64)
    for labels in ([0, 0, 1, 1], [1, 1, 0, 0]):
        tt = torch.tensor([labels])
        e = M.average_precision(s1, tt).item()
        b1 = M.average_precision(s1, tt, bins=2).item()
        pos, tot = ap_histograms(s1[:, 0], tt.double(), torch.ones(1, 4, dtype=torch.float64), 2)
        assert abs(e - b1) <= M.average_precision_error_bound(pos, tot).item() + 1e-12


def test_bound_is_zero_when_bins_separate_the_scores():
    s = torch.tensor([[[0.05, 0.15, 0.25, 0.95]]])
    g = torch.tensor([[1, 0, 1, 0]])
    pos, tot = ap_histograms(s[:, 0].double(), g.double(), torch.ones(1, 4, dtype=torch.float64), 10)
    assert M.average_precision_error_bound(pos, tot).item() == 0.0
    assert M.average_precision(s, g, bins=10).item() == pytest.approx(M.average_precision(s, g).item())


@pytest.mark.parametrize(
    "kwargs, inp, exc, match",
    [
        (dict(), torch.randint(0, 2, (1, 1, 4)), TypeError, r"`input` must be a floating-point tensor"),
        (dict(bins=0), torch.rand(1, 1, 4), ValueError, r"`bins` must be None or an int >= 1; got 0"),
        (dict(bins=2.5), torch.rand(1, 1, 4), ValueError, r"`bins` must be None or an int >= 1"),
        (dict(domain="dataset"), torch.rand(1, 1, 4), ValueError, r"`domain` must be one of 'image', 'batch'"),
        (dict(), torch.tensor([[[0.2, 1.5, 0.7, 2.9]]]), ValueError, r"`input` must hold probabilities in \[0, 1\]"),
        (dict(), torch.full((1, 1, 4), math.nan), ValueError, r"`input` must be finite"),
        (dict(), torch.rand(0, 1, 4), ValueError, r"`input` must hold at least one image"),
    ],
)
def test_bad_input(kwargs, inp, exc, match):
    t = torch.zeros((inp.shape[0], 4), dtype=torch.long)
    with pytest.raises(exc, match=match):
        M.average_precision(inp, t, **kwargs)


@pytest.mark.peers
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sklearn_agreement(seed):
    skm = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(seed)
    s = torch.rand(3, 4, 9, 11, generator=gen).softmax(1)
    s = (s * 50).round() / 50  # ties
    s = s / s.sum(1, keepdim=True).clamp_min(1)  # still probabilities
    t = torch.randint(0, 4, (3, 9, 11), generator=gen)
    got = M.average_precision(s, t, mode="multiclass", reduction="none").double()
    got_b = M.average_precision(s, t, mode="multiclass", domain="batch", reduction="none").double()
    for k in range(4):
        yt = (t == k)
        ref_b = skm.average_precision_score(yt.flatten().numpy(), s[:, k].flatten().numpy())
        assert abs(got_b[k].item() - ref_b) < 1e-6
        for i in range(3):
            if yt[i].any():
                ref = skm.average_precision_score(yt[i].flatten().numpy(), s[i, k].flatten().numpy())
                assert abs(got[i, k].item() - ref) < 1e-6
