"""Tests of the report's paired statistics (seglosses.bench.stats), on hand-computed cases."""
import math

import numpy as np
import pytest

from seglosses.bench.stats import (
    cluster_means,
    holm,
    paired_cluster_bootstrap,
    paired_cluster_test,
    rank_biserial,
    sign_consistency,
    wilcoxon_test,
)


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    out = holm([math.nan, 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)  # NaN neither counted nor adjusted
    assert holm([]) == []


def test_rank_biserial_by_hand():
    assert rank_biserial([1.0, 2.0, 3.0]) == 1.0
    assert rank_biserial([-1.0, -2.0]) == -1.0
    # |d| ranks: 0.5 -> 1, 2 -> 2, 3 -> 3; R+ = 1 + 3 = 4, R- = 2: (4 - 2) / 6
    assert rank_biserial([0.5, -2.0, 3.0, 0.0]) == pytest.approx(2 / 6)
    assert math.isnan(rank_biserial([0.0, 0.0]))


def test_wilcoxon_reports_effect_and_edge_cases():
    r = wilcoxon_test([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0] * 6)
    assert r["p"] == pytest.approx(2 / 64) and r["effect"] == 1.0
    assert wilcoxon_test([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    assert math.isnan(wilcoxon_test([1.0], [0.0])["p"])


def test_cluster_means_skip_nan_and_default_to_own_cluster():
    assert cluster_means({"a": 1.0, "b": math.nan, "c": 4.0}, {"a": "x", "b": "x"}) == {"x": 1.0, "c": 4.0}


def test_cluster_test_counts_source_images_not_quadrants():
    # 3 source images x 4 quadrants, every quadrant better by 0.1 .. 0.12: the items would give
    # p = 2/2^12, the three clusters only p = 2/2^3 = 0.25
    groups = {f"img{i}#q{k}": f"img{i}" for i in range(3) for k in range(4)}
    a = {0: {n: 0.5 + 0.1 + 0.01 * (j % 3) for j, n in enumerate(groups)}}
    b = {0: {n: 0.5 for n in groups}}
    r = paired_cluster_test(a, b, groups)
    assert (r["n_clusters"], r["n_items"], r["n_seeds"]) == (3, 12, 1)
    assert r["p"] == pytest.approx(0.25)
    items = wilcoxon_test(list(a[0].values()), list(b[0].values()))
    assert items["p"] < 1e-3  # what treating quadrants as independent would claim


def test_cluster_test_averages_seeds_and_pairs_by_seed():
    groups = {"x1": "x", "x2": "x", "y1": "y"}
    a = {0: {"x1": 1.0, "x2": 3.0, "y1": 1.0}, 1: {"x1": 1.0, "x2": 1.0, "y1": 5.0}, 7: {"x1": 9.0}}
    b = {0: {"x1": 0.0, "x2": 0.0, "y1": 0.0}, 1: {"x1": 0.0, "x2": math.nan, "y1": 0.0}}
    r = paired_cluster_test(a, b, groups)
    # seed 0: x = mean(1, 3) = 2, y = 1; seed 1: x = 1 (x2 undefined), y = 5 -> x 1.5, y 3; seed 7 unpaired
    assert r["n_seeds"] == 2 and r["n_clusters"] == 2
    assert r["mean_diff"] == pytest.approx((1.5 + 3.0) / 2)


def _mean_stat(values, weights):
    v = np.asarray(values, dtype=float)
    return (weights @ v) / weights.sum(1)


def test_bootstrap_observed_difference_interval_and_p():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 30)
    a = {0: base + 0.05, 1: base + 0.07}
    b = {0: base, 1: base}
    r = paired_cluster_bootstrap(a, b, [f"c{i}" for i in range(30)], _mean_stat, n_boot=500)
    assert r["mean_diff"] == pytest.approx(0.06)
    assert r["ci"] == pytest.approx([0.06, 0.06])  # the pairing removes the image-to-image spread
    assert r["p"] == pytest.approx(2 / 501) and r["n_seeds"] == 2
    # no difference on average: p large, interval around 0
    noise = rng.normal(0, 0.05, 30)
    r = paired_cluster_bootstrap({0: base + noise - noise.mean()}, {0: base}, [str(i) for i in range(30)],
                                 _mean_stat, n_boot=500)
    assert abs(r["mean_diff"]) < 1e-12 and r["p"] > 0.5 and r["ci"][0] < 0 < r["ci"][1]


def test_bootstrap_of_a_ratio_metric_is_paired_by_cluster():
    # a pooled ratio: sum(tp) / sum(n) per cluster; the same resample for both configurations
    def pooled(stats, w):
        tp, n = np.asarray(stats).T
        return (w @ tp) / (w @ n)

    a = {0: [(9.0, 10.0), (18.0, 20.0), (1.0, 10.0)]}
    b = {0: [(8.0, 10.0), (16.0, 20.0), (0.0, 10.0)]}
    r = paired_cluster_bootstrap(a, b, ["x", "y", "z"], pooled, n_boot=200)
    assert r["mean_diff"] == pytest.approx(28 / 40 - 24 / 40)
    assert r["ci"][0] > 0  # every resample favours a


def test_bootstrap_degenerate_inputs():
    r = paired_cluster_bootstrap({0: [1.0]}, {0: [0.0]}, ["x"], _mean_stat)
    assert r["mean_diff"] == 1.0 and math.isnan(r["p"])  # one cluster: no test
    assert math.isnan(paired_cluster_bootstrap({0: [1.0]}, {1: [0.0]}, ["x"], _mean_stat)["mean_diff"])


def test_sign_consistency():
    s = sign_consistency({0: 0.7, 1: 0.5, 2: 0.5, 3: math.nan}, {0: 0.6, 1: 0.6, 2: 0.5, 3: 0.1})
    assert (s["n"], s["positive"], s["negative"], s["zero"]) == (3, 1, 1, 1)
    assert s["diffs"][0] == pytest.approx(0.1)
