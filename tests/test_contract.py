"""The estimator contract (clipfuse.testing.check_combiner) on every registered combiner."""

from __future__ import annotations

import pytest
import torch

import clipfuse
from clipfuse.combiners import list_combiners, make_combiner, method_groups
from clipfuse.errors import FitError, NotFittedError
from clipfuse.testing import check_combiner, synthetic_problem

# Combiners that fit other combiners many times get a smaller, still complete, configuration.
FAST = {"auto": {"folds": 2, "candidates": ("safe_conf_mix", "tipf_super_learner")}}


@pytest.mark.parametrize("name", list_combiners())
def test_check_combiner(name: str) -> None:
    torch.manual_seed(0)
    fitted = check_combiner(name, **FAST.get(name, {}))
    assert fitted.is_fitted and fitted.name == name


def test_groups_come_from_the_registry() -> None:
    groups = method_groups()
    assert groups["all"] == list_combiners()
    assert {"core", "heads", "compute"} <= set(groups)
    assert all(set(members) <= set(groups["all"]) for members in groups.values())
    assert list_combiners("lp*", group="heads") == ["lp", "lp_mean", "lp_super_learner", "lp_nlc"]
    with pytest.raises(FitError, match="unknown method group"):
        list_combiners(group="nope")


def test_nested_params_route_to_the_inner_combiner() -> None:
    lp_nlc = make_combiner("lp_nlc", inner__steps=7, head__max_iter=5)
    assert lp_nlc.inner_params == {"steps": 7} and lp_nlc.head_params == {"max_iter": 5}
    deep = lp_nlc.get_params(deep=True)
    assert deep["inner__steps"] == 7 and deep["inner__hidden"] == 128  # default of NLC
    assert "inner__steps" not in lp_nlc.get_params(deep=False)
    cascade = make_combiner("cascade").set_params(controller__steps=3)
    assert cascade.controller_params == {"steps": 3}
    with pytest.raises(FitError, match="no parameter"):
        make_combiner("nlc", inner__steps=3)  # nlc has no components


def test_not_fitted_error_is_a_value_error_and_a_clipfuse_error() -> None:
    features, logits, _ = synthetic_problem()
    with pytest.raises(NotFittedError) as info:
        make_combiner("nlc").predict(features, logits)
    assert isinstance(info.value, ValueError) and isinstance(info.value, clipfuse.ClipfuseError)
    assert "not fitted" in str(info.value)


def test_capabilities_are_declared_not_probed() -> None:
    assert make_combiner("nlc").has_temperatures and not make_combiner("moe").has_temperatures
    assert make_combiner("cascade").supports_staged
    assert make_combiner("subset_nlc").selects_backbones
    features, logits, y = synthetic_problem()
    best = make_combiner("best_single").fit(features, logits, y)
    assert (
        best.chosen_backbone() in range(3)
        and make_combiner("mean_logits").fit(features, logits, y).chosen_backbone() is None
    )


def test_displays_from_predictions_and_from_combiners() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from clipfuse.reports.displays import AccuracyDisplay, AgreementDisplay, IntersectionDisplay

    features, logits, y = synthetic_problem()
    direct = AccuracyDisplay.from_predictions(y, logits, ["a", "b", "c"])
    assert direct.backbones == ["a", "b", "c"] and direct.figure_ is not None
    fitted = {
        "mean": make_combiner("mean_logits").fit(features, logits, y),
        "best": make_combiner("best_single").fit(features, logits, y),
    }
    acc = AccuracyDisplay.from_combiners(fitted, features, logits, y)
    expected = [fitted[n].score(features, logits, y) for n in ("mean", "best")]
    assert acc.backbones == ["mean", "best"] and acc.accuracy.tolist() == pytest.approx(expected)
    agree = AgreementDisplay.from_combiners(fitted, features, logits, y, kind="error_overlap")
    assert agree.matrix.shape == (2, 2)
    upset = IntersectionDisplay.from_predictions(y, logits)
    assert int(upset.counts.sum()) <= len(y)
