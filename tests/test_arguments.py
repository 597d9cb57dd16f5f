"""The shared keyword arguments: one table per family, filled in, checked and documented."""
from __future__ import annotations

import inspect

import pytest
import torch
from typing_extensions import Unpack

import seglosses as sl
from seglosses import metrics
from seglosses._arguments import (
    BOUNDARY,
    OVERLAP,
    REGION,
    SCORES,
    SURFACE,
    BoundaryKeywords,
    OverlapKeywords,
    RegionKeywords,
    ScoreKeywords,
    SurfaceKeywords,
    shared_keywords,
    with_docs,
)

REGION_FNS = [sl.functional.dice_loss, sl.functional.iou_loss, sl.functional.tversky_loss,
              sl.functional.focal_tversky_loss, sl.functional.asymmetric_similarity_loss,
              sl.functional.generalized_dice_loss, sl.functional.penalty_generalized_dice_loss,
              sl.functional.sensitivity_specificity_loss, sl.functional.log_cosh_dice_loss,
              sl.functional.mcc_loss, sl.functional.generalized_wasserstein_dice_loss,
              sl.functional.unified_focal_loss, sl.functional.cldice_loss, sl.functional.dice_cldice_loss,
              sl.functional.skeleton_recall_loss]
BOUNDARY_FNS = [sl.functional.boundary_loss, sl.functional.hausdorff_dt_loss, sl.functional.log_hausdorff_dt_loss,
                sl.functional.hausdorff_er_loss]
OVERLAP_FNS = [metrics.dice, metrics.jaccard, metrics.tversky_index, metrics.sensitivity, metrics.specificity,
               metrics.precision, metrics.balanced_accuracy, metrics.pixel_accuracy, metrics.iou_per_class,
               metrics.mean_iou]
SCORE_FNS = [metrics.average_precision, metrics.roc_auc, metrics.expected_calibration_error,
             metrics.maximum_calibration_error, metrics.calibration_bins, sl.functional.soft_confusion]
SURFACE_FNS = [metrics.hausdorff, metrics.hd95, metrics.assd, metrics.surface_dice, metrics.modified_hausdorff,
               metrics.surface_metrics]
FAMILY_OF = {**{f: REGION for f in REGION_FNS}, **{f: OVERLAP for f in OVERLAP_FNS},
             **{f: BOUNDARY for f in BOUNDARY_FNS}, **{f: SCORES for f in SCORE_FNS},
             **{f: SURFACE for f in SURFACE_FNS}}


def test_tables_agree_with_their_typed_dicts():
    for fam, td in ((REGION, RegionKeywords), (OVERLAP, OverlapKeywords), (BOUNDARY, BoundaryKeywords),
                    (SCORES, ScoreKeywords), (SURFACE, SurfaceKeywords)):
        assert list(fam.defaults) == list(td.__annotations__) == list(fam.annotations)
        assert set(fam.docs) == set(fam.defaults) | {"input", "target"}


@pytest.mark.parametrize("fn", list(FAMILY_OF), ids=lambda f: f.__name__)
def test_signature_lists_every_shared_keyword_with_its_default_and_doc(fn):
    fam = FAMILY_OF[fn]
    params = inspect.signature(fn).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    shared = [n for n in params if n in fam.defaults]
    assert shared, fn.__name__
    for n in shared:
        # the functions that differ say so in their decorator
        assert params[n].default == fn.shared_defaults[n], (fn.__name__, n)
        if n not in ("mode", "domain", "smooth", "empty", "bins"):
            assert params[n].default == fam.defaults[n], (fn.__name__, n)
        assert f"        {n}: " in fn.__doc__, (fn.__name__, n)
    assert fn.__doc__.index("Common args:") < fn.__doc__.index("Example:") if "Example:" in fn.__doc__ else True


def test_own_defaults_and_missing_keywords():
    params = inspect.signature(sl.functional.generalized_dice_loss).parameters
    assert params["mode"].default == "multiclass" and "class_weights" not in params
    params = inspect.signature(metrics.mean_iou).parameters
    assert params["domain"].default == "batch" and "reduction" not in params
    with pytest.raises(TypeError, match="unexpected keyword argument 'class_weights'"):
        sl.functional.generalized_dice_loss(torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long),
                                            class_weights=[1.0, 1.0])


def test_unknown_keyword_names_the_closest():
    with pytest.raises(TypeError, match=r"dice_loss\(\) got an unexpected keyword argument 'smoth' "
                                        r"\(did you mean 'smooth'\?\)"):
        sl.functional.dice_loss(torch.randn(1, 1, 2, 2), torch.ones(1, 2, 2), smoth=1.0)


def test_defaults_are_filled_in_and_overrides_win():
    seen = {}

    @shared_keywords(REGION, defaults={"mode": "multiclass"}, without=("sync",))
    def probe(input, target, *, own: int = 1, **kw: Unpack[RegionKeywords]):
        """Probe.

        Example:
            >>> 1
            1
        """
        seen.update(kw, own=own)
        return kw["smooth"]

    assert probe(None, None, smooth=2.0) == 2.0
    assert seen["mode"] == "multiclass" and seen["reduction"] == "mean" and "sync" not in seen and seen["own"] == 1
    assert probe.__doc__.index("Common args") < probe.__doc__.index("Example:")
    assert "sync:" not in probe.__doc__ and "Convention:" in probe.__doc__


def test_bad_declarations_refused():
    with pytest.raises(ValueError, match="must name keywords of 'region losses'; got 'smoth'"):
        shared_keywords(REGION, without=("smoth",))

    def restates(input, target, *, mode="binary", **kw):
        pass

    with pytest.raises(ValueError, match=r"must not restate the shared keywords \['mode'\]"):
        shared_keywords(REGION)(restates)


def test_with_docs_inserts_before_the_example_or_appends():
    def f():
        """Head.

        Example:
            >>> 1
        """

    def g():
        """Head only."""

    assert with_docs("    Notes:\n        x.")(f).__doc__.split("Notes:")[1].index("Example:") > 0
    assert with_docs("    Notes:\n        x.")(g).__doc__.rstrip().endswith("x.")


def test_family_returns_and_raises_unless_the_function_has_its_own():
    # the overlap metrics share one Returns / Raises; a function with its own keeps it
    assert "Returns:\n        The reduced value" in metrics.sensitivity.__doc__
    assert "TypeError: a float label-map target" in metrics.sensitivity.__doc__
    assert metrics.mean_iou.__doc__.count("Returns:") == 1 and "A 0-dim tensor." in metrics.mean_iou.__doc__
    assert metrics.hd95.__doc__.count("Raises:") == 1 and "``percentile`` outside" in metrics.hd95.__doc__
    # a positional argument the family does not name is the function's own to document
    doc = sl.functional.soft_confusion.__doc__
    assert "        probs: " in doc and "        target: " in doc and "        input: " not in doc


def test_surface_options_come_from_the_signatures():
    from seglosses.metrics.surface import metric_options

    assert metric_options("surface_dice", {})["empty"] == 1.0 and "missing" not in metric_options("surface_dice", {})
    assert metric_options("hausdorff", {"directed": True})["directed"] is True
    with pytest.raises(ValueError, match="`spacing` must be an option of 'hd95'"):
        metric_options("hd95", {"spacing": 1.0})
