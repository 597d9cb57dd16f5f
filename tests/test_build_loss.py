"""build_loss: string / dict / list specs, common keyword arguments, schedules, errors, spec round trip."""
from __future__ import annotations

import pytest
import torch

import seglosses as sl
from seglosses import build_loss
from seglosses.losses import Ramp, WeightedSum
from seglosses.registry import ENTRIES


def _same(a, b):
    if isinstance(a, WeightedSum):
        return (isinstance(b, WeightedSum) and len(a.losses) == len(b.losses)
                and all(wa == wb and _same(la, lb) for (wa, la), (wb, lb) in zip(a.terms(), b.terms())))
    return type(a) is type(b) and a.config == b.config


def test_string_specs():
    loss = build_loss("0.5*dice + 0.5*ce")
    assert isinstance(loss, WeightedSum)
    assert [(w, type(l).__name__) for w, l in loss.terms()] == [(0.5, "DiceLoss"), (0.5, "CrossEntropyLoss")]
    loss = build_loss("tversky(alpha=0.3, beta=0.7, domain='batch') + 0.1*confidence_penalty")
    assert [w for w, _ in loss.terms()] == [1.0, 0.1]
    assert loss.losses[0].config["domain"] == "batch" and loss.losses[0].config["beta"] == 0.7
    # a single term without weight: the bare module; aliases and case
    bare = build_loss("  Focal(gamma=1) ")
    assert type(bare) is sl.FocalLoss and bare.config["gamma"] == 1.0
    assert type(build_loss("wce")) is sl.CrossEntropyLoss and type(build_loss("ell")) is sl.ExpLogLoss
    # weights: products, division, subtraction, unary minus, weight on either side
    loss = build_loss("dice*2 + 0.5*0.2*iou - ce/4 + -1*focal")
    assert [w for w, _ in loss.terms()] == [2.0, pytest.approx(0.1), -0.25, -1.0]
    # one weighted term stays a sum
    assert isinstance(build_loss("0.5*dice"), WeightedSum)
    # literal values of every kind
    m = build_loss("ce(class_weights=[1, 2.5], ignore_index=-100, from_logits=True, mode='multiclass')")
    assert m.config["class_weights"] == (1.0, 2.5) and m.config["ignore_index"] == -100


def test_common_keyword_arguments_apply_where_accepted():
    loss = build_loss("0.5*dice + 0.5*ce(label_smoothing=0.1) + margin", mode="multiclass", ignore_index=255,
                      domain="batch")
    dice, ce, margin = loss.losses
    assert all(l.config["mode"] == "multiclass" and l.config["ignore_index"] == 255 for l in loss.losses)
    assert dice.config["domain"] == "batch" and "domain" not in ce.config  # CE takes no domain
    assert ce.config["label_smoothing"] == 0.1
    # a term's own value wins over the common one
    assert build_loss("dice(mode='binary') + ce", mode="multiclass").losses[0].config["mode"] == "binary"
    x = torch.randn(2, 3, 4, 5)
    t = torch.randint(0, 3, (2, 4, 5))
    t[0, 0] = 255
    expected = (0.5 * sl.functional.dice_loss(x, t, mode="multiclass", ignore_index=255, domain="batch")
                + 0.5 * sl.functional.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255,
                                                         label_smoothing=0.1)
                + sl.functional.margin_calibration_loss(x, t, mode="multiclass", ignore_index=255))
    torch.testing.assert_close(loss(x, t), expected)
    with pytest.raises(ValueError, match=r"`common` keyword arguments must be accepted by at least one term; "
                                         r"got \['gama'\] \(did you mean 'gamma'\?\)"):
        build_loss("focal + dice", gama=2)


def test_dict_and_list_specs_and_schedules():
    spec = {"terms": [{"name": "dice", "weight": 0.5, "smooth": 1.0},
                      {"name": "focal", "weight": {"ramp": [0.0, 1.0, 4]}}],
            "mode": "multiclass"}
    loss = build_loss(spec)
    assert loss.losses[0].config["smooth"] == 1.0 and loss.losses[1].config["mode"] == "multiclass"
    assert loss.weights() == [0.5, 0.0]
    loss.step(2)
    assert loss.weights() == [0.5, 0.5]
    loss.step(10)
    assert loss.weights() == [0.5, 1.0]
    lst = build_loss([{"name": "tversky", "alpha": 0.2}, {"name": "cp", "weight": 0.1}])
    assert [w for w, _ in lst.terms()] == [1.0, 0.1] and lst.losses[0].config["alpha"] == 0.2
    single = build_loss({"name": "tversky", "alpha": 0.3, "beta": 0.7})
    assert type(single) is sl.TverskyLoss
    # callables are accepted in the Python API
    sched = build_loss([{"name": "dice", "weight": lambda step: 0.1 * step}])
    sched.step(3)
    assert sched.weights() == [pytest.approx(0.3)]
    # ramp in the string form, scaled by a number
    r = build_loss("ramp(0, 1, 10)*0.2*ce + dice")
    assert r.terms()[0][0] == Ramp(0.0, 0.2, 10)
    # a module passes through
    m = sl.DiceLoss()
    assert build_loss(m) is m


@pytest.mark.parametrize("spec,pattern", [
    ("0.5*dcie + ce", r"`spec` term 1 \('0.5\*dcie' at column 0\): must name a registered loss; got 'dcie' "
                      r"\(did you mean 'dice'\?\)"),
    ("dice + tversky(alhpa=0.3)", r"`spec` term 2 \('tversky\(alhpa=0.3\)' at column 7\): 'tversky' has no keyword "
                                  r"argument 'alhpa' \(did you mean 'alpha'\?\)"),
    ("dice(smooth=x)", r"keyword 'smooth' must have a literal value .*; got 'x'"),
    ("dice(1.0)", r"arguments of 'dice' must be given by keyword"),
    ("dice(**kw)", r"`\*\*` arguments are not allowed"),
    ("0.5 + dice", r"term 1 \('0.5' at column 0\): a term must name a loss; got only a weight '0.5'"),
    ("dice(", r"`spec` must be a sum of weighted loss terms; got a syntax error at column"),
    ("dice * ce", r"each term must be `name`, `name\(key=value, ...\)` or `weight\*name\(...\)`"),
    ("losses.dice()", r"a loss must be called by its name; got 'losses.dice'"),
    ("ramp(0, 1)*dice", r"`ramp` must be called as ramp\(start, end, steps\)"),
    ("ramp(0, 1, 2)*ramp(0, 1, 2)*dice", r"a term can have one schedule"),
    ("dice/0", r"divided by a non-zero number"),
    ("tversky(alpha=-1)", r"`spec` term 1 \('tversky\(alpha=-1\)' at column 0\): `alpha` must be a finite number "
                          r">= 0; got -1.0"),
    ("", r"`spec` must name at least one loss; got an empty string"),
])
def test_string_errors(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_loss(spec)


def test_dict_errors():
    with pytest.raises(ValueError, match=r"`spec` terms\[1\]: a term must have a string 'name'"):
        build_loss([{"name": "dice"}, {"weight": 1.0}])
    with pytest.raises(ValueError, match=r"`spec` terms\[0\] \(name 'dice'\): 'weight' must be a number"):
        build_loss([{"name": "dice", "weight": "high"}])
    with pytest.raises(ValueError, match=r"a weight schedule must be \{'ramp': \[start, end, steps\]\}"):
        build_loss({"terms": [{"name": "dice", "weight": {"cosine": [0, 1]}}]})
    with pytest.raises(ValueError, match=r"`steps` of a ramp must be an integer >= 0; got -1"):
        build_loss({"terms": [{"name": "dice", "weight": {"ramp": [0, 1, -1]}}]})
    with pytest.raises(ValueError, match=r"`spec` term \(name 'focl'\): must name a registered loss; got 'focl' "
                                         r"\(did you mean 'focal'\?\)"):
        build_loss({"name": "focl"})
    with pytest.raises(ValueError, match="`spec` 'terms' must be a non-empty list"):
        build_loss({"terms": []})
    with pytest.raises(TypeError, match="`spec` must be a string, a dict, a list of dicts or a loss module; got int"):
        build_loss(3)


# non-default values for the round trip: one per entry, exercising tuples, strings and None
NON_DEFAULT = {
    "dice": {"smooth": 0.5, "class_weights": (1.0, 2.0), "mode": "multiclass"},
    "tversky": {"alpha": 0.4, "domain": "batch"},
    "cross_entropy": {"class_weights": "inverse_frequency", "label_smoothing": 0.1, "ignore_index": 255},
    "topk": {"threshold": 0.6},
    "focal": {"alpha": 0.25, "gamma": 1.5},
    "distance_penalized_ce": {"spacing": (0.5, 2.0)},
    "margin_calibration": {"class_counts": (10.0, 3.0), "tau": 2.0, "offset_norm": "none"},
    "combo": {"dice_term": "score", "beta": 0.3},
    "exp_log": {"class_weights": None, "gamma_ce": 1.0},
}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_spec_round_trip_for_every_registry_entry(entry):
    default = entry.cls()
    back = build_loss(default.spec())
    assert _same(default, back)
    assert default.spec() == entry.name  # defaults only: the bare name
    kw = NON_DEFAULT.get(entry.name)
    if kw:
        m = entry.cls(**kw)
        spec = m.spec()
        assert _same(build_loss(spec), m), spec
        # through an alias too
        for alias in entry.aliases[:1]:
            assert _same(build_loss(spec.replace(entry.name, alias, 1)), m)


def test_weighted_sum_round_trip():
    s = 0.5 * sl.DiceLoss(mode="multiclass") + sl.CrossEntropyLoss(mode="multiclass", label_smoothing=0.1)
    s = s + (-0.25) * sl.FocalLoss(gamma=1.0)
    assert s.spec() == ("0.5*dice(mode='multiclass') + 1.0*cross_entropy(label_smoothing=0.1, mode='multiclass') "
                        "- 0.25*focal(gamma=1.0)")
    assert _same(build_loss(s.spec()), s)
    r = WeightedSum([(Ramp(0.0, 1.0, 5), sl.TverskyLoss()), (2.0, sl.ComboLoss())])
    assert r.spec() == "ramp(0.0, 1.0, 5)*tversky + 2.0*combo"
    assert _same(build_loss(r.spec()), r)
    # a ramp scaled by a number through `*` (kept as a schedule)
    scaled = 0.5 * r
    assert scaled.spec() == "ramp(0.0, 0.5, 5)*tversky + 1.0*combo"
    with pytest.raises(ValueError, match="`loss` weight must be a number or a Ramp to have a spec"):
        WeightedSum([(lambda step: 1.0, sl.DiceLoss())]).spec()


def test_list_losses_and_registry():
    names = [n for n, _ in sl.list_losses()]
    for n in ("cross_entropy", "topk", "focal", "distance_penalized_ce", "margin_calibration", "combo", "exp_log"):
        assert n in names
    fams = {e.name: e.family for e in ENTRIES}
    assert fams["focal"] == "distribution" and fams["margin_calibration"] == "margin" and fams["combo"] == "compound"
    for alias, cls in [("ce", sl.CrossEntropyLoss), ("wce", sl.CrossEntropyLoss), ("topk", sl.TopKLoss),
                       ("focal", sl.FocalLoss), ("dpce", sl.DistancePenalizedCELoss),
                       ("margin", sl.MarginCalibrationLoss), ("combo", sl.ComboLoss), ("ell", sl.ExpLogLoss)]:
        assert type(build_loss(alias)) is cls


@pytest.mark.parametrize("spec, shown", [
    ("1e999*dice", "got inf"),
    ("-1e999*dice", "got inf"),
    ("1e200*1e200*dice", "got inf"),
    ("dice/1e-320", "got inf"),
    ("dice - 1e999*ce", "got inf"),
    ("dice - 1e300*1e300*ce", "got inf"),
    ("1" + "0" * 400 + "*dice", "got an integer of 401 digits"),
    ("ramp(0, 1, 5)*1e308*1e308*dice", "`end` of a ramp must be a finite number; got inf"),
])
def test_non_finite_weights_are_refused_in_strings(spec, shown):
    with pytest.raises(ValueError, match=r"^`spec` term \d+ \(.* at column \d+\): a weight must be .*" + shown):
        build_loss(spec)


def test_non_finite_weights_are_refused_in_dicts_lists_and_products():
    for w in (float("inf"), float("-inf"), float("nan"), 10 ** 400):
        with pytest.raises(ValueError, match=r"^`spec` terms\[0\] \(name 'dice'\): a weight must be a finite number"):
            build_loss({"terms": [{"name": "dice", "weight": w}]})
        with pytest.raises(ValueError, match=r"^`spec` terms\[0\] \(name 'dice'\): a weight must be a finite number"):
            build_loss([{"name": "dice", "weight": w}])
    for w in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^`weight` must be a finite number; got (inf|nan)$"):
            sl.DiceLoss() * w
        with pytest.raises(ValueError, match=r"^`weight` must be a finite number; got (inf|nan)$"):
            w * (sl.DiceLoss() + sl.CrossEntropyLoss())
        with pytest.raises(ValueError, match=r"^`terms\[1\]` weight must be a finite number; got (inf|nan)$"):
            WeightedSum([(1.0, sl.DiceLoss()), (w, sl.DiceLoss())])
    with pytest.raises(ValueError, match=r"^`weight` must be a finite number, also times each term's weight; got "
                                         r"1e\+200 times 1e\+200 = inf$"):
        sl.DiceLoss() * 1e200 * 1e200
    # a schedule that leaves the finite numbers is refused when it is read
    loss = WeightedSum([(lambda step: 0.5 if step < 2 else float("inf"), sl.DiceLoss())])
    assert loss.weights() == [0.5]
    loss.step(2)
    with pytest.raises(ValueError, match=r"^`weight` schedule .* must give a finite number; got inf at step 2$"):
        loss.weights()


def test_long_sums_parse_without_recursion():
    n = 2000
    loss = build_loss(" + ".join(["dice"] * n) + " - 0.5*ce")
    assert len(loss.terms()) == n + 1 and loss.weights()[-1] == -0.5
    names = loss.term_names()
    assert names[:3] == ["dice", "dice_2", "dice_3"] and names[-2:] == [f"dice_{n}", "cross_entropy"]
    x, t = torch.randn(1, 1, 3, 3), torch.randint(0, 2, (1, 3, 3))
    single = sl.DiceLoss()(x, t)
    assert torch.allclose(loss(x, t), n * single - 0.5 * sl.CrossEntropyLoss()(x, t), rtol=1e-5)
    # beyond what Python's parser nests: a clear message, no RecursionError
    with pytest.raises(ValueError, match=r"^`spec` must be a sum of weighted loss terms that Python can parse; got "
                                         r"one nested too deeply \(\d+ characters\): write long sums as a list"):
        build_loss(" + ".join(["dice"] * 100_000))


def test_term_positions_in_messages_with_non_ascii_text():
    # the term text shown in messages is cut at the parser's (UTF-8 byte) offsets
    with pytest.raises(ValueError, match=r"^`spec` term 2 \('0.5\*dîce' at column 7\): must name a registered loss; "
                                         r"got 'dîce'"):
        build_loss("dice + 0.5*dîce")
    with pytest.raises(ValueError, match=r"^`spec` term 2 \('ce\(1\)' at column \d+\): arguments of 'ce' must be given "
                                         r"by keyword"):
        build_loss("tversky(mode='é') + ce(1)")


@pytest.mark.parametrize("divisor", [0, 0.0, float("inf"), float("nan")])
def test_dividing_a_loss_by_zero_or_a_non_finite_number_is_refused(divisor):
    with pytest.raises(ValueError, match="`divisor` must be a finite non-zero number"):
        sl.DiceLoss() / divisor
