"""One protocol (issue 22): evaluate, fit, the robustness study and tradeoffs give a method the
same rows and record the same notes; predict scores by the same whole-set rule."""

from __future__ import annotations

import pytest

import clipfuse
from clipfuse.backbones import list_backbones
from clipfuse.combiners import make_combiner
from clipfuse.errors import ClipfuseError
from clipfuse.evaluation.robustness import fit_on_clean, score_view
from clipfuse.protocol import fit_on_draw, run_notes, score_on, scores_whole_set

pytestmark = pytest.mark.skipif(not list_backbones("zoo:*"), reason="no zoo weights shipped")


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    store = tmp_path_factory.mktemp("protocol-store")
    source = clipfuse.demo_source("fashion-mnist")
    train = clipfuse.load_views(["zoo:rn-tiny", "zoo:vit-p4"], source, splits="train",
                                store=store, limit=60)  # fmt: skip
    test = clipfuse.load_views(["zoo:rn-tiny", "zoo:vit-p4"], source, splits="test",
                               store=store, limit=40)  # fmt: skip
    return train, test


def test_robustness_gives_unlabelled_rows_like_evaluate_and_fit(views) -> None:
    """Before: the robustness copy fitted on the hold-out only (semi_mix fell back)."""
    train, test = views
    hold = train.holdout(1, seed=0)
    run = fit_on_draw("semi_mix", train, hold, seed=0)
    assert run.info == {"unlabelled": 50} and run.combiner.num_unlabelled_ == 50
    robust = fit_on_clean(train, ["semi_mix", "safe_conf_mix"], 1, None, [0])
    assert robust["semi_mix"][0].num_unlabelled_ == 50 and robust["semi_mix"][0].fallback_ is None
    assert robust["safe_conf_mix"][0].num_unlabelled_ == 50
    fitted = clipfuse.fit_ensemble(train, "semi_mix", shots=1, seed=0)
    assert fitted.training["unlabelled"] == 50
    assert robust["semi_mix"][0].weights_.tolist() == run.combiner.weights_.tolist()
    assert fitted.combiner.weights_.tolist() == run.combiner.weights_.tolist()
    scores = score_view(test, robust)
    assert scores["semi_mix"] == [score_on(run.combiner, test)[0]]


def test_run_notes_record_choice_costs_and_fit_notes(views) -> None:
    train, test = views
    run = fit_on_draw("best_single", train, train.holdout(1, seed=0), seed=0)
    notes = run_notes(run, test)
    assert notes["chosen"] in test.names and notes["backbones_per_image"] == 1.0
    safe = fit_on_draw("safe_conf_mix", train, train.holdout(1, seed=0), seed=0)
    notes = run_notes(safe, test)
    assert notes["unlabelled"] == 50 and "prior" in notes and "choice" in notes


def test_one_whole_set_rule_for_evaluate_and_predict() -> None:
    """A transductive combiner is scored on the whole set (evaluate, tradeoffs) and refused by
    predict unless asked; predict reads the protocol's rule instead of its own copy."""
    from clipfuse.ensemble import predict

    trans, plain = make_combiner("transclip"), make_combiner("nlc")
    assert scores_whole_set(trans) and scores_whole_set(trans, allowed=True)
    assert not scores_whole_set(plain) and not scores_whole_set(plain, allowed=False)
    with pytest.raises(ClipfuseError, match=r"transductive=True \(CLI: --transductive\)"):
        scores_whole_set(trans, allowed=False)
    assert predict.scores_whole_set is scores_whole_set


def test_robustness_records_hold_fractions(views, tmp_path) -> None:
    """One result schema: accuracy, std and the drop from clean are fractions (the drop was
    stored in points before); the CLI prints the drop in points."""
    from clipfuse.backbones import load_backbone
    from clipfuse.data import open_dataset
    from clipfuse.evaluation.robustness import robustness_study
    from clipfuse.extraction.perturbations import Perturbation
    from clipfuse.store import FeatureStore

    train, _ = views
    test = open_dataset(clipfuse.demo_source("fashion-mnist"), "test", limit=40)
    result = robustness_study(
        FeatureStore(tmp_path / "store"), [load_backbone(s) for s in train.specs], train, test,
        [Perturbation("flip", 1)], ["safe_conf_mix"], shots=1, seeds=(0,), progress=False,
    )  # fmt: skip
    records = {(r["perturbation"], r["method"]): r for r in result["records"]}
    for (_, method), r in records.items():
        assert 0.0 <= r["accuracy"] <= 1.0 and "drop_points" not in r
        clean = records[("clean", method)]["accuracy"]
        assert r["drop"] == pytest.approx(clean - r["accuracy"], abs=1e-12)
        assert -1.0 <= r["drop"] <= 1.0
