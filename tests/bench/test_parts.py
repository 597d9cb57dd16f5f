"""The bench's parts: the typed run configuration, the sample-figure tiles, the bootstrap's reuse
of pooled metrics, and the data package's public names."""
import numpy as np
import pytest

from seglosses.bench.runconfig import EvalConfig, RunConfig


def test_run_config_fills_defaults_and_converts_numbers():
    cfg = RunConfig.from_mapping({"loss": "dice", "batch_size": 4.0, "seed": 1, "epochs": 2,
                                  "eval": {"metrics": ["dice"], "batch_size": 8}, "model": None})
    assert (cfg.batch_size, cfg.effective_batch_size, cfg.seed, cfg.epochs) == (4, 4, 1, 2)
    assert cfg.model == {} and cfg.optimizer == {} and cfg.sampler == {}
    assert cfg.eval == EvalConfig(metrics=["dice"], batch_size=8, samples=4)
    assert cfg.amp == "auto" and cfg.steps_per_epoch is None and cfg.pretrain_run is None
    big = RunConfig.from_mapping({"loss": "ce", "batch_size": 2, "effective_batch_size": 8, "seed": 0, "epochs": 1,
                                  "pretrain": {"run": "abc"}})
    assert big.effective_batch_size == 8 and big.pretrain_run == "abc"


@pytest.mark.parametrize("mapping, message", [
    ({"batch_size": 2, "seed": 0, "epochs": 1}, "`loss` must be given"),
    ({"loss": "ce", "seed": 0, "epochs": 1}, "`batch_size` must be given"),
    ({"loss": "ce", "batch_size": 2.5, "seed": 0, "epochs": 1}, "`batch_size` must be an integer; got 2.5"),
    ({"loss": "ce", "batch_size": True, "seed": 0, "epochs": 1}, "`batch_size` must be an integer; got True"),
    ({"loss": "ce", "batch_size": 2, "seed": 0, "epochs": 1, "model": [1]}, "`model` must be a mapping; got list"),
])
def test_run_config_names_the_bad_key(mapping, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RunConfig.from_mapping(mapping)


def test_sample_tiles_colour_every_outcome():
    from seglosses.bench.figures import _sample_tiles

    truth = np.array([[0, 1], [1, 0]])
    pred = np.array([[1, 1], [0, 0]])  # FP, TP / FN, TN
    ref = {"names": ["a"], "images": [np.full((1, 2, 2), 0.5)], "truths": [truth], "preds": [pred]}
    other = {"names": ["b"], "images": ref["images"], "truths": [truth], "preds": [pred]}
    (row,) = _sample_tiles(ref, [ref, other, None], 2)
    image, shown_truth, tile, missing_name, missing = row
    np.testing.assert_allclose(image, 0.5)
    np.testing.assert_allclose(shown_truth[..., 0], truth)  # white foreground, black background
    red, white, cyan, black = tile[0, 0], tile[0, 1], tile[1, 0], tile[1, 1]
    assert red[0] > 0.7 and red[1] < 0.3  # false positive: tab:red
    np.testing.assert_allclose(white, 1.0)
    assert cyan[0] < 0.3 and cyan[2] > 0.7  # false negative: tab:cyan
    np.testing.assert_allclose(black, 0.0)
    assert missing_name is None and missing is None  # another item's sample, and no sample at all


def test_sample_tiles_multiclass_colours_follow_the_labels():
    from matplotlib.colors import to_rgb

    from seglosses.bench.figures import _sample_tiles

    truth = np.array([[0, 1, 2]])
    ref = {"names": ["a"], "images": [np.zeros((3, 1, 3))], "truths": [truth], "preds": [np.array([[2, 1, 0]])]}
    (row,) = _sample_tiles(ref, [ref], 3)
    colours = [to_rgb(c) for c in ("black", "tab:orange", "tab:green")]
    np.testing.assert_allclose(row[1][0], colours)
    np.testing.assert_allclose(row[2][0], colours[::-1])


def test_bootstrap_computes_each_runs_pooled_metrics_once():
    from seglosses.bench.comparisons import _Tester

    calls = []

    class Acc:
        metrics = {"dice": {}, "jaccard": {}}

        def finalize(self, sums):

            calls.append(1)
            tp = sums["tp"]
            return {"dice_dataset": tp * 2, "jaccard_dataset": tp}

    tester = _Tester([])
    entry = ({"tp": np.arange(3.0)}, Acc(), ("c", 0, "fg:", ("x", "y", "z")))
    weights = np.ones((4, 3))
    first = tester._pooled_values(entry, weights)
    again = tester._pooled_values(entry, weights.copy())
    assert len(calls) == 1 and first is again
    np.testing.assert_allclose(first["dice_dataset"], 6.0)
    tester._pooled_values(entry, weights * 2)  # other resamples: computed anew
    assert len(calls) == 2


def test_data_package_keeps_its_public_names():
    import seglosses.bench.data as data

    for name in data.__all__:
        value = getattr(data, name)
        if callable(value):
            assert value.__module__.startswith("seglosses.bench.data."), name
    assert {"build_dataset", "RatioBatchSampler", "ShuffleBatchSampler", "load_nifti_slices", "tile"} <= set(data.__all__)


def test_bootstrap_tests_get_enough_resamples_for_the_holm_threshold():
    """A bootstrap p cannot fall below 2 / (n_boot + 1): in a table of 42 tests, 1000 resamples would
    leave every pooled test above Holm's smallest threshold 0.05 / 42; the tests that may be
    significant are drawn again with enough resamples (16800) and can then pass."""
    from types import SimpleNamespace

    from seglosses.bench.comparisons import LEVEL, _pair_tests, bootstrap_resamples

    class Tester:
        def __init__(self):
            self.calls = []

        def test(self, a, b, metric, aggregation, n_boot=None):
            n = n_boot or 1000
            self.calls.append((a.label, metric, n))
            clear = a.label == "A0"  # one pair differs clearly: its p sits at the resolution floor
            p = 2 / (n + 1) if clear else 0.4
            return {"test": {"unit": "cluster bootstrap", "p": p, "n_boot": n, "mean_diff": 0.1 if clear else 0.01}}

    tester = Tester()
    configs = [SimpleNamespace(label=f"{x}{i}") for i in range(6) for x in "AB"]
    pairs = [(configs[2 * i], configs[2 * i + 1]) for i in range(6)]
    rows = [(f"m{j}", "dataset", f"m{j}", True) for j in range(7)]
    found = _pair_tests(tester, pairs, rows)
    assert len(found) == 42 and bootstrap_resamples(42) == 16800
    clear = [r for r in found if r["a"] == "A0"]
    assert all(r["test"]["n_boot"] == 16800 and r["p_holm"] < LEVEL and r["verdict"] == "better" for r in clear)
    rest = [r for r in found if r["a"] != "A0"]
    assert all(r["test"]["n_boot"] == 1000 and r["verdict"] == "no significant difference" for r in rest)
    # only the 7 tests that could be significant were drawn again
    assert sum(n == 16800 for _, _, n in tester.calls) == 7
    # with the old fixed 1000 resamples none of them could have passed Holm
    assert 2 / 1001 * 42 > LEVEL


@pytest.mark.parametrize("positive, negative, verdict", [(3, 0, "better"), (2, 0, "better"), (2, 1, "seeds disagree"),
                                                         (0, 3, "better")])
def test_significant_test_needs_the_same_sign_in_every_seed(positive, negative, verdict):
    from seglosses.bench.comparisons import _verdict

    mean = 0.1 if positive >= negative else -0.1
    r = {"test": {"mean_diff": mean}, "p_holm": 0.001, "higher": mean > 0,
         "seeds": {"n": positive + negative, "positive": positive, "negative": negative, "zero": 0}}
    assert _verdict(r) == verdict
    assert _verdict(dict(r, p_holm=0.2)) == "no significant difference"


def test_claim_counts_seeds_disagree_as_no_consistent_difference():
    from seglosses.bench.results import Claim, judge

    better = Claim("k", "s", "x", ("s",), "compare", "better", (("dice", "dataset"),))
    same = Claim("k", "s", "x", ("s",), "compare", "none", (("dice", "dataset"),))
    t = {"verdict": "seeds disagree", "a": "A", "b": "B", "metric": "dice", "aggregation": "dataset"}
    assert judge(better, [t])[0] == "inconclusive at this scale"
    assert judge(same, [t])[0] == "holds"
