"""The paired comparisons of the benchmark report: which configurations are compared (pairs that
differ in one factor, the baseline) and their paired tests (per-image metrics by a Wilcoxon
signed-rank test over clusters, pooled metrics by a paired cluster bootstrap; Holm-corrected)
with a verdict per test.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar

import numpy as np

from seglosses.bench.stats import holm, paired_cluster_bootstrap, paired_cluster_test, sign_consistency, wilcoxon_test

__all__ = ["LEVEL", "N_BOOT", "bootstrap_resamples"]



class Configuration(Protocol):
    """What the comparisons read of a configuration (:class:`seglosses.bench.report.Configuration`:
    the report builds them and imports this module, so the type is a protocol here)."""

    label: str
    runs: List[Dict[str, Any]]

    def config(self) -> Dict[str, Any]: ...


LEVEL = 0.05
N_BOOT = 1000


def _source_of(name: str) -> str:
    """The source image of an evaluation item named by the data module (``img@y,x#q1`` -> ``img``)."""
    return str(name).split("#q")[0].split("@")[0]


class _Tester:
    """The paired tests of one data set: per configuration and seed, per-image values and
    per-cluster pooled statistics (loaded once), and the tests of pairs of configurations."""

    def __init__(self, configs: Sequence[Configuration], n_boot: int = N_BOOT) -> None:
        self.configs = list(configs)
        self.n_boot = n_boot
        self.groups: Dict[str, str] = {}
        for c in configs:
            for r in c.runs:
                for item in r.get("per_image", {}):
                    self.groups.setdefault(item, _source_of(item))
                self.groups.update({str(k): str(v) for k, v in (r.get("groups") or {}).items()})
        self._sums: Dict[Tuple[str, int], Any] = {}
        self._pooled: Dict[Tuple[Any, ...], Dict[str, np.ndarray]] = {}

    # ---- what a configuration has
    def per_image(self, conf: Configuration, metric: str) -> Dict[int, Dict[str, float]]:
        out: Dict[int, Dict[str, float]] = {}
        for r in conf.runs:
            values = {n: row.get(metric) for n, row in r.get("per_image", {}).items()}
            values = {n: float(v) for n, v in values.items() if v is not None}
            if values:
                out[int(r["config"]["seed"])] = values
        return out

    def seed_values(self, conf: Configuration, metric: str, aggregation: str) -> Dict[int, float]:
        out = {}
        for r in conf.runs:
            v = r["results"].get(aggregation, {}).get(metric)
            if v is not None and not isinstance(v, list) and not math.isnan(float(v)):
                out[int(r["config"]["seed"])] = float(v)
        return out

    def cluster_sums(self, conf: Configuration) -> Dict[int, Any]:
        """Per seed: (cluster names, per-cluster sums, accumulators) of the pooled metrics."""
        from seglosses.bench.evaluate import IMAGE_SUMS, load_image_sums, pooled_accumulators

        out = {}
        for r in conf.runs:
            seed = int(r["config"]["seed"])
            key = (conf.label, seed)
            if key not in self._sums:
                loaded = load_image_sums(Path(r.get("dir", ".")) / IMAGE_SUMS) if r.get("dir") else None
                if loaded is None:
                    self._sums[key] = None
                else:
                    meta = loaded["meta"]
                    clusters = sorted(set(loaded["groups"]))
                    index = {g: i for i, g in enumerate(clusters)}
                    member = np.array([index[g] for g in loaded["groups"]])
                    summed = {}
                    for k, v in loaded["arrays"].items():
                        acc = np.zeros((len(clusters),) + v.shape[1:])
                        np.add.at(acc, member, v)
                        summed[k] = acc
                    fg, every = pooled_accumulators(meta["mode"], int(meta["num_classes"]), meta["metrics"],
                                                    per_class=True)
                    self._sums[key] = (clusters, summed, fg, every)
            if self._sums[key] is not None:
                out[seed] = self._sums[key]
        return out

    # ---- tests
    def test(self, a: Configuration, b: Configuration, metric: str, aggregation: str,
             n_boot: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """The paired test of ``a - b`` for one row of :data:`ROWS`, with the per-seed differences
        (``n_boot``: resamples of a pooled metric's bootstrap, default the tester's)."""
        va, vb = self.seed_values(a, metric, aggregation), self.seed_values(b, metric, aggregation)
        signs = sign_consistency(va, vb)
        if not signs["n"]:
            return None
        diffs = list(signs["diffs"].values())
        out: Dict[str, Any] = {"seeds": signs, "mean_diff_seeds": float(np.mean(diffs)),
                               "std_diff_seeds": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0}
        if aggregation == "image_mean":
            pa, pb = self.per_image(a, metric), self.per_image(b, metric)
            test = paired_cluster_test(pa, pb, self.groups) if set(pa) & set(pb) else None
        else:
            test = self._bootstrap(a, b, metric, n_boot or self.n_boot)
        if test is not None:
            out["test"] = test
        if len(set(va) & set(vb)) >= 5:
            common = sorted(set(va) & set(vb))
            out["seed_test"] = wilcoxon_test([va[s] for s in common], [vb[s] for s in common])
        return out

    def _bootstrap(self, a: Configuration, b: Configuration, metric: str, n_boot: int) -> Optional[Dict[str, Any]]:
        sa, sb = self.cluster_sums(a), self.cluster_sums(b)
        seeds = sorted(set(sa) & set(sb))
        if not seeds:
            return None
        clusters = sorted(set.intersection(*(set(x[s][0]) for x in (sa, sb) for s in seeds)))
        if not clusters:
            return None
        prefix, key = ("all:", metric) if metric in ("pixel_accuracy",) else ("fg:", metric)

        def prepared(conf: Configuration, seed: int, entry):
            names, summed, fg, every = entry
            acc = every if prefix == "all:" else fg
            if acc is None or metric not in acc.metrics:
                return None
            pos = [names.index(c) for c in clusters]
            sums = {k[len(prefix):]: v[pos] for k, v in summed.items() if k.startswith(prefix)}
            return sums, acc, (conf.label, seed, prefix, tuple(clusters))

        pa = {s: prepared(a, s, sa[s]) for s in seeds}
        pb = {s: prepared(b, s, sb[s]) for s in seeds}
        if any(v is None for v in (*pa.values(), *pb.values())):
            return None

        def statistic(entry, weights: np.ndarray) -> np.ndarray:
            value = self._pooled_values(entry, weights)[f"{key}_dataset"]
            value = value.reshape(value.shape[0], -1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(value, axis=1)

        return paired_cluster_bootstrap(pa, pb, clusters, statistic, n_boot=n_boot)


    def _pooled_values(self, entry, weights: np.ndarray) -> Dict[str, np.ndarray]:
        """Every pooled metric of one run when cluster ``g`` counts ``weights[r, g]`` times, as
        float64 arrays; computed once per run, cluster set and weights (the bootstrap of each
        metric and each pair re-uses the resamples of the same run)."""
        import torch

        sums, acc, key = entry
        key = key + (weights.shape, hashlib.sha1(np.ascontiguousarray(weights).tobytes()).hexdigest())
        found = self._pooled.get(key)
        if found is None:
            batched = {k: torch.from_numpy(np.tensordot(weights, v, axes=(1, 0))) for k, v in sums.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = {k: v.double().numpy() for k, v in acc.finalize(batched).items()}
            self._pooled[key] = found
        return found


def _pair_tests(tester: _Tester, pairs: Sequence[Tuple[Configuration, Configuration]],
                rows: Sequence[Tuple[str, str, str, bool]]) -> List[Dict[str, Any]]:
    """Every test of the pairs ``(a, b)`` (difference ``a - b``) and rows; Holm-corrected together."""
    found: List[Dict[str, Any]] = []
    tested: List[Tuple[Configuration, Configuration]] = []  # the pair of each entry of found
    for a, b in pairs:
        for metric, aggregation, label, higher in rows:
            r = tester.test(a, b, metric, aggregation)
            if r is None:
                continue
            r.update(a=a.label, b=b.label, metric=metric, aggregation=aggregation, row=label, higher=higher)
            found.append(r)
            tested.append((a, b))
    # A bootstrap p is at least 2 / (n_boot + 1): with m tests in the family Holm needs p < LEVEL / m
    # for the smallest one, so a test that may be significant is resampled again, enough times for
    # that floor to be a tenth of the threshold (otherwise no pooled test could pass in a large table).
    needed = bootstrap_resamples(len(found))
    for r, (a, b) in zip(found, tested):
        t = r.get("test")
        if t is not None and t.get("unit") == "cluster bootstrap" and t["n_boot"] < needed and t["p"] < LEVEL:
            r["test"] = tester.test(a, b, r["metric"], r["aggregation"], n_boot=needed)["test"]
    adjusted = holm([r["test"]["p"] if "test" in r else math.nan for r in found])
    for r, p in zip(found, adjusted):
        r["p_holm"] = p
        r["verdict"] = _verdict(r)
    return found


def bootstrap_resamples(tests: int, base: int = N_BOOT) -> int:
    """Resamples a pooled-metric bootstrap needs in a family of ``tests`` Holm-corrected tests: the
    smallest attainable p, ``2 / (n + 1)``, at most a tenth of the smallest Holm threshold
    ``LEVEL / tests`` (and never fewer than ``base``).

    Example:
        >>> bootstrap_resamples(1), bootstrap_resamples(42)
        (1000, 16800)
    """
    return max(int(base), math.ceil(20 * max(int(tests), 1) / LEVEL))


def _verdict(r: Mapping[str, Any]) -> str:
    """``better`` / ``worse`` (a against b, by the metric's direction) at Holm-adjusted p < LEVEL
    when no seed's difference goes the other way; ``seeds disagree`` when the test is significant
    but the per-seed differences have both signs (the tests resample images or clusters for the
    trained models at hand, not the training itself, so a difference whose sign depends on the
    seed is not called a difference between the losses); else ``no significant difference``
    (``not tested`` without a test)."""
    if "test" not in r or math.isnan(r.get("p_holm", math.nan)):
        return "not tested"
    if r["p_holm"] >= LEVEL or r["test"]["mean_diff"] == 0:
        return "no significant difference"
    signs = r.get("seeds") or {}
    if signs.get("positive", 0) and signs.get("negative", 0):
        return "seeds disagree"
    return "better" if (r["test"]["mean_diff"] > 0) == r["higher"] else "worse"


_C = TypeVar("_C", bound=Configuration)  # the caller's configuration type, kept in the pairs


def _compare_pairs(configs: Sequence[_C], factor: str) -> List[Tuple[_C, _C, str]]:
    """Pairs ``(later, earlier, context)`` of configurations that differ in ``factor`` only."""
    keys = ["loss_label", "domain", "batch_size", "epochs"]
    if any(c.config().get("effective_batch_size") not in (None, c.config().get("batch_size")) for c in configs):
        keys.insert(3, "effective_batch_size")  # only when it differs from the batch size somewhere
    field_of = {"loss": "loss_label", "domain": "domain", "batch_size": "batch_size",
                "effective_batch_size": "effective_batch_size", "epochs": "epochs"}
    target = field_of.get(factor, factor)
    varying = [k for k in keys if k != target and len({c.config().get(k) for c in configs} - {None}) > 1]
    groups: "OrderedDict[tuple, List[_C]]" = OrderedDict()
    for c in configs:
        if c.config().get(target) is None:
            continue
        groups.setdefault(tuple(c.config().get(k) for k in varying), []).append(c)
    names = {"loss_label": "loss", "domain": "domain", "batch_size": "batch size",
             "effective_batch_size": "effective batch size", "epochs": "epochs"}
    out = []
    for key, members in groups.items():
        context = ", ".join(f"{names[k]} {v}" for k, v in zip(varying, key) if v is not None)
        for j, later in enumerate(members):
            for earlier in members[:j]:
                out.append((later, earlier, context))
    return out


def _match_baseline(configs: Sequence[Configuration], name: Optional[str]) -> Optional[Configuration]:
    if not configs:
        return None
    if name is None:
        return configs[0]
    key = str(name).strip().lower()

    def canonical(spec: str) -> Optional[str]:
        try:
            from seglosses.registry import resolve

            return resolve(spec).name
        except Exception:  # noqa: BLE001 - not a single registered name
            return None

    wanted = canonical(key)
    tests = [
        lambda c: c.label.lower() == key,
        lambda c: str(c.config().get("loss_label", "")).lower() == key,
        lambda c: str(c.config().get("loss_spec", "")).lower() == key or str(c.config().get("loss", "")).lower() == key,
        lambda c: wanted is not None and canonical(str(c.config().get("loss_spec", ""))) == wanted,
    ]
    for test in tests:
        found = [c for c in configs if test(c)]
        if found:
            return found[0]
    return None
