"""Issue 21: ``auto`` (nested-CV choice among pipelines), ``nlc_learn``, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipfuse.combiners import make_combiner
from clipfuse.combiners.registry import combiner_from_state
from clipfuse.errors import FitError
from clipfuse.evaluation.records import bootstrap_interval
from clipfuse.testing import synthetic_problem

FAST = {"candidates": ("safe_conf_mix", "tipf_super_learner"), "folds": 3}


def _split(problem, train_per_class: int):
    """(train, test) of one synthetic world: the first rows of every class, and the rest."""
    feats, logits, y = problem
    first = torch.zeros_like(y, dtype=torch.bool)
    for c in y.unique():
        first[torch.nonzero(y == c).flatten()[:train_per_class]] = True
    return tuple(([f[rows] for f in feats], logits[:, rows], y[rows]) for rows in (first, ~first))


def _useless_zero_shot(train_per_class: int):
    """Features that separate 4 classes; zero-shot logits that point at the wrong class."""
    feats, logits, y = synthetic_problem(per_class=30)
    return _split((feats, logits[:, :, [1, 2, 3, 0]], y), train_per_class)


def test_auto_picks_heads_by_nested_cv_when_zero_shot_is_wrong() -> None:
    (feats, logits, y), (test_f, test_z, test_y) = _useless_zero_shot(6)
    auto = make_combiner("auto", **FAST).fit(feats, logits, y)
    notes = auto.fit_notes()
    assert notes["auto_rule"].startswith("cv (3-fold")
    assert set(notes["auto_cv"]) == {"safe_conf_mix", "tipf_super_learner"}
    assert notes["auto_choice"] == "tipf_super_learner"
    assert (
        notes["auto_cv"]["tipf_super_learner"]["cv_acc"]
        > notes["auto_cv"]["safe_conf_mix"]["cv_acc"]
    )
    assert auto.score(test_f, test_z, test_y) > 0.8
    # inductive: one image at a time gives the batch's answer
    batch = auto.predict(test_f, test_z)
    one = torch.stack([auto.predict([f[i : i + 1] for f in test_f], test_z[:, i : i + 1])[0]
                       for i in range(10)])  # fmt: skip
    assert torch.equal(one, batch[:10])
    # saved state rebuilds the choice, its scores and the same predictions
    again = combiner_from_state(auto.config(), auto.state_dict())
    assert again.fit_notes()["auto_cv"] == notes["auto_cv"]
    assert torch.equal(again.predict(test_f, test_z), batch)


def test_auto_time_guard_keeps_the_fallback_when_a_head_would_be_too_slow() -> None:
    """The same task as above, where CV prefers the head; a fit-time budget the head's predicted
    full fit exceeds leaves the fallback, and the note says why (issue 21's fit-time target)."""
    (feats, logits, y), _ = _useless_zero_shot(6)
    auto = make_combiner("auto", **FAST, time_budget_s=1e-6).fit(feats, logits, y)
    notes = auto.fit_notes()
    assert notes["auto_choice"] == "safe_conf_mix"
    assert "time_budget_s" in notes["auto_dropped"]["tipf_super_learner"]
    predicted = notes["auto_cv"]["tipf_super_learner"]["predicted_fit_s"]
    fold = notes["auto_cv"]["tipf_super_learner"]["fold_fit_s"]
    assert predicted == pytest.approx(fold * 1.5**2, rel=1e-2, abs=1e-3)
    with pytest.raises(FitError, match="time_budget_s"):
        make_combiner("auto", time_budget_s=0).fit(feats, logits, y)


def test_auto_keeps_the_safe_fusion_when_zero_shot_is_right() -> None:
    feats, logits, y = synthetic_problem(per_class=6, seed=0)
    auto = make_combiner("auto", **FAST, margin=1.0, combine="choose").fit(feats, logits, y)
    assert auto.choice_ == "safe_conf_mix"


def test_auto_blends_by_out_of_fold_nll_where_cv_cannot_tell_candidates_apart() -> None:
    """Hybrid (default): a clear CV winner is used alone (above: no blend); where the fallback is
    kept, the Super Learner blend of the candidates' probabilities predicts, and saves/loads."""
    from clipfuse.combiners.select import stack_weights

    (feats, logits, y), (test_f, test_z, test_y) = _useless_zero_shot(6)
    assert "auto_stack" not in make_combiner("auto", **FAST).fit(feats, logits, y).fit_notes()
    f, z, yy = synthetic_problem(per_class=8, seed=0)
    z = z + 2.0 * torch.randn(z.shape, generator=torch.Generator().manual_seed(0))  # noisy text
    auto = make_combiner("auto", **FAST, margin=50.0).fit(f, z, yy)  # the fallback is kept
    notes = auto.fit_notes()
    assert auto.rule_.startswith("cv") and notes["auto_choice"] == "safe_conf_mix"
    assert set(notes["auto_stack"]) == set(FAST["candidates"])
    assert sum(notes["auto_stack"].values()) == pytest.approx(1.0, abs=1e-3)
    assert auto.chosen_backbone() is None
    again = combiner_from_state(auto.config(), auto.state_dict())
    assert torch.allclose(again.predict_logits(f, z), auto.predict_logits(f, z))
    one = auto.predict_logits([x[:1] for x in f], z[:, :1])  # inductive: one image alone
    assert torch.allclose(one, auto.predict_logits(f, z)[:1], atol=1e-5)
    # the weights: all on the member whose out-of-fold probability of the truth is higher
    good = torch.log_softmax(torch.tensor([[4.0, 0.0], [0.0, 4.0]]), -1)
    bad = torch.log_softmax(torch.tensor([[0.0, 4.0], [4.0, 0.0]]), -1)
    w = stack_weights({"good": good, "bad": bad}, torch.tensor([0, 1]))
    assert w == {"good": 1.0}
    even = stack_weights({"a": good, "b": good}, torch.tensor([0, 1]))
    assert even == pytest.approx({"a": 0.5, "b": 0.5})


def test_auto_one_shot_uses_zero_shot_evidence_and_never_sees_the_fold_rows() -> None:
    (feats, logits, y), (extra_f, extra_z, _) = _useless_zero_shot(1)  # + unlabelled images
    f = [torch.cat([a, b]) for a, b in zip(feats, extra_f)]
    z = torch.cat([logits, extra_z], dim=1)
    yy = torch.cat([y, torch.full((extra_z.shape[1],), -1)])
    auto = make_combiner("auto", **FAST, one_shot_heads="tipf_super_learner").fit(f, z, yy)
    assert auto.rule_.startswith("one-shot") and auto.choice_ == "tipf_super_learner"
    assert auto.fit_notes()["auto_signals"]["zs_acc_labelled"] == 0.0
    good_f, good_z, good_y = synthetic_problem(per_class=1, seed=0)
    assert make_combiner("auto", **FAST).fit(good_f, good_z, good_y).choice_ == "safe_conf_mix"


def test_auto_bad_input_is_one_line() -> None:
    feats, logits, y = synthetic_problem(per_class=3, seed=0)
    y = y.clone()
    y[y == 2] = 1  # class 2 has no label
    with pytest.raises(FitError, match="class") as info:
        make_combiner("auto", **FAST).fit(feats, logits, y)
    assert "\n" not in str(info.value)
    with pytest.raises(FitError, match="fallback"):
        make_combiner("auto", candidates=("zs_probe",)).fit(*synthetic_problem())
    with pytest.raises(FitError, match="combine must be one of"):
        make_combiner("auto", combine="vote").fit(*synthetic_problem())
    with pytest.raises(FitError, match="se_rule must be"):
        make_combiner("robust_mix", se_rule=-1.0).fit(*synthetic_problem())
    with pytest.raises(FitError, match="unknown combiner"):
        make_combiner("auto", candidates=("safe_conf_mix", "nope")).fit(*synthetic_problem())


def test_nlc_learn_gives_the_better_backbone_more_weight_than_nlc() -> None:
    """Backbone 0 right, backbones 1-2 point at the wrong class: after 24 labels nlc_learn's
    temperatures must favour backbone 0 by far more than the paper's budget gets to."""
    feats, logits, y = synthetic_problem(per_class=6, seed=0)
    logits = logits.clone()
    logits[1:] = logits[1:, :, [1, 2, 3, 0]]
    ratios = {}
    for name in ("nlc", "nlc_learn"):
        m = make_combiner(name).fit(feats, logits, y)
        t = m.predict_temperatures(feats).mean(0)
        ratios[name] = float(t[1:].min() / t[0])
        if name == "nlc_learn":
            best_alone = float((logits[0].argmax(-1) == y).float().mean())
            assert m.score(feats, logits, y) >= best_alone
    assert ratios["nlc_learn"] > 5 * ratios["nlc"] and ratios["nlc_learn"] > 20, ratios


def test_nlc_learn_safe_start_can_give_one_backbone_all_the_weight() -> None:
    """Backbone 0 right, backbones 1-2 loud noise: the safe start (robust_mix's rule: the single
    backbone wins by more than one standard error) puts them at the largest temperature, i.e.
    weight ~0, and the NLC starts from backbone 0 alone; the ridge start keeps them in."""
    from clipfuse.combiners.nlc_learn import LOG_T_MAX, fit_log_temperatures, safe_log_temperatures

    feats, logits, y = synthetic_problem(per_class=16, seed=0)
    logits = logits.clone()
    logits[1:] = 5 * torch.randn(logits[1:].shape, generator=torch.Generator().manual_seed(0))
    safe = safe_log_temperatures(logits, y, seed=0)
    assert torch.allclose(safe[1:], torch.full((2,), LOG_T_MAX)) and float(safe[0]) < 1.0
    assert float(fit_log_temperatures(logits, y, ridge=1.0)[1:].max()) < LOG_T_MAX / 2
    m = make_combiner("nlc_learn", steps=1).fit(feats, logits, y)
    t = m.predict_temperatures(feats).mean(0)
    assert float(t[1:].min() / t[0]) > 1000
    with pytest.raises(FitError, match="start"):
        make_combiner("nlc_learn", start="nope").fit(feats, logits, y)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_images() -> None:
    rng = np.random.default_rng(0)
    small = [rng.random(200) < 0.6 for _ in range(3)]
    large = [rng.random(5000) < 0.6 for _ in range(3)]
    lo, hi = bootstrap_interval(small)
    mean = np.mean(small)  # the interval is in fractions, like the mean it brackets
    assert lo < mean < hi
    lo2, hi2 = bootstrap_interval(large)
    assert hi2 - lo2 < (hi - lo) / 2


def test_auto_cross_validates_on_a_class_subset_when_classes_are_many() -> None:
    (feats, logits, y), (test_f, test_z, test_y) = _useless_zero_shot(6)
    auto = make_combiner("auto", **FAST, max_cv_classes=2).fit(feats, logits, y)
    assert auto.fit_notes()["auto_cv_classes"] == 2
    assert auto.choice_ == "tipf_super_learner"  # the subset tells the same story
    assert auto.predict(test_f, test_z).shape == test_y.shape  # the choice is fitted on all 4
